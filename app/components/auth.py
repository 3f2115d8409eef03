"""Who is signed in, and keeping them signed in across a page refresh (DESIGN D3).

The session token lives in an HttpOnly browser cookie (`SameSite=Strict`, `Secure`
on https), set by a route of the app's server (app/session_cookie.py) from a
one-time code the page posts, and read back from the request with
`st.context.cookies` when a new browser session starts. The token is checked
with `validate_session` (one lookup on the unique token hash) then, and again on
every action: each script run, and each service call a button callback makes
before the page is drawn (`ui.attempt`). Checks closer together than
`REVALIDATE_S` (1 s) share one lookup, so a burst of reruns costs one query,
while a session revoked elsewhere ("log out everywhere", a password change, a
deactivated account) ends here on its next action.
"""

from __future__ import annotations

import re
import time

import streamlit as st
from pharmgpt.app import session_cookie
from pharmgpt.services.errors import BackendUnavailable, PharmGPTError, ValidationError
from pharmgpt.services.models import User

from . import ui

COOKIE = session_cookie.COOKIE
COOKIE_RENEW_S = 3600
REVALIDATE_S = 1.0
_TOKEN = re.compile(r"^[A-Za-z0-9_\-]{16,256}$")
SESSION_ENDED = (
    "Your session has ended (it expired, or you were signed out on another device). "
    "Please sign in again."
)
_KEEP_ON_SIGN_OUT = ("cookie_checked",)


# ---------------------------------------------------------------------- cookie
def cookie_script(token: str | None, max_age_s: int = 86400) -> str:
    """A script that has the app's server set the session cookie HttpOnly (or clear it when
    `token` is None); the script itself carries only a one-time code, never the token."""
    if token is not None and not _TOKEN.match(token):
        raise ValueError("not a session token")
    return session_cookie.script(session_cookie.issue(token, max_age_s if token else 0))


def write_cookie(token: str | None, max_age_s: int = 86400) -> None:
    st.html(cookie_script(token, max_age_s), unsafe_allow_javascript=True)


def keep_cookie(token: str, max_age_s: int) -> None:
    """Set the cookie after sign-in, then renew it hourly so it follows the sliding session."""
    written = st.session_state.get("cookie_written")
    if written and written[0] == token and time.time() - written[1] < COOKIE_RENEW_S:
        return
    write_cookie(token, max_age_s)
    st.session_state["cookie_written"] = (token, time.time())


def _cookie_token() -> str | None:
    try:
        token = st.context.cookies.get(COOKIE)
    except Exception:  # no browser behind this session (tests, bare mode)
        return None
    return token if isinstance(token, str) and _TOKEN.match(token) else None


def client_info() -> tuple[str | None, str | None]:
    """The browser's IP address and user agent, when Streamlit knows them."""
    ip = ua = None
    try:
        ip = st.context.ip_address
    except Exception:
        pass
    try:
        ua = st.context.headers.get("User-Agent")
    except Exception:
        pass
    return (ip if isinstance(ip, str) and ip else None), (
        ua if isinstance(ua, str) and ua else None
    )


# ---------------------------------------------------------------------- state
def user() -> User | None:
    return st.session_state.get("user")


def token() -> str | None:
    return st.session_state.get("token")


def _set_signed_in(u: User, tok: str) -> None:
    st.session_state["user"] = u
    st.session_state["token"] = tok
    st.session_state["auth_checked_at"] = time.time()
    st.session_state["cookie_checked"] = True
    st.session_state.pop("clear_cookie", None)


def _forget(notice: str | None = None) -> None:
    for key in list(st.session_state.keys()):
        if key not in _KEEP_ON_SIGN_OUT:
            del st.session_state[key]
    st.session_state["clear_cookie"] = True
    st.query_params.clear()  # the open conversation's id was this user's
    if notice:
        st.session_state["auth_notice"] = notice


def session_alive(ctx, *, render: bool = True) -> bool:
    """Whether this browser session's sign-in still holds (rechecked if older than REVALIDATE_S).

    A revoked session is forgotten at once (the sign-in page shows why); a data
    store that can't be reached keeps what we know and is asked again next time.
    """
    s = st.session_state
    if s.get("user") is None:
        return True  # nobody signed in: nothing to revoke
    if time.time() - s.get("auth_checked_at", 0) < REVALIDATE_S:
        return True
    try:
        fresh = ctx.run(ctx.services.sessions.validate_session(s["token"]))
    except BackendUnavailable:
        ui.backend_down(render)
        return True
    except PharmGPTError:
        return True
    if fresh is None:
        _forget(SESSION_ENDED)
        return False
    s["user"] = fresh
    s["auth_checked_at"] = time.time()
    return True


def current_user(ctx) -> User | None:
    """The signed-in user of this browser session, restored from the cookie after a refresh."""
    s = st.session_state
    if s.get("user") is not None:
        return s.get("user") if session_alive(ctx) else None
    if s.get("cookie_checked"):
        return None
    tok = _cookie_token()
    if tok is None:
        s["cookie_checked"] = True
        return None
    try:
        fresh = ctx.run(ctx.services.sessions.validate_session(tok))
    except BackendUnavailable:
        ui.backend_down()
        return None  # try the cookie again on the next run
    except PharmGPTError:
        fresh = None
    s["cookie_checked"] = True
    if fresh is None:
        s["clear_cookie"] = True
        s["auth_notice"] = SESSION_ENDED
        return None
    _set_signed_in(fresh, tok)
    return fresh


# ---------------------------------------------------------------------- actions
def sign_in(ctx, username: str, password: str) -> ui.Outcome:
    ip, ua = client_info()
    out = ui.attempt(ctx.services.signin.sign_in(username, password, ip=ip, user_agent=ua))
    if out.ok:
        _set_signed_in(out.value.user, out.value.token)
    return out


def sign_up(ctx, username: str, password: str, email: str | None) -> ui.Outcome:
    ip, ua = client_info()
    out = ui.attempt(
        ctx.services.signin.sign_up(username, password, email or None, ip=ip, user_agent=ua)
    )
    if out.ok:
        _set_signed_in(out.value.user, out.value.token)
    return out


def sign_out(ctx, *, everywhere: bool = False) -> None:
    """Revoke this session (or all of the user's) and forget it here and in the browser."""
    u, tok = user(), token()
    if u is not None and tok:
        coro = (
            ctx.services.sessions.logout_all(u.id)
            if everywhere
            else ctx.services.sessions.logout_session(tok)
        )
        ui.attempt(coro)
    _forget("You have been signed out everywhere." if everywhere else "You have been signed out.")


def validate_sign_in(username: str, password: str) -> dict[str, str]:
    errors = {}
    if not (username or "").strip():
        errors["username"] = "Enter your username."
    if not password:
        errors["password"] = "Enter your password."
    return errors


def validate_sign_up(
    users, username: str, password: str, confirm: str, email: str | None
) -> dict[str, str]:
    """Field -> message, using the account service's own rules."""
    errors = {}
    for name, check in (
        ("username", lambda: users.validate_username(username)),
        ("password", lambda: users.validate_password(password)),
        ("email", lambda: users.validate_email(email)),
    ):
        try:
            check()
        except ValidationError as e:
            errors[name] = e.message
    if "password" not in errors and password != confirm:
        errors["confirm"] = "The two passwords don't match."
    return errors
