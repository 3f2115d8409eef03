"""Pharmacy teams: a pharmacy, its members and their roles (issue 15).

Readers read the shared library, editors also upload and delete in it, owners
also manage members and rename or delete the pharmacy. Every call runs as the
acting user (their own client, so Postgres RLS decides; sql/0070-0071), never
as the service role: the checks here only turn an empty answer into the right
message. A pharmacy always keeps an owner (the database refuses the change
that would leave none). Every membership change is written to the audit log,
for the member it concerns, with the acting user as the actor.
"""

from __future__ import annotations

from .audit import AuditService
from .backend import Backend
from .documents import DocumentService
from .errors import Conflict, Forbidden, NotFound, ValidationError
from .ids import parse_id
from .metrics import Metrics, timed
from .models import PHARMACY_ROLES, Document, Pharmacy, PharmacyMember
from .users import normalize_username, username_key

MAX_NAME = 120


def clean_name(name: str) -> str:
    name = " ".join((name or "").split())
    if not name:
        raise ValidationError("Give the pharmacy a name.")
    if len(name) > MAX_NAME:
        raise ValidationError(f"A pharmacy name has at most {MAX_NAME} characters.")
    if any(not ch.isprintable() for ch in name):
        raise ValidationError("A pharmacy name cannot contain control characters.")
    return name


def check_role(role: str) -> str:
    if role not in PHARMACY_ROLES:
        raise ValidationError(f"Unknown role {role!r}: choose one of {', '.join(PHARMACY_ROLES)}.")
    return role


def _last_owner(e: ValidationError) -> bool:
    return str((e.details or {}).get("message") or "").startswith("last owner")


