"""The Streamlit app end to end under AppTest, on the real local stack (offline answers)."""

from __future__ import annotations

import time
import uuid

import pytest
from pharmgpt.app.components import docs
from pharmgpt.rag.prompts import not_covered
from pharmgpt.services.answering import OFFLINE_MODEL
from pharmgpt.services.errors import Conflict, NotFound

from tests.app.conftest import PASSWORD, sign_in, texts

pytestmark = pytest.mark.integration


def sign_up(at, username, password, confirm=None, email=""):
    at.text_input(key="signup_username").input(username)
    at.text_input(key="signup_email").input(email)
    at.text_input(key="signup_password").input(password)
    at.text_input(key="signup_confirm").input(password if confirm is None else confirm)
    at.button(key="signup_submit").click()
    return at.run()


def errors(at) -> list[str]:
    return [e.value for e in at.error]


def sidebar_labels(at) -> list[str]:
    return [b.label for b in at.sidebar.button if b.key and b.key.startswith("conv_open_")]


# ---------------------------------------------------------------------- accounts
def test_sign_up_shows_what_is_wrong_next_to_each_field(new_app, make_account):
    at = sign_up(new_app(), "ab", "short", confirm="other", email="not-an-email")
    assert "user" not in at.session_state
    errs = errors(at)
    assert "Usernames are 3 to 64 characters long." in errs
    assert any("at least 8 characters" in e for e in errs)
    assert "That email address does not look valid." in errs
    at = sign_up(new_app(), f"ok-{uuid.uuid4().hex[:6]}", PASSWORD, confirm=PASSWORD + "x")
    assert errors(at) == ["The two passwords don't match."]
    taken, _ = make_account()
    at = sign_up(new_app(), taken.username, PASSWORD)
    assert errors(at) == ["That username is taken."] and "user" not in at.session_state


def test_sign_up_then_sign_out_and_in_again(new_app, ctx):
    name = f"new-{uuid.uuid4().hex[:8]}"
    at = sign_up(new_app(), name, PASSWORD, email="pharmacist@example.org")
    assert not at.exception, at.exception
    user = at.session_state["user"]
    assert user.username == name and at.session_state["token"]
    assert [h.value for h in at.header] == ["New chat"]  # the chat page
    assert ctx.run(ctx.services.sessions.validate_session(at.session_state["token"])).id == user.id
    token = at.session_state["token"]
    at.sidebar.button(key="logout").click()
    at.run()
    assert "user" not in at.session_state
    assert "You have been signed out." in [i.value for i in at.info]
    assert (
        ctx.run(ctx.services.sessions.validate_session(token)) is None
    )  # revoked, not just forgotten
    at = sign_in(at, name)
    assert at.session_state["user"].id == user.id and not errors(at)


def test_sign_in_messages(new_app, make_account, ctx):
    user, _ = make_account()
    at = new_app()
    at.button(key="signin_submit").click()
    at.run()
    assert errors(at) == ["Enter your username.", "Enter your password."]
    at = sign_in(new_app(), user.username, "not the password")
    assert errors(at) == [ctx.services.users.bad_credentials] and "user" not in at.session_state
    at = sign_in(new_app(), f"nobody-{uuid.uuid4().hex[:6]}", PASSWORD)
    assert errors(at) == [ctx.services.users.bad_credentials]


def test_lockout_is_explained(new_app, make_account, ctx):
    user, _ = make_account()
    at = new_app()
    for _ in range(ctx.services.settings.max_failed_logins):
        at = sign_in(at, user.username, "wrong password")
    at = sign_in(at, user.username, PASSWORD)
    assert "user" not in at.session_state
    # the same words as a wrong password (no reply tells a locked account apart), which
    # explain the lock
    assert (
        errors(at) == [ctx.services.users.bad_credentials]
        and "locked for 15 minutes" in errors(at)[0]
    )


