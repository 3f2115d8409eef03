"""The membership policies are served by the membership indexes (issue 15): with a few
thousand memberships, analysed, the plans of a member's queries never scan
pharmacy_members. Plans are read with EXPLAIN under the member's own claims and
role, exactly as the gateway runs a request (SET LOCAL ROLE + request.jwt.claims)."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest

pytestmark = pytest.mark.integration

N_USERS = 1500
N_PHARMACIES = 500


@pytest.fixture(scope="module")
def crowd(localbase_stack):
    """1,500 accounts in 500 pharmacies (3,000+ memberships) with a document each, analysed;
    returns (a member's id, their pharmacy's id)."""
    tag = uuid.uuid4().hex[:8]
    with psycopg.connect(localbase_stack.db_uri, autocommit=True) as conn:
        users = [str(uuid.uuid4()) for _ in range(N_USERS)]
        with conn.cursor().copy("COPY public.users (id, username, password_hash) FROM STDIN") as cp:
            for i, u in enumerate(users):
                cp.write_row((u, f"plan-{tag}-{i}", "$2b$12$" + "x" * 53))
        pharmacies = [str(uuid.uuid4()) for _ in range(N_PHARMACIES)]
        with conn.cursor().copy("COPY public.pharmacies (id, name, created_by) FROM STDIN") as cp:
            for i, p in enumerate(pharmacies):
                cp.write_row((p, f"Pharmacy {i}", users[i]))
        with conn.cursor().copy(
            "COPY public.pharmacy_members (pharmacy_id, user_id, role) FROM STDIN"
        ) as cp:
            for i, u in enumerate(
                users
            ):  # each account in two pharmacies, each pharmacy with ~6 members
                cp.write_row(
                    (pharmacies[i % N_PHARMACIES], u, "owner" if i < N_PHARMACIES else "reader")
                )
                cp.write_row((pharmacies[(i * 7 + 3) % N_PHARMACIES], u, "editor"))
        with conn.cursor().copy(
            "COPY public.documents (user_id, pharmacy_id, legacy_hash, filename, file_type)"
            " FROM STDIN"
        ) as cp:
            for i, p in enumerate(pharmacies):
                for k in range(4):
                    cp.write_row((users[i], p, f"{tag}{i}-{k}", f"doc {k}.pdf", "application/pdf"))
        conn.execute(
            "ANALYZE public.users, public.pharmacies, public.pharmacy_members, public.documents"
        )
        n = conn.execute("SELECT count(*) FROM public.pharmacy_members").fetchone()[0]
        assert n >= 3000
    return users[N_PHARMACIES + 7], pharmacies[(N_PHARMACIES + 7) % N_PHARMACIES]


def plan(dsn: str, user_id: str, sql: str, params: tuple = ()) -> dict:
    claims = json.dumps({"sub": user_id, "role": "authenticated", "aud": "authenticated"})
    with psycopg.connect(dsn) as conn, conn.transaction():
        conn.execute("SET LOCAL ROLE authenticated")
        conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (claims,))
        return conn.execute("EXPLAIN (FORMAT JSON) " + sql, params).fetchone()[0][0]["Plan"]


def nodes(p: dict):
    yield p
    for child in p.get("Plans", []):
        yield from nodes(child)


def scans_of(p: dict, relation: str) -> list[str]:
    return [n["Node Type"] for n in nodes(p) if n.get("Relation Name") == relation]


@pytest.mark.parametrize(
    "what,sql",
    [
        ("a pharmacy's documents", "SELECT * FROM public.documents WHERE pharmacy_id = %s"),
        (
            "a shared document by id",
            "SELECT * FROM public.documents WHERE id = (SELECT id FROM public.documents "
            "WHERE pharmacy_id = %s LIMIT 1)",
        ),
        ("the pharmacy row", "SELECT * FROM public.pharmacies WHERE id = %s"),
        ("its members", "SELECT * FROM public.pharmacy_members WHERE pharmacy_id = %s"),
    ],
)
def test_member_queries_use_the_membership_index(crowd, localbase_stack, what, sql):
    member, pharmacy = crowd
    p = plan(localbase_stack.db_uri, member, sql, (pharmacy,))
    scans = scans_of(p, "pharmacy_members")
    assert scans, f"{what}: the policy's membership lookup is missing from the plan"
    assert "Seq Scan" not in scans, f"{what}: {json.dumps(p)[:2000]}"
    assert set(scans) <= {"Index Scan", "Index Only Scan", "Bitmap Heap Scan"}


def test_my_pharmacies_use_the_index_led_by_the_member(crowd, localbase_stack):
    member, _ = crowd
    p = plan(
        localbase_stack.db_uri,
        member,
        "SELECT * FROM public.pharmacy_members WHERE user_id = %s",
        (member,),
    )
    used = {n.get("Index Name") for n in nodes(p)}  # a bitmap scan names it on its child node
    assert "Seq Scan" not in scans_of(p, "pharmacy_members")
    assert "pharmacy_members_user_idx" in used, json.dumps(p)[:2000]


def test_the_member_sees_exactly_their_pharmacies_documents(crowd, localbase_stack):
    """The same claims the plans were read under do answer (and keep others out)."""
    member, pharmacy = crowd
    claims = json.dumps({"sub": member, "role": "authenticated"})
    with psycopg.connect(localbase_stack.db_uri) as conn, conn.transaction():
        conn.execute("SET LOCAL ROLE authenticated")
        conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (claims,))
        mine = conn.execute("SELECT DISTINCT pharmacy_id::text FROM public.documents").fetchall()
    assert len(mine) == 2 and (pharmacy,) in mine
