"""Pharmacy teams in the app (issue 15), under AppTest on the real stack: create a pharmacy,
invite by username, controls by role on the Library page, the admin's view."""

from __future__ import annotations

import uuid

import pytest
from pharmgpt.app.components import pharmacy

from tests.app.conftest import sign_in, texts
from tests.app.test_journey_fixes import wait_ready

pytestmark = pytest.mark.integration

LABEL = b"# Atorvastatin\n\nThe usual starting dose is 10 to 20 mg once daily.\n"


def library(at):
    at.switch_page("views/library.py").run()
    assert not at.exception, at.exception
    return at


def errors(at) -> list[str]:
    return [e.value for e in at.error]


def keys(at, kind: str) -> list[str]:
    return [w.key for w in getattr(at, kind) if w.key]


def frame(at, column: str) -> list[dict]:
    """The rows of the page's table that has this column."""
    (df,) = [d.value for d in at.dataframe if column in d.value.columns]
    return df.to_dict("records")


def create(at, name: str):
    at.text_input(key="pharm_new_name").input(name)
    at.button(key="pharm_create").click()
    return at.run()


def invite(at, username: str, role: str):
    at.text_input(key="pharm_invite_name").input(username)
    at.selectbox(key="pharm_invite_role").select(role)
    at.button(key="pharm_invite").click()
    return at.run()


@pytest.fixture
def team(signed_in, make_account, new_app, ctx):
    """An owner signed in on the Library page with a pharmacy made through it, plus a second
    account (not yet a member) and a way to open the app as that account."""
    at, owner = signed_in()
    library(at)
    assert {"Mine", "Pharmacy"} <= {t.label for t in at.tabs}
    assert "You are not in a pharmacy yet." in texts(at)
    name = f"Main Street {uuid.uuid4().hex[:6]}"
    create(at, name)
    assert not errors(at), errors(at)
    (ph,) = ctx.run(ctx.services.pharmacies.list_mine(owner.id))
    assert (ph.name, ph.role) == (name, "owner")
    other, password = make_account("colleague")

    def as_other():
        o = sign_in(new_app(), other.username, password)
        return library(o)

    return at, owner, ph, other, as_other


def test_create_a_pharmacy_and_invite_a_reader(team, ctx):
    at, owner, ph, other, _ = team
    assert at.selectbox(key=pharmacy.PICK).value == ph.id
    assert "pharm_uploader_0" in keys(at, "file_uploader")  # the owner may upload
    invite(at, f"nobody-{uuid.uuid4().hex[:6]}", "reader")
    assert any("There is no active account named" in e for e in errors(at)), errors(at)
    invite(at, other.username, "reader")
    assert not errors(at), errors(at)
    members = ctx.run(ctx.services.pharmacies.members(owner.id, ph.id))
    assert [(m.username, m.role) for m in members] == [
        (owner.username, "owner"),
        (other.username, "reader"),
    ]
    assert at.selectbox(key=f"pharm_role_{other.id}").value == "reader"
    entries = ctx.run(ctx.services.audit.list(user_id=other.id, action="pharmacy.member_added"))
    assert [(e.actor_id, e.target_id) for e in entries] == [(owner.id, ph.id)]
    # the last owner cannot demote themself: the service's words, and the role stays
    at.selectbox(key=f"pharm_role_{owner.id}").select("reader")
    at.run()
    assert any("last owner" in e for e in errors(at)), errors(at)
    assert ctx.run(ctx.services.pharmacies.role(owner.id, ph.id)) == "owner"
    assert at.selectbox(key=f"pharm_role_{owner.id}").value == "owner"


def test_a_reader_sees_the_library_but_no_uploader_or_delete(team, ctx):
    at, owner, ph, other, as_other = team
    doc = ctx.run(
        ctx.services.documents.register_upload(owner.id, "shared.md", LABEL, pharmacy_id=ph.id)
    )
    invite(at, other.username, "reader")
    reader = as_other()
    page = texts(reader)
    assert pharmacy.READ_ONLY in page and "shared.md" in page
    assert f"by {owner.username}" in page  # who shared it
    assert not [k for k in keys(reader, "file_uploader") if k.startswith("pharm_uploader")]
    assert not [
        k for k in keys(reader, "button") if k.startswith(("pharm_deldoc_", "pharm_remove"))
    ]
    assert "pharm_invite" not in keys(reader, "button")  # only owners manage members
    # any member may leave; the library is gone at once
    reader.checkbox(key="pharm_leaveok").check()
    reader.run()
    reader.button(key="pharm_leave").click()
    reader.run()
    assert not errors(reader), errors(reader)
    assert ctx.run(ctx.services.pharmacies.list_mine(other.id)) == []
    assert "shared.md" not in texts(reader) and "You are not in a pharmacy yet." in texts(reader)
    assert ctx.run(ctx.services.documents.get_document(owner.id, doc.id)).pharmacy_id == ph.id