# ---------------------------------------------------------------------- chat
def test_offline_question_without_documents(signed_in, ctx):
    at, user = signed_in()
    assert any("Offline mode" in c.value for c in at.caption)  # clearly labelled
    question = "Maximum daily dose of atorvastatin?"
    at.chat_input(key="chat_input").set_value(question)
    at.run()
    assert not at.exception, at.exception
    page = texts(at)
    refusal = not_covered(
        ["atorvastatin"], strict=False
    )  # nothing uploaded: it names the drug instead of guessing
    assert refusal in page
    assert sidebar_labels(at) == [question]  # titled after the question, listed in the sidebar
    assert [h.value for h in at.header] == [question]
    conv_id = at.session_state["conv_id"]
    msgs = ctx.run(ctx.services.conversations.get_messages(user.id, conv_id))
    assert [(m.role, m.content) for m in msgs] == [("user", question), ("assistant", refusal)]
    assert msgs[1].model == OFFLINE_MODEL
    assert at.button(key="regenerate")  # the last answer can be asked again
    at.button(key="regenerate").click()
    at.run()
    again = ctx.run(ctx.services.conversations.get_messages(user.id, conv_id))
    assert [m.role for m in again] == ["user", "assistant"]  # the new answer replaces the old one
    assert again[0].id == msgs[0].id and again[1].id != msgs[1].id
    assert ctx.run(ctx.services.conversations.get_conversation(user.id, conv_id)).message_count == 2
    assert len([m for m in at.chat_message if m.name == "assistant"]) == 1


def test_sidebar_rename_pin_archive_delete(signed_in, ctx):
    at, user = signed_in()
    cs = ctx.services.conversations
    first = ctx.run(cs.create_conversation(user.id, title="Warfarin and NSAIDs"))
    second = ctx.run(cs.create_conversation(user.id, title="Metformin in CKD"))
    at.run()
    assert sidebar_labels(at) == ["Metformin in CKD", "Warfarin and NSAIDs"]

    at.text_input(key=f"conv_title_{first.id}").input("Warfarin + ibuprofen")
    at.button(key=f"conv_rename_{first.id}").click()
    at.run()
    assert sidebar_labels(at) == ["Warfarin + ibuprofen", "Metformin in CKD"]  # renaming touches it

    at.button(key=f"conv_pin_{second.id}").click()
    at.run()
    assert sidebar_labels(at) == ["📌 Metformin in CKD", "Warfarin + ibuprofen"]
    assert ctx.run(cs.get_conversation(user.id, second.id)).is_pinned

    at.button(key=f"conv_archive_{first.id}").click()
    at.run()
    assert sidebar_labels(at) == ["📌 Metformin in CKD"]
    at.toggle(key="conv_archived").set_value(True)
    at.run()
    assert sidebar_labels(at) == ["🗄️ Warfarin + ibuprofen"]
    at.button(key=f"conv_archive_{first.id}").click()  # unarchive
    at.toggle(key="conv_archived").set_value(False)
    at.run()
    assert sidebar_labels(at) == ["📌 Metformin in CKD", "Warfarin + ibuprofen"]

    at.text_input(key="conv_search").input("ibuprofen")
    at.run()
    assert sidebar_labels(at) == ["Warfarin + ibuprofen"]
    at.text_input(key="conv_search").input("")
    at.run()

    assert at.button(key=f"conv_delete_{second.id}").disabled  # only after confirming
    at.checkbox(key=f"conv_delok_{second.id}").check()
    at.run()
    at.button(key=f"conv_delete_{second.id}").click()
    at.run()
    assert sidebar_labels(at) == ["Warfarin + ibuprofen"]
    with pytest.raises(NotFound):
        ctx.run(cs.get_conversation(user.id, second.id))
    assert not errors(at)


