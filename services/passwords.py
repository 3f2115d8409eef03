"""Password hashing: bcrypt for every new hash; the legacy scheme only to verify.

bcrypt reads at most 72 bytes, and bcrypt>=5 refuses longer input, so the
password is first reduced to base64(SHA-256(password)) — 44 bytes — and then
bcrypt-hashed ("bcrypt-sha256" in passlib's terms). Every password, long or
short, takes the same path, so no two inputs collide on a truncated prefix.
The old PharmGPT stored sha256(password + salt) hex with a 64-hex salt.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import bcrypt

BCRYPT = "bcrypt"
LEGACY = "legacy_sha256"


def _prehash(password: str) -> bytes:
    return base64.b64encode(hashlib.sha256(password.encode("utf-8")).digest())


def hash_password(password: str, rounds: int = 12) -> str:
    return bcrypt.hashpw(_prehash(password), bcrypt.gensalt(rounds)).decode("ascii")


def verify_password(
    password: str, stored: str, scheme: str = BCRYPT, salt: str | None = None
) -> bool:
    if scheme == LEGACY:
        if salt is None:
            return False
        candidate = hashlib.sha256((password + salt).encode("utf-8")).hexdigest()
        return hmac.compare_digest(candidate, stored)
    try:
        return bcrypt.checkpw(_prehash(password), stored.encode("ascii"))
    except ValueError:  # a malformed stored hash never matches
        return False


def needs_rehash(stored: str, scheme: str, rounds: int) -> bool:
    if scheme != BCRYPT:
        return True
    try:
        return int(stored.split("$")[2]) != rounds
    except (IndexError, ValueError):
        return True
