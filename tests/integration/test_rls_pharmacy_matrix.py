"""RLS for pharmacy teams (issue 15), proven by attack as for the private tables:
every new table and the shared documents and their jobs, for every role (owner,
editor, reader, non-member, removed member) and every operation, through each
one's own token; then attempts to cross from one pharmacy into another."""

from __future__ import annotations

import uuid

import pytest
from postgrest.exceptions import APIError

from tests.conftest import prove_upload

pytestmark = [pytest.mark.integration, pytest.mark.stacks("localbase", "supabase_shape")]

ACTORS = ("owner", "editor", "reader", "nonmember", "removed")
MEMBERS = {"owner", "editor", "reader"}


async def upload(user, service, pharmacy_id: str, name: str = "shared.pdf") -> dict:
    """A document registered into a pharmacy the way the service does it (proof, then the RPC)."""
    sha = uuid.uuid4().hex * 2
    proof = await prove_upload(service, user.id, sha)
    r = await user.client.rpc(
        "register_pharmacy_document",
        {
            "p_id": str(uuid.uuid4()),
            "p_pharmacy_id": pharmacy_id,
            "p_upload_id": proof,
            "p_filename": name,
            "p_file_type": "application/pdf",
        },
    ).execute()
    return r.data[0]["document"]


async def join(owner, pharmacy_id: str, user, role: str) -> None:
    await (
        owner.client.table("pharmacy_members")
        .insert(
            {"pharmacy_id": pharmacy_id, "user_id": user.id, "role": role, "added_by": owner.id}
        )
        .execute()
    )


@pytest.fixture
async def world(make_user, service):
    """Pharmacy P (owner, editor, reader, victim: a reader nobody acts as) whose editor uploaded a
    document; a removed member who uploaded one before being removed; a non-member who owns
    pharmacy Q with a document of its own."""
    people = {a: await make_user(a[:3]) for a in ACTORS}
    victim, fresh = await make_user("vic"), await make_user("new")
    owner, nonmember = people["owner"], people["nonmember"]
    p = (await owner.client.rpc("create_pharmacy", {"p_name": "P"}).execute()).data[0]
    await join(owner, p["id"], people["editor"], "editor")
    r = await owner.client.rpc(
        "add_pharmacy_member",
        {"p_pharmacy_id": p["id"], "p_username_key": people["reader"].username, "p_role": "reader"},
    ).execute()
    assert r.data[0]["user_id"] == people["reader"].id
    await join(owner, p["id"], victim, "reader")
    await join(owner, p["id"], people["removed"], "editor")
    doc = await upload(people["editor"], service, p["id"])
    removed_doc = await upload(people["removed"], service, p["id"], "theirs.pdf")
    await (
        owner.client.table("pharmacy_members")
        .delete()
        .eq("pharmacy_id", p["id"])
        .eq("user_id", people["removed"].id)
        .execute()
    )
    # the first jobs are done, so the uploader may queue again
    await (
        service.table("ingest_jobs")
        .update({"status": "done"})
        .in_("document_id", [doc["id"], removed_doc["id"]])
        .execute()
    )
    job = (
        await service.table("ingest_jobs").select("*").eq("document_id", doc["id"]).execute()
    ).data[0]
    q = (await nonmember.client.rpc("create_pharmacy", {"p_name": "Q"}).execute()).data[0]
    q_doc = await upload(nonmember, service, q["id"], "q.pdf")
    return {
        "people": people,
        "victim": victim,
        "fresh": fresh,
        "p": p,
        "doc": doc,
        "removed_doc": removed_doc,
        "job": job,
        "q": q,
        "q_doc": q_doc,
    }


async def outcome(query) -> list | None:
    """The rows an attempt returned, or None when Postgres refused it outright (42501)."""
    try:
        return (await query.execute()).data
    except APIError as e:
        assert e.code == "42501", (e.code, e.message)
        return None


# ---------------------------------------------------------------- the matrix
async def _select(w, who, table):
    c, p = who.client, w["p"]["id"]
    q = {
        "pharmacies": c.table("pharmacies").select("*").eq("id", p),
        "pharmacy_members": c.table("pharmacy_members").select("*").eq("pharmacy_id", p),
        "documents": c.table("documents").select("*").eq("pharmacy_id", p),
        "ingest_jobs": c.table("ingest_jobs")
        .select("*")
        .in_("document_id", [w["doc"]["id"], w["removed_doc"]["id"]]),
    }[table]
    return await outcome(q)