def test_an_editor_uploads_and_deletes_and_owners_remove_members(team, ctx):
    at, owner, ph, other, as_other = team
    invite(at, other.username, "reader")
    at.selectbox(key=f"pharm_role_{other.id}").select("editor")
    at.run()
    assert not errors(at), errors(at)
    assert ctx.run(ctx.services.pharmacies.role(other.id, ph.id)) == "editor"
    editor = as_other()
    assert pharmacy.READ_ONLY not in texts(editor)
    editor.file_uploader(key="pharm_uploader_0").set_value(("formulary.md", LABEL, "text/markdown"))
    editor.run()
    editor.button(key="pharm_upload").click()
    editor.run()
    assert not errors(editor), errors(editor)
    (doc,) = ctx.run(ctx.services.pharmacies.documents_of(owner.id, ph.id))
    assert (doc.filename, doc.user_id, doc.pharmacy_id) == ("formulary.md", other.id, ph.id)
    assert ctx.run(ctx.services.documents.get_library_documents(other.id)) == []  # not private
    assert f"pharm_deldoc_{doc.id}" in keys(editor, "button")
    # a passing failure can be retried by an editor
    wait_ready(ctx, other.id, [doc.id])
    ctx.run(
        ctx.services.documents.update_document_status(
            doc.id, "failed", error="Processing failed after 3 attempts: OSError"
        )
    )
    editor.run()
    editor.button(key=f"pharm_retry_{doc.id}").click()
    editor.run()
    (retried,) = ctx.run(ctx.services.audit.list(user_id=other.id, action="document.retried"))
    assert retried.details["pharmacy_id"] == ph.id
    wait_ready(ctx, other.id, [doc.id])
    editor.run()
    editor.checkbox(key=f"pharm_delok_{doc.id}").check()
    editor.run()
    editor.button(key=f"pharm_deldoc_{doc.id}").click()
    editor.run()
    assert ctx.run(ctx.services.pharmacies.documents_of(owner.id, ph.id)) == []
    got = ctx.run(ctx.services.audit.list(user_id=other.id, action="pharmacy.document_*"))
    assert [e.action for e in got] == ["pharmacy.document_deleted", "pharmacy.document_added"]
    # the owner removes the editor: their next run shows no pharmacy
    at.run()
    at.button(key=f"pharm_remove_{other.id}").click()
    at.run()
    assert ctx.run(ctx.services.pharmacies.role(other.id, ph.id)) is None
    editor.run()
    assert "You are not in a pharmacy yet." in texts(editor)


def test_the_admin_sees_pharmacies_members_and_shared_documents(team, signed_in, ctx):
    _, owner, ph, other, _ = team
    ctx.run(ctx.services.pharmacies.add_member(owner.id, ph.id, other.username, "editor"))
    ctx.run(ctx.services.documents.register_upload(other.id, "shared.md", LABEL, pharmacy_id=ph.id))
    at, _admin = signed_in(admin=True)
    at.switch_page("views/admin.py").run()
    assert not at.exception, at.exception
    assert "Pharmacies" in [t.label for t in at.tabs]
    overview = {r["name"]: r for r in frame(at, "owners")}
    row = overview[ph.name]
    assert (row["members"], row["owners"], row["documents"], row["created by"]) == (
        2,
        1,
        1,
        owner.username,
    )
    at.selectbox(key="admin_pharmacy_pick").select(ph.id)
    at.run()
    members = frame(at, "since")
    assert [(m["username"], m["role"]) for m in members] == [
        (owner.username, "owner"),
        (other.username, "editor"),
    ]
    shared = frame(at, "uploaded by")
    assert [(d["file"], d["uploaded by"]) for d in shared] == [("shared.md", other.username)]
