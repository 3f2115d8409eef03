"""Deleting an account removes its data from the index and the disk, not only from the tables:
the chunks and BM25 entries of its private documents (library and conversations) and of each
pharmacy deleted with it, and the stored bytes no remaining document uses. A pharmacy handed
over keeps its chunks; a failing index never undoes the deletion (reconcile tidies up)."""

from __future__ import annotations

import logging
import uuid

import pytest
import pytest_asyncio
from pharmgpt.rag.owner_scope import OwnerScope
from pharmgpt.rag_system import RagSystem

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def text(label: str) -> bytes:
    return (
        f"Metformin 500 mg twice daily with meals for {label}. "
        f"Check renal function before starting. {uuid.uuid4().hex}\n"
    ).encode()


@pytest_asyncio.fixture(scope="module")
async def rag(services):
    return RagSystem(services, use_configured_provider=False)


async def ready(rag, services, *docs):
    while await rag.worker.run_once():
        pass
    for d in docs:
        got = await services.documents.get_document(d.user_id, d.id)
        assert got.status == "ready", (got.status, got.processing_error)


def indexed(rag, scope: OwnerScope) -> tuple[int, dict[str, int]]:
    """Chunks in the scope's collection, and its BM25 index's chunks by document."""
    return rag.store.count(scope), rag.lexical.chunk_counts(scope)


async def test_an_accounts_documents_leave_the_index_and_the_disk(rag, services, account):
    (user, _), (heir, _) = await account("gone"), await account("heir")
    conv = await services.conversations.create_conversation(user.id)
    mine = await services.documents.register_upload(user.id, "mine.txt", text("library"))
    chat = await services.documents.register_upload(
        user.id, "chat.txt", text("chat"), conversation_id=conv.id
    )
    solo = await services.pharmacies.create(user.id, "Solo Pharmacy")
    lone = await services.documents.register_upload(
        user.id, "lone.txt", text("solo"), pharmacy_id=solo.id
    )
    team = await services.pharmacies.create(user.id, "Team Pharmacy")
    await services.pharmacies.add_member(user.id, team.id, heir.username, "editor")
    kept = await services.documents.register_upload(
        user.id, "kept.txt", text("team"), pharmacy_id=team.id
    )
    await ready(rag, services, mine, chat, lone, kept)
    own, solo_scope, team_scope = (
        OwnerScope.user(user.id),
        OwnerScope.pharmacy(solo.id),
        OwnerScope.pharmacy(team.id),
    )
    assert indexed(rag, own)[0] > 0 and set(indexed(rag, own)[1]) == {mine.id, chat.id}
    assert indexed(rag, solo_scope)[0] > 0 and set(indexed(rag, solo_scope)[1]) == {lone.id}
    team_before = indexed(rag, team_scope)

    await services.users.delete_user(user.id)

    assert indexed(rag, own) == (0, {})
    assert indexed(rag, solo_scope) == (0, {})
    for d in (mine, chat, lone):
        assert not services.blobs.exists(d.sha256), d.filename
    # the team pharmacy was handed over to the editor: its document, chunks and bytes stay
    assert indexed(rag, team_scope) == team_before and team_before[0] > 0
    assert (await services.documents.get_document(heir.id, kept.id)).user_id == heir.id
    assert services.blobs.exists(kept.sha256)


async def test_bytes_another_document_uses_stay(rag, services, account):
    (user, _), (other, _) = await account("gone"), await account("keep")
    data = text("shared bytes")
    mine = await services.documents.register_upload(user.id, "a.txt", data)
    theirs = await services.documents.register_upload(other.id, "b.txt", data)
    await ready(rag, services, mine, theirs)
    await services.users.delete_user(user.id)
    assert rag.store.count(OwnerScope.user(user.id)) == 0
    assert services.blobs.exists(theirs.sha256)
    assert rag.store.count(OwnerScope.user(other.id)) > 0


async def test_a_failing_index_does_not_undo_the_deletion(
    rag, services, account, monkeypatch, caplog
):
    (user, _) = await account("gone")
    mine = await services.documents.register_upload(user.id, "mine.txt", text("left"))
    await ready(rag, services, mine)

    async def down(*args, **kwargs):
        raise ConnectionError("the Chroma server is down")

    monkeypatch.setattr(services.users, "on_documents_deleted", down)
    with caplog.at_level(logging.WARNING, logger="pharmgpt.services.users"):
        await services.users.delete_user(user.id)
    assert await services.users.get_user_by_id(user.id) is None
    assert "pharmgpt reconcile" in caplog.text
    assert not services.blobs.exists(mine.sha256)  # the bytes are released all the same
    assert rag.store.count(OwnerScope.user(user.id)) > 0  # left for reconcile, which drops it
    removed = await rag.reconcile()
    assert removed.get(user.id) and rag.store.count(OwnerScope.user(user.id)) == 0
