"""The open conversation lives in the URL; a session revoked elsewhere ends on its next action."""

from __future__ import annotations

import time

import pytest
from pharmgpt.app.components import auth
from pharmgpt.app.components.urlstate import resolve
from pharmgpt.app.views.chat import NOT_FOUND
from streamlit.testing.v1 import AppTest

from tests.app.conftest import MAIN, PASSWORD, TIMEOUT, sign_in, texts

pytestmark = pytest.mark.integration


def test_resolve_rules():
    assert resolve("a", None, None, False) == "a"  # a fresh tab or a bookmark opens it
    assert resolve("b", "a", "a", False) == "b"  # back/forward to another conversation
    assert resolve(None, "a", "a", True) == "a"  # a page switch drops the query string: keep it
    assert resolve(None, "a", "a", False) is None  # back to a URL without one: "New chat"
    assert (
        resolve("a", "a", "b", False) == "b"
    )  # our own write, not yet replaced: the session decides


def fresh_tab(username: str, conv_id: str | None = None) -> AppTest:
    """A new browser session (refresh, new tab): the address bar holds `?c=`, the user signs in."""
    at = AppTest.from_file(str(MAIN), default_timeout=TIMEOUT)
    if conv_id:
        at.query_params["c"] = conv_id
    return sign_in(at.run(), username)


def test_the_url_opens_the_conversation_and_follows_clicks(signed_in, ctx):
    at, user = signed_in()
    cs = ctx.services.conversations
    first = ctx.run(cs.create_conversation(user.id, title="Digoxin levels"))
    ctx.run(
        cs.add_message(
            user.id, first.id, {"role": "user", "content": "Target digoxin level in AF?"}
        )
    )
    second = ctx.run(cs.create_conversation(user.id, title="Lithium and NSAIDs"))
    at.run()
    assert "c" not in at.query_params
    at.button(key=f"conv_open_{first.id}").click()
    at.run()
    assert at.query_params["c"] == first.id  # a click puts it in the address bar
    at.switch_page("views/library.py").run()  # Streamlit drops the query string on a page switch
    at.switch_page("views/chat.py").run()
    assert at.session_state["conv_id"] == first.id and at.query_params["c"] == first.id

    again = fresh_tab(user.username, first.id)  # a refresh / new tab / bookmark
    assert again.session_state["conv_id"] == first.id
    assert [h.value for h in again.header] == ["Digoxin levels"]
    assert "Target digoxin level in AF?" in texts(again)
    again.query_params["c"] = second.id  # back/forward to another one
    again.run()
    assert [h.value for h in again.header] == ["Lithium and NSAIDs"]
    again.sidebar.button(key="new_chat").click()
    again.run()
    assert "c" not in again.query_params and [h.value for h in again.header] == ["New chat"]


def test_a_foreign_or_deleted_id_shows_not_found(signed_in, make_account, ctx):
    owner, _ = make_account("owner")
    cs = ctx.services.conversations
    secret = ctx.run(cs.create_conversation(owner.id, title="Owner's private chat"))
    ctx.run(
        cs.add_message(owner.id, secret.id, {"role": "user", "content": "owner-only question text"})
    )
    _, intruder = signed_in()
    for conv_id in (secret.id, "not-a-uuid"):
        at = fresh_tab(intruder.username, conv_id)
        assert not at.exception, at.exception
        page = texts(at)
        assert NOT_FOUND in [w.value for w in at.warning]
        assert "Owner's private chat" not in page and "owner-only question text" not in page
        assert [h.value for h in at.header] == ["New chat"] and "c" not in at.query_params
    mine = ctx.run(cs.create_conversation(intruder.id, title="Soon gone"))
    ctx.run(cs.delete_conversation(intruder.id, mine.id))
    at = fresh_tab(intruder.username, mine.id)
    assert NOT_FOUND in [w.value for w in at.warning] and "Soon gone" not in texts(at)


def two_sessions(signed_in):
    a, user = signed_in()
    b = sign_in(AppTest.from_file(str(MAIN), default_timeout=TIMEOUT).run(), user.username)
    assert b.session_state["user"].id == user.id
    return a, b, user


def wait_past_recheck() -> None:
    time.sleep(auth.REVALIDATE_S + 0.1)  # checks closer together share one lookup


def test_log_out_everywhere_ends_the_other_session_on_its_next_action(signed_in, ctx):
    a, b, user = two_sessions(signed_in)
    conv = ctx.run(ctx.services.conversations.create_conversation(user.id, title="Before"))
    b.run()
    a.switch_page("views/settings.py").run()
    a.button(key="logout_everywhere").click()
    a.run()
    assert "user" not in a.session_state
    wait_past_recheck()
    # B's next action is a button callback that would rename: it must not happen
    b.text_input(key=f"conv_title_{conv.id}").input("After")
    b.button(key=f"conv_rename_{conv.id}").click()
    b.run()
    assert "user" not in b.session_state
    assert (
        auth.SESSION_ENDED
        in [i.value for i in b.info] + [w.value for w in b.warning] + texts(b).splitlines()
    )
    assert b.text_input(key="signin_username")  # the sign-in page
    assert ctx.run(ctx.services.conversations.get_conversation(user.id, conv.id)).title == "Before"


def test_a_password_change_ends_the_other_session(signed_in, ctx):
    a, b, user = two_sessions(signed_in)
    a.switch_page("views/settings.py").run()
    a.text_input(key="pw_current").input(PASSWORD)
    a.text_input(key="pw_new").input("a much better passphrase")
    a.text_input(key="pw_confirm").input("a much better passphrase")
    a.button(key="pw_submit").click()
    a.run()
    assert a.session_state["user"].id == user.id  # the session that changed it stays
    wait_past_recheck()
    b.chat_input(key="chat_input").set_value("Is this still answered?")
    b.run()
    assert "user" not in b.session_state and b.text_input(key="signin_username")
    assert (
        ctx.run(ctx.services.conversations.get_user_conversations(user.id)) == []
    )  # nothing was asked