async def test_select_pharmacy_rows(world, service):
    w = world
    for actor, who in w["people"].items():
        for table, n in (
            ("pharmacies", 1),
            ("pharmacy_members", 4),
            ("documents", 2),
            ("ingest_jobs", 2),
        ):
            rows = await _select(w, who, table)
            if actor in MEMBERS:
                assert rows is not None and len(rows) == n, (actor, table, rows)
            else:  # a removed member sees nothing, not even what they uploaded themselves
                assert not rows, (actor, table, rows)


@pytest.mark.parametrize("actor", ACTORS)
async def test_insert(world, service, actor):
    w = world
    who, p = w["people"][actor], w["p"]["id"]
    # pharmacies: only create_pharmacy makes one (it adds the first owner)
    assert await outcome(who.client.table("pharmacies").insert({"name": "direct"})) is None
    # pharmacy_members: owners only, and nobody adds themselves
    add = await outcome(
        who.client.table("pharmacy_members").insert(
            {"pharmacy_id": p, "user_id": w["fresh"].id, "role": "reader", "added_by": who.id}
        )
    )
    assert (add is not None) == (actor == "owner"), (actor, add)
    if actor != "owner":
        assert (
            await outcome(
                who.client.table("pharmacy_members").insert(
                    {"pharmacy_id": p, "user_id": who.id, "role": "owner", "added_by": who.id}
                )
            )
            is None
        )
    # documents: editors and owners, as themselves, with bytes they uploaded
    sha = uuid.uuid4().hex * 2
    await prove_upload(service, who.id, sha)
    doc = await outcome(
        who.client.table("documents").insert(
            {
                "pharmacy_id": p,
                "sha256": sha,
                "filename": "direct.pdf",
                "file_type": "application/pdf",
            }
        )
    )
    assert (doc is not None) == (actor in ("owner", "editor")), (actor, doc)
    # ingest_jobs: only the uploader queues, for a document they can still see
    job = await outcome(who.client.table("ingest_jobs").insert({"document_id": w["doc"]["id"]}))
    assert (job is not None) == (actor == "editor"), (actor, job)
    if actor == "removed":
        assert (
            await outcome(
                who.client.table("ingest_jobs").insert({"document_id": w["removed_doc"]["id"]})
            )
            is None
        )
    members = (
        await service.table("pharmacy_members").select("user_id").eq("pharmacy_id", p).execute()
    ).data
    assert (w["fresh"].id in {m["user_id"] for m in members}) == (actor == "owner")
    assert who.id not in {m["user_id"] for m in members} or actor in MEMBERS


@pytest.mark.parametrize("actor", ACTORS)
async def test_update(world, service, actor):
    w = world
    who, p = w["people"][actor], w["p"]["id"]
    renamed = await outcome(
        who.client.table("pharmacies").update({"name": f"by {actor}"}).eq("id", p)
    )
    role = await outcome(
        who.client.table("pharmacy_members")
        .update({"role": "editor"})
        .eq("pharmacy_id", p)
        .eq("user_id", w["victim"].id)
    )
    doc = await outcome(
        who.client.table("documents")
        .update({"filename": f"by {actor}.pdf"})
        .eq("id", w["doc"]["id"])
    )
    job = await outcome(
        who.client.table("ingest_jobs").update({"status": "failed"}).eq("id", w["job"]["id"])
    )
    assert bool(renamed) == (actor == "owner")
    assert bool(role) == (actor == "owner")
    assert bool(doc) == (actor in ("owner", "editor"))
    assert job is None  # the worker's (service role) alone
    svc = service
    name = (await svc.table("pharmacies").select("name").eq("id", p).execute()).data[0]["name"]
    vrole = (
        await svc.table("pharmacy_members")
        .select("role")
        .eq("pharmacy_id", p)
        .eq("user_id", w["victim"].id)
        .execute()
    ).data[0]["role"]
    fname = (
        await svc.table("documents").select("filename").eq("id", w["doc"]["id"]).execute()
    ).data[0]["filename"]
    status = (
        await svc.table("ingest_jobs").select("status").eq("id", w["job"]["id"]).execute()
    ).data[0]["status"]
    assert (name == f"by {actor}") == (actor == "owner")
    assert (vrole == "editor") == (actor == "owner")
    assert (fname == f"by {actor}.pdf") == (actor in ("owner", "editor"))
    assert status == "done"
    # a scope is fixed at upload: no member moves a document to another pharmacy, or out of one
    for patch in ({"pharmacy_id": w["q"]["id"]}, {"pharmacy_id": None}, {"user_id": who.id}):
        assert (
            await outcome(who.client.table("documents").update(patch).eq("id", w["doc"]["id"]))
            is None
        )


