"""All configuration in one place: environment first, then .streamlit/secrets.toml.

Validated at start-up with messages that say what to fix (DESIGN D9).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SUPABASE_KEYS = ("SUPABASE_URL", "SUPABASE_ANON_KEY", "SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_JWT_SECRET")


def _secrets_file() -> dict:
    path = Path(os.environ.get("PHARMGPT_SECRETS_FILE", PROJECT_ROOT / ".streamlit" / "secrets.toml"))
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path} could not be read: {e}") from e


@dataclass(frozen=True)
class Settings:
    supabase_url: str | None = None
    supabase_anon_key: str | None = None
    supabase_service_role_key: str | None = None
    supabase_jwt_secret: str | None = None
    data_dir: Path = field(default_factory=lambda: PROJECT_ROOT / ".pharmgpt")
    groq_api_key: str | None = None

    @property
    def embedded(self) -> bool:
        """No Supabase project configured: run on the local stack."""
        return not self.supabase_url

    @classmethod
    def load(cls, env: dict[str, str] | None = None) -> Settings:
        secrets = _secrets_file() if env is None else {}
        env = dict(os.environ) if env is None else env

        def get(key: str) -> str | None:
            value = env.get(key) or secrets.get(key)
            return str(value) if value not in (None, "") else None

        s = cls(
            supabase_url=get("SUPABASE_URL"),
            supabase_anon_key=get("SUPABASE_ANON_KEY"),
            supabase_service_role_key=get("SUPABASE_SERVICE_ROLE_KEY"),
            supabase_jwt_secret=get("SUPABASE_JWT_SECRET"),
            data_dir=Path(get("PHARMGPT_DATA_DIR") or PROJECT_ROOT / ".pharmgpt").resolve(),
            groq_api_key=get("GROQ_API_KEY"),
        )
        s.validate()
        return s

    def validate(self) -> None:
        if self.supabase_url:
            missing = [k for k in SUPABASE_KEYS if not getattr(self, k.lower())]
            if missing:
                raise ConfigError(
                    "SUPABASE_URL is set, so these are needed too: " + ", ".join(missing)
                    + " (set them in the environment or .streamlit/secrets.toml)"
                )
            if not self.supabase_url.startswith(("http://", "https://")):
                raise ConfigError(f"SUPABASE_URL must start with http:// or https://, got {self.supabase_url!r}")
