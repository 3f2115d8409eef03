"""Sign in, or create an account."""

from __future__ import annotations

import streamlit as st
from pharmgpt.app.components import auth, ui
from pharmgpt.app.components.answers import DISCLAIMER


def _sign_in_form(ctx) -> None:
    with st.form("signin_form", border=False):
        username = st.text_input("Username", key="signin_username", autocomplete="username")
        username_err = st.empty()
        password = st.text_input(
            "Password", type="password", key="signin_password", autocomplete="current-password"
        )
        password_err = st.empty()
        submitted = st.form_submit_button("Sign in", type="primary", key="signin_submit")
        form_err = st.empty()
    if not submitted:
        return
    errors = auth.validate_sign_in(username, password)
    if errors:
        if "username" in errors:
            username_err.error(errors["username"])
        if "password" in errors:
            password_err.error(errors["password"])
        return
    out = auth.sign_in(ctx, username, password)
    if out.ok:
        st.rerun()
    elif not out.unavailable:
        form_err.error(out.error)  # wrong password, or how long the lockout lasts


def _sign_up_form(ctx) -> None:
    users = ctx.services.users
    min_len = ctx.services.settings.min_password_length
    with st.form("signup_form", border=False):
        username = st.text_input(
            "Username", key="signup_username", autocomplete="username", help="3 to 64 characters."
        )
        username_err = st.empty()
        email = st.text_input("Email (optional)", key="signup_email", autocomplete="email")
        email_err = st.empty()
        password = st.text_input(
            "Password",
            type="password",
            key="signup_password",
            autocomplete="new-password",
            help=f"At least {min_len} characters.",
        )
        password_err = st.empty()
        confirm = st.text_input(
            "Repeat the password",
            type="password",
            key="signup_confirm",
            autocomplete="new-password",
        )
        confirm_err = st.empty()
        submitted = st.form_submit_button("Create account", type="primary", key="signup_submit")
        form_err = st.empty()
    if not submitted:
        return
    slots = {
        "username": username_err,
        "email": email_err,
        "password": password_err,
        "confirm": confirm_err,
    }
    errors = auth.validate_sign_up(users, username, password, confirm, email)
    for field, message in errors.items():
        slots[field].error(message)
    if errors:
        return
    out = auth.sign_up(ctx, username, password, email)
    if out.ok:
        ui.flash(f"Welcome, {auth.user().username}! Your account is ready.")
        st.rerun()
    elif out.code == "conflict":
        username_err.error(out.error)  # the name is taken
    elif not out.unavailable:
        form_err.error(out.error)


def render() -> None:
    ctx = ui.context()
    _, middle, _ = st.columns([1, 2, 1])
    with middle:
        st.title("💊 PharmGPT")
        st.caption("Grounded answers for pharmacists, from your own drug references.")
        notice = st.session_state.pop("auth_notice", None)
        if notice:
            st.info(notice)
        sign_in_tab, sign_up_tab = st.tabs(["Sign in", "Create account"])
        with sign_in_tab:
            _sign_in_form(ctx)
        with sign_up_tab:
            _sign_up_form(ctx)
        st.caption(DISCLAIMER)


if __name__ == "__main__":
    render()
