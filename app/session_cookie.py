"""The session cookie, set HttpOnly by a route of the app's own server (issue #12, M4).

A Streamlit page cannot set a response header, so the page hands the cookie over
through a one-time code: the signed-in page stores (token, lifetime) under a
random code valid for seconds, and a small script posts that code to `ROUTE`,
served by the same process (`app/server.py`). The route answers with
`Set-Cookie: …; HttpOnly; SameSite=Strict` (Secure over https), so page script
never sees the token; the code is worthless once redeemed or expired.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time

ROUTE = "/_pharmgpt/session"
COOKIE = "pharmgpt_session"
CODE_TTL_S = 30
_CODE = re.compile(r"^[A-Za-z0-9_\-]{20,64}$")
_lock = threading.Lock()
_codes: dict[
    str, tuple[str | None, int, float]
] = {}  # code -> (token, or None to clear; max age; expiry)


def issue(token: str | None, max_age_s: int) -> str:
    """A one-time code that sets (or, with `token` None, clears) the cookie when posted to ROUTE."""
    code = secrets.token_urlsafe(24)
    now = time.monotonic()
    with _lock:
        for stale in [c for c, (_, _, exp) in _codes.items() if exp < now]:
            del _codes[stale]
        _codes[code] = (token, max(0, int(max_age_s)), now + CODE_TTL_S)
    return code


def redeem(code: str) -> tuple[str | None, int] | None:
    """What the code stands for, once; None for an unknown, used or expired code."""
    if not isinstance(code, str) or not _CODE.match(code):
        return None
    with _lock:
        entry = _codes.pop(code, None)
    if entry is None or entry[2] < time.monotonic():
        return None
    return entry[0], entry[1]


def script(code: str) -> str:
    """The page script that posts the code (it holds no token)."""
    # a redraw runs the script again: post each code once per page
    return (
        "<script>(function(){var w=window.top||window,c=" + json.dumps(code) + ";"
        "w.__pharmgptCodes=w.__pharmgptCodes||{};if(w.__pharmgptCodes[c])return;w.__pharmgptCodes[c]=1;"
        "fetch(" + json.dumps(ROUTE) + ",{method:'POST',credentials:'same-origin',"
        "headers:{'Content-Type':'application/json'},body:JSON.stringify({code:c})}).catch(function(){});"
        "})();</script>"
    )


async def endpoint(request):
    """POST {"code": …} → 204 with the cookie set or cleared; 400 for anything else, cookie
    untouched."""
    from starlette.responses import Response

    try:
        code = (await request.json()).get("code")
    except Exception:
        code = None
    found = redeem(code) if code else None
    if found is None:
        return Response("unknown or expired code", status_code=400, media_type="text/plain")
    token, max_age = found
    response = Response(status_code=204)
    response.headers["Cache-Control"] = "no-store"
    secure = request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"
    if token:
        response.set_cookie(
            COOKIE,
            token,
            max_age=max(60, max_age),
            path="/",
            httponly=True,
            samesite="strict",
            secure=secure,
        )
    else:
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=secure)
    return response


def routes() -> list:
    from starlette.routing import Route

    return [Route(ROUTE, endpoint, methods=["POST"])]
