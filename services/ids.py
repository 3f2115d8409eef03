"""Ids from callers (URLs, forms, other services) in canonical UUID form.

A value that is not a UUID names nothing the caller may see, so it is NotFound (the same
answer RLS gives for someone else's row), never a database type error."""

from __future__ import annotations

import uuid
from typing import Any

from .errors import NotFound


def parse_id(value: Any, what: str) -> str:
    """`value` as a canonical UUID string; NotFound("The <what> was not found.") otherwise."""
    try:
        return str(uuid.UUID(str(value)))
    except (ValueError, TypeError, AttributeError):
        raise NotFound(f"The {what} was not found.") from None