class PharmacyService:
    def __init__(
        self, backend: Backend, metrics: Metrics, audit: AuditService, documents: DocumentService
    ):
        self.backend = backend
        self.metrics = metrics
        self.audit = audit
        self.documents = documents  # deleting a pharmacy drops its documents' chunks and bytes

    async def role(self, user_id: str, pharmacy_id: str) -> str | None:
        """The user's role in the pharmacy, or None when not a member (or no such pharmacy)."""
        return await self.documents.pharmacy_role(user_id, pharmacy_id)

    async def require_role(self, user_id: str, pharmacy_id: str, *allowed: str) -> str:
        """NotFound for a non-member (as for a pharmacy that does not exist), Forbidden for a
        member whose role is not among `allowed`."""
        role = await self.role(user_id, pharmacy_id)
        if role is None:
            raise NotFound("The pharmacy was not found.")
        if role not in allowed:
            needed = "an owner" if allowed == ("owner",) else "an editor or an owner"
            raise Forbidden(f"Only {needed} of this pharmacy can do that (you are a {role}).")
        return role

    # ------------------------------------------------------------------ pharmacies
    @timed("pharmacies.create")
    async def create(self, user_id: str, name: str) -> Pharmacy:
        """A new pharmacy with the user as its owner."""
        name = clean_name(name)
        db = await self.backend.for_user(user_id)
        r = await self.backend.execute(
            db.rpc("create_pharmacy", {"p_name": name}), what="pharmacy", idempotent=False
        )
        p = Pharmacy.from_row(r.data[0], role="owner")
        await self.audit.record(
            "pharmacy.created",
            user_id=user_id,
            target_type="pharmacy",
            target_id=p.id,
            details={"name": p.name},
        )
        return p

    @timed("pharmacies.list_mine")
    async def list_mine(self, user_id: str) -> list[Pharmacy]:
        """The user's pharmacies with their role in each, by name."""
        db = await self.backend.for_user(user_id)
        rows = await self.backend.fetch_rows(
            lambda: (
                db.table("pharmacy_members")
                .select(f"role,pharmacies({Pharmacy.COLUMNS})")
                .eq("user_id", user_id)
                .order("pharmacy_id")
            ),
            limit=1000,
            what="pharmacy list",
        )
        out = [
            Pharmacy.from_row(x["pharmacies"], role=x["role"]) for x in rows if x.get("pharmacies")
        ]
        return sorted(out, key=lambda p: (p.name.casefold(), p.id))

    @timed("pharmacies.get")
    async def get(self, user_id: str, pharmacy_id: str) -> Pharmacy:
        role = await self.require_role(user_id, pharmacy_id, *PHARMACY_ROLES)
        db = await self.backend.for_user(user_id)
        r = await self.backend.execute(
            db.table("pharmacies")
            .select(Pharmacy.COLUMNS)
            .eq("id", parse_id(pharmacy_id, "pharmacy"))
            .limit(1),
            what="pharmacy",
        )
        if not r.data:
            raise NotFound("The pharmacy was not found.")
        return Pharmacy.from_row(r.data[0], role=role)

    @timed("pharmacies.rename")
    async def rename(self, user_id: str, pharmacy_id: str, name: str) -> Pharmacy:
        name = clean_name(name)
        before = await self.get(user_id, pharmacy_id)
        await self.require_role(user_id, before.id, "owner")
        db = await self.backend.for_user(user_id)
        r = await self.backend.execute(
            db.table("pharmacies")
            .update({"name": name})
            .eq("id", before.id)
            .select(Pharmacy.COLUMNS),
            what="pharmacy",
        )
        if not r.data:
            raise Forbidden("Only an owner of this pharmacy can do that.")
        await self.audit.record(
            "pharmacy.renamed",
            user_id=user_id,
            target_type="pharmacy",
            target_id=before.id,
            details={"from": before.name, "to": name},
        )
        return Pharmacy.from_row(r.data[0], role="owner")

    @timed("pharmacies.delete")
    async def delete(self, user_id: str, pharmacy_id: str) -> int:
        """Delete the pharmacy with its memberships and shared documents (their chunks and, when no
        other document uses them, their bytes). Returns how many documents went with it."""
        p = await self.get(user_id, pharmacy_id)
        await self.require_role(user_id, p.id, "owner")
        docs = await self.documents.get_pharmacy_documents(user_id, p.id)
        if self.documents.on_documents_deleted is not None and docs:
            # the chunks live in the pharmacy's library (rag/owner_scope.py)
            await self.documents.on_documents_deleted(
                user_id, [d.id for d in docs], pharmacy_id=p.id
            )
        db = await self.backend.for_user(user_id)
        r = await self.backend.execute(
            db.table("pharmacies").delete().eq("id", p.id).select("id"), what="pharmacy"
        )
        if not r.data:
            raise Forbidden("Only an owner of this pharmacy can do that.")
        await self.documents.release_blobs([d.sha256 for d in docs if d.sha256])
        await self.audit.record(
            "pharmacy.deleted",
            user_id=user_id,
            target_type="pharmacy",
            target_id=p.id,
            details={"name": p.name, "documents": len(docs)},
        )
        return len(docs)

    # ------------------------------------------------------------------ members
    @timed("pharmacies.members")
    async def members(self, user_id: str, pharmacy_id: str) -> list[PharmacyMember]:
        """Owners first, then editors, then readers; NotFound for a non-member."""
        await self.require_role(user_id, pharmacy_id, *PHARMACY_ROLES)
        db = await self.backend.for_user(user_id)
        r = await self.backend.execute(
            db.rpc("pharmacy_member_list", {"p_pharmacy_id": parse_id(pharmacy_id, "pharmacy")}),
            what="member list",
        )
        return [PharmacyMember.from_row(x) for x in r.data]

    @timed("pharmacies.add_member")
    async def add_member(
        self, user_id: str, pharmacy_id: str, username: str, role: str = "reader"
    ) -> PharmacyMember:
        """An owner adds an existing, active account by its username."""
        check_role(role)
        pharmacy_id = parse_id(pharmacy_id, "pharmacy")
        name = normalize_username(username)
        if not name:
            raise ValidationError("Give the username of the account to add.")
        db = await self.backend.for_user(user_id)
        try:
            r = await self.backend.execute(
                db.rpc(
                    "add_pharmacy_member",
                    {
                        "p_pharmacy_id": pharmacy_id,
                        "p_username_key": username_key(name),
                        "p_role": role,
                    },
                ),
                what="member",
                idempotent=False,
            )
        except NotFound as e:
            if "account" in str((e.details or {}).get("message") or ""):
                raise NotFound(f"There is no active account named {name!r}.") from None
            raise NotFound("The pharmacy was not found.") from None
        except Conflict:
            raise Conflict(f"{name} is already a member of this pharmacy.") from None
        except Forbidden:
            raise Forbidden("Only an owner of this pharmacy can add members.") from None
        m = PharmacyMember.from_row(r.data[0])
        await self.audit.record(
            "pharmacy.member_added",
            user_id=m.user_id,
            actor_id=user_id,
            target_type="pharmacy",
            target_id=pharmacy_id,
            details={"member": m.user_id, "username": m.username, "role": m.role},
        )
        return m

    @timed("pharmacies.set_role")
    async def set_role(
        self, user_id: str, pharmacy_id: str, member_id: str, role: str
    ) -> PharmacyMember:
        """An owner changes a member's role (their own included, while another owner remains)."""
        check_role(role)
        pharmacy_id = parse_id(pharmacy_id, "pharmacy")
        member_id = parse_id(member_id, "member")
        await self.require_role(user_id, pharmacy_id, "owner")
        before = {m.user_id: m for m in await self.members(user_id, pharmacy_id)}.get(member_id)
        if before is None:
            raise NotFound("That account is not a member of this pharmacy.")
        if before.role == role:
            return before
        db = await self.backend.for_user(user_id)
        try:
            r = await self.backend.execute(
                db.table("pharmacy_members")
                .update({"role": role})
                .eq("pharmacy_id", pharmacy_id)
                .eq("user_id", member_id)
                .select("pharmacy_id,user_id,role,added_by,created_at"),
                what="member",
            )
        except ValidationError as e:
            if _last_owner(e):
                raise Conflict(
                    f"{before.username} is the last owner: make another member an owner first."
                ) from None
            raise
        if not r.data:
            raise NotFound("That account is not a member of this pharmacy.")
        await self.audit.record(
            "pharmacy.member_role_changed",
            user_id=member_id,
            actor_id=user_id,
            target_type="pharmacy",
            target_id=pharmacy_id,
            details={
                "member": member_id,
                "username": before.username,
                "from": before.role,
                "to": role,
            },
        )
        return PharmacyMember.from_row({**r.data[0], "username": before.username})

    @timed("pharmacies.remove_member")
    async def remove_member(self, user_id: str, pharmacy_id: str, member_id: str) -> None:
        """An owner removes a member; their access ends with this statement."""
        pharmacy_id = parse_id(pharmacy_id, "pharmacy")
        member_id = parse_id(member_id, "member")
        if member_id == user_id:
            return await self.leave(user_id, pharmacy_id)
        await self.require_role(user_id, pharmacy_id, "owner")
        before = {m.user_id: m for m in await self.members(user_id, pharmacy_id)}.get(member_id)
        if before is None:
            raise NotFound("That account is not a member of this pharmacy.")
        await self._delete_membership(user_id, pharmacy_id, before, "pharmacy.member_removed")

    @timed("pharmacies.leave")
    async def leave(self, user_id: str, pharmacy_id: str) -> None:
        """The user leaves the pharmacy (refused for its last owner)."""
        pharmacy_id = parse_id(pharmacy_id, "pharmacy")
        role = await self.require_role(user_id, pharmacy_id, *PHARMACY_ROLES)
        me = PharmacyMember(pharmacy_id, user_id, "", role, None, None)
        await self._delete_membership(user_id, pharmacy_id, me, "pharmacy.left")

    async def _delete_membership(
        self, user_id: str, pharmacy_id: str, member: PharmacyMember, action: str
    ) -> None:
        db = await self.backend.for_user(user_id)
        try:
            r = await self.backend.execute(
                db.table("pharmacy_members")
                .delete()
                .eq("pharmacy_id", pharmacy_id)
                .eq("user_id", member.user_id)
                .select("user_id"),
                what="member",
            )
        except ValidationError as e:
            if _last_owner(e):
                who = "You are" if member.user_id == user_id else f"{member.username} is"
                raise Conflict(
                    f"{who} the last owner of this pharmacy: make another member an owner first, "
                    "or delete the pharmacy."
                ) from None
            raise
        if not r.data:
            raise NotFound("That account is not a member of this pharmacy.")
        details = {"member": member.user_id, "role": member.role}
        if member.username:
            details["username"] = member.username
        await self.audit.record(
            action,
            user_id=member.user_id,
            actor_id=user_id,
            target_type="pharmacy",
            target_id=pharmacy_id,
            details=details,
        )

    # ------------------------------------------------------------------ shared documents
    @timed("pharmacies.documents")
    async def documents_of(self, user_id: str, pharmacy_id: str) -> list[Document]:
        """The pharmacy's shared library, for any member (NotFound for anyone else)."""
        await self.require_role(user_id, pharmacy_id, *PHARMACY_ROLES)
        return await self.documents.get_pharmacy_documents(user_id, pharmacy_id)
