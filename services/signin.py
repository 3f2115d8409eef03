"""Signing in and signing up: one call each, from credentials to a session token.

The sign-in page calls these (app/components/auth.py) and keeps only what the browser
session needs, the user and the token. An address the sessions table refuses (not an IP
Postgres accepts) never blocks a sign-in: the session is made without it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ValidationError
from .models import User
from .sessions import SessionService
from .users import UserService


@dataclass(frozen=True)
class SignedIn:
    user: User
    token: str


class SignInService:
    """Its parts time themselves (users.authenticate, sessions.create), so nothing is timed here."""

    def __init__(self, users: UserService, sessions: SessionService):
        self.users = users
        self.sessions = sessions

    async def sign_in(
        self, username: str, password: str, *, ip: str | None = None, user_agent: str | None = None
    ) -> SignedIn:
        """Check the password (lockout and audit included) and open a session."""
        user = await self.users.authenticate_user(username, password, ip=ip)
        try:
            token = await self.sessions.create_session(user.id, ip, user_agent)
        except ValidationError:  # an address the table refuses: sign in without it
            token = await self.sessions.create_session(user.id, None, user_agent)
        return SignedIn(user, token)

    async def sign_up(
        self,
        username: str,
        password: str,
        email: str | None = None,
        *,
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> SignedIn:
        """Create the account, then sign it in."""
        await self.users.create_user(username, password, email or None)
        return await self.sign_in(username, password, ip=ip, user_agent=user_agent)