def test_open_conversation_shows_history_and_duplicate(signed_in, ctx):
    at, user = signed_in()
    cs = ctx.services.conversations
    conv = ctx.run(cs.create_conversation(user.id, title="Amiodarone"))
    ctx.run(
        cs.add_message(user.id, conv.id, {"role": "user", "content": "Loading dose of amiodarone?"})
    )
    ctx.run(
        cs.add_message(
            user.id,
            conv.id,
            {
                "role": "assistant",
                "content": "See the label [1].",
                "sources": [
                    {
                        "n": 1,
                        "filename": "amio.pdf",
                        "page": 3,
                        "snippet": "Loading dose 800-1600 mg/day",
                    }
                ],
            },
        )
    )
    at.run()
    at.button(key=f"conv_open_{conv.id}").click()
    at.run()
    page = texts(at)
    assert "Loading dose of amiodarone?" in page and ":blue-badge[1]" in page
    assert "**[1] amio.pdf, page 3**" in page  # the sources panel
    at.button(key=f"conv_dup_{conv.id}").click()
    at.run()
    assert "Copy of Amiodarone" in sidebar_labels(at)
    assert at.session_state["conv_id"] != conv.id


def test_sources_of_a_deleted_document_say_so_and_document_text_loads_nothing(signed_in, ctx):
    at, user = signed_in()
    cs = ctx.services.conversations
    conv = ctx.run(cs.create_conversation(user.id, title="Gone"))
    ctx.run(cs.add_message(user.id, conv.id, {"role": "user", "content": "Dose?"}))
    ctx.run(
        cs.add_message(
            user.id,
            conv.id,
            {
                "role": "assistant",
                "content": "Dose 5 mg ![p](http://127.0.0.1:9/leak.png) [1].",
                "sources": [
                    {
                        "n": 1,
                        "filename": "old.pdf",
                        "page": 2,
                        "section": "Dosing",
                        "document_id": str(uuid.uuid4()),
                        "snippet": "Dose 5 mg ![p](http://127.0.0.1:9/leak.png)",
                    }
                ],
            },
        )
    )
    at.run()
    at.button(key=f"conv_open_{conv.id}").click()
    at.run()
    page = texts(at)
    assert ":gray-badge[document deleted]" in page
    assert not [b for b in at.button if (b.key or "").startswith(("open_page_", "open_section_"))]
    assert "leak.png" not in " ".join(m.value for m in at.markdown)  # the image is not rendered
    assert not at.exception


# ---------------------------------------------------------------------- settings and admin
def test_settings_save(signed_in, ctx):
    at, user = signed_in()
    at.switch_page("views/settings.py").run()
    assert not at.exception, at.exception
    at.slider(key="pref_temperature").set_value(0.7)
    at.slider(key="pref_top_k").set_value(4)
    at.radio(key="pref_mode").set_value("General knowledge allowed")
    at.radio(key="pref_theme").set_value("dark")
    at.button(key="prefs_save").click()
    at.run()
    prefs = ctx.run(ctx.services.preferences.get_all(user.id))
    assert (prefs["temperature"], prefs["top_k"], prefs["strict_mode"], prefs["theme"]) == (
        0.7,
        4,
        False,
        "dark",
    )
    assert not errors(at)
    at.switch_page("views/chat.py").run()
    assert at.toggle(key="strict_toggle").value is False  # the chat's answer mode follows
    at.toggle(key="strict_toggle").set_value(True)
    at.run()
    assert ctx.run(ctx.services.preferences.get(user.id, "strict_mode")) is True


def test_change_password_and_log_out_everywhere(signed_in, ctx):
    at, user = signed_in()
    other = ctx.run(ctx.services.sessions.create_session(user.id))
    at.switch_page("views/settings.py").run()
    at.text_input(key="pw_current").input("wrong one")
    at.text_input(key="pw_new").input("a much better passphrase")
    at.text_input(key="pw_confirm").input("a much better passphrase")
    at.button(key="pw_submit").click()
    at.run()
    assert errors(at) == ["The current password is not right."]
    at.text_input(key="pw_current").input(PASSWORD)
    at.button(key="pw_submit").click()
    at.run()
    assert "Password changed. Your other sessions were signed out." in [s.value for s in at.success]
    assert ctx.run(ctx.services.sessions.validate_session(other)) is None
    assert ctx.run(ctx.services.sessions.validate_session(at.session_state["token"])).id == user.id
    token = at.session_state["token"]
    at.button(key="logout_everywhere").click()
    at.run()
    assert "user" not in at.session_state
    assert ctx.run(ctx.services.sessions.validate_session(token)) is None


