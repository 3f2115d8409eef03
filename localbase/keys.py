"""Key material shaped like Supabase's: JWT signing keys and the opaque API keys.

A `SigningKey` signs (ES256 / RS256 private key, or an HS256 shared secret),
with the `kid` the project knows it by. A `KeySet` verifies: asymmetric keys
and imported shared secrets by `kid`, the legacy JWT secret for tokens that
carry none, and it publishes only the public halves as a JWKS. API keys
`sb_publishable_…` / `sb_secret_…` are opaque strings mapped to `anon` /
`service_role` by their prefix, as Supabase's API gateway does.
"""

from __future__ import annotations

import hmac
import json
import secrets
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, HMACAlgorithm, RSAAlgorithm

ALGORITHMS = ("HS256", "ES256", "RS256")
PUBLISHABLE_PREFIX = "sb_publishable_"
SECRET_PREFIX = "sb_secret_"
API_KEY_ROLES = {PUBLISHABLE_PREFIX: "anon", SECRET_PREFIX: "service_role"}
_PUBLIC_FIELDS = {"EC": ("kty", "crv", "x", "y"), "RSA": ("kty", "n", "e")}
_MIN_RSA_BITS = 2048


class KeyMaterialError(ValueError):
    """Key material that cannot be used, with a message that says why."""


@dataclass(frozen=True)
class SigningKey:
    alg: str
    kid: str | None
    key: Any = field(repr=False)  # a cryptography private key, or the shared secret's bytes

    @classmethod
    def shared_secret(cls, secret: str, kid: str | None = None) -> SigningKey:
        """HS256: the legacy JWT secret (no kid), or a shared secret imported with a kid."""
        if not secret:
            raise KeyMaterialError("the shared secret is empty")
        return cls("HS256", kid or None, secret.encode("utf-8"))

    @property
    def asymmetric(self) -> bool:
        return self.alg != "HS256"

    def sign(self, claims: dict) -> str:
        headers = {"kid": self.kid, "typ": "JWT"} if self.kid else None
        return jwt.encode(claims, self.key, algorithm=self.alg, headers=headers)

    def public_jwk(self) -> dict:
        """What a project may publish: no private part, ever (HS256 has no public half)."""
        if not self.asymmetric:
            raise KeyMaterialError("an HS256 shared secret has no public key to publish")
        return _public_jwk(self.key.public_key(), self.alg, self.kid)

    def private_jwk(self) -> dict:
        """The whole key as a JWK, for the key file and the dashboard's import."""
        if self.alg == "ES256":
            jwk = ECAlgorithm.to_jwk(self.key, as_dict=True)
        elif self.alg == "RS256":
            jwk = RSAAlgorithm.to_jwk(self.key, as_dict=True)
        else:
            jwk = HMACAlgorithm.to_jwk(self.key, as_dict=True)
        jwk.update({"alg": self.alg, "use": "sig", "key_ops": ["sign", "verify"]})
        if self.kid:
            jwk["kid"] = self.kid
        return jwk

    def verification_jwk(self) -> dict:
        """What a verifier needs: the public JWK, or the shared secret as an `oct` JWK."""
        return self.public_jwk() if self.asymmetric else self.private_jwk()


def _public_jwk(public_key: Any, alg: str, kid: str | None) -> dict:
    raw = (ECAlgorithm if alg == "ES256" else RSAAlgorithm).to_jwk(public_key, as_dict=True)
    jwk = {k: raw[k] for k in _PUBLIC_FIELDS[raw["kty"]]}
    jwk.update({"alg": alg, "use": "sig", "key_ops": ["verify"]})
    if kid:
        jwk["kid"] = kid
    return jwk


def generate_es256(kid: str | None = None) -> SigningKey:
    """A new P-256 key pair with a random kid (what the dashboard's import accepts)."""
    return SigningKey("ES256", kid or str(uuid.uuid4()), ec.generate_private_key(ec.SECP256R1()))


def _alg_for(key: Any) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise KeyMaterialError(
                f"an EC signing key must be on P-256 (ES256), not {key.curve.name}"
            )
        return "ES256"
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < _MIN_RSA_BITS:
            raise KeyMaterialError(
                f"an RSA signing key must have at least {_MIN_RSA_BITS} bits, not {key.key_size}"
            )
        return "RS256"
    raise KeyMaterialError("the signing key must be an EC P-256 (ES256) or RSA (RS256) private key")


def _from_jwk(data: dict, kid: str | None) -> SigningKey:
    kty = data.get("kty")
    if kty in ("EC", "RSA") and "d" not in data:
        raise KeyMaterialError(
            'this JWK is a public key; the signing key must be the private one (with "d")'
        )
    try:
        parsed = jwt.PyJWK(data)
    except jwt.PyJWTError as e:
        raise KeyMaterialError(f"the JWK could not be read: {e}") from None
    alg = parsed.algorithm_name
    kid = data.get("kid") or kid
    if kty == "oct":
        if alg != "HS256":
            raise KeyMaterialError(f"a shared-secret JWK must be HS256, not {alg}")
        return SigningKey("HS256", kid, parsed.key)
    if _alg_for(parsed.key) != alg:
        raise KeyMaterialError(f"the JWK says alg {alg}, which does not fit its key type")
    if not kid:
        raise KeyMaterialError('the JWK has no "kid": give the kid the project knows the key by')
    return SigningKey(alg, kid, parsed.key)


