"""Per-user settings with typed defaults: unknown keys and wrong types are refused."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .backend import Backend
from .errors import ValidationError
from .metrics import Metrics, timed


@dataclass(frozen=True)
class Pref:
    default: Any
    type: type
    check: Callable[[Any], bool] | None = None
    help: str = ""


PREFERENCES: dict[str, Pref] = {
    # "" = the provider's default: the model names belong to the provider (rag.llm), not here
    "model": Pref(
        "", str, lambda v: len(v) <= 200, "the LLM used for answers (empty: the provider's default)"
    ),
    "temperature": Pref(0.2, float, lambda v: 0.0 <= v <= 2.0, "0 to 2"),
    "top_k": Pref(6, int, lambda v: 1 <= v <= 20, "passages per answer, 1 to 20"),
    "strict_mode": Pref(True, bool, None, "answer only from the documents"),
    "show_sources": Pref(True, bool, None, "show cited passages under answers"),
    "theme": Pref("light", str, lambda v: v in ("light", "dark"), "light or dark"),
}


def coerce(key: str, value: Any) -> Any:
    spec = PREFERENCES.get(key)
    if spec is None:
        raise ValidationError(f"Unknown setting {key!r}.")
    if spec.type is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, spec.type) or (spec.type is int and isinstance(value, bool)):
        raise ValidationError(f"{key} must be a {spec.type.__name__}.")
    if spec.check is not None and not spec.check(value):
        raise ValidationError(f"{key}: {spec.help}.")
    return value


class PreferenceService:
    def __init__(self, backend: Backend, metrics: Metrics):
        self.backend = backend
        self.metrics = metrics

    @timed("preferences.get_all")
    async def get_all(self, user_id: str) -> dict[str, Any]:
        db = await self.backend.for_user(user_id)
        r = await self.backend.execute(
            db.table("user_preferences").select("key,value"), what="settings"
        )
        out = {k: p.default for k, p in PREFERENCES.items()}
        for row in r.data:
            try:
                out[row["key"]] = coerce(row["key"], row["value"])
            except ValidationError:
                pass  # a stale or hand-edited value falls back to the default
        return out

    @timed("preferences.get")
    async def get(self, user_id: str, key: str) -> Any:
        if key not in PREFERENCES:
            raise ValidationError(f"Unknown setting {key!r}.")
        db = await self.backend.for_user(user_id)
        r = await self.backend.execute(
            db.table("user_preferences").select("value").eq("key", key).limit(1), what="setting"
        )
        if not r.data:
            return PREFERENCES[key].default
        try:
            return coerce(key, r.data[0]["value"])
        except ValidationError:
            return PREFERENCES[key].default

    @timed("preferences.set")
    async def set(self, user_id: str, key: str, value: Any) -> Any:
        value = coerce(key, value)
        db = await self.backend.for_user(user_id)
        await self.backend.execute(
            db.table("user_preferences").upsert(
                {"user_id": user_id, "key": key, "value": value},
                on_conflict="user_id,key",
                returning="minimal",
            ),
            what="setting",
        )
        return value

    @timed("preferences.delete")
    async def delete(self, user_id: str, key: str) -> None:
        if key not in PREFERENCES:
            raise ValidationError(f"Unknown setting {key!r}.")
        db = await self.backend.for_user(user_id)
        await self.backend.execute(
            db.table("user_preferences").delete().eq("key", key), what="setting"
        )
