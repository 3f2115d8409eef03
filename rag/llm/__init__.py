"""Streaming chat-model providers: Groq (default) and any OpenAI-compatible local server."""

from pharmgpt.rag.llm.base import LLMError, ModelChoice, Provider, choose_model
from pharmgpt.rag.llm.groq_provider import GroqProvider
from pharmgpt.rag.llm.openai_compat import OpenAICompatProvider

__all__ = [
    "GroqProvider",
    "LLMError",
    "ModelChoice",
    "OpenAICompatProvider",
    "Provider",
    "choose_model",
]
