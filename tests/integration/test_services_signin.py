"""SignInService (the sign-in page's one call) on the real stack."""

from __future__ import annotations

import uuid

import pytest
from pharmgpt.services.errors import AuthError, Conflict

pytestmark = pytest.mark.integration


async def _sessions(services, user_id: str) -> list[dict]:
    r = await (
        services.backend.service.table("sessions")
        .select("ip_address,user_agent,revoked_at")
        .eq("user_id", user_id)
        .execute()
    )
    return r.data


async def test_sign_up_then_sign_in_open_sessions_that_validate(services):
    name = f"signin-{uuid.uuid4().hex[:10]}"
    up = await services.signin.sign_up(
        name, "correct horse battery", "", ip="192.168.1.9", user_agent="Mozilla/5.0 t"
    )
    assert up.user.username == name and up.user.email is None
    assert (await services.sessions.validate_session(up.token)).id == up.user.id
    again = await services.signin.sign_in(name.upper(), "correct horse battery")
    assert again.user.id == up.user.id and again.token != up.token
    assert (await services.sessions.validate_session(again.token)).id == up.user.id
    rows = await _sessions(services, up.user.id)
    assert sorted((r["ip_address"] or "", r["user_agent"] or "") for r in rows) == [
        ("", ""),
        ("192.168.1.9", "Mozilla/5.0 t"),
    ]


async def test_an_address_the_table_refuses_never_blocks_a_sign_in(services, account):
    user, pw = await account()
    signed = await services.signin.sign_in(
        user.username, pw, ip="not-an-ip", user_agent="Mozilla/5.0 t"
    )
    assert (await services.sessions.validate_session(signed.token)).id == user.id
    assert await _sessions(services, user.id) == [
        {"ip_address": None, "user_agent": "Mozilla/5.0 t", "revoked_at": None}
    ]


async def test_refused_credentials_open_no_session(services, account):
    user, pw = await account()
    with pytest.raises(AuthError) as wrong:
        await services.signin.sign_in(user.username, "wrong password!")
    assert wrong.value.message == services.users.bad_credentials
    with pytest.raises(Conflict):
        await services.signin.sign_up(user.username, "another long password")
    assert await _sessions(services, user.id) == []
