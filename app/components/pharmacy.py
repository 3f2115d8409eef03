"""Pharmacy teams on the Library page: pick one, its shared library, its members (issue 15).

What a member may do follows their role (readers read; editors also upload and delete;
owners also manage members), and the controls shown follow it too; the services (and RLS
under them) decide, so a control shown by mistake still cannot do more than the role allows.
Actions run in button callbacks and report through `ui.flash`, with the services' messages
(unknown username, the last owner, …).
"""

from __future__ import annotations

import streamlit as st
from pharmgpt.services.documents import is_file_fault
from pharmgpt.services.models import PHARMACY_ROLES, Pharmacy

from . import docs, ui

PICK = "pharm_pick"
ROLE_WORDS = {"owner": "an owner", "editor": "an editor", "reader": "a reader"}
READ_ONLY = (
    "You are a reader here: you can read these documents and your questions use them, "
    "but only editors and owners add or delete them."
)


# ---------------------------------------------------------------------- callbacks
def _create(user_id: str) -> None:
    out = ui.attempt(
        ui.context().services.pharmacies.create(
            user_id, st.session_state.get("pharm_new_name", "")
        ),
        render=False,
    )
    if out.ok:
        st.session_state[PICK] = out.value.id
        st.session_state["pharm_new_name"] = ""
        ui.flash(f"{out.value.name} created; you are its owner.")
    elif out.error:
        ui.flash(out.error, "error")


def _invite(user_id: str, pharmacy_id: str) -> None:
    name = (st.session_state.get("pharm_invite_name") or "").strip()
    role = st.session_state.get("pharm_invite_role", "reader")
    out = ui.attempt(
        ui.context().services.pharmacies.add_member(user_id, pharmacy_id, name, role),
        render=False,
    )
    if out.ok:
        st.session_state["pharm_invite_name"] = ""
        ui.flash(f"{out.value.username} added as {out.value.role}.")
    elif out.error:
        ui.flash(out.error, "error")


def _set_role(user_id: str, pharmacy_id: str, member_id: str, before: str) -> None:
    key = f"pharm_role_{member_id}"
    role = st.session_state.get(key, before)
    out = ui.attempt(
        ui.context().services.pharmacies.set_role(user_id, pharmacy_id, member_id, role),
        render=False,
    )
    if out.ok:
        ui.flash(f"{out.value.username} is now {ROLE_WORDS[out.value.role]}.")
    else:
        st.session_state[key] = before  # the selector shows the role they still have
        if out.error:
            ui.flash(out.error, "error")


def _remove(user_id: str, pharmacy_id: str, member_id: str, username: str) -> None:
    ui.act(
        ui.context().services.pharmacies.remove_member(user_id, pharmacy_id, member_id),
        f"{username} removed from the pharmacy.",
    )


def _leave(user_id: str, pharmacy_id: str, name: str) -> None:
    if ui.act(ui.context().services.pharmacies.leave(user_id, pharmacy_id), f"You left {name}."):
        st.session_state.pop(PICK, None)


def _delete_pharmacy(user_id: str, pharmacy_id: str, name: str) -> None:
    if ui.act(ui.context().services.pharmacies.delete(user_id, pharmacy_id), f"{name} deleted."):
        st.session_state.pop(PICK, None)


def _delete_document(user_id: str, doc_id: str, filename: str) -> None:
    ui.act(
        ui.context().services.documents.delete_document(user_id, doc_id),
        f"{filename} deleted from the pharmacy library.",
    )


# ---------------------------------------------------------------------- pieces
def create_form(user_id: str, *, expanded: bool) -> None:
    with st.expander("Create a pharmacy", icon=":material/add_business:", expanded=expanded):
        st.text_input("Name", key="pharm_new_name", placeholder="e.g. Main Street Pharmacy")
        st.button("Create", key="pharm_create", on_click=_create, args=(user_id,))


