"""Streaming chat-model providers: Groq (default) and any OpenAI-compatible local server.

They implement `services.ports.Provider`; the use-case picks the model (services.answering)."""

from pharmgpt.rag.llm.groq_provider import GroqProvider
from pharmgpt.rag.llm.openai_compat import OpenAICompatProvider
from pharmgpt.services.errors import LLMError
from pharmgpt.services.ports import ModelChoice, Provider

__all__ = [
    "GroqProvider",
    "LLMError",
    "ModelChoice",
    "OpenAICompatProvider",
    "Provider",
]