def _from_pem(text: str, kid: str | None) -> SigningKey:
    try:
        key = serialization.load_pem_private_key(text.encode("utf-8"), password=None)
    except (ValueError, TypeError) as e:
        raise KeyMaterialError(
            f"the PEM private key could not be read (it must be unencrypted): {e}"
        ) from None
    if not kid:
        raise KeyMaterialError(
            "a PEM key carries no kid: set SUPABASE_JWT_KID to the kid the project shows for it"
        )
    return SigningKey(_alg_for(key), kid, key)


def load_signing_key(material: str, kid: str | None = None) -> SigningKey:
    """A private JWK (JSON), a PEM private key, or the path of a file holding one."""
    text = material.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise KeyMaterialError(f"the signing key looks like JSON but is not: {e}") from None
        if not isinstance(data, dict):
            raise KeyMaterialError("the signing key JSON must be one JWK object")
        return _from_jwk(data, kid)
    if text.startswith("-----BEGIN"):
        return _from_pem(text, kid)
    path = Path(text).expanduser()
    if "\n" not in text and path.is_file():
        return load_signing_key(path.read_text(encoding="utf-8"), kid)
    raise KeyMaterialError(
        "the signing key must be a private JWK, a PEM private key, or the path of a file "
        "holding one"
    )


def project_signer(signing_key: str | None, jwt_secret: str | None) -> SigningKey:
    """A local project's signer: its private JWK (new keys), else its legacy HS256 secret."""
    if signing_key:
        return load_signing_key(signing_key)
    if not jwt_secret:
        raise KeyMaterialError("the project has neither a signing key nor a JWT secret")
    return SigningKey.shared_secret(jwt_secret)


def write_private(path: Path, text: str) -> None:
    """Write a secret file readable by its owner only (0600 from the first byte)."""
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    tmp.replace(path)


# ---------------------------------------------------------------------- API keys
def new_api_keys() -> dict[str, str]:
    """A publishable and a secret key, opaque like the hosted ones."""
    return {
        "anon": PUBLISHABLE_PREFIX + secrets.token_urlsafe(24),
        "service_role": SECRET_PREFIX + secrets.token_urlsafe(32),
    }


def is_opaque_api_key(value: str) -> bool:
    """Not a JWT: the new keys have no dots and start with `sb_`."""
    return value.startswith("sb_") or value.count(".") != 2


def api_key_role(value: str) -> str | None:
    for prefix, role in API_KEY_ROLES.items():
        if value.startswith(prefix):
            return role
    return None


# ---------------------------------------------------------------------- verifying
@dataclass(frozen=True)
class VerifyKey:
    alg: str
    key: Any = field(repr=False)  # a public key object, or the shared secret's bytes
    jwk: dict | None = field(default=None, repr=False)  # the public JWK, asymmetric keys only


@dataclass(frozen=True)
class KeySet:
    """What a verifier trusts: keys by kid, the legacy secret, the opaque API keys."""

    by_kid: dict[str, VerifyKey] = field(default_factory=dict)
    legacy_secret: str | None = field(default=None, repr=False)
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    legacy_api_keys: bool = True  # JWT apikeys (anon / service_role) accepted

    @classmethod
    def from_jwks(
        cls,
        jwks: dict | None,
        *,
        legacy_secret: str | None = None,
        api_keys: tuple[str, ...] = (),
        legacy_api_keys: bool = True,
    ) -> KeySet:
        by_kid: dict[str, VerifyKey] = {}
        for data in (jwks or {}).get("keys", []):
            kid = data.get("kid")
            if not kid:
                raise KeyMaterialError("every key in the JWKS needs a kid")
            try:
                parsed = jwt.PyJWK(data)
            except jwt.PyJWTError as e:
                raise KeyMaterialError(f"JWKS key {kid!r} could not be read: {e}") from None
            alg = parsed.algorithm_name
            if alg not in ALGORITHMS:
                raise KeyMaterialError(
                    f"JWKS key {kid!r} is {alg}; only {', '.join(ALGORITHMS)} are accepted"
                )
            if alg == "HS256":
                by_kid[kid] = VerifyKey(alg, parsed.key)
            else:
                public = (
                    parsed.key.public_key()
                    if hasattr(parsed.key, "private_numbers")
                    else parsed.key
                )
                by_kid[kid] = VerifyKey(alg, public, _public_jwk(public, alg, kid))
        for key in api_keys:
            if api_key_role(key) is None:
                raise KeyMaterialError(
                    f"API keys must start with {PUBLISHABLE_PREFIX} or {SECRET_PREFIX}"
                )
        return cls(by_kid, legacy_secret or None, tuple(api_keys), legacy_api_keys)

    def public_jwks(self) -> dict:
        """The JWKS to serve: public halves of the asymmetric keys only (as Supabase publishes)."""
        return {"keys": [k.jwk for k in self.by_kid.values() if k.jwk is not None]}

    def role_for_api_key(self, value: str) -> str | None:
        """The role of a known opaque key (compared in constant time), else None."""
        found = None
        for known in self.api_keys:
            if hmac.compare_digest(known.encode(), value.encode()):
                found = known
        return api_key_role(found) if found else None
