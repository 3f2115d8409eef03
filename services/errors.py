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