def test_admin_page_only_for_admins(signed_in, make_account, ctx):
    at, _ = signed_in()
    with pytest.raises(ValueError):
        at.switch_page("views/admin.py")  # not even registered for a non-admin
    assert "Admin" not in [p["page_name"] for p in at._registered_pages.values()]

    at, admin = signed_in(admin=True)
    target, password = make_account("target")
    at.switch_page("views/admin.py").run()
    assert not at.exception, at.exception
    assert [t.value for t in at.title] == ["Admin"]
    assert [t.label for t in at.tabs] == [
        "Users",
        "Usage",
        "Ingestion queue",
        "Performance",
        "Health",
        "Audit log",
    ]
    at.text_input(key="admin_user_search").input(target.username)
    at.run()
    assert at.selectbox(key="admin_pick").value == target.id
    at.button(key="admin_deactivate").click()
    at.run()
    assert not ctx.run(ctx.services.users.get_user_by_id(target.id)).is_active
    assert at.button(key="admin_activate")
    entries = ctx.run(ctx.services.audit.list(user_id=target.id, action="admin.user_deactivated"))
    assert [e.actor_id for e in entries] == [admin.id]
    assert any(e.value.startswith("**Data store") for e in at.success)  # the health checks ran


# ---------------------------------------------------------------------- one upload (loads the model)
def test_upload_in_chat_then_summarise(signed_in, ctx):
    at, user = signed_in()
    text = (
        b"# Atorvastatin\n\nAtorvastatin is an HMG-CoA reductase inhibitor. The usual starting dose is "
        b"10 to 20 mg once daily; the maximum dose is 80 mg once daily. Avoid in active liver disease.\n"
    )
    at.chat_input(key="chat_input").upload("atorvastatin.md", text, "text/markdown")
    at.run()
    assert not at.exception, at.exception
    assert any("atorvastatin.md uploaded; processing" in s.value for s in at.success)
    conv_id = at.session_state["conv_id"]
    (doc,) = ctx.run(ctx.services.documents.get_conversation_documents(user.id, conv_id))
    deadline = time.monotonic() + 60
    while doc.status in ("pending", "processing") and time.monotonic() < deadline:
        time.sleep(0.5)
        doc = ctx.run(ctx.services.documents.get_document(user.id, doc.id))
    assert doc.status == "ready", doc.processing_error
    at.run()
    button = at.button(key=f"summarise_{doc.id}")
    assert not button.disabled
    button.click()
    at.run()
    assert not at.exception, at.exception
    msgs = ctx.run(ctx.services.conversations.get_messages(user.id, conv_id))
    assert msgs[-1].role == "assistant" and msgs[-1].content.startswith("Offline mode")
    assert msgs[-1].sources and msgs[-1].sources[0]["filename"] == "atorvastatin.md"
    assert "**[1] atorvastatin.md" in texts(at)
    assert [
        b for b in at.button if (b.key or "").startswith(("open_page_", "open_section_"))
    ]  # it opens
    # the same file again: an "already uploaded" notice, no second document
    at.chat_input(key="chat_input").upload("copy.md", text, "text/markdown")
    at.run()
    assert any("already uploaded" in i.value for i in at.info)
    assert len(ctx.run(ctx.services.documents.get_conversation_documents(user.id, conv_id))) == 1


