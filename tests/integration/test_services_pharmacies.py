"""PharmacyService and the shared library on the real stack: roles, the last-owner
rule, removal taking effect at once, audit entries, the admin views (issue 15)."""

from __future__ import annotations

import uuid

import pytest
from pharmgpt.services.errors import Conflict, Forbidden, NotFound, ValidationError

pytestmark = pytest.mark.integration

TXT = b"Atorvastatin 10 mg once daily with or without food.\n"


def text(n: int = 0) -> bytes:
    return TXT + f"variant {n} {uuid.uuid4().hex}\n".encode()


@pytest.fixture
def team(services, account):
    """A pharmacy with an owner, an editor and a reader, plus an outsider (all real accounts)."""

    async def _make():
        owner, editor, reader, outsider = [
            (await account(p))[0] for p in ("own", "edi", "rea", "out")
        ]
        ph = await services.pharmacies.create(owner.id, "  Main   Street Pharmacy ")
        await services.pharmacies.add_member(owner.id, ph.id, editor.username, "editor")
        await services.pharmacies.add_member(
            owner.id, ph.id, reader.username.upper(), "reader"
        )  # any case
        return ph, owner, editor, reader, outsider

    return _make


async def actions(services, user_id):
    return [
        (e.action, e.actor_id, e.target_id)
        for e in await services.audit.list(user_id=user_id, limit=50)
    ]


async def test_create_list_and_members_with_roles(services, team):
    ph, owner, editor, reader, outsider = await team()
    assert ph.name == "Main Street Pharmacy" and ph.role == "owner" and ph.is_owner
    mine = await services.pharmacies.list_mine(editor.id)
    assert [(p.id, p.role, p.can_edit) for p in mine] == [(ph.id, "editor", True)]
    assert [(p.id, p.role, p.can_edit) for p in await services.pharmacies.list_mine(reader.id)] == [
        (ph.id, "reader", False)
    ]
    assert await services.pharmacies.list_mine(outsider.id) == []
    members = await services.pharmacies.members(reader.id, ph.id)  # every member sees the members
    assert [(m.user_id, m.username, m.role) for m in members] == [
        (owner.id, owner.username, "owner"),
        (editor.id, editor.username, "editor"),
        (reader.id, reader.username, "reader"),
    ]
    with pytest.raises(NotFound):
        await services.pharmacies.members(outsider.id, ph.id)
    with pytest.raises(NotFound):
        await services.pharmacies.get(outsider.id, ph.id)
    assert (await services.pharmacies.get(reader.id, ph.id)).role == "reader"


async def test_only_owners_manage_members(services, team, account):
    ph, owner, editor, reader, outsider = await team()
    newcomer, _ = await account("new")
    for who in (editor, reader):
        with pytest.raises(Forbidden):
            await services.pharmacies.add_member(who.id, ph.id, newcomer.username, "reader")
        with pytest.raises(Forbidden):
            await services.pharmacies.set_role(who.id, ph.id, reader.id, "editor")
        with pytest.raises(Forbidden):
            await services.pharmacies.remove_member(who.id, ph.id, owner.id)
        with pytest.raises(Forbidden):
            await services.pharmacies.rename(who.id, ph.id, "Taken over")
        with pytest.raises(Forbidden):
            await services.pharmacies.delete(who.id, ph.id)
    with pytest.raises(NotFound):  # an outsider learns nothing, not even that it exists
        await services.pharmacies.add_member(outsider.id, ph.id, newcomer.username, "reader")
    with pytest.raises(NotFound):
        await services.pharmacies.add_member(
            owner.id, ph.id, "no-such-account-" + uuid.uuid4().hex[:6]
        )
    with pytest.raises(Conflict):
        await services.pharmacies.add_member(owner.id, ph.id, editor.username, "reader")
    with pytest.raises(ValidationError):
        await services.pharmacies.add_member(owner.id, ph.id, newcomer.username, "admin")
    m = await services.pharmacies.set_role(owner.id, ph.id, reader.id, "editor")
    assert (m.user_id, m.username, m.role) == (reader.id, reader.username, "editor")
    renamed = await services.pharmacies.rename(owner.id, ph.id, "Main Street")
    assert renamed.name == "Main Street"
    assert (await services.pharmacies.get(editor.id, ph.id)).name == "Main Street"


async def test_the_last_owner_cannot_leave_or_be_demoted(services, team):
    ph, owner, editor, reader, outsider = await team()
    with pytest.raises(Conflict) as e:
        await services.pharmacies.leave(owner.id, ph.id)
    assert "last owner" in e.value.message
    with pytest.raises(Conflict):
        await services.pharmacies.set_role(owner.id, ph.id, owner.id, "reader")
    with pytest.raises(Conflict):
        await services.pharmacies.remove_member(owner.id, ph.id, owner.id)
    assert (await services.pharmacies.get(owner.id, ph.id)).role == "owner"
    # with a second owner, the first may step down and leave
    await services.pharmacies.set_role(owner.id, ph.id, editor.id, "owner")
    await services.pharmacies.set_role(owner.id, ph.id, owner.id, "reader")
    await services.pharmacies.leave(owner.id, ph.id)
    assert await services.pharmacies.list_mine(owner.id) == []
    with pytest.raises(Conflict):  # and now the new one is the last
        await services.pharmacies.leave(editor.id, ph.id)


