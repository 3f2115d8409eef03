"""Settings: answer defaults, theme, password, signed-in sessions."""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st
from pharmgpt.app.components import answers, auth, ui
from pharmgpt.app.components.dates import relative_date
from pharmgpt.services.errors import PharmGPTError

MODES = {"Documents only": True, "General knowledge allowed": False}


def changed(old: dict, new: dict) -> dict:
    return {k: v for k, v in new.items() if old.get(k) != v}


def session_rows(sessions, now: datetime | None = None) -> list[dict]:
    now = now or datetime.now(UTC)
    rows = []
    for s in sessions:
        state = "signed out" if s.revoked_at else ("expired" if s.expires_at <= now else "active")
        rows.append(
            {
                "device": (s.user_agent or "unknown")[:80],
                "IP address": s.ip_address or "",
                "signed in": relative_date(s.created_at, now),
                "last active": relative_date(s.last_activity, now),
                "status": state,
            }
        )
    return rows


def _preferences(ctx, user_id: str) -> None:
    prefs = ui.preferences(ctx, user_id)
    offline = ctx.rag.engine.provider is None
    with st.form("prefs_form"):
        choice = None if offline else answers.model_picker(ctx, prefs["model"])
        if choice is None:
            st.selectbox(
                "Default model",
                ["None (offline answers)" if offline else "Unavailable"],
                key="pref_model",
                disabled=True,
                help="No language model is configured: answers are offline extracts."
                if offline
                else "The language model server did not say which models it offers.",
            )
            model = prefs["model"]
        else:
            model = st.selectbox(
                "Default model",
                choice.available,
                index=choice.available.index(choice.model),
                key="pref_model",
                help="The model that writes answers; the first is the provider's default.",
            )
            if choice.notice:
                st.caption(choice.notice)
            if not prefs["model"] and model == choice.available[0]:
                model = ""  # still "the provider's default", so a new provider's default follows
        temperature = st.slider(
            "Temperature",
            0.0,
            2.0,
            float(prefs["temperature"]),
            0.1,
            key="pref_temperature",
            help="Lower is more literal; 0.2 suits reference answers.",
        )
        top_k = st.slider("Passages per answer", 1, 20, int(prefs["top_k"]), key="pref_top_k")
        mode = st.radio(
            "Answer mode",
            list(MODES),
            index=0 if prefs["strict_mode"] else 1,
            key="pref_mode",
            horizontal=True,
            help="Documents only: answers say so when your documents don't cover a question.",
        )
        show_sources = st.checkbox(
            "Show sources under answers", value=bool(prefs["show_sources"]), key="pref_sources"
        )
        theme = st.radio(
            "Theme",
            ["light", "dark"],
            index=0 if prefs["theme"] == "light" else 1,
            key="pref_theme",
            horizontal=True,
        )
        saved = st.form_submit_button("Save settings", type="primary", key="prefs_save")
    if not saved:
        return
    new = {
        "model": model,
        "temperature": float(temperature),
        "top_k": int(top_k),
        "strict_mode": MODES[mode],
        "show_sources": bool(show_sources),
        "theme": theme,
    }
    failed = False
    for key, value in changed(prefs, new).items():
        out = ui.attempt(ctx.services.preferences.set(user_id, key, value))
        if not out.ok:
            failed = True
            if not out.unavailable:
                st.error(out.error)
    ui.preferences(ctx, user_id, refresh=True)
    st.session_state.pop("strict_toggle", None)  # the chat page's switch follows the saved mode
    if not failed:
        ui.flash("Settings saved.")
        st.rerun()


def _password(ctx, user_id: str) -> None:
    with st.form("password_form", clear_on_submit=False):
        current = st.text_input(
            "Current password", type="password", key="pw_current", autocomplete="current-password"
        )
        current_err = st.empty()
        new = st.text_input(
            "New password",
            type="password",
            key="pw_new",
            autocomplete="new-password",
            help=f"At least {ctx.services.settings.min_password_length} characters.",
        )
        new_err = st.empty()
        confirm = st.text_input(
            "Repeat the new password",
            type="password",
            key="pw_confirm",
            autocomplete="new-password",
        )
        confirm_err = st.empty()
        submitted = st.form_submit_button("Change password", key="pw_submit")
        form_msg = st.empty()
    if not submitted:
        return
    if not current:
        current_err.error("Enter your current password.")
        return
    try:
        ctx.services.users.validate_password(new)
    except PharmGPTError as e:
        new_err.error(e.message)
        return
    if new != confirm:
        confirm_err.error("The two passwords don't match.")
        return
    out = ui.attempt(
        ctx.services.users.change_password(user_id, current, new, keep_session=auth.token())
    )
    if out.ok:
        form_msg.success("Password changed. Your other sessions were signed out.")
    elif out.code == "auth":
        current_err.error(out.error)
    elif not out.unavailable:
        form_msg.error(out.error)


def _sessions(ctx, user_id: str) -> None:
    sessions = ui.call(ctx.services.sessions.list_sessions(user_id), default=[])
    rows = session_rows(sessions)
    if rows:
        st.dataframe(rows, hide_index=True, width="stretch")
    left, right = st.columns(2)
    if left.button("Log out my other sessions", key="logout_others", icon=":material/devices:"):
        n = ui.call(ctx.services.sessions.logout_all(user_id, except_token=auth.token()))
        if n is not None:
            ui.flash(f"Signed out {n} other session{'s' if n != 1 else ''}.")
            st.rerun()
    if right.button(
        "Log out everywhere",
        key="logout_everywhere",
        type="primary",
        icon=":material/logout:",
        help="Ends every session, this one included.",
    ):
        auth.sign_out(ctx, everywhere=True)
        st.rerun()


def render() -> None:
    ctx = ui.context()
    user = auth.user()
    st.title("Settings")
    st.subheader("Answers and appearance")
    _preferences(ctx, user.id)
    st.subheader("Password")
    _password(ctx, user.id)
    st.subheader("Where you are signed in")
    _sessions(ctx, user.id)


if __name__ == "__main__":
    render()
