"""Admin: accounts, usage, the ingestion queue, performance, health, pharmacies, the audit log."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st
from pharmgpt.app.components import admin_pharmacies, auth, ui
from pharmgpt.app.components.dates import relative_date
from pharmgpt.services.models import JobStatus

JOB_STATUSES = [s.value for s in JobStatus]


# ---------------------------------------------------------------------- pure helpers
def user_rows(users) -> list[dict]:
    return [
        {
            "username": u.username,
            "admin": u.is_admin,
            "active": u.is_active,
            "locked": f"until {u.locked_until:%H:%M} UTC" if u.locked else "",
            "last sign-in": relative_date(u.last_login) or "never",
            "joined": relative_date(u.created_at),
            "chats": u.conversations,
            "messages": u.messages,
            "documents": u.documents,
            "sessions": u.active_sessions,
        }
        for u in users
    ]


def usage_frame(days) -> pd.DataFrame:
    frame = pd.DataFrame(
        [
            {
                "day": d.day,
                "new users": d.users,
                "conversations": d.conversations,
                "messages": d.messages,
                "documents": d.documents,
            }
            for d in days
        ]
    )
    return frame.set_index("day") if not frame.empty else frame


def metric_rows(snapshot: dict, slow_ms: float) -> list[dict]:
    rows = [
        {
            "operation": op,
            "calls": s.count,
            "p50 ms": round(s.p50_ms, 1),
            "p95 ms": round(s.p95_ms, 1),
            "max ms": round(s.max_ms, 1),
            "errors": s.errors,
            "slow": s.max_ms >= slow_ms,
        }
        for op, s in snapshot.items()
    ]
    return sorted(rows, key=lambda r: r["p95 ms"], reverse=True)


def queue_rows(items) -> list[dict]:
    out = []
    for q in items:
        p = q.progress or {}
        done, total = p.get("chunks_done"), p.get("chunks")
        out.append(
            {
                "document": q.filename or q.document_id,
                "owner": q.username or q.user_id,
                "job": q.status,
                "document status": q.document_status or "deleted",
                "progress": f"{done}/{total} passages" if total else "",
                "attempts": f"{q.attempts}/{q.max_attempts}",
                "queued": relative_date(q.created_at),
                "error": q.last_error or q.processing_error or "",
            }
        )
    return out


def health_checks(settings) -> list[tuple[str, bool, str]]:
    """The checks `pharmgpt doctor` runs, against what this server is configured to use."""
    from pharmgpt.doctor import health_checks as doctor_checks

    return doctor_checks(settings)


# ---------------------------------------------------------------------- actions
def _set_active(actor_id: str, user_id: str, username: str, active: bool) -> None:
    ui.act(
        ui.context().services.admin.set_active(actor_id, user_id, active),
        f"{username} can sign in again."
        if active
        else f"{username} is deactivated and signed out.",
    )


def _unlock(actor_id: str, user_id: str, username: str) -> None:
    ui.act(ui.context().services.admin.unlock(actor_id, user_id), f"{username} is unlocked.")


def _promote(actor_id: str, username: str) -> None:
    ui.act(
        ui.context().services.admin.promote(username, actor_id=actor_id),
        f"{username} is now an admin.",
    )


# ---------------------------------------------------------------------- sections
def _users(ctx, admin_id: str) -> dict[str, str]:
    search = st.text_input("Find a user", key="admin_user_search", icon=":material/search:")
    users = ui.call(ctx.services.admin.list_users(admin_id, search=search or None), default=[])
    if not users:
        st.caption("No users match.")
        return {}
    st.dataframe(user_rows(users), hide_index=True, width="stretch")
    by_id = {u.id: u for u in users}
    picked = st.selectbox(
        "Manage", list(by_id), format_func=lambda i: by_id[i].username, key="admin_pick"
    )
    u = by_id[picked]
    cols = st.columns(3)
    if u.is_active:
        cols[0].button(
            "Deactivate",
            key="admin_deactivate",
            disabled=u.id == admin_id,
            icon=":material/block:",
            on_click=_set_active,
            args=(admin_id, u.id, u.username, False),
            help="Signs them out and stops them signing in.",
        )
    else:
        cols[0].button(
            "Activate",
            key="admin_activate",
            icon=":material/check_circle:",
            on_click=_set_active,
            args=(admin_id, u.id, u.username, True),
        )
    cols[1].button(
        "Unlock",
        key="admin_unlock",
        disabled=not u.locked,
        icon=":material/lock_open:",
        on_click=_unlock,
        args=(admin_id, u.id, u.username),
        help="Clears a lockout after too many failed sign-ins.",
    )
    cols[2].button(
        "Make admin",
        key="admin_promote",
        disabled=u.is_admin,
        icon=":material/shield_person:",
        on_click=_promote,
        args=(admin_id, u.username),
    )
    return {x.id: x.username for x in users}


def _usage(ctx, admin_id: str) -> None:
    days = (
        st.segmented_control(
            "Period",
            [7, 30, 90],
            default=30,
            format_func=lambda d: f"{d} days",
            key="admin_usage_days",
        )
        or 30
    )
    data = ui.call(ctx.services.admin.usage(admin_id, days), default=[])
    if not data:
        return
    frame = usage_frame(data)
    totals = frame.sum()
    cols = st.columns(4)
    for col, name in zip(
        cols, ["new users", "conversations", "messages", "documents"], strict=True
    ):
        col.metric(name.capitalize(), int(totals[name]))
    st.bar_chart(frame[["new users", "conversations", "documents"]], stack=False)
    st.line_chart(frame[["messages"]])


def _queue(ctx, admin_id: str) -> None:
    statuses = st.multiselect(
        "Job status",
        JOB_STATUSES,
        default=[s for s in JOB_STATUSES if s != JobStatus.DONE],
        key="admin_queue_status",
    )
    items = ui.call(
        ctx.services.admin.ingestion_queue(admin_id, statuses=tuple(statuses) or None), default=[]
    )
    if items:
        st.dataframe(queue_rows(items), hide_index=True, width="stretch")
    else:
        st.caption("Nothing in the queue with that status.")


def _performance(ctx) -> None:
    slow_ms = ctx.services.settings.slow_call_ms
    rows = metric_rows(ctx.metrics_snapshot(), slow_ms)
    slow = [r for r in rows if r["slow"]]
    if slow:
        st.warning(
            f"{len(slow)} operation(s) took over {slow_ms:.0f} ms at least once: "
            + ", ".join(f"{r['operation']} (max {r['max ms']:.0f} ms)" for r in slow[:10])
        )
    else:
        st.caption(f"No call has taken over {slow_ms:.0f} ms since this server started.")
    if rows:
        st.dataframe(rows, hide_index=True, width="stretch")
    st.caption(
        "Latency of every service call since this server started (last 2,000 per operation)."
    )


def _health(ctx) -> None:
    if (
        st.button("Check again", key="admin_health_check", icon=":material/monitor_heart:")
        or "admin_health" not in st.session_state
    ):
        with st.spinner("Checking…"):
            st.session_state["admin_health"] = health_checks(ctx.services.settings)
    for name, ok, detail in st.session_state["admin_health"]:
        (st.success if ok else st.error)(f"**{name}**: {detail}", icon="✅" if ok else "❌")


def _audit(ctx, admin_id: str, names: dict[str, str]) -> None:
    action = st.text_input(
        "Action",
        key="admin_audit_action",
        placeholder="e.g. auth.login_failed or admin.*",
        help="Exact action, or a pattern with *.",
    )
    entries = ui.call(
        ctx.services.admin.audit_log(admin_id, action=(action or "").strip() or None, limit=200),
        default=[],
    )
    if not entries:
        st.caption("No entries.")
        return
    st.dataframe(
        [
            {
                "when": e.created_at,
                "action": e.action,
                "user": names.get(e.user_id, e.user_id or ""),
                "by": names.get(e.actor_id, e.actor_id)
                if e.actor_id
                else ("command line" if (e.details or {}).get("via") == "cli" else ""),
                "target": e.target_type or "",
                "details": json.dumps(e.details, ensure_ascii=False) if e.details else "",
                "IP": e.ip_address or "",
            }
            for e in entries
        ],
        hide_index=True,
        width="stretch",
    )


def render() -> None:
    ctx = ui.context()
    user = auth.user()
    st.title("Admin")
    if not user.is_admin:
        st.error("Only administrators can open this page.")
        return
    users_tab, usage_tab, queue_tab, perf_tab, health_tab, pharm_tab, audit_tab = st.tabs(
        ["Users", "Usage", "Ingestion queue", "Performance", "Health", "Pharmacies", "Audit log"]
    )
    with users_tab:
        names = _users(ctx, user.id)
    with usage_tab:
        _usage(ctx, user.id)
    with queue_tab:
        _queue(ctx, user.id)
    with perf_tab:
        _performance(ctx)
    with health_tab:
        _health(ctx)
    with pharm_tab:
        admin_pharmacies.section(ctx, user.id, names)
    with audit_tab:
        _audit(ctx, user.id, names)


if __name__ == "__main__":
    render()
