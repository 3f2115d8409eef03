"""The local project's keys, kept in its data directory as a hosted project keeps them.

Default: an ES256 signing key (private JWK, for the services) and opaque
`sb_publishable_…` / `sb_secret_…` API keys, in `<data>/keys.json` (0600).
The gateway gets only what verifies: the public JWK and the API keys, in
`<data>/gateway-keys.json` (0600). Legacy mode: the HS256 secret of
`localbase.json` and the anon / service-role JWT keys derived from it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .auth import api_keys as legacy_api_keys
from .keys import (
    KeySet,
    SigningKey,
    generate_es256,
    new_api_keys,
    project_signer,
    write_private,
)


@dataclass(frozen=True)
class ProjectKeys:
    legacy: bool
    anon_key: str
    service_role_key: str
    jwt_secret: str | None  # legacy mode only
    signing_key: str | None  # the private JWK as JSON; default mode only

    @property
    def signer(self) -> SigningKey:
        return project_signer(self.signing_key, self.jwt_secret)

    def gateway_config(self) -> dict:
        """What the gateway is given: verification keys only, never a private key."""
        if self.legacy:
            return {
                "jwks": {"keys": []},
                "jwt_secret": self.jwt_secret,
                "api_keys": [],
                "legacy_api_keys": True,
            }
        return {
            "jwks": {"keys": [self.signer.verification_jwk()]},
            "jwt_secret": None,
            "api_keys": [self.anon_key, self.service_role_key],
            "legacy_api_keys": False,
        }


def load_or_create(data_dir: Path, jwt_secret: str, *, legacy: bool) -> ProjectKeys:
    if legacy:
        keys = legacy_api_keys(jwt_secret)
        return ProjectKeys(True, keys["anon"], keys["service_role"], jwt_secret, None)
    path = data_dir / "keys.json"
    if path.exists():
        data = json.loads(path.read_text(encoding="utf-8"))
        return ProjectKeys(
            False,
            data["publishable_key"],
            data["secret_key"],
            None,
            json.dumps(data["signing_key"]),
        )
    signer = generate_es256()
    api = new_api_keys()
    data = {
        "signing_key": signer.private_jwk(),
        "publishable_key": api["anon"],
        "secret_key": api["service_role"],
    }
    write_private(path, json.dumps(data, indent=2))
    return ProjectKeys(
        False, api["anon"], api["service_role"], None, json.dumps(data["signing_key"])
    )


def write_gateway_file(path: Path, keys: ProjectKeys) -> None:
    write_private(path, json.dumps(keys.gateway_config(), indent=2))


def read_gateway_file(path: Path, *, jwt_secret: str | None = None) -> KeySet:
    """The gateway's key set from its file (a command-line `jwt_secret` adds a legacy secret)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return KeySet.from_jwks(
        data.get("jwks"),
        legacy_secret=data.get("jwt_secret") or jwt_secret,
        api_keys=tuple(data.get("api_keys") or ()),
        legacy_api_keys=bool(data.get("legacy_api_keys", True)),
    )
