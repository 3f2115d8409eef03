"""Streaming chat-model providers: Groq (default) and any OpenAI-compatible local server."""

from rag.llm.base import LLMError, Provider
from rag.llm.groq_provider import GroqProvider
from rag.llm.openai_compat import OpenAICompatProvider

__all__ = ["GroqProvider", "LLMError", "OpenAICompatProvider", "Provider"]