def pick(mine: list[Pharmacy]) -> Pharmacy:
    """The pharmacy this browser session looks at (the first one until the user picks)."""
    by_id = {p.id: p for p in mine}
    if st.session_state.get(PICK) not in by_id:
        st.session_state[PICK] = mine[0].id
    chosen = st.selectbox(
        "Pharmacy",
        list(by_id),
        key=PICK,
        format_func=lambda i: f"{by_id[i].name} ({by_id[i].role})",
    )
    return by_id[chosen]


def uploader(user_id: str, pharmacy: Pharmacy, documents) -> None:
    """Editors and owners add documents to the shared library (the same validated path as a
    private upload, with the pharmacy as its scope)."""
    ctx = ui.context()
    counter = st.session_state.get("pharm_uploader_n", 0)
    with st.container(border=True):
        files = st.file_uploader(
            f"Add documents to {pharmacy.name}'s library",
            accept_multiple_files=True,
            type=docs.UPLOAD_TYPES,
            key=f"pharm_uploader_{counter}",
            help=docs.upload_help(ctx.services.settings),
        )
        if st.button(
            "Upload to the pharmacy",
            key="pharm_upload",
            type="primary",
            disabled=not files,
            icon=":material/upload:",
        ):
            st.session_state["pharm_results"] = docs.register_files(
                ctx, user_id, files, None, pharmacy_id=pharmacy.id
            )
            st.session_state["pharm_uploader_n"] = counter + 1
            st.rerun()
        results = docs.settled(st.session_state.get("pharm_results") or [], documents)
        st.session_state["pharm_results"] = results
        docs.show_results(results)


def _retry(user_id: str, doc_id: str, filename: str) -> None:
    ctx = ui.context()
    if ui.act(
        ctx.services.documents.retry_document(user_id, doc_id), f"{filename} is queued again."
    ):
        ui.wake_worker(ctx)


def document_row(
    user_id: str, doc, progress: dict | None, can_edit: bool, names: dict[str, str]
) -> None:
    left, mid, right = st.columns([5, 3, 2], vertical_alignment="center")
    with left:
        docs.caption_of(doc, f"by {names[doc.user_id]}" if doc.user_id in names else "")
    with mid:
        st.markdown(docs.status_label(doc, progress))
        if doc.status == "failed" and doc.processing_error:
            st.caption(doc.processing_error)
    if not can_edit:
        return
    if doc.status == "failed" and not is_file_fault(doc):
        right.button(
            "Retry",
            key=f"pharm_retry_{doc.id}",
            icon=":material/refresh:",
            on_click=_retry,
            args=(user_id, doc.id, doc.filename),
        )
    with right, st.popover("Delete", icon=":material/delete:", key=f"pharm_delmenu_{doc.id}"):
        st.caption("Deleting removes it from the pharmacy's library for every member.")
        sure = st.checkbox("Yes, delete it", key=f"pharm_delok_{doc.id}")
        st.button(
            "Delete document",
            key=f"pharm_deldoc_{doc.id}",
            type="primary",
            disabled=not sure,
            on_click=_delete_document,
            args=(user_id, doc.id, doc.filename),
        )


def shared_list(user_id: str, pharmacy: Pharmacy, polling: bool, names: dict[str, str]) -> None:
    """The shared library with each document's status (refreshing while any is in flight)."""
    ctx = ui.context()
    ui.show_flashes()
    items = ui.call(ctx.services.pharmacies.documents_of(user_id, pharmacy.id), default=[])
    active = [d.id for d in items if d.status in docs.ACTIVE]
    if polling and not active:
        st.rerun(scope="app")
    progress = (
        ui.call(ctx.services.documents.job_progress(user_id, active), default={}, quiet=True)
        if active
        else {}
    )
    st.markdown(f"**Shared library** ({len(items)})")
    if not items:
        st.caption(
            "Nothing shared yet." + (" Add the first document above." if pharmacy.can_edit else "")
        )
    for d in items:
        document_row(user_id, d, progress.get(d.id), pharmacy.can_edit, names)
    if active:
        st.caption(f"{len(active)} document(s) in progress; this list refreshes every 2 seconds.")


