"""PharmGPT's error hierarchy: pages show `message`, logs keep `details`."""

from __future__ import annotations

from typing import Any


class PharmGPTError(Exception):
    code = "error"

    def __init__(self, message: str, *, details: Any = None):
        super().__init__(message)
        self.message = message
        self.details = details


class ConfigError(PharmGPTError):
    code = "config"


class AuthError(PharmGPTError):
    code = "auth"


class NotFound(PharmGPTError):
    code = "not_found"


class Forbidden(PharmGPTError):
    code = "forbidden"


class Conflict(PharmGPTError):
    code = "conflict"


class ValidationError(PharmGPTError):
    code = "validation"


class BackendUnavailable(PharmGPTError):
    code = "backend_unavailable"


class IngestionError(PharmGPTError):
    code = "ingestion"


class LLMError(PharmGPTError):
    """A chat model failure a pharmacist can act on.

    `message` is plain language for the page; `details` keeps the raw provider error for logs.
    `partial` is True when some answer text was already streamed before the failure, so the UI
    can mark what it showed as incomplete instead of presenting it as a finished answer.
    """

    code = "llm"

    def __init__(self, message: str, *, details: Any = None, partial: bool = False):
        super().__init__(message, details=details)
        self.partial = partial
