"""ConversationService on the real stack: naming, listing, search, duplication,
export, idempotent appends, concurrency, cache freshness, and isolation."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from pharmgpt.services.backend import Backend
from pharmgpt.services.container import Services
from pharmgpt.services.errors import NotFound, ValidationError

pytestmark = pytest.mark.integration


async def test_new_chat_is_named_by_the_first_user_message(services, account):
    user, _ = await account()
    cs = services.conversations
    conv = await cs.create_conversation(user.id)
    assert conv.title == "New chat" and conv.message_count == 0
    await cs.add_message(user.id, conv.id, {"role": "system", "content": "You are PharmGPT"})
    long_q = (
        "What is the maximum daily dose of   acetaminophen for an adult with hepatic impairment?"
    )
    await cs.add_message(user.id, conv.id, {"role": "user", "content": long_q})
    await cs.add_message(user.id, conv.id, {"role": "user", "content": "and for children?"})
    conv = await cs.get_conversation(user.id, conv.id)
    assert conv.title == "What is the maximum daily dose of acetaminophen fo…"
    assert conv.message_count == 3
    short = await cs.create_conversation(user.id)
    await cs.add_message(user.id, short.id, {"role": "user", "content": "Warfarin + aspirin?"})
    assert (await cs.get_conversation(user.id, short.id)).title == "Warfarin + aspirin?"


async def test_listing_pins_archives_and_pages(services, account):
    user, _ = await account()
    cs = services.conversations
    convs = [await cs.create_conversation(user.id, title=f"chat {i}") for i in range(5)]
    await cs.set_pinned(user.id, convs[0].id, True)
    await cs.set_archived(user.id, convs[1].id, True)
    listed = await cs.get_user_conversations(user.id)
    assert [c.title for c in listed] == ["chat 0", "chat 4", "chat 3", "chat 2"]
    assert [c.title for c in await cs.get_user_conversations(user.id, archived=True)] == ["chat 1"]
    page1 = await cs.get_user_conversations(user.id, limit=2)
    page2 = await cs.get_user_conversations(user.id, limit=2, offset=2)
    assert [c.title for c in page1 + page2] == ["chat 0", "chat 4", "chat 3", "chat 2"]
    renamed = await cs.rename(user.id, convs[2].id, "  Renamed   chat ")
    assert renamed.title == "Renamed chat"
    # the cached list never shows data older than the last write through the services
    assert "Renamed chat" in [c.title for c in await cs.get_user_conversations(user.id)]
    with pytest.raises(ValidationError):
        await cs.rename(user.id, convs[2].id, "   ")


async def test_search_titles_and_message_text(services, account):
    a, _ = await account()
    b, _ = await account()
    cs = services.conversations
    c1 = await cs.create_conversation(a.id, title="Statin questions")
    c2 = await cs.create_conversation(a.id, title="Other")
    await cs.add_message(
        a.id, c2.id, {"role": "user", "content": "Is 100% of ATORVASTATIN renally cleared?"}
    )
    bc = await cs.create_conversation(b.id, title="Statin secrets")
    found = await cs.search_conversations(a.id, "statin")
    assert {c.id for c in found} == {c1.id, c2.id} and bc.id not in {c.id for c in found}
    assert [c.id for c in await cs.search_conversations(a.id, "100%")] == [c2.id]
    assert await cs.search_conversations(a.id, "_") == []  # wildcards are literal
    assert await cs.search_conversations(a.id, "   ") == []


async def test_duplicate_delete_and_hook(services, account):
    user, _ = await account()
    cs = services.conversations
    conv = await cs.create_conversation(user.id, title="Original")
    for i in range(3):
        await cs.add_message(
            user.id, conv.id, {"role": "user" if i % 2 == 0 else "assistant", "content": f"m{i}"}
        )
    copy = await cs.duplicate_conversation(user.id, conv.id)
    assert copy.title == "Copy of Original" and copy.message_count == 3 and copy.id != conv.id
    assert [m.content for m in await cs.get_messages(user.id, copy.id)] == ["m0", "m1", "m2"]
    doc = await services.documents.register_upload(
        user.id, "label.txt", b"dose text", conversation_id=conv.id
    )
    dropped = []

    async def hook(uid, ids):
        dropped.append((uid, ids))

    cs.on_documents_deleted = hook
    try:
        await cs.delete_conversation(user.id, conv.id)
    finally:
        cs.on_documents_deleted = None
    assert dropped == [(user.id, [doc.id])]
    with pytest.raises(NotFound):
        await cs.get_conversation(user.id, conv.id)
    with pytest.raises(NotFound):
        await services.documents.get_document(user.id, doc.id)
    assert [m.content for m in await cs.get_messages(user.id, copy.id)] == ["m0", "m1", "m2"]


async def test_export_json_and_markdown(services, account):
    user, _ = await account()
    cs = services.conversations
    conv = await cs.create_conversation(user.id)
    await cs.add_message(user.id, conv.id, {"role": "user", "content": "Dose of metformin?"})
    await cs.add_message(
        user.id,
        conv.id,
        {
            "role": "assistant",
            "content": "500 mg twice daily [1].",
            "sources": [{"filename": "metformin.pdf", "page": 3, "snippet": "500"}],
        },
    )
    data = json.loads(await cs.export_conversation(user.id, conv.id, "json"))
    assert data["title"] == "Dose of metformin?" and len(data["messages"]) == 2
    assert data["messages"][1]["sources"][0]["page"] == 3 and data["messages"][0]["created_at"]
    md = await cs.export_conversation(user.id, conv.id, "markdown")
    assert md.startswith("# Dose of metformin?") and "metformin.pdf, page 3" in md and "UTC" in md
    with pytest.raises(ValidationError):
        await cs.export_conversation(user.id, conv.id, "pdf")


async def test_markdown_export_keeps_sections_and_page_ranges_and_escapes_html(services, account):
    user, _ = await account()
    cs = services.conversations
    conv = await cs.create_conversation(user.id, title="<img src=x onerror=alert(1)> Warfarin")
    await cs.add_message(user.id, conv.id, {"role": "user", "content": "INR target <b>now</b>?"})
    await cs.add_message(
        user.id,
        conv.id,
        {
            "role": "assistant",
            "content": "2.0-3.0 [1][2].",
            "sources": [
                {
                    "n": 1,
                    "filename": "warfarin.pdf",
                    "page": 4,
                    "pages": "4-5",
                    "section": "2 DOSAGE AND ADMINISTRATION",
                },
                {
                    "n": 2,
                    "filename": "<script>x</script>.pdf",
                    "page": 9,
                    "pages": "9",
                    "section": None,
                },
            ],
        },
    )
    md = await cs.export_conversation(user.id, conv.id, "markdown")
    assert md.startswith("# &lt;img src=x onerror=alert(1)&gt; Warfarin\n")
    assert "1. warfarin.pdf, pages 4-5 — 2 DOSAGE AND ADMINISTRATION" in md
    assert "2. &lt;script&gt;x&lt;/script&gt;.pdf, page 9\n" in md
    assert "INR target &lt;b&gt;now&lt;/b&gt;?" in md
    assert "<img" not in md and "<script" not in md and "<b>" not in md


async def test_add_message_is_idempotent_and_pages_backwards(services, account):
    user, _ = await account()
    cs = services.conversations
    conv = await cs.create_conversation(user.id)
    mid = str(uuid.uuid4())
    first = await cs.add_message(user.id, conv.id, {"id": mid, "role": "user", "content": "once"})
    again = await cs.add_message(user.id, conv.id, {"id": mid, "role": "user", "content": "once"})
    assert first.id == again.id == mid
    assert (await cs.get_conversation(user.id, conv.id)).message_count == 1
    for i in range(9):
        await cs.add_message(user.id, conv.id, {"role": "assistant", "content": f"a{i}"})
    latest = await cs.get_messages(user.id, conv.id, limit=4)
    assert [m.content for m in latest] == ["a5", "a6", "a7", "a8"]
    older = await cs.get_messages(user.id, conv.id, limit=4, before=latest[0].id)
    assert [m.content for m in older] == ["a1", "a2", "a3", "a4"]
    oldest = await cs.get_messages(user.id, conv.id, limit=4, before=older[0].id)
    assert [m.content for m in oldest] == ["once", "a0"]
    for bad in (
        {"role": "robot", "content": "x"},
        {"role": "user"},
        {"role": "user", "content": "x" * 200_001},
        {"role": "user", "content": "x", "sources": "nope"},
    ):
        with pytest.raises(ValidationError):
            await cs.add_message(user.id, conv.id, bad)


async def test_other_users_conversation_is_not_found(services, account):
    a, _ = await account()
    b, _ = await account()
    cs = services.conversations
    theirs = await cs.create_conversation(b.id, title="B private")
    await cs.add_message(b.id, theirs.id, {"role": "user", "content": "B's secret"})
    for call in (
        lambda: cs.get_conversation(a.id, theirs.id),
        lambda: cs.rename(a.id, theirs.id, "pwned"),
        lambda: cs.set_pinned(a.id, theirs.id),
        lambda: cs.set_archived(a.id, theirs.id),
        lambda: cs.duplicate_conversation(a.id, theirs.id),
        lambda: cs.delete_conversation(a.id, theirs.id),
        lambda: cs.export_conversation(a.id, theirs.id),
        lambda: cs.get_messages(a.id, theirs.id),
        lambda: cs.add_message(a.id, theirs.id, {"role": "user", "content": "planted"}),
        lambda: cs.get_conversation(a.id, str(uuid.uuid4())),
        lambda: cs.get_conversation(a.id, "not-a-uuid"),
    ):
        with pytest.raises(NotFound):
            await call()
    assert a.id not in {c.user_id for c in await cs.get_user_conversations(b.id)}
    still = await cs.get_conversation(b.id, theirs.id)
    assert still.title == "B private" and still.message_count == 1
    assert [m.content for m in await cs.get_messages(b.id, theirs.id)] == ["B's secret"]


async def test_forty_concurrent_appends_from_two_clients(services, account, stack, tmp_path):
    from tests.conftest import service_settings

    user, _ = await account()
    other = await Services.create(
        service_settings(stack, tmp_path / "second")
    )  # a second process' services
    try:
        conv = await services.conversations.create_conversation(user.id)
        clients = [services.conversations, other.conversations]
        from datetime import UTC, datetime, timedelta

        t0 = datetime.now(UTC)
        calls = [
            clients[i % 2].add_message(
                user.id,
                conv.id,
                {
                    "role": "user",
                    "content": f"msg {i:02d}",
                    "created_at": (t0 + timedelta(milliseconds=i)).isoformat(),
                },
            )
            for i in range(40)
        ]
        results = await asyncio.gather(*calls)
        assert not any(m.pending for m in results)
        msgs = await services.conversations.get_messages(user.id, conv.id, limit=100)
        assert [m.content for m in msgs] == [f"msg {i:02d}" for i in range(40)]
        assert (await services.conversations.get_conversation(user.id, conv.id)).message_count == 40
    finally:
        await other.close()


async def test_interleaved_users_never_share_a_token(services, account):
    users = [(await account())[0] for _ in range(4)]
    for u in users:
        await services.conversations.create_conversation(u.id, title=f"owned by {u.id}")

    async def look(u):
        await asyncio.sleep(0)
        convs = await services.conversations.search_conversations(u.id, "owned by")
        return u.id, {c.user_id for c in convs}

    results = await asyncio.gather(*(look(u) for _ in range(5) for u in users))
    assert all(seen == {uid} for uid, seen in results)
    tokens = {id(await services.backend.for_user(u.id)) for u in users}
    assert len(tokens) == len(users)


async def test_user_token_is_renewed_before_it_expires(services, account):
    user, _ = await account()
    first = await services.backend.for_user(user.id)
    services.backend._users[
        user.id
    ].expires_at -= services.settings.user_jwt_ttl_s  # nearly expired
    second = await services.backend.for_user(user.id)
    assert second is not first
    assert await services.conversations.get_user_conversations(user.id) == []


async def test_outbox_keeps_messages_while_the_gateway_is_down(tmp_path):
    from pharmgpt.localbase.postgres import free_port
    from pharmgpt.localbase.stack import LocalStack

    from tests.conftest import service_settings

    stack = LocalStack(tmp_path / "stack", ephemeral=True, gateway_port=free_port())
    info = stack.up()
    svc = await Services.create(service_settings(info, tmp_path / "svc", retry_attempts=2))
    try:
        user = await svc.users.create_user(f"outbox-{uuid.uuid4().hex[:6]}", "long enough pw")
        conv = await svc.conversations.create_conversation(user.id)
        await svc.conversations.add_message(user.id, conv.id, {"role": "user", "content": "before"})
        stack.stop_gateway()
        held = [
            await svc.conversations.add_message(
                user.id, conv.id, {"role": "user", "content": f"during {i}"}
            )
            for i in range(3)
        ]
        assert all(m.pending for m in held)
        assert [m.content for m in svc.conversations.pending_messages(user.id, conv.id)] == [
            "during 0",
            "during 1",
            "during 2",
        ]
        assert await svc.conversations.flush_outbox() == 0  # still down: nothing lost, nothing sent
        stack.up()
        # a message sent now must not overtake the held ones
        after = await svc.conversations.add_message(
            user.id, conv.id, {"role": "user", "content": "after"}
        )
        assert not after.pending
        assert await svc.conversations.flush_outbox() == 0
        msgs = await svc.conversations.get_messages(user.id, conv.id)
        assert [m.content for m in msgs] == ["before", "during 0", "during 1", "during 2", "after"]
        assert svc.conversations.pending_messages(user.id) == []
        # delivering again (a crash between send and delete) still stores each once
        for m in held:
            svc.outbox.put(
                user.id,
                conv.id,
                m.id,
                {
                    "p_id": m.id,
                    "p_conversation_id": conv.id,
                    "p_role": "user",
                    "p_content": m.content,
                    "p_sources": [],
                    "p_model": None,
                    "p_created_at": m.created_at.isoformat(),
                },
            )
        assert await svc.conversations.flush_outbox() == 3
        assert (await svc.conversations.get_conversation(user.id, conv.id)).message_count == 5
    finally:
        await svc.close()
        stack.down()


async def test_a_question_asked_during_an_outage_arrives_exactly_once(tmp_path):
    from pharmgpt.localbase.postgres import free_port
    from pharmgpt.localbase.stack import LocalStack
    from pharmgpt.rag_system import RagSystem
    from pharmgpt.services.errors import BackendUnavailable

    from tests.conftest import service_settings

    stack = LocalStack(tmp_path / "stack", ephemeral=True, gateway_port=free_port())
    info = stack.up()
    svc = await Services.create(service_settings(info, tmp_path / "svc", retry_attempts=2))
    try:
        rag = RagSystem(svc, use_configured_provider=False)
        user = await svc.users.create_user(f"outage-{uuid.uuid4().hex[:6]}", "long enough pw")
        conv = await svc.conversations.create_conversation(user.id)
        await svc.preferences.get_all(user.id)  # the page has run before the outage
        stack.stop_gateway()
        with pytest.raises(BackendUnavailable) as e:
            [
                ev
                async for ev in rag.engine.answer(
                    user.id, conv.id, "Dose of amoxicillin for otitis media?"
                )
            ]
        assert "question is kept" in e.value.message
        assert [m.content for m in svc.conversations.pending_messages(user.id, conv.id)] == [
            "Dose of amoxicillin for otitis media?"
        ]
        stack.up()
        await svc.conversations.flush_outbox()
        msgs = await svc.conversations.get_messages(user.id, conv.id)
        assert [m.content for m in msgs] == ["Dose of amoxicillin for otitis media?"]
    finally:
        await svc.close()
        stack.down()


async def test_backend_unavailable_without_outbox(tmp_path):
    from pharmgpt.localbase.auth import api_keys
    from pharmgpt.services.config import Settings
    from pharmgpt.services.errors import BackendUnavailable

    secret = "x" * 48
    keys = api_keys(secret)
    b = Backend(
        Settings(
            supabase_url="http://127.0.0.1:9",
            supabase_anon_key=keys["anon"],
            supabase_service_role_key=keys["service_role"],
            supabase_jwt_secret=secret,
            retry_attempts=2,
            retry_max_wait_s=0.1,
            data_dir=tmp_path,
        )
    )
    await b.start()
    try:
        with pytest.raises(BackendUnavailable) as e:
            await b.execute(b.service.table("users").select("id"))
        assert "not reachable" in e.value.message
    finally:
        await b.close()


async def test_background_flusher_delivers_when_the_store_returns(tmp_path):
    from pharmgpt.localbase.postgres import free_port
    from pharmgpt.localbase.stack import LocalStack

    from tests.conftest import service_settings

    stack = LocalStack(tmp_path / "stack", ephemeral=True, gateway_port=free_port())
    info = stack.up()
    svc = await Services.create(service_settings(info, tmp_path / "svc", retry_attempts=1))
    try:
        user = await svc.users.create_user(f"flush-{uuid.uuid4().hex[:6]}", "long enough pw")
        conv = await svc.conversations.create_conversation(user.id)
        stack.stop_gateway()
        held = await svc.conversations.add_message(
            user.id, conv.id, {"role": "user", "content": "held"}
        )
        assert held.pending
        svc.start_outbox_flusher(interval_s=0.2)
        stack.up()
        for _ in range(100):
            if not svc.conversations.pending_messages(user.id):
                break
            await asyncio.sleep(0.1)
        assert [m.content for m in await svc.conversations.get_messages(user.id, conv.id)] == [
            "held"
        ]
    finally:
        await svc.close()
        stack.down()


async def test_full_text_search_stems_ranks_highlights_and_stays_per_user(services, account):
    """Issue 14: words by stem (GIN), ranked, snippets highlighted; codes and partial words by
    substring; never another user's messages."""
    a, _ = await account()
    b, _ = await account()
    cs = services.conversations
    dose = await cs.create_conversation(a.id, title="Kidneys")
    await cs.add_message(
        a.id, dose.id, {"role": "user", "content": "What dose of lisinopril in renal failure?"}
    )
    twice = await cs.create_conversation(a.id, title="Dosing questions")
    await cs.add_message(
        a.id,
        twice.id,
        {"role": "user", "content": "Dosing warfarin: the dose, the doses, and dosing again."},
    )
    code = await cs.create_conversation(a.id, title="Codes")
    await cs.add_message(
        a.id,
        code.id,
        {"role": "assistant", "content": "NDC 0071-0155-23 is Lipitor 10 mg <b>tablets</b> *bold*"},
    )
    other = await cs.create_conversation(b.id, title="Dosing secrets")
    await cs.add_message(b.id, other.id, {"role": "user", "content": "secret dose of user b"})

    hits = await cs.search(a.id, "dosing")
    assert [h.conversation.id for h in hits] == [
        twice.id,
        dose.id,
    ]  # "dosing" finds "dose"; more matches rank first
    assert hits[0].rank > hits[1].rank > 0
    assert ("dose", True) in [(t.lower(), h) for t, h in hits[1].snippet_parts()]
    assert all(h.conversation.user_id == a.id for h in hits) and other.id not in {
        h.conversation.id for h in hits
    }
    assert await cs.search(a.id, "secret") == []  # b's message text is not searchable by a
    # a partial drug-code fragment, by substring; the snippet is the message's own text
    # (the app escapes it)
    frag = await cs.search(a.id, "0155")
    assert [h.conversation.id for h in frag] == [code.id] and "<b>tablets</b>" in frag[0].snippet
    assert [h.conversation.id for h in await cs.search(a.id, "lipitor 0071-01")] == [code.id]
    # a partial word comes after the ranked hits
    assert [h.conversation.id for h in await cs.search(a.id, "lisino")] == [dose.id]
    assert [h.conversation.id for h in await cs.search(a.id, "renal lisinopril")] == [dose.id]
    assert await cs.search(a.id, "warfarin -dosing") == []  # websearch syntax: exclusion
    # the RPC is the caller's own: anon cannot run it