def members_panel(user_id: str, pharmacy: Pharmacy, members) -> None:
    """Everyone sees who is in the team; owners invite, change roles and remove."""
    with st.expander(f"Members ({len(members)})", icon=":material/group:", expanded=True):
        for m in members:
            left, mid, right = st.columns([4, 3, 2], vertical_alignment="center")
            left.markdown(f"**{m.username}**" + (" (you)" if m.user_id == user_id else ""))
            if pharmacy.is_owner:
                key = f"pharm_role_{m.user_id}"
                st.session_state[key] = m.role  # as stored (another owner may have changed it)
                mid.selectbox(
                    "Role",
                    PHARMACY_ROLES,
                    key=key,
                    label_visibility="collapsed",
                    on_change=_set_role,
                    args=(user_id, pharmacy.id, m.user_id, m.role),
                )
                if m.user_id != user_id:
                    right.button(
                        "Remove",
                        key=f"pharm_remove_{m.user_id}",
                        icon=":material/person_remove:",
                        on_click=_remove,
                        args=(user_id, pharmacy.id, m.user_id, m.username),
                    )
            else:
                mid.caption(m.role)
        if pharmacy.is_owner:
            st.divider()
            a, b, c = st.columns([4, 3, 2], vertical_alignment="bottom")
            a.text_input(
                "Add an account by username", key="pharm_invite_name", placeholder="username"
            )
            b.selectbox("as", PHARMACY_ROLES[::-1], key="pharm_invite_role")
            c.button(
                "Add member",
                key="pharm_invite",
                icon=":material/person_add:",
                on_click=_invite,
                args=(user_id, pharmacy.id),
            )
            st.caption(
                "Readers read the shared library; editors also upload and delete; "
                "owners also manage members."
            )
    with st.popover("Leave this pharmacy", icon=":material/logout:", key="pharm_leavemenu"):
        st.caption("You lose access to its library at once; an owner can add you again.")
        sure = st.checkbox("Yes, leave", key="pharm_leaveok")
        st.button(
            "Leave",
            key="pharm_leave",
            disabled=not sure,
            on_click=_leave,
            args=(user_id, pharmacy.id, pharmacy.name),
        )
    if pharmacy.is_owner:
        with st.popover("Delete this pharmacy", icon=":material/delete:", key="pharm_dropmenu"):
            st.caption("Deletes its shared library for every member, and all memberships.")
            sure = st.checkbox("Yes, delete the pharmacy", key="pharm_dropok")
            st.button(
                "Delete pharmacy",
                key="pharm_drop",
                type="primary",
                disabled=not sure,
                on_click=_delete_pharmacy,
                args=(user_id, pharmacy.id, pharmacy.name),
            )


def pharmacy_tab(user) -> None:
    """The Library page's "Pharmacy" tab."""
    ctx = ui.context()
    mine = ui.call(ctx.services.pharmacies.list_mine(user.id), default=[])
    if not mine:
        st.caption(
            "You are not in a pharmacy yet. Create one below, or ask a pharmacy's owner to add "
            f"you by your username, **{user.username}**."
        )
        create_form(user.id, expanded=True)
        return
    pharmacy = pick(mine)
    st.caption(f"You are {ROLE_WORDS.get(pharmacy.role, pharmacy.role)} of {pharmacy.name}.")
    items = ui.call(
        ctx.services.pharmacies.documents_of(user.id, pharmacy.id), default=[], quiet=True
    )
    if pharmacy.can_edit:
        uploader(user.id, pharmacy, items)
    else:
        st.info(READ_ONLY, icon=":material/visibility:")
    members = ui.call(ctx.services.pharmacies.members(user.id, pharmacy.id), default=[])
    names = {m.user_id: m.username for m in members}
    polling = any(d.status in docs.ACTIVE for d in items)
    st.fragment(shared_list, run_every=2 if polling else None)(user.id, pharmacy, polling, names)
    members_panel(user.id, pharmacy, members)
    create_form(user.id, expanded=False)
