"""JWTs for localbase: verifying requests and minting tokens and the legacy API keys.

Accepted: HS256, ES256 and RS256, each only with the key it was made for. A
token with a `kid` is checked against that key of the key set, and its `alg`
must be that key's; a token without one only against the legacy HS256 secret.
`alg: none`, unknown kids, an algorithm the key does not have (e.g. a public
key used as an HMAC secret), other secrets, expired tokens and other
audiences are refused with PostgREST's 401.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import jwt

from .errors import ApiError, pgrst
from .keys import ALGORITHMS, KeySet, SigningKey

ALGORITHM = "HS256"  # the legacy secret's algorithm


@dataclass(frozen=True)
class JwtConfig:
    secret: str | None = None  # the legacy HS256 secret (tokens without a kid)
    audience: str | None = "authenticated"
    anon_role: str = "anon"
    leeway_s: int = 30  # clock skew allowed on exp/nbf/iat, as Supabase's PostgREST allows
    keys: KeySet | None = None  # keys by kid; `secret` is added to it as the legacy secret
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        keys = self.keys or KeySet()
        if self.secret and not keys.legacy_secret:
            keys = KeySet(keys.by_kid, self.secret, keys.api_keys, keys.legacy_api_keys)
        object.__setattr__(self, "keys", keys)


def _unauthorized(code: str, message: str, details: str | None = None) -> ApiError:
    return pgrst(
        code,
        message,
        details,
        None,
        headers={
            "WWW-Authenticate": f'Bearer error="invalid_token", error_description="{message}"'
        },
    )


_CACHE_MAX = 1024


def verify(token: str, cfg: JwtConfig) -> dict:
    """Claims of a valid token, or a PostgREST-shaped 401.

    Verified tokens are remembered (bounded), so a client's repeated requests
    skip the HMAC; `exp` is still checked on every use.
    """
    cache = cfg._cache
    hit = cache.get(token)
    if hit is not None:
        exp = hit.get("exp")
        if exp is None or exp + cfg.leeway_s >= time.time():
            return hit
        cache.pop(token, None)
    claims = _verify(token, cfg)
    if len(cache) >= _CACHE_MAX:
        cache.clear()
    cache[token] = claims
    return claims


def _verify(token: str, cfg: JwtConfig) -> dict:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as e:
        raise _unauthorized("PGRST301", "JWT could not be decoded", str(e)) from None
    alg, kid = header.get("alg"), header.get("kid")
    if alg not in ALGORITHMS:
        raise _unauthorized(
            "PGRST301", "Wrong or unsupported encoding algorithm", f"alg {alg!r} is not accepted"
        )
    keys = cfg.keys
    assert keys is not None  # set in __post_init__
    if kid is not None:
        found = keys.by_kid.get(kid) if isinstance(kid, str) else None
        if found is None:
            raise _unauthorized(
                "PGRST301", "No suitable key or wrong key type", f"no key has kid {kid!r}"
            )
        if found.alg != alg:  # e.g. an HS256 token made with an ES/RS public key as the secret
            raise _unauthorized(
                "PGRST301",
                "Wrong or unsupported encoding algorithm",
                f"key {kid!r} is {found.alg}, the token says {alg}",
            )
        key = found.key
    elif alg == ALGORITHM and keys.legacy_secret:
        key = keys.legacy_secret
    else:
        raise _unauthorized(
            "PGRST301",
            "No suitable key or wrong key type",
            "the token has no kid"
            + ("" if keys.legacy_secret else " and this project has no legacy JWT secret"),
        )
    _check_time_claims(token)
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[alg],
            leeway=cfg.leeway_s,
            options={"verify_aud": False, "require": []},
        )
    except jwt.ExpiredSignatureError:
        raise _unauthorized("PGRST303", "JWT expired") from None
    except jwt.InvalidSignatureError:
        raise _unauthorized("PGRST301", "JWT cryptographic operation failed") from None
    except jwt.PyJWTError as e:
        raise _unauthorized("PGRST301", "JWT is invalid", str(e)) from None
    aud = claims.get("aud")
    if aud is not None and cfg.audience is not None:
        auds = aud if isinstance(aud, list) else [aud]
        if cfg.audience not in auds:
            raise _unauthorized("PGRST303", "JWT not in audience")
    if not isinstance(claims.get("role", cfg.anon_role), str):
        raise _unauthorized("PGRST301", "JWT role claim must be a string")
    return claims


_TIME_CLAIMS = ("exp", "nbf", "iat")


def _check_time_claims(token: str) -> None:
    """exp/nbf/iat must be JSON numbers: PyJWT would take "1999999999" as a date."""
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as e:
        raise _unauthorized("PGRST301", "JWT could not be decoded", str(e)) from None
    for name in _TIME_CLAIMS:
        value = unverified.get(name)
        if name in unverified and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise _unauthorized(
                "PGRST303", f"JWT claim '{name}' must be a number", f"got {type(value).__name__}"
            )


def mint(key: str | SigningKey, role: str, *, lifetime_s: int = 3600, **extra) -> str:
    """A token for `role`: a str is the legacy HS256 secret, a SigningKey signs with its kid."""
    signer = key if isinstance(key, SigningKey) else SigningKey.shared_secret(key)
    now = int(time.time())
    claims = {
        "iss": "pharmgpt-localbase",
        "role": role,
        "iat": now,
        "exp": now + lifetime_s,
        **extra,
    }
    return signer.sign(claims)


_KEYS_IAT = 1767225600  # fixed, so the same secret always gives the same keys
_KEYS_EXP = 4102444800


def api_keys(secret: str) -> dict[str, str]:
    """The legacy anon and service-role JWT keys of a legacy project (stable per secret)."""

    def key(role: str) -> str:
        claims = {"iss": "pharmgpt-localbase", "role": role, "iat": _KEYS_IAT, "exp": _KEYS_EXP}
        return jwt.encode(claims, secret, algorithm=ALGORITHM)

    return {"anon": key("anon"), "service_role": key("service_role")}
