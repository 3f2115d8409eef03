"""Issue 12 on the real stack: the lockout holds under parallel guessing, replies don't tell
which accounts exist or are locked, weak passwords and look-alike names are refused,
sessions end, and the audit log never keeps what was typed into the username box."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pharmgpt.services.errors import AuthError, Conflict, ValidationError
from pharmgpt.services.sessions import token_hash

pytestmark = pytest.mark.integration


async def test_forty_parallel_guesses_check_at_most_five_passwords(services, account, monkeypatch):
    user, pw = await account("par")
    stored = (
        await services.backend.service.table("users")
        .select("password_hash")
        .eq("id", user.id)
        .single()
        .execute()
    ).data["password_hash"]
    checked = []  # passwords checked against this account's hash (not the dummy one)
    import pharmgpt.services.users as users_mod

    real = users_mod.verify_password
    monkeypatch.setattr(
        users_mod,
        "verify_password",
        lambda p, h, *a, **k: (checked.append(p) if h == stored else None) or real(p, h, *a, **k),
    )
    results = await asyncio.gather(
        *(services.users.authenticate_user(user.username, f"wrong guess {i}") for i in range(39)),
        services.users.authenticate_user(user.username, pw),
        return_exceptions=True,
    )
    assert all(isinstance(r, AuthError) for r in results[:39])
    entries = await services.audit.list(user_id=user.id, limit=200)
    password_checks = [e for e in entries if e.action == "auth.login_failed"]
    refused = [e for e in entries if e.action == "auth.login_locked"]
    assert len(password_checks) <= services.settings.max_failed_logins
    assert len(password_checks) + len(refused) + int(not isinstance(results[39], Exception)) == 40
    # the reservation happens before bcrypt: at most 5 checks against this account's hash,
    # the rest spent the same time on the dummy hash
    assert len(checked) <= services.settings.max_failed_logins
    with pytest.raises(AuthError):  # the account is locked now, even for the right password
        await services.users.authenticate_user(user.username, pw)


async def test_locked_wrong_and_unknown_give_the_same_words(services, account):
    user, pw = await account("same")
    with pytest.raises(AuthError) as wrong:
        await services.users.authenticate_user(user.username, "wrong password!")
    for _ in range(services.settings.max_failed_logins):
        with pytest.raises(AuthError):
            await services.users.authenticate_user(user.username, "wrong password!")
    with pytest.raises(AuthError) as locked:
        await services.users.authenticate_user(user.username, pw)
    with pytest.raises(AuthError) as unknown:
        await services.users.authenticate_user(f"nobody-{uuid.uuid4().hex[:8]}", pw)
    assert wrong.value.message == locked.value.message == unknown.value.message


async def test_weak_passwords_are_refused(services):
    name = f"weak-{uuid.uuid4().hex[:8]}"
    for pw in ("password", "12345678", " " * 8, "Password123", "aaaaaaaaaa", name, name.upper()):
        with pytest.raises(ValidationError):
            await services.users.create_user(name, pw)
    user = await services.users.create_user(name, "tincture of lavender 7")
    with pytest.raises(ValidationError):
        await services.users.change_password(user.id, "tincture of lavender 7", name)


async def test_usernames_fold_case_in_every_script_and_refuse_look_alikes(services):
    tag = str(uuid.uuid4().int)[:8]  # digits: no letters of another script
    greek = await services.users.create_user(f"ΦΑΡΜ-{tag}", "long enough pw")
    with pytest.raises(Conflict):
        await services.users.create_user(f"φαρμ-{tag}", "long enough pw")
    assert (await services.users.authenticate_user(f"φαρμ-{tag}", "long enough pw")).id == greek.id
    strasse = await services.users.create_user(f"straße-{tag}", "long enough pw")
    with pytest.raises(Conflict):
        await services.users.create_user(f"STRASSE-{tag}", "long enough pw")
    assert (
        await services.users.authenticate_user(f"Strasse-{tag}", "long enough pw")
    ).id == strasse.id
    with pytest.raises(ValidationError):
        await services.users.create_user(
            f"ph\u0430rm-{tag}", "long enough pw"
        )  # Cyrillic а among Latin
    await services.users.create_user(
        f"薬剤師さん-{tag}", "long enough pw"
    )  # one writing system (Japanese)


async def test_unknown_names_are_audited_as_a_hash(services):
    typed = f"MySecretPassw0rd-{uuid.uuid4().hex[:6]}"  # a password typed into the username box
    with pytest.raises(AuthError):
        await services.users.authenticate_user(typed, "whatever")
    with pytest.raises(AuthError):
        await services.users.authenticate_user(typed, "again")
    entries = [
        e
        for e in await services.audit.list(action="auth.login_failed", limit=50)
        if e.details.get("reason") == "unknown"
    ]
    assert entries and all(
        typed not in str(e.details) and typed.lower() not in str(e.details) for e in entries
    )
    hashes = [e.details["username_hash"] for e in entries[:2]]
    assert hashes[0] == hashes[1]  # the same name twice can be recognised, not read


async def test_a_session_ends_after_its_absolute_lifetime(services, account):
    user, _ = await account("life")
    token = await services.sessions.create_session(user.id)
    table = services.backend.service.table("sessions")
    now = datetime.now(UTC)
    max_age = timedelta(seconds=services.settings.session_max_age_s)
    # in use every day for a month: the sliding expiry is fine, the absolute one has passed
    await (
        table.update(
            {
                "created_at": (now - max_age - timedelta(minutes=1)).isoformat(),
                "last_activity": (now - timedelta(minutes=5)).isoformat(),
                "expires_at": (now + timedelta(hours=20)).isoformat(),
            }
        )
        .eq("token_hash", token_hash(token))
        .execute()
    )
    assert await services.sessions.validate_session(token) is None
    assert await services.sessions.refresh_session(token) is False
    # close to the end: activity slides the expiry, but never past created_at + max age
    token2 = await services.sessions.create_session(user.id)
    created = now - max_age + timedelta(hours=1)
    await (
        table.update(
            {
                "created_at": created.isoformat(),
                "last_activity": (now - timedelta(hours=2)).isoformat(),
            }
        )
        .eq("token_hash", token_hash(token2))
        .execute()
    )
    assert await services.sessions.validate_session(token2) is not None
    row = (
        await table.select("expires_at").eq("token_hash", token_hash(token2)).single().execute()
    ).data
    assert datetime.fromisoformat(row["expires_at"]) <= created + max_age + timedelta(seconds=1)