@pytest.mark.parametrize("actor", ACTORS)
async def test_delete(world, service, actor):
    w = world
    who, p = w["people"][actor], w["p"]["id"]
    svc = service
    job = await outcome(who.client.table("ingest_jobs").delete().eq("id", w["job"]["id"]))
    assert job is None
    victim = await outcome(
        who.client.table("pharmacy_members")
        .delete()
        .eq("pharmacy_id", p)
        .eq("user_id", w["victim"].id)
        .select("user_id")
    )
    assert bool(victim) == (actor == "owner"), (actor, victim)
    doc = await outcome(
        who.client.table("documents").delete().eq("id", w["doc"]["id"]).select("id")
    )
    assert bool(doc) == (actor in ("owner", "editor")), (actor, doc)
    gone = await outcome(who.client.table("pharmacies").delete().eq("id", p).select("id"))
    assert bool(gone) == (actor == "owner"), (actor, gone)
    left = {
        t: (await svc.table(t).select("*").eq(k, v).execute()).data
        for t, k, v in (
            ("pharmacies", "id", p),
            ("documents", "id", w["doc"]["id"]),
            ("pharmacy_members", "user_id", w["victim"].id),
        )
    }
    assert bool(left["pharmacies"]) == (actor != "owner")
    assert bool(left["documents"]) == (actor not in ("owner", "editor"))
    assert bool(left["pharmacy_members"]) == (actor != "owner")


# ---------------------------------------------------------------- crossing and special cases
async def test_members_of_one_pharmacy_cannot_reach_another(world, service):
    w = world
    q, q_doc = w["q"]["id"], w["q_doc"]
    for actor in MEMBERS:
        who = w["people"][actor]
        c = who.client
        assert await outcome(c.table("pharmacies").select("*").eq("id", q)) == []
        assert await outcome(c.table("documents").select("*").eq("id", q_doc["id"])) == []
        assert await outcome(c.table("pharmacy_members").select("*").eq("pharmacy_id", q)) == []
        assert (await c.rpc("pharmacy_member_list", {"p_pharmacy_id": q}).execute()).data == []
        sha = uuid.uuid4().hex * 2
        proof = await prove_upload(service, who.id, sha)
        assert (
            await outcome(
                c.table("documents").insert(
                    {"pharmacy_id": q, "sha256": sha, "filename": "x.pdf", "file_type": "x"}
                )
            )
            is None
        )
        with pytest.raises(APIError) as e:
            await c.rpc(
                "register_pharmacy_document",
                {
                    "p_id": str(uuid.uuid4()),
                    "p_pharmacy_id": q,
                    "p_upload_id": proof,
                    "p_filename": "x.pdf",
                    "p_file_type": "x",
                },
            ).execute()
        assert e.value.code == "P0002"
        with pytest.raises(APIError) as e:  # an owner elsewhere is nobody here
            await c.rpc(
                "add_pharmacy_member",
                {"p_pharmacy_id": q, "p_username_key": who.username, "p_role": "owner"},
            ).execute()
        assert e.value.code == "P0002"
        assert (
            await outcome(
                c.table("pharmacy_members").insert(
                    {"pharmacy_id": q, "user_id": who.id, "role": "owner", "added_by": who.id}
                )
            )
            is None
        )
        assert not await outcome(
            c.table("pharmacy_members").delete().eq("pharmacy_id", q).select("user_id")
        )
        assert not await outcome(c.table("documents").delete().eq("id", q_doc["id"]).select("id"))
        assert not await outcome(c.table("pharmacies").update({"name": "x"}).eq("id", q))
    still = (
        await service.table("pharmacy_members")
        .select("user_id,role")
        .eq("pharmacy_id", q)
        .execute()
    ).data
    assert still == [{"user_id": w["people"]["nonmember"].id, "role": "owner"}]
    assert (await service.table("documents").select("id").eq("id", q_doc["id"]).execute()).data


