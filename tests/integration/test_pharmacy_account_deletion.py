"""Deleting an account leaves its pharmacies whole (sql/0072), on both stacks: shared uploads
pass to the earliest owner, a last owner's place to the senior remaining member (editors
before readers), and a pharmacy with no member left goes with its documents; all audited."""

from __future__ import annotations

import uuid

import pytest
from pharmgpt.services.errors import NotFound

pytestmark = [pytest.mark.integration, pytest.mark.stacks("localbase", "supabase_shape")]


def text(label: str) -> bytes:
    return f"Metformin 500 mg twice daily with meals. {label} {uuid.uuid4().hex}\n".encode()


async def people(account, *prefixes):
    return [(await account(p))[0] for p in prefixes]


async def rows(services, table: str, column: str, value: str) -> list[dict]:
    r = await services.backend.service.table(table).select("*").eq(column, value).execute()
    return r.data


async def test_an_editors_shared_uploads_stay_with_the_pharmacy(services, account):
    owner, editor, reader, later_owner = await people(account, "own", "edi", "rea", "own2")
    ph = await services.pharmacies.create(owner.id, "Corner Pharmacy")
    await services.pharmacies.add_member(owner.id, ph.id, editor.username, "editor")
    await services.pharmacies.add_member(owner.id, ph.id, reader.username, "reader")
    await services.pharmacies.add_member(owner.id, ph.id, later_owner.username, "owner")
    ds = services.documents
    doc = await ds.register_upload(editor.id, "formulary.txt", text("shared"), pharmacy_id=ph.id)
    private = await ds.register_upload(editor.id, "notes.txt", text("private"))

    await services.users.delete_user(editor.id)

    for member in (owner, reader, later_owner):
        assert [d.id for d in await services.pharmacies.documents_of(member.id, ph.id)] == [doc.id]
        got = await ds.get_document(member.id, doc.id)
        assert got.user_id == owner.id  # the earliest owner, not the later one
        assert doc.id in await ds.job_progress(member.id, [doc.id])  # its job kept, too
    (job,) = await rows(services, "ingest_jobs", "document_id", doc.id)
    assert job["user_id"] == owner.id and job["status"] == "queued"
    assert await rows(services, "uploads", "user_id", editor.id) == []  # the history went
    assert await rows(services, "documents", "id", private.id) == []  # private went, as before
    assert services.blobs.exists(doc.sha256)
    (handed,) = await services.audit.list(user_id=owner.id, action="pharmacy.document_handed_over")
    assert (handed.target_id, handed.details) == (
        doc.id,
        {
            "pharmacy_id": ph.id,
            "filename": "formulary.txt",
            "from": editor.id,
            "to": owner.id,
            "reason": "account deleted",
        },
    )
    assert await services.audit.list(user_id=editor.id, action="pharmacy.document_deleted") == []
    await ds.delete_document(owner.id, doc.id)  # and the new uploader of record manages it
    assert await services.pharmacies.documents_of(reader.id, ph.id) == []


async def test_uploads_of_a_member_who_left_are_kept_too(services, account):
    owner, editor = await people(account, "own", "edi")
    ph = await services.pharmacies.create(owner.id, "Left Behind")
    await services.pharmacies.add_member(owner.id, ph.id, editor.username, "editor")
    doc = await services.documents.register_upload(
        editor.id, "protocol.txt", text("left"), pharmacy_id=ph.id
    )
    await services.pharmacies.leave(editor.id, ph.id)
    await services.users.delete_user(editor.id)
    got = await services.documents.get_document(owner.id, doc.id)
    assert got.user_id == owner.id and got.pharmacy_id == ph.id


async def test_the_last_owners_place_goes_to_the_senior_editor(services, account):
    owner, reader, senior, junior, newcomer = await people(
        account, "own", "rea", "sen", "jun", "new"
    )
    ph = await services.pharmacies.create(owner.id, "Old Town Pharmacy")
    # the reader joined first: editors still come before readers
    await services.pharmacies.add_member(owner.id, ph.id, reader.username, "reader")
    await services.pharmacies.add_member(owner.id, ph.id, senior.username, "editor")
    await services.pharmacies.add_member(owner.id, ph.id, junior.username, "editor")
    doc = await services.documents.register_upload(
        owner.id, "labels.txt", text("owner's"), pharmacy_id=ph.id
    )

    await services.users.delete_user(owner.id)

    roles = {m.user_id: m.role for m in await services.pharmacies.members(reader.id, ph.id)}
    assert roles == {senior.id: "owner", junior.id: "editor", reader.id: "reader"}
    assert (await services.documents.get_document(reader.id, doc.id)).user_id == senior.id
    # the new owner manages the team
    await services.pharmacies.add_member(senior.id, ph.id, newcomer.username, "reader")
    await services.pharmacies.set_role(senior.id, ph.id, junior.id, "owner")
    await services.pharmacies.remove_member(senior.id, ph.id, reader.id)
    roles = {m.user_id: m.role for m in await services.pharmacies.members(senior.id, ph.id)}
    assert roles == {senior.id: "owner", junior.id: "owner", newcomer.id: "reader"}
    promoted = await services.audit.list(user_id=senior.id, action="pharmacy.member_role_changed")
    assert [(e.target_id, e.actor_id, e.details) for e in promoted] == [
        (
            ph.id,
            owner.id,  # the deleted account's own deletion made the change
            {
                "member": senior.id,
                "username": senior.username,
                "from": "editor",
                "to": "owner",
                "reason": "the last owner's account was deleted",
            },
        )
    ]
    removed = await services.audit.list(user_id=owner.id, action="pharmacy.member_removed")
    assert [(e.target_id, e.details["role"]) for e in removed] == [(ph.id, "owner")]


async def test_a_reader_is_promoted_when_no_editor_remains(services, account):
    owner, first, second = await people(account, "own", "re1", "re2")
    ph = await services.pharmacies.create(owner.id, "Readers Only")
    await services.pharmacies.add_member(owner.id, ph.id, first.username, "reader")
    await services.pharmacies.add_member(owner.id, ph.id, second.username, "reader")
    await services.users.delete_user(owner.id)
    roles = {m.user_id: m.role for m in await services.pharmacies.members(second.id, ph.id)}
    assert roles == {first.id: "owner", second.id: "reader"}


async def test_a_sole_members_pharmacy_goes_with_the_account(services, account):
    (owner,) = await people(account, "own")
    ph = await services.pharmacies.create(owner.id, "Solo Pharmacy")
    doc = await services.documents.register_upload(
        owner.id, "solo.txt", text("solo"), pharmacy_id=ph.id
    )
    await services.users.delete_user(owner.id)
    assert await rows(services, "pharmacies", "id", ph.id) == []
    assert await rows(services, "documents", "id", doc.id) == []
    with pytest.raises(NotFound):
        await services.users.delete_user(owner.id)
    (gone,) = await services.audit.list(user_id=owner.id, action="pharmacy.deleted")
    assert (gone.target_id, gone.details) == (
        ph.id,
        {"name": "Solo Pharmacy", "documents": 1, "reason": "no member left"},
    )
    (dropped,) = await services.audit.list(user_id=owner.id, action="pharmacy.document_deleted")
    assert (dropped.target_id, dropped.details["reason"]) == (doc.id, "account deleted")
