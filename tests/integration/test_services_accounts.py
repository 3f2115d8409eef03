"""UserService and SessionService on the real stack."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pharmgpt.services import passwords
from pharmgpt.services.errors import AuthError, Conflict, NotFound, ValidationError
from pharmgpt.services.sessions import token_hash

# the same tests on a Supabase-shaped database too (tests/fixtures/supabase_shape.py)
pytestmark = [pytest.mark.integration, pytest.mark.stacks("localbase", "supabase_shape")]


async def test_signup_rules(services):
    u = services.users
    with pytest.raises(ValidationError):
        await u.create_user("ab", "long enough pw")
    with pytest.raises(ValidationError):
        await u.create_user("x" * 65, "long enough pw")
    with pytest.raises(ValidationError):
        await u.create_user("valid-name", "short")
    with pytest.raises(ValidationError):
        await u.create_user("valid-name2", "long enough pw", email="not-an-email")
    base = f"Ｐｈａｒｍ{uuid.uuid4().hex[:6]}"  # fullwidth: NFKC makes it ASCII
    user = await u.create_user(base, "long enough pw", email="p@example.org")
    assert user.username == "Pharm" + base[5:]
    with pytest.raises(Conflict):
        await u.create_user(user.username.upper(), "another password")  # unique case-insensitively
    assert (await u.authenticate_user(user.username.lower(), "long enough pw")).id == user.id


async def test_long_and_unicode_passwords(services):
    long_pw = "ü" * 100  # 200 bytes: past bcrypt's 72
    user = await services.users.create_user(f"long-{uuid.uuid4().hex[:8]}", long_pw)
    assert (await services.users.authenticate_user(user.username, long_pw)).id == user.id
    with pytest.raises(AuthError):
        await services.users.authenticate_user(user.username, "ü" * 99 + "u")


async def test_unknown_user_and_wrong_password_look_the_same(services, account, monkeypatch):
    user, pw = await account()
    calls = []
    real = passwords.verify_password
    monkeypatch.setattr(
        "pharmgpt.services.users.verify_password", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    with pytest.raises(AuthError) as wrong:
        await services.users.authenticate_user(user.username, "wrong password!")
    with pytest.raises(AuthError) as unknown:
        await services.users.authenticate_user(f"nobody-{uuid.uuid4().hex}", "wrong password!")
    assert wrong.value.message == unknown.value.message == services.users.bad_credentials
    assert len(calls) == 2  # the unknown user pays for a bcrypt check too


async def test_lockout_after_five_failures_and_unlock(services, account):
    user, pw = await account()
    for _ in range(5):
        with pytest.raises(AuthError):
            await services.users.authenticate_user(user.username, "wrong password!")
    with pytest.raises(AuthError) as e:
        await services.users.authenticate_user(user.username, pw)  # right password, but locked
    assert e.value.message == services.users.bad_credentials  # the same words as a wrong password
    row = (
        await services.backend.service.table("users")
        .select("locked_until")
        .eq("id", user.id)
        .single()
        .execute()
    ).data
    assert datetime.fromisoformat(row["locked_until"]) > datetime.now(UTC) + timedelta(minutes=14)
    # time passes (the lock is in the database, so we move it there)
    await (
        services.backend.service.table("users")
        .update({"locked_until": (datetime.now(UTC) - timedelta(seconds=1)).isoformat()})
        .eq("id", user.id)
        .execute()
    )
    assert (await services.users.authenticate_user(user.username, pw)).id == user.id
    row = (
        await services.backend.service.table("users")
        .select("failed_logins,locked_until")
        .eq("id", user.id)
        .single()
        .execute()
    ).data
    assert row == {"failed_logins": 0, "locked_until": None}
    actions = [a.action for a in await services.audit.list(user_id=user.id)]
    assert "auth.lockout" in actions and "auth.login_locked" in actions and "auth.login" in actions


async def test_failures_outside_the_window_do_not_add_up(services, account):
    user, pw = await account()
    for _ in range(4):
        with pytest.raises(AuthError):
            await services.users.authenticate_user(user.username, "wrong password!")
    await (
        services.backend.service.table("users")
        .update({"first_failed_at": (datetime.now(UTC) - timedelta(minutes=16)).isoformat()})
        .eq("id", user.id)
        .execute()
    )
    with pytest.raises(AuthError):
        await services.users.authenticate_user(user.username, "wrong password!")
    assert (await services.users.authenticate_user(user.username, pw)).id == user.id  # not locked


async def test_legacy_hash_login_upgrades_to_bcrypt(services):
    salt = secrets.token_hex(32)
    old_pw = "abc123"  # the old app allowed 6 characters
    name = f"legacy-{uuid.uuid4().hex[:8]}"
    await (
        services.backend.service.table("users")
        .insert(
            {
                "username": name,
                "password_scheme": "legacy_sha256",
                "password_salt": salt,
                "password_hash": hashlib.sha256((old_pw + salt).encode()).hexdigest(),
                "legacy_user_id": hashlib.md5(name.encode()).hexdigest(),
            }
        )
        .execute()
    )
    user = await services.users.authenticate_user(name, old_pw)
    row = (
        await services.backend.service.table("users")
        .select("password_hash,password_scheme,password_salt")
        .eq("id", user.id)
        .single()
        .execute()
    ).data
    assert row["password_scheme"] == "bcrypt" and row["password_salt"] is None
    assert row["password_hash"].startswith("$2b$")
    assert (await services.users.authenticate_user(name, old_pw)).id == user.id
    with pytest.raises(AuthError):
        await services.users.authenticate_user(name, "abc124")


async def test_profile_password_change_and_deletion(services, account):
    user, pw = await account()
    assert (await services.users.get_user_by_id(user.id)).email is None
    updated = await services.users.update_user_profile(user.id, {"email": "ph@example.org"})
    assert updated.email == "ph@example.org"
    assert (
        await services.users.get_user_by_id(user.id)
    ).email == "ph@example.org"  # cache invalidated
    with pytest.raises(ValidationError):
        await services.users.update_user_profile(user.id, {"is_admin": True})
    keep = await services.sessions.create_session(user.id, "10.0.0.1", "browser A")
    other = await services.sessions.create_session(user.id, "10.0.0.2", "browser B")
    with pytest.raises(AuthError):
        await services.users.change_password(user.id, "wrong old password", "new password 123")
    with pytest.raises(ValidationError):
        await services.users.change_password(user.id, pw, "short")
    await services.users.change_password(user.id, pw, "new password 123", keep_session=keep)
    assert await services.sessions.validate_session(keep) is not None
    assert await services.sessions.validate_session(other) is None
    with pytest.raises(AuthError):
        await services.users.authenticate_user(user.username, pw)
    assert (await services.users.authenticate_user(user.username, "new password 123")).id == user.id
    await services.users.delete_user(user.id)
    assert await services.users.get_user_by_id(user.id) is None
    assert await services.sessions.validate_session(keep) is None
    with pytest.raises(NotFound):
        await services.users.delete_user(user.id)
    assert any(a.action == "user.deleted" for a in await services.audit.list(user_id=user.id))


async def test_sessions_store_only_the_hash_and_record_the_client(services, account):
    user, _ = await account()
    token = await services.sessions.create_session(user.id, "192.168.1.7", "Mozilla/5.0 test")
    assert (await services.sessions.validate_session(token)).id == user.id
    rows = (
        await services.backend.service.table("sessions")
        .select("*")
        .eq("user_id", user.id)
        .execute()
    ).data
    assert len(rows) == 1 and rows[0]["token_hash"] == token_hash(token)
    assert token not in str(rows)
    assert rows[0]["ip_address"] == "192.168.1.7" and rows[0]["user_agent"] == "Mozilla/5.0 test"
    exp = datetime.fromisoformat(rows[0]["expires_at"]) - datetime.fromisoformat(
        rows[0]["created_at"]
    )
    assert exp == timedelta(hours=24)
    with pytest.raises(ValidationError):
        await services.sessions.create_session(user.id, "not-an-ip", None)
    assert await services.sessions.validate_session("made-up-token") is None
    assert await services.sessions.validate_session("") is None


async def test_expired_and_revoked_sessions_are_refused(services, account):
    user, _ = await account()
    t_exp = await services.sessions.create_session(user.id)
    t_rev = await services.sessions.create_session(user.id)
    t_all = await services.sessions.create_session(user.id)
    await (
        services.backend.service.table("sessions")
        .update(
            {
                "expires_at": (datetime.now(UTC) - timedelta(seconds=1)).isoformat(),
                "created_at": (datetime.now(UTC) - timedelta(days=1)).isoformat(),
            }
        )
        .eq("token_hash", token_hash(t_exp))
        .execute()
    )
    assert await services.sessions.validate_session(t_exp) is None
    assert await services.sessions.refresh_session(t_exp) is False
    await services.sessions.logout_session(t_rev)
    assert await services.sessions.validate_session(t_rev) is None
    assert await services.sessions.validate_session(t_all) is not None
    assert await services.sessions.logout_all(user.id) == 1
    assert await services.sessions.validate_session(t_all) is None
    assert await services.sessions.cleanup_expired_sessions() >= 1
    left = (
        await services.backend.service.table("sessions")
        .select("id")
        .eq("user_id", user.id)
        .execute()
    ).data
    assert len(left) == 2  # revoked ones stay a week for the record; the expired one is gone


async def test_sliding_expiry_writes_at_most_once_a_minute(services, account):
    user, _ = await account()
    token = await services.sessions.create_session(user.id)
    table = services.backend.service.table
    past = datetime.now(UTC) - timedelta(minutes=5)
    await (
        table("sessions")
        .update(
            {
                "last_activity": past.isoformat(),
                "expires_at": (past + timedelta(hours=24)).isoformat(),
                "created_at": (past - timedelta(hours=1)).isoformat(),
            }
        )
        .eq("token_hash", token_hash(token))
        .execute()
    )
    assert await services.sessions.validate_session(token) is not None
    row1 = (
        await table("sessions")
        .select("last_activity,expires_at")
        .eq("token_hash", token_hash(token))
        .single()
        .execute()
    ).data
    assert datetime.fromisoformat(row1["last_activity"]) > past + timedelta(minutes=4)
    assert datetime.fromisoformat(row1["expires_at"]) > datetime.now(UTC) + timedelta(
        hours=23, minutes=59
    )
    assert await services.sessions.validate_session(token) is not None
    row2 = (
        await table("sessions")
        .select("last_activity")
        .eq("token_hash", token_hash(token))
        .single()
        .execute()
    ).data
    assert row2 == {"last_activity": row1["last_activity"]}  # within the minute: no write
    assert await services.sessions.refresh_session(token) is True
    assert len(await services.sessions.list_sessions(user.id)) == 1
