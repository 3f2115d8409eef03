"""Step 1: users.json -> `users` (the legacy sha256+salt hash kept, upgraded at first sign-in).

An account already there with the same legacy id is left as it is; one with the same username
(in any case) and other data is reported and not overwritten, and that legacy user's data is not
migrated either. Two legacy names that differ only in case were renamed by the reader
(migration/legacy/users.py), so both arrive here under distinct names.
"""

from __future__ import annotations

from ..ledger import RunLedger
from ..legacy import LegacyUser, iso


async def migrate_users(run: RunLedger, part: list[LegacyUser]) -> dict[str, str]:
    """Migrate a batch of users; returns legacy id -> users.id of those whose data follows."""
    t, p, c = run.target, run.problems, run.counts
    keys = [u.legacy_id for u in part]
    mine = await run.mine("user", keys)
    found = await t.find_users([u.user_id for u in part], [u.username for u in part])
    by_id = {r["id"]: r for r in found}
    by_name = {r["username"].lower(): r for r in found}
    prior = await run.prior_done("user", keys)
    usable: dict[str, str] = {}
    claims, skips, rows = [], [], []
    fallback = run.fallback_time()
    for u in part:
        key, uid = u.legacy_id, u.user_id
        target = {"user_id": uid}
        if u.renamed_from is not None:
            target["renamed_from"] = u.renamed_from
        m = mine.get(key)
        if m and m["state"] == "done":
            usable[key] = uid
            c["users_written"] += 1
            continue
        row, other = by_id.get(uid), by_name.get(u.username.lower())
        if m and m["state"] == "pending":
            pass  # ours: claimed by this run before it stopped
        elif row is not None and row.get("legacy_user_id") == key:
            usable[key] = uid
            c["users_existing"] += 1
            skips.append(run.item("user", key, target, "skipped", u.checksum(), "exists"))
            continue
        elif row is not None or (other is not None and other["id"] != uid):
            who = other or row
            why = (
                f"username {u.username!r} already exists with other data "
                f"(account {who['id']}, legacy id {who.get('legacy_user_id') or 'none'}); "
                "not overwritten: the user and their data are not migrated"
            )
            p.add("users.json", why, key=key)
            c["users_conflict"] += 1
            skips.append(run.item("user", key, target, "skipped", u.checksum(), why))
            continue
        elif key in prior:
            why = f"migrated by run {prior[key]['run_id']} and deleted since; not recreated"
            p.add("users.json", f"user {u.username!r}: {why}", "warning", key=key)
            c["users_deleted_since"] += 1
            skips.append(run.item("user", key, target, "skipped", u.checksum(), why))
            continue
        elif "users" not in run.only:
            p.add(
                "users.json",
                f"user {u.username!r} is not in the database yet; run with --only users "
                "first: their data is not migrated",
                key=key,
            )
            c["users_missing"] += 1
            continue
        claims.append(run.item("user", key, target, "pending", u.checksum()))
        rows.append(
            {
                "id": uid,
                "username": u.username,
                "password_hash": u.password_hash,
                "password_scheme": "legacy_sha256",
                "password_salt": u.salt,
                "legacy_user_id": key,
                "created_at": iso(u.created_at or fallback),
                "last_login": iso(u.last_seen),
            }
        )
        usable[key] = uid
    await run.put(claims + skips)
    failed = await run.insert_rows("users", rows, claims)
    for key in failed:
        usable.pop(key, None)
    done = await run.mark_done(claims, failed)
    c["users_written"] += len(done)
    run.progress.advance("users", len(part))
    return usable