async def test_search_reaches_old_history_and_bounds_tokens_without_trigrams(
    services, account, superuser_dsn
):
    """sql/0031: a word or a code that only old messages hold is still found (behind the
    newest 5,000 messages, through the GIN and trigram indexes); a token with no three letters
    or digits in a row ("#7") is looked for among the newest 5,000 messages only; and the
    SECURITY DEFINER search still never shows another user's messages."""
    a, _ = await account()
    b, _ = await account()
    cs = services.conversations
    old = await cs.create_conversation(a.id, title="Long ago")
    await cs.add_message(
        a.id, old.id, {"role": "user", "content": "Rifampicin batch XZ-90713 (#7) interacts"}
    )
    theirs = await cs.create_conversation(b.id, title="Theirs")
    await cs.add_message(
        b.id, theirs.id, {"role": "user", "content": "rifampicin XZ-90713 #7 is b's own"}
    )
    newer = await cs.create_conversation(a.id, title="Since then")
    t0 = datetime.now(UTC) + timedelta(seconds=1)
    with (
        psycopg.connect(superuser_dsn) as conn,
        conn.cursor() as cur,
    ):  # setup: 5,000 newer messages
        with cur.copy(
            "COPY public.messages (conversation_id, user_id, role, content, created_at) FROM STDIN"
        ) as cp:
            for i in range(5000):
                cp.write_row(
                    (newer.id, a.id, "user", f"a newer message {i}", t0 + timedelta(seconds=i))
                )
    hits = await cs.search(a.id, "rifampicin")
    assert [h.conversation.id for h in hits] == [old.id] and hits[0].rank > 0
    assert ("Rifampicin", True) in hits[0].snippet_parts()
    assert [h.conversation.id for h in await cs.search(a.id, "XZ-90713")] == [old.id]
    assert [h.conversation.id for h in await cs.search(a.id, "90713 rifampicin")] == [old.id]
    assert await cs.search(a.id, "#7") == []  # no trigram, and not in the newest 5,000
    assert [h.conversation.id for h in await cs.search(b.id, "#7")] == [theirs.id]
    assert [h.conversation.id for h in await cs.search(b.id, "rifampicin")] == [theirs.id]


async def test_with_postgres_down_the_gateway_says_unreachable_not_pool_timeout(tmp_path):
    """A database that is gone is reported as such (503 PGRST001, which the app shows as the
    outage banner), not after the whole pool wait as a pool timeout (504 PGRST003)."""
    import httpx
    from pharmgpt.localbase.postgres import free_port
    from pharmgpt.localbase.stack import LocalStack

    stack = LocalStack(tmp_path / "stack", ephemeral=True, gateway_port=free_port())
    info = stack.up()
    try:
        headers = {"apikey": info.anon_key, "Authorization": f"Bearer {info.anon_key}"}
        async with httpx.AsyncClient(base_url=info.url, timeout=30) as http:
            assert (
                await http.get("/rest/v1/users?select=id&limit=1", headers=headers)
            ).status_code in (200, 401, 403)
            stack.pg.stop()
            seen = [
                (await http.get("/rest/v1/users?select=id&limit=1", headers=headers))
                for _ in range(3)
            ]
        assert [(r.status_code, r.json()["code"]) for r in seen] == [(503, "PGRST001")] * 3
    finally:
        stack.down()
