"""The admin dashboard's Pharmacies tab: every pharmacy, then one's members and shared
documents (services/admin.py; the admin reads through the service role, each call
checked to be an admin's)."""

from __future__ import annotations

import streamlit as st

from . import ui
from .dates import file_size, relative_date


def pharmacy_rows(pharmacies) -> list[dict]:
    return [
        {
            "name": p.name,
            "members": p.members,
            "owners": p.owners,
            "documents": p.documents,
            "created by": p.created_by_username or "(deleted account)",
            "created": relative_date(p.created_at),
        }
        for p in pharmacies
    ]


def document_rows(documents, names: dict[str, str]) -> list[dict]:
    return [
        {
            "file": d.filename,
            "status": d.status,
            "passages": d.chunk_count,
            "size": file_size(d.file_size),
            "uploaded by": names.get(d.user_id, d.user_id),
            "added": relative_date(d.added_at),
        }
        for d in documents
    ]


def section(ctx, admin_id: str, names: dict[str, str]) -> None:
    pharmacies = ui.call(ctx.services.admin.pharmacies(admin_id, limit=1000), default=[])
    if not pharmacies:
        st.caption("No pharmacies yet.")
        return
    st.dataframe(
        pharmacy_rows(pharmacies), hide_index=True, width="stretch", key="admin_pharmacies"
    )
    by_id = {p.id: p for p in pharmacies}
    picked = st.selectbox(
        "Pharmacy", list(by_id), format_func=lambda i: by_id[i].name, key="admin_pharmacy_pick"
    )
    members = ui.call(ctx.services.admin.pharmacy_members(admin_id, picked), default=[])
    st.markdown(f"**Members** ({len(members)})")
    st.dataframe(
        [
            {"username": m.username, "role": m.role, "since": relative_date(m.created_at)}
            for m in members
        ],
        hide_index=True,
        width="stretch",
        key="admin_pharmacy_members",
    )
    shared = ui.call(ctx.services.admin.pharmacy_documents(admin_id, picked), default=[])
    st.markdown(f"**Shared documents** ({len(shared)})")
    st.dataframe(
        document_rows(shared, {**names, **{m.user_id: m.username for m in members}}),
        hide_index=True,
        width="stretch",
        key="admin_pharmacy_documents",
    )