def test_load_older_messages(signed_in, ctx):
    at, user = signed_in()
    cs = ctx.services.conversations
    conv = ctx.run(cs.create_conversation(user.id, title="Long history"))
    for i in range(35):
        ctx.run(
            cs.add_message(
                user.id,
                conv.id,
                {
                    "role": "user" if i % 2 == 0 else "assistant",
                    "content": f"message number {i:02d}",
                },
            )
        )
    at.run()
    at.button(key=f"conv_open_{conv.id}").click()
    at.run()
    shown = [m for m in texts(at).splitlines() if m.startswith("message number")]
    assert shown[0] == "message number 05" and len(shown) == 30
    at.button(key="load_older").click()
    at.run()
    shown = [m for m in texts(at).splitlines() if m.startswith("message number")]
    assert shown == [f"message number {i:02d}" for i in range(35)]
    assert not any(b.key == "load_older" for b in at.button)  # nothing older left


def test_health_banner_when_the_store_is_away(signed_in, ctx, monkeypatch):
    from pharmgpt.services.errors import BackendUnavailable

    at, _ = signed_in()

    async def away(*args, **kwargs):
        raise BackendUnavailable(
            "The data store is not reachable right now. Please try again shortly."
        )

    monkeypatch.setattr(ctx.services.conversations, "get_user_conversations", away)
    at.run()
    assert not at.exception, at.exception
    assert any("data store is not reachable" in w.value for w in at.warning)
    assert [h.value for h in at.header] == ["New chat"] and at.chat_input(
        key="chat_input"
    )  # still usable
    monkeypatch.undo()
    at.run()
    at.run()  # one good run clears the flag; the next draws no banner
    assert not any("data store is not reachable" in w.value for w in at.warning)


def test_documents_page_errors_failures_and_retry(signed_in, ctx):
    at, user = signed_in()
    at.switch_page("views/documents.py").run()
    assert not at.exception, at.exception
    at.file_uploader(key="doc_uploader_0").set_value(
        [
            ("fake.pdf", b"<html>not a pdf</html>", "application/pdf"),
            ("blank.txt", b"   \n\n   \n", "text/plain"),
        ]
    )
    at.run()
    at.button(key="doc_upload").click()
    at.run()
    assert "fake.pdf: the contents are not a valid PDF file." in errors(at)
    assert any("blank.txt uploaded; processing" in s.value for s in at.success)
    (doc,) = ctx.run(ctx.services.documents.get_library_documents(user.id))
    deadline = time.monotonic() + 30
    while doc.status != "failed" and time.monotonic() < deadline:
        time.sleep(0.3)
        doc = ctx.run(ctx.services.documents.get_document(user.id, doc.id))
    assert doc.status == "failed"
    at.run()
    page = texts(at)
    assert ":red-badge[Failed]" in page and doc.processing_error in page  # with the reason
    assert doc.processing_error.startswith("blank.txt is empty")
    # the file's own fault: no Retry (it would fail the same way), and the page says why
    assert not any(b.key == f"doc_retry_{doc.id}" for b in at.button) and docs.NO_RETRY in page
    assert not any("uploaded; processing" in s.value for s in at.success)  # the banner went with it
    history = {r["file"]: r["outcome"] for r in at.dataframe[0].value.to_dict("records")}
    assert history["fake.pdf"] == "rejected" and history["blank.txt"].startswith(
        "failed: blank.txt is empty"
    )
    with pytest.raises(Conflict):
        ctx.run(ctx.services.documents.retry_document(user.id, doc.id))
    # a passing outage (the worker gave up after its attempts) can be retried
    ctx.run(
        ctx.services.documents.update_document_status(
            doc.id, "failed", metadata={}, error="Processing failed after 3 attempts: OSError"
        )
    )
    at.run()
    at.button(key=f"doc_retry_{doc.id}").click()
    at.run()
    jobs = ctx.run(ctx.services.documents.job_progress(user.id, [doc.id]))
    assert jobs[doc.id]["status"] in ("queued", "running", "failed")
    entries = ctx.run(ctx.services.audit.list(user_id=user.id, action="document.retried"))
    assert len(entries) == 1
    at.checkbox(key=f"doc_delok_{doc.id}").check()
    at.run()
    at.button(key=f"doc_delete_{doc.id}").click()
    at.run()
    assert ctx.run(ctx.services.documents.get_library_documents(user.id)) == []