async def test_rpcs_check_the_caller(world, service):
    w = world
    p = w["p"]["id"]
    for actor in ("editor", "reader"):
        with pytest.raises(APIError) as e:
            await (
                w["people"][actor]
                .client.rpc(
                    "add_pharmacy_member",
                    {"p_pharmacy_id": p, "p_username_key": w["fresh"].username, "p_role": "reader"},
                )
                .execute()
            )
        assert e.value.code == "42501"
    for actor in ("nonmember", "removed"):
        c = w["people"][actor].client
        assert (await c.rpc("pharmacy_member_list", {"p_pharmacy_id": p}).execute()).data == []
        with pytest.raises(APIError) as e:
            await c.rpc(
                "add_pharmacy_member",
                {"p_pharmacy_id": p, "p_username_key": w["fresh"].username, "p_role": "reader"},
            ).execute()
        assert e.value.code == "P0002"
    sha = uuid.uuid4().hex * 2
    proof = await prove_upload(service, w["people"]["reader"].id, sha)
    with pytest.raises(APIError) as e:
        await (
            w["people"]["reader"]
            .client.rpc(
                "register_pharmacy_document",
                {
                    "p_id": str(uuid.uuid4()),
                    "p_pharmacy_id": p,
                    "p_upload_id": proof,
                    "p_filename": "x.pdf",
                    "p_file_type": "x",
                },
            )
            .execute()
        )
    assert e.value.code == "42501"
    names = (
        await w["people"]["reader"]
        .client.rpc("pharmacy_member_list", {"p_pharmacy_id": p})
        .execute()
    ).data
    assert {m["username"] for m in names} == {w["people"][a].username for a in MEMBERS} | {
        w["victim"].username
    }


async def test_the_last_owner_stays(world, service):
    w = world
    owner, p = w["people"]["owner"], w["p"]["id"]
    for q in (
        owner.client.table("pharmacy_members")
        .update({"role": "reader"})
        .eq("pharmacy_id", p)
        .eq("user_id", owner.id),
        owner.client.table("pharmacy_members")
        .delete()
        .eq("pharmacy_id", p)
        .eq("user_id", owner.id),
    ):
        with pytest.raises(APIError) as e:
            await q.execute()
        assert e.value.code == "P0001" and e.value.message.startswith("last owner")
    rows = (
        await service.table("pharmacy_members")
        .select("role")
        .eq("pharmacy_id", p)
        .eq("user_id", owner.id)
        .execute()
    ).data
    assert rows == [{"role": "owner"}]


async def test_a_document_has_one_scope(world, service, make_user):
    w = world
    editor = w["people"]["editor"]
    conv = (await editor.client.table("conversations").insert({"title": "c"}).execute()).data[0]
    sha = uuid.uuid4().hex * 2
    await prove_upload(service, editor.id, sha)
    with pytest.raises(APIError) as e:
        await (
            editor.client.table("documents")
            .insert(
                {
                    "pharmacy_id": w["p"]["id"],
                    "conversation_id": conv["id"],
                    "sha256": sha,
                    "filename": "x.pdf",
                    "file_type": "x",
                }
            )
            .execute()
        )
    assert e.value.code in ("23514", "42501")


async def test_anon_reads_nothing(world, anon):
    for table in ("pharmacies", "pharmacy_members"):
        assert await outcome(anon.table(table).select("*")) in (None, [])
    with pytest.raises(APIError) as e:
        await anon.rpc("create_pharmacy", {"p_name": "anon"}).execute()
    assert e.value.code == "42501"


def _as_user(dsn: str, user_id: str):
    import json

    import psycopg

    conn = psycopg.connect(dsn)
    conn.execute("SET ROLE authenticated")
    conn.execute(
        "SELECT set_config('request.jwt.claims', %s, false)",
        (json.dumps({"sub": user_id, "role": "authenticated"}),),
    )
    return conn


async def test_two_owners_demoting_each_other_at_once_leave_one_owner(
    world, service, superuser_dsn
):
    """The trigger locks the pharmacy row: the second demotion waits for the first, then sees it."""
    import asyncio

    import psycopg

    w = world
    p, owner, editor = w["p"]["id"], w["people"]["owner"], w["people"]["editor"]
    await (
        owner.client.table("pharmacy_members")
        .update({"role": "owner"})
        .eq("pharmacy_id", p)
        .eq("user_id", editor.id)
        .execute()
    )
    first, second = _as_user(superuser_dsn, owner.id), _as_user(superuser_dsn, editor.id)
    try:
        demote = (
            "UPDATE public.pharmacy_members SET role = 'reader'"
            " WHERE pharmacy_id = %s AND user_id = %s"
        )
        first.execute(demote, (p, editor.id))  # open transaction, holding the pharmacy row
        waiting = asyncio.get_running_loop().run_in_executor(
            None, lambda: second.execute(demote, (p, owner.id))
        )
        await asyncio.sleep(0.5)
        assert not waiting.done()  # blocked on the lock, not racing
        first.commit()
        with pytest.raises(psycopg.errors.RaiseException, match="last owner"):
            await asyncio.wait_for(waiting, 20)
        second.rollback()
    finally:
        first.close()
        second.close()
    rows = (
        await service.table("pharmacy_members")
        .select("user_id,role")
        .eq("pharmacy_id", p)
        .eq("role", "owner")
        .execute()
    ).data
    assert rows == [{"user_id": owner.id, "role": "owner"}]