async def test_readers_read_editors_upload_and_delete(services, team):
    ph, owner, editor, reader, outsider = await team()
    ds = services.documents
    doc = await ds.register_upload(editor.id, "statins.txt", text(1), pharmacy_id=ph.id)
    assert doc.pharmacy_id == ph.id and doc.conversation_id is None and doc.user_id == editor.id
    assert doc.status == "pending"
    again = await ds.register_upload(
        owner.id, "same bytes.txt", doc_bytes(services, doc), pharmacy_id=ph.id
    )
    assert again.duplicate and again.id == doc.id  # once per pharmacy, whoever uploads
    with pytest.raises(Forbidden):
        await ds.register_upload(reader.id, "mine.txt", text(2), pharmacy_id=ph.id)
    with pytest.raises(NotFound):
        await ds.register_upload(outsider.id, "mine.txt", text(3), pharmacy_id=ph.id)
    for member in (owner, editor, reader):
        assert [d.id for d in await services.pharmacies.documents_of(member.id, ph.id)] == [doc.id]
        assert (await ds.get_document(member.id, doc.id)).filename == "statins.txt"
        assert doc.id in await ds.job_progress(
            member.id, [doc.id]
        )  # status and progress for every member
    with pytest.raises(NotFound):
        await services.pharmacies.documents_of(outsider.id, ph.id)
    with pytest.raises(NotFound):
        await ds.get_document(outsider.id, doc.id)
    assert await ds.job_progress(outsider.id, [doc.id]) == {}
    # the shared library is not anyone's private library
    assert await ds.get_library_documents(editor.id) == []
    private = await ds.register_upload(editor.id, "statins.txt", doc_bytes(services, doc))
    assert not private.duplicate and private.pharmacy_id is None  # a private copy is another scope
    assert [d.id for d in await ds.get_library_documents(editor.id)] == [private.id]
    with pytest.raises(Forbidden):
        await ds.delete_document(reader.id, doc.id)
    assert (await ds.get_document(owner.id, doc.id)).id == doc.id  # still there
    await ds.delete_document(owner.id, doc.id)  # an owner deletes an editor's upload
    assert await services.pharmacies.documents_of(editor.id, ph.id) == []
    assert services.blobs.exists(private.sha256)  # the private copy still uses the bytes
    conv = await services.conversations.create_conversation(editor.id)
    with pytest.raises(ValidationError):
        await ds.register_upload(
            editor.id, "x.txt", text(4), pharmacy_id=ph.id, conversation_id=conv.id
        )


def doc_bytes(services, doc) -> bytes:
    return services.blobs.get(doc.sha256)


async def test_leaving_or_removal_ends_access_at_once(services, team):
    ph, owner, editor, reader, outsider = await team()
    ds = services.documents
    doc = await ds.register_upload(editor.id, "warfarin.txt", text(5), pharmacy_id=ph.id)
    assert [d.id for d in await services.pharmacies.documents_of(reader.id, ph.id)] == [doc.id]
    await services.pharmacies.remove_member(owner.id, ph.id, reader.id)
    assert await ds.get_pharmacy_documents(reader.id, ph.id) == []
    with pytest.raises(NotFound):
        await ds.get_document(reader.id, doc.id)
    assert await services.pharmacies.list_mine(reader.id) == []
    # the uploader who leaves loses the documents they uploaded too (they are the pharmacy's)
    await services.pharmacies.leave(editor.id, ph.id)
    with pytest.raises(NotFound):
        await ds.get_document(editor.id, doc.id)
    assert await ds.job_progress(editor.id, [doc.id]) == {}
    with pytest.raises(NotFound):
        await ds.delete_document(editor.id, doc.id)
    assert [d.id for d in await services.pharmacies.documents_of(owner.id, ph.id)] == [doc.id]


async def test_delete_pharmacy_takes_its_documents(services, team):
    ph, owner, editor, reader, outsider = await team()
    ds = services.documents
    dropped = []

    async def hook(user_id, ids, pharmacy_id=None):
        dropped.append((pharmacy_id, sorted(ids)))

    old, ds.on_documents_deleted = ds.on_documents_deleted, hook
    try:
        data = text(6)
        doc = await ds.register_upload(editor.id, "shared.txt", data, pharmacy_id=ph.id)
        assert await services.pharmacies.delete(owner.id, ph.id) == 1
    finally:
        ds.on_documents_deleted = old
    assert dropped == [(ph.id, [doc.id])]  # the pharmacy library's chunks
    assert (
        await services.backend.service.table("documents").select("id").eq("id", doc.id).execute()
    ).data == []
    assert not services.blobs.exists(doc.sha256)
    for who in (owner, editor, reader):
        assert await services.pharmacies.list_mine(who.id) == []


