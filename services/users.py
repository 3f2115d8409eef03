"""Accounts: sign-up, sign-in with lockout, profile, password change, deletion.

Runs with the service-role client: it reads password hashes, which no user
token may see. Lockout counters live in the database so they hold across
processes and restarts.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import unicodedata
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from .audit import AuditService
from .backend import Backend
from .cache import TTLCache
from .config import Settings
from .conversations import ChunkDropHook
from .errors import AuthError, Conflict, NotFound, ValidationError
from .metrics import Metrics, timed
from .models import User, ts
from .password_policy import fold, password_problem
from .passwords import BCRYPT, LEGACY, hash_password, needs_rehash, verify_password
from .ports import DocumentIndexer

log = logging.getLogger(__name__)

# Scripts that may share a name: the CJK family with itself and with Latin (no look-alikes there).
_CJK = {"CJK", "HIRAGANA", "KATAKANA", "HANGUL", "BOPOMOFO"}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PROFILE_FIELDS = {"email"}


def normalize_username(username: str) -> str:
    return unicodedata.normalize("NFKC", username or "").strip()


def username_key(username: str) -> str:
    """What makes two names the same account: NFKC and Unicode case folding, in any script
    (Postgres' lower() under the C locale folds ASCII only). Stored in users.username_key."""
    return fold(normalize_username(username))


def scripts(text: str) -> set[str]:
    """The writing systems of the letters in `text` ("LATIN", "CYRILLIC", "GREEK", "CJK", ...)."""
    out = set()
    for ch in text:
        if not unicodedata.category(ch).startswith("L"):
            continue
        script = unicodedata.name(ch, "UNKNOWN").split(" ")[0]
        out.add("CJK" if script in _CJK else script)
    return out


def bad_credentials(settings: Settings) -> str:
    """The one answer to a wrong password, an unknown user and a locked account alike,
    so no reply tells which usernames exist or which are locked."""
    minutes = max(1, settings.lockout_s // 60)
    return (
        f"Wrong username or password. After {settings.max_failed_logins} failed attempts "
        f"an account is locked for {minutes} minute{'s' if minutes != 1 else ''}."
    )


class UserService:
    def __init__(
        self,
        backend: Backend,
        settings: Settings,
        cache: TTLCache,
        metrics: Metrics,
        audit: AuditService,
        sessions=None,
    ):
        self.backend = backend
        self.settings = settings
        self.cache = cache
        self.metrics = metrics
        self.audit = audit
        self.sessions = (
            sessions  # SessionService, set by the container (revokes on password change)
        )
        self._dummy_hash: str | None = None
        self.on_documents_deleted: ChunkDropHook | None = None  # the indexer's discard
        self.release_blobs: Callable[[list[str]], Awaitable[None]] | None = None

    def use_indexer(self, indexer: DocumentIndexer) -> None:
        """Deleting an account drops the chunks of the documents that went with it."""
        self.on_documents_deleted = indexer.discard

    # ------------------------------------------------------------------ validation
    def validate_username(self, username: str) -> str:
        name = normalize_username(username)
        if not 3 <= len(name) <= 64:
            raise ValidationError("Usernames are 3 to 64 characters long.")
        if any(unicodedata.category(ch).startswith("C") for ch in name):
            raise ValidationError("Usernames cannot contain control characters.")
        found = scripts(name)
        if len(found) > 1 and not found <= {"LATIN", "CJK"}:
            raise ValidationError(
                "Usernames cannot mix letters from different alphabets "
                f"({', '.join(sorted(s.title() for s in found))}): such names can "
                "look identical to someone else's."
            )
        return name

    def validate_password(self, password: str, username: str | None = None) -> None:
        problem = password_problem(
            password, min_length=self.settings.min_password_length, username=username
        )
        if problem:
            raise ValidationError(problem)

    @property
    def bad_credentials(self) -> str:
        return bad_credentials(self.settings)

    def _name_hash(self, name: str) -> str:
        """A keyed hash of a typed name that matched no account: repeated attempts can be told
        apart in the audit log, a password typed into the username box cannot be read there."""
        key = self.settings.server_secret
        return hmac.new(key, username_key(name).encode("utf-8"), hashlib.sha256).hexdigest()[:16]

    @staticmethod
    def validate_email(email: str | None) -> str | None:
        if email is None or email.strip() == "":
            return None
        email = email.strip()
        if len(email) > 254 or not _EMAIL.match(email):
            raise ValidationError("That email address does not look valid.")
        return email

    async def _hash(self, password: str) -> str:
        return await asyncio.to_thread(hash_password, password, self.settings.bcrypt_rounds)

    # ------------------------------------------------------------------ accounts
    @timed("users.create")
    async def create_user(
        self, username: str, password: str, email: str | None = None, is_admin: bool = False
    ) -> User:
        name = self.validate_username(username)
        self.validate_password(password, name)
        email = self.validate_email(email)
        row = {
            "username": name,
            "username_key": username_key(name),
            "password_hash": await self._hash(password),
            "password_scheme": BCRYPT,
            "email": email,
            "is_admin": is_admin,
        }
        try:
            r = await self.backend.execute(
                self.backend.service.table("users").insert(row).select(User.COLUMNS),
                what="account",
                idempotent=False,
            )
        except Conflict:
            raise Conflict("That username is taken.") from None
        user = User.from_row(r.data[0])
        await self.audit.record(
            "user.created", user_id=user.id, target_type="user", target_id=user.id
        )
        return user

    async def _dummy_verify(self, password: str) -> None:
        """Spend the time a real check would, so unknown users can't be told apart."""
        if self._dummy_hash is None:
            self._dummy_hash = await self._hash("not-a-real-password")
        await asyncio.to_thread(verify_password, password, self._dummy_hash)

    async def _reserve(self, name: str) -> tuple[bool, dict | None]:
        """Count this attempt before any password is checked (one statement in the database):
        (True, account) to go on, (False, account) while it is locked, (False, None) for no
        account."""
        if not 1 <= len(name) <= 128:
            return False, None
        r = await self.backend.execute(
            self.backend.service.rpc(
                "reserve_login_attempt",
                {
                    "p_username_key": username_key(name),
                    "p_max_attempts": self.settings.max_failed_logins,
                    "p_window": f"{self.settings.failure_window_s} seconds",
                    "p_lock": f"{self.settings.lockout_s} seconds",
                },
            ),
            what="account",
            idempotent=False,
        )
        if not r.data:
            return False, None
        return bool(r.data[0]["allowed"]), r.data[0]["account"]

    @timed("users.authenticate")
    async def authenticate_user(self, username: str, password: str, ip: str | None = None) -> User:
        """Check a password, at most `max_failed_logins` times per lockout window however many
        attempts run at once: the attempt is reserved (and counted) before bcrypt runs."""
        name = normalize_username(username)
        allowed, row = await self._reserve(name)
        if row is None:
            await self._dummy_verify(password or "")
            await self.audit.record(
                "auth.login_failed",
                ip=ip,
                details={"username_hash": self._name_hash(name), "reason": "unknown"},
            )
            raise AuthError(self.bad_credentials)
        now = datetime.now(UTC)
        if not allowed:
            await self._dummy_verify(password or "")
            await self.audit.record("auth.login_locked", user_id=row["id"], ip=ip)
            raise AuthError(self.bad_credentials, details={"locked_until": row.get("locked_until")})
        # after the reservation, so guesses through an old name count against the lockout too
        await self._refuse_renamed_legacy_name(name, row, password or "", ip)
        ok = await asyncio.to_thread(
            verify_password,
            password or "",
            row["password_hash"],
            row["password_scheme"],
            row.get("password_salt"),
        )
        if not ok or not row.get("is_active", True):
            await self.audit.record(
                "auth.login_failed",
                user_id=row["id"],
                ip=ip,
                details={"reason": "password" if ok is False else "inactive"},
            )
            if (
                row.get("locked_until") and ts(row["locked_until"]) > now
            ):  # this attempt was the last allowed
                await self.audit.record("auth.lockout", user_id=row["id"], ip=ip)
            raise AuthError(self.bad_credentials)
        await self.backend.execute(
            self.backend.service.rpc("record_login_success", {"p_user_id": row["id"]}),
            what="account",
        )
        if needs_rehash(row["password_hash"], row["password_scheme"], self.settings.bcrypt_rounds):
            await self._store_password(
                row["id"], password
            )  # legacy sha256 -> bcrypt at first login
            if row["password_scheme"] == LEGACY:
                await self.audit.record("auth.password_upgraded", user_id=row["id"])
        await self.audit.record("auth.login", user_id=row["id"], ip=ip)
        user = User.from_row({**row, "last_login": now.isoformat()})
        self.cache.set(("user", user.id), user)
        return user

    async def _refuse_renamed_legacy_name(
        self, name: str, row: dict | None, password: str, ip: str | None
    ) -> None:
        """Two legacy accounts whose names differed only in case (`Alice`, `alice`) were migrated
        as `Alice` and `alice-2` (migration/legacy/users.py). When `alice` signs in with her old
        name and her own password, say which name to use instead of counting a failure against
        `Alice` (five of those would lock Alice out). Only the exact old name matches: its md5 is
        the renamed account's legacy id."""
        if row is not None and row["username"] == name:
            return  # the exact name of an account: the usual path
        legacy_id = hashlib.md5(name.encode("utf-8")).hexdigest()
        if row is not None and row.get("legacy_user_id") == legacy_id:
            return
        r = await self.backend.execute(
            self.backend.service.table("users")
            .select("*")
            .eq("legacy_user_id", legacy_id)
            .limit(1),
            what="account",
        )
        other = r.data[0] if r.data else None
        if (
            other is None
            or other["username"].lower() == name.lower()
            or not other.get("is_active", True)
        ):
            return
        ok = await asyncio.to_thread(
            verify_password,
            password,
            other["password_hash"],
            other["password_scheme"],
            other.get("password_salt"),
        )
        if ok:
            if row is not None and row.get(
                "failed_logins"
            ):  # her own password: give the attempt back
                await self.backend.execute(
                    self.backend.service.table("users")
                    .update(
                        {
                            "failed_logins": max(0, int(row["failed_logins"]) - 1),
                            "locked_until": None,
                        },
                        returning="minimal",
                    )
                    .eq("id", row["id"])
                    .eq("failed_logins", row["failed_logins"]),
                    what="account",
                )
            await self.audit.record("auth.login_renamed_account", user_id=other["id"], ip=ip)
            raise AuthError(
                f"This account was renamed to “{other['username']}” when it moved to the "
                "new PharmGPT. Sign in with that name and the same password.",
                details={"username": other["username"]},
            )

    async def _store_password(self, user_id: str, password: str) -> None:
        await self.backend.execute(
            self.backend.service.table("users")
            .update(
                {
                    "password_hash": await self._hash(password),
                    "password_scheme": BCRYPT,
                    "password_salt": None,
                },
                returning="minimal",
            )
            .eq("id", user_id),
            what="account",
        )

    @timed("users.get")
    async def get_user_by_id(self, user_id: str) -> User | None:
        cached = self.cache.get(("user", user_id))
        if not self.cache.missing(cached):
            return cached
        r = await self.backend.execute(
            self.backend.service.table("users").select(User.COLUMNS).eq("id", user_id).limit(1),
            what="account",
        )
        user = User.from_row(r.data[0]) if r.data else None
        if user is not None:
            self.cache.set(("user", user_id), user)
        return user

    @timed("users.update_profile")
    async def update_user_profile(self, user_id: str, data: dict) -> User:
        unknown = set(data) - _PROFILE_FIELDS
        if unknown:
            raise ValidationError(
                "Only these profile fields can be changed: " + ", ".join(sorted(_PROFILE_FIELDS))
            )
        patch = {}
        if "email" in data:
            patch["email"] = self.validate_email(data["email"])
        r = await self.backend.execute(
            self.backend.service.table("users")
            .update(patch)
            .eq("id", user_id)
            .select(User.COLUMNS),
            what="account",
        )
        if not r.data:
            raise NotFound("The account was not found.")
        self.cache.invalidate("user", user_id)
        user = User.from_row(r.data[0])
        await self.audit.record(
            "user.profile_updated", user_id=user_id, details={"fields": sorted(patch)}
        )
        return user

    @timed("users.change_password")
    async def change_password(
        self, user_id: str, old: str, new: str, *, keep_session: str | None = None
    ) -> None:
        r = await self.backend.execute(
            self.backend.service.table("users")
            .select("id,username,password_hash,password_scheme,password_salt")
            .eq("id", user_id)
            .limit(1),
            what="account",
        )
        if not r.data:
            raise NotFound("The account was not found.")
        row = r.data[0]
        ok = await asyncio.to_thread(
            verify_password,
            old or "",
            row["password_hash"],
            row["password_scheme"],
            row.get("password_salt"),
        )
        if not ok:
            raise AuthError("The current password is not right.")
        self.validate_password(new, row.get("username"))
        await self._store_password(user_id, new)
        revoked = (
            await self.sessions.logout_all(user_id, except_token=keep_session)
            if self.sessions
            else 0
        )
        await self.audit.record(
            "auth.password_changed", user_id=user_id, details={"sessions_revoked": revoked}
        )

    @timed("users.delete")
    async def delete_user(self, user_id: str, *, actor_id: str | None = None) -> None:
        """Delete the account. Its pharmacies stay whole (sql/0072, before the row goes): its
        shared uploads pass to the pharmacy's earliest owner, a last owner's place to the
        longest-standing member (editors first), and a pharmacy left with no member is deleted.
        The teams are read before and after, and each change is audited like any other.

        The documents that went with the rows (the user's private library and conversations, and
        every pharmacy deleted with the account) then lose their chunks, and their stored bytes
        are released when no remaining document uses them. That clean-up runs after the rows are
        gone and never undoes the deletion: a failure is logged, and `pharmgpt reconcile` removes
        what was left (it drops chunks whose document row is gone)."""
        svc = self.backend.service
        private = await self.backend.fetch_rows(
            lambda: (
                svc.table("documents")
                .select("id,sha256")
                .eq("user_id", user_id)
                .is_("pharmacy_id", "null")
                .order("id")
            ),
            what="documents",
        )
        memberships = await self.backend.execute(
            svc.table("pharmacy_members").select("pharmacy_id,role").eq("user_id", user_id),
            what="memberships",
        )
        shared = await self.backend.execute(
            svc.table("documents")
            .select("id,pharmacy_id,filename")
            .eq("user_id", user_id)
            .not_.is_("pharmacy_id", "null"),
            what="documents",
        )
        teams = sorted(
            {m["pharmacy_id"] for m in memberships.data} | {d["pharmacy_id"] for d in shared.data}
        )
        before = await self._team_state(teams)
        r = await self.backend.execute(
            svc.table("users").delete().eq("id", user_id).select("id"),
            what="account",
        )
        if not r.data:
            raise NotFound("The account was not found.")
        self.cache.invalidate("user", user_id)
        for kind in ("convs", "conv", "docs"):
            self.cache.invalidate(kind, user_id)
        self.backend.forget_user(user_id)
        await self.audit.record(
            "user.deleted",
            user_id=user_id,
            actor_id=actor_id,
            target_type="user",
            target_id=user_id,
        )
        after = await self._team_state(teams)
        why = {"member": user_id, "reason": "account deleted"}
        for m in memberships.data:
            await self.audit.record(
                "pharmacy.member_removed",
                user_id=user_id,
                actor_id=actor_id,
                target_type="pharmacy",
                target_id=m["pharmacy_id"],
                details={**why, "role": m["role"]},
            )
        await self._audit_team_changes(user_id, actor_id, before, after, shared.data)
        await self._discard_documents(user_id, private, before, after)

    async def _discard_documents(
        self, user_id: str, private: list[dict], before: dict, after: dict
    ) -> None:
        """Drop the chunks of the documents deleted with the account and release their bytes:
        its private ones (the user's scope) and those of each pharmacy deleted with it (that
        pharmacy's scope). Logged, never raised: the account is gone whatever happens here."""
        by_pharmacy: dict[str, list[dict]] = {}
        for d in before["docs"]:
            if d["pharmacy_id"] not in after["names"]:
                by_pharmacy.setdefault(d["pharmacy_id"], []).append(d)
        drops: list[tuple[list[dict], dict]] = [(private, {})]
        drops += [(docs, {"pharmacy_id": ph}) for ph, docs in sorted(by_pharmacy.items())]
        for docs, where in drops:
            if not docs or self.on_documents_deleted is None:
                continue
            try:
                await self.on_documents_deleted(user_id, [d["id"] for d in docs], **where)
            except Exception as e:  # the rows are gone: reconcile drops orphaned chunks
                log.warning(
                    "account %s deleted; its documents' chunks%s stay until `pharmgpt reconcile`: "
                    "%s",
                    user_id,
                    f" in pharmacy {where['pharmacy_id']}" if where else "",
                    e,
                )
        shas = [d["sha256"] for docs, _ in drops for d in docs if d.get("sha256")]
        if shas and self.release_blobs is not None:
            try:
                await self.release_blobs(shas)
            except Exception as e:
                log.warning(
                    "account %s deleted; its documents' bytes were not released: %s", user_id, e
                )

    async def _team_state(self, pharmacy_ids: list[str]) -> dict:
        """Names, member roles and documents (with owners) of these pharmacies, as the database
        has them."""
        if not pharmacy_ids:
            return {"names": {}, "roles": {}, "owners": {}, "docs": []}
        svc = self.backend.service
        names = await self.backend.execute(
            svc.table("pharmacies").select("id,name").in_("id", pharmacy_ids), what="pharmacy"
        )
        members = await self.backend.execute(
            svc.table("pharmacy_members")
            .select("pharmacy_id,user_id,role")
            .in_("pharmacy_id", pharmacy_ids),
            what="memberships",
        )
        docs = await self.backend.execute(
            svc.table("documents")
            .select("id,user_id,pharmacy_id,sha256")
            .in_("pharmacy_id", pharmacy_ids),
            what="documents",
        )
        return {
            "names": {p["id"]: p["name"] for p in names.data},
            "roles": {(m["pharmacy_id"], m["user_id"]): m["role"] for m in members.data},
            "owners": {d["id"]: d["user_id"] for d in docs.data},
            "docs": docs.data,
        }

    async def _audit_team_changes(
        self, user_id: str, actor_id: str | None, before: dict, after: dict, shared: list[dict]
    ) -> None:
        """Audit what deleting `user_id` did to its pharmacies (sql/0072)."""
        reason = "account deleted"
        by = actor_id or user_id  # who deleted the account made these changes
        for ph, name in before["names"].items():
            if ph in after["names"]:
                continue
            docs = sum(1 for d in shared if d["pharmacy_id"] == ph)
            await self.audit.record(
                "pharmacy.deleted",
                user_id=user_id,
                actor_id=actor_id,
                target_type="pharmacy",
                target_id=ph,
                details={"name": name, "documents": docs, "reason": "no member left"},
            )
        promoted = [
            (ph, member, role)
            for (ph, member), role in before["roles"].items()
            if member != user_id and role != "owner" and after["roles"].get((ph, member)) == "owner"
        ]
        names = await self._usernames([m for _, m, _ in promoted])
        for ph, member, role in promoted:
            await self.audit.record(
                "pharmacy.member_role_changed",
                user_id=member,
                actor_id=by,
                target_type="pharmacy",
                target_id=ph,
                details={
                    "member": member,
                    "username": names.get(member),
                    "from": role,
                    "to": "owner",
                    "reason": "the last owner's account was deleted",
                },
            )
        for d in shared:
            heir = after["owners"].get(d["id"])
            base = {"pharmacy_id": d["pharmacy_id"], "filename": d["filename"]}
            if heir is None:
                await self.audit.record(
                    "pharmacy.document_deleted",
                    user_id=user_id,
                    actor_id=actor_id,
                    target_type="document",
                    target_id=d["id"],
                    details={**base, "uploader": user_id, "reason": reason},
                )
            else:
                await self.audit.record(
                    "pharmacy.document_handed_over",
                    user_id=heir,
                    actor_id=by,
                    target_type="document",
                    target_id=d["id"],
                    details={**base, "from": user_id, "to": heir, "reason": reason},
                )

    async def _usernames(self, user_ids: list[str]) -> dict[str, str]:
        if not user_ids:
            return {}
        r = await self.backend.execute(
            self.backend.service.table("users").select("id,username").in_("id", user_ids),
            what="account",
        )
        return {u["id"]: u["username"] for u in r.data}
