"""The HttpOnly session cookie route: a one-time code in, a cookie page script can't read out."""

from __future__ import annotations

import pytest
from pharmgpt.app import session_cookie
from starlette.applications import Starlette
from starlette.testclient import TestClient


@pytest.fixture()
def client():
    return TestClient(Starlette(routes=session_cookie.routes()))


def test_a_code_sets_the_cookie_httponly_once(client):
    code = session_cookie.issue("tok_" + "a" * 30, 7200)
    r = client.post(session_cookie.ROUTE, json={"code": code})
    assert r.status_code == 204
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{session_cookie.COOKIE}=tok_") and "HttpOnly" in cookie
    assert "SameSite=strict" in cookie and "Max-Age=7200" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http here; https adds it
    again = client.post(session_cookie.ROUTE, json={"code": code})
    assert again.status_code == 400 and "set-cookie" not in again.headers


def test_a_clear_code_removes_it_and_junk_changes_nothing(client):
    r = client.post(session_cookie.ROUTE, json={"code": session_cookie.issue(None, 0)})
    assert r.status_code == 204 and 'pharmgpt_session=""' in r.headers["set-cookie"]
    for body in ({"code": "nope"}, {"code": "x" * 30}, {}, {"code": ["a"]}):
        bad = client.post(session_cookie.ROUTE, json=body)
        assert bad.status_code == 400 and "set-cookie" not in bad.headers
    assert client.get(session_cookie.ROUTE).status_code == 405


def test_codes_expire(monkeypatch):
    code = session_cookie.issue("tok_" + "b" * 30, 60)
    later = session_cookie.time.monotonic() + session_cookie.CODE_TTL_S + 1
    monkeypatch.setattr(session_cookie.time, "monotonic", lambda: later)
    assert session_cookie.redeem(code) is None