async def test_every_membership_and_shared_document_change_is_audited(services, team):
    ph, owner, editor, reader, outsider = await team()
    assert (await actions(services, owner.id))[0] == ("pharmacy.created", owner.id, ph.id)
    assert ("pharmacy.member_added", owner.id, ph.id) in await actions(services, editor.id)
    assert ("pharmacy.member_added", owner.id, ph.id) in await actions(services, reader.id)
    await services.pharmacies.set_role(owner.id, ph.id, reader.id, "editor")
    doc = await services.documents.register_upload(reader.id, "a.txt", text(7), pharmacy_id=ph.id)
    await services.documents.delete_document(editor.id, doc.id)
    await services.pharmacies.remove_member(owner.id, ph.id, reader.id)
    await services.pharmacies.leave(editor.id, ph.id)
    await services.pharmacies.rename(owner.id, ph.id, "Renamed")
    got = await actions(services, reader.id)
    assert got[:4] == [
        ("pharmacy.member_removed", owner.id, ph.id),
        ("pharmacy.document_added", reader.id, doc.id),
        ("pharmacy.member_role_changed", owner.id, ph.id),
        ("pharmacy.member_added", owner.id, ph.id),
    ]
    entries = await services.audit.list(user_id=reader.id, action="pharmacy.member_role_changed")
    assert entries[0].details == {
        "member": reader.id,
        "username": reader.username,
        "from": "reader",
        "to": "editor",
    }
    assert (await actions(services, editor.id))[:2] == [
        ("pharmacy.left", editor.id, ph.id),
        ("pharmacy.document_deleted", editor.id, doc.id),
    ]
    assert (await actions(services, owner.id))[0] == ("pharmacy.renamed", owner.id, ph.id)


async def test_admin_views_of_pharmacies(services, team, account):
    ph, owner, editor, reader, outsider = await team()
    admin = await services.users.create_user(
        f"admin-{uuid.uuid4().hex[:10]}", "correct horse battery", is_admin=True
    )
    doc = await services.documents.register_upload(
        editor.id, "shared.txt", text(8), pharmacy_id=ph.id
    )
    overview = {p.id: p for p in await services.admin.pharmacies(admin.id, limit=1000)}
    p = overview[ph.id]
    assert (p.name, p.created_by, p.created_by_username, p.members, p.owners, p.documents) == (
        ph.name,
        owner.id,
        owner.username,
        3,
        1,
        1,
    )
    members = await services.admin.pharmacy_members(admin.id, ph.id)
    assert [(m.username, m.role) for m in members] == [
        (owner.username, "owner"),
        (editor.username, "editor"),
        (reader.username, "reader"),
    ]
    assert [d.id for d in await services.admin.pharmacy_documents(admin.id, ph.id)] == [doc.id]
    for call in (
        services.admin.pharmacies(owner.id),
        services.admin.pharmacy_members(owner.id, ph.id),
        services.admin.pharmacy_documents(owner.id, ph.id),
    ):
        with pytest.raises(Forbidden):
            await call


async def test_account_deletion_and_retries_are_audited_as_team_changes(services, team):
    """Deleting an account takes its memberships with it (audited as a removal) and hands its
    shared uploads to the pharmacy (sql/0072); retrying a shared document names its pharmacy."""
    ph, owner, editor, reader, outsider = await team()
    doc = await services.documents.register_upload(editor.id, "e.txt", text(9), pharmacy_id=ph.id)
    await services.documents.update_document_status(doc.id, "failed", error="Timed out")
    await services.documents.retry_document(editor.id, doc.id)
    (retried,) = await services.audit.list(user_id=editor.id, action="document.retried")
    assert retried.details["pharmacy_id"] == ph.id
    await services.users.delete_user(editor.id, actor_id=owner.id)
    removed = await services.audit.list(user_id=editor.id, action="pharmacy.member_removed")
    assert [(e.actor_id, e.target_id, e.details) for e in removed] == [
        (owner.id, ph.id, {"member": editor.id, "role": "editor", "reason": "account deleted"})
    ]
    kept = await services.audit.list(user_id=owner.id, action="pharmacy.document_handed_over")
    assert [(e.target_id, e.details["pharmacy_id"], e.details["from"]) for e in kept] == [
        (doc.id, ph.id, editor.id)
    ]
    assert [d.id for d in await services.documents.get_pharmacy_documents(owner.id, ph.id)] == [
        doc.id
    ]
