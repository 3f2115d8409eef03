"""JWTs for localbase: verifying requests and minting the API keys.

HS256 only: a token with `alg: none` or any other algorithm is refused, as is
one signed with another secret, expired, or meant for another audience.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

from .errors import ApiError

ALGORITHM = "HS256"


@dataclass(frozen=True)
class JwtConfig:
    secret: str
    audience: str | None = "authenticated"
    anon_role: str = "anon"
    leeway_s: int = 30  # clock skew allowed on exp/nbf/iat, as Supabase's PostgREST allows


def _unauthorized(code: str, message: str, details: str | None = None) -> ApiError:
    return ApiError(401, code, message, details, None,
                    headers={"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{message}"'})


_CACHE: dict[tuple[str, str], dict] = {}
_CACHE_MAX = 1024


def verify(token: str, cfg: JwtConfig) -> dict:
    """Claims of a valid token, or a PostgREST-shaped 401.

    Verified tokens are remembered (bounded), so a client's repeated requests
    skip the HMAC; `exp` is still checked on every use.
    """
    hit = _CACHE.get((cfg.secret, token))
    if hit is not None:
        exp = hit.get("exp")
        if exp is None or exp + cfg.leeway_s >= time.time():
            return hit
        _CACHE.pop((cfg.secret, token), None)
    claims = _verify(token, cfg)
    if len(_CACHE) >= _CACHE_MAX:
        _CACHE.clear()
    _CACHE[(cfg.secret, token)] = claims
    return claims


def _verify(token: str, cfg: JwtConfig) -> dict:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as e:
        raise _unauthorized("PGRST301", "JWT could not be decoded", str(e)) from None
    if header.get("alg") != ALGORITHM:
        raise _unauthorized("PGRST301", "Wrong or unsupported encoding algorithm",
                            f"alg {header.get('alg')!r} is not accepted")
    _check_time_claims(token)
    try:
        claims = jwt.decode(
            token, cfg.secret, algorithms=[ALGORITHM], leeway=cfg.leeway_s,
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
            raise _unauthorized("PGRST303", f"JWT claim '{name}' must be a number",
                                f"got {type(value).__name__}")


def mint(secret: str, role: str, *, lifetime_s: int = 3600, **extra) -> str:
    now = int(time.time())
    claims = {"iss": "pharmgpt-localbase", "role": role, "iat": now, "exp": now + lifetime_s, **extra}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


_KEYS_IAT = 1767225600  # fixed, so the same secret always gives the same keys
_KEYS_EXP = 4102444800


def api_keys(secret: str) -> dict[str, str]:
    """The anon and service-role keys, as a Supabase project has them (stable per secret)."""
    def key(role: str) -> str:
        claims = {"iss": "pharmgpt-localbase", "role": role, "iat": _KEYS_IAT, "exp": _KEYS_EXP}
        return jwt.encode(claims, secret, algorithm=ALGORITHM)
    return {"anon": key("anon"), "service_role": key("service_role")}
