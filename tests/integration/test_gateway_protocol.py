"""The real supabase client against localbase's gateway: the PostgREST grammar,
counts, single objects, upserts, RPC and error shapes (on the gwtest schema)."""

from __future__ import annotations

import httpx
import pytest
import pytest_asyncio
from postgrest.exceptions import APIError

pytestmark = pytest.mark.integration

ITEMS = [
    {
        "id": 1,
        "name": "aspirin tablets",
        "qty": 10,
        "price": "1.50",
        "tags": ["otc", "nsaid"],
        "span": "[1,5)",
        "data": {"form": "tablet", "strength": {"mg": 100}},
        "flag": True,
        "note": None,
    },
    {
        "id": 2,
        "name": "ibuprofen gel",
        "qty": 0,
        "price": "4.00",
        "tags": ["otc"],
        "span": "[5,10)",
        "data": {"form": "gel"},
        "flag": False,
        "note": "topical, 5%",
    },
    {
        "id": 3,
        "name": "Warfarin sodium",
        "qty": 25,
        "price": "12.25",
        "tags": ["rx", "anticoagulant"],
        "span": "[20,30)",
        "data": {"form": "tablet", "strength": {"mg": 5}},
        "flag": None,
        "note": "INR",
    },
    {
        "id": 4,
        "name": "metformin, extended",
        "qty": None,
        "price": None,
        "tags": [],
        "span": None,
        "data": {},
        "flag": True,
        "note": 'quote " and \\ backslash',
    },
]
PARTS = [
    {"id": 10, "item_id": 1, "label": "blister", "weight": 3},
    {"id": 11, "item_id": 1, "label": "box", "weight": 9},
    {"id": 12, "item_id": 3, "label": "bottle", "weight": 5},
]


@pytest_asyncio.fixture
async def gw(service):
    db = service.schema("gwtest")
    await db.table("items").delete().gte("id", 0).execute()
    await db.table("items").insert(ITEMS).execute()
    await db.table("parts").insert(PARTS).execute()
    return db


def ids(resp) -> list[int]:
    return sorted(r["id"] for r in resp.data)


async def test_select_columns_alias_cast_and_json(gw):
    r = (
        await gw.table("items")
        .select("id,label:name,qty::text,form:data->>form,mg:data->strength->mg")
        .eq("id", 1)
        .execute()
    )
    assert r.data == [
        {"id": 1, "label": "aspirin tablets", "qty": "10", "form": "tablet", "mg": 100}
    ]


@pytest.mark.parametrize(
    "method,args,expected",
    [
        ("eq", ("qty", 10), [1]),
        ("neq", ("qty", 10), [2, 3]),
        ("gt", ("qty", 0), [1, 3]),
        ("gte", ("qty", 10), [1, 3]),
        ("lt", ("qty", 10), [2]),
        ("lte", ("qty", 10), [1, 2]),
        ("like", ("name", "*tablets"), [1]),
        ("ilike", ("name", "warfarin*"), [3]),
        ("in_", ("id", [1, 3, 99]), [1, 3]),
        ("in_", ("name", ["metformin, extended", "nope"]), [4]),
        ("is_", ("qty", None), [4]),
        ("is_", ("flag", True), [1, 4]),
        ("is_", ("flag", False), [2]),
        ("contains", ("tags", ["otc"]), [1, 2]),
        ("contained_by", ("tags", ["otc", "nsaid", "x"]), [1, 2, 4]),
        ("overlaps", ("tags", ["rx", "nsaid"]), [1, 3]),
        ("contains", ("data", {"form": "tablet"}), [1, 3]),
        ("range_lt", ("span", (10, 15)), [1, 2]),
        ("range_gt", ("span", (10, 15)), [3]),
        ("range_gte", ("span", (4, 7)), [2, 3]),
        ("range_lte", ("span", (1, 5)), [1]),
        ("range_adjacent", ("span", (9, 20)), [2, 3]),
        ("text_search", ("doc", "tablet"), [1]),
    ],
)
async def test_filter_operators(gw, method, args, expected):
    r = await getattr(gw.table("items").select("id"), method)(*args).execute()
    assert ids(r) == expected


async def test_match_imatch_isdistinct_and_fts_variants(gw):
    t = gw.table("items").select("id")
    assert ids(await t.filter("name", "match", "^[A-Z]").execute()) == [3]
    assert ids(await gw.table("items").select("id").filter("name", "imatch", "^w").execute()) == [3]
    assert ids(
        await gw.table("items").select("id").filter("flag", "isdistinct", "true").execute()
    ) == [2, 3]
    for op, q in [
        ("plfts", "aspirin tablets"),
        ("phfts", "aspirin tablets"),
        ("wfts", "aspirin -gel"),
    ]:
        r = await gw.table("items").select("id").filter("doc", f"{op}(english)", q).execute()
        assert ids(r) == [1], op
    r = await gw.table("items").select("id").filter("name", "fts", "gel").execute()
    assert ids(r) == [2]


async def test_not_any_all_and_logic_trees(gw):
    assert ids(await gw.table("items").select("id").not_.eq("qty", 10).execute()) == [2, 3]
    assert ids(await gw.table("items").select("id").not_.is_("qty", None).execute()) == [1, 2, 3]
    assert ids(await gw.table("items").select("id").like_any_of("name", "asp*,ibu*").execute()) == [
        1,
        2,
    ]
    assert ids(await gw.table("items").select("id").ilike_all_of("name", "*a*,*t*").execute()) == [
        1
    ]
    assert ids(
        await gw.table("items").select("id").filter("qty", "gt(any)", "{20,5}").execute()
    ) == [1, 3]
    r = (
        await gw.table("items")
        .select("id")
        .or_("qty.eq.0,and(flag.is.true,price.is.null)")
        .execute()
    )
    assert ids(r) == [2, 4]
    r = (
        await gw.table("items")
        .select("id")
        .or_('name.eq."metformin, extended",id.in.(1,2)')
        .execute()
    )
    assert ids(r) == [1, 2, 4]
    r = await gw.table("items").select("id").not_.or_("qty.gt.5,qty.is.null").execute()
    assert ids(r) == [2]
    r = await gw.table("items").select("id").or_("not.and(id.gt.1,id.lt.4),note.eq.INR").execute()
    assert ids(r) == [1, 3, 4]


async def test_values_with_special_characters_are_data(gw):
    r = await gw.table("items").select("id").eq("note", 'quote " and \\ backslash').execute()
    assert ids(r) == [4]
    r = await gw.table("items").select("id").eq("note", "topical, 5%").execute()
    assert ids(r) == [2]


async def test_order_nulls_limit_offset_and_range(gw):
    r = await gw.table("items").select("id").order("qty", desc=True, nullsfirst=True).execute()
    assert [x["id"] for x in r.data] == [4, 3, 1, 2]
    r = await gw.table("items").select("id").order("qty", nullsfirst=False).execute()
    assert [x["id"] for x in r.data] == [2, 1, 3, 4]
    r = await gw.table("items").select("id").order("id").limit(2).offset(1).execute()
    assert [x["id"] for x in r.data] == [2, 3]
    r = await gw.table("items").select("id").order("id").range(2, 3).execute()
    assert [x["id"] for x in r.data] == [3, 4]
    r = await gw.table("items").select("id").order("data->>form,id.desc").execute()
    assert [x["id"] for x in r.data] == [2, 3, 1, 4]  # gel, tablet (id desc), null last


async def test_counts_and_content_range(gw, stack):
    r = await gw.table("items").select("id", count="exact").gt("id", 1).limit(1).execute()
    assert r.count == 3 and len(r.data) == 1
    r = await gw.table("items").select("*", count="exact", head=True).execute()
    assert r.count == 4
    r = await gw.table("items").select("id", count="planned").execute()
    assert isinstance(r.count, int)
    async with httpx.AsyncClient() as http:
        h = {
            "apikey": stack.service_role_key,
            "Authorization": f"Bearer {stack.service_role_key}",
            "Accept-Profile": "gwtest",
            "Prefer": "count=exact",
            "Range": "1-2",
        }
        resp = await http.get(f"{stack.url}/rest/v1/items?select=id&order=id", headers=h)
        assert resp.status_code == 206
        assert resp.headers["content-range"] == "1-2/4"
        h["Range"] = "10-12"
        resp = await http.get(f"{stack.url}/rest/v1/items?select=id&order=id", headers=h)
        assert resp.status_code == 416 and resp.json()["code"] == "PGRST103"


async def test_single_and_maybe_single(gw):
    r = await gw.table("items").select("id,name").eq("id", 3).single().execute()
    assert r.data == {"id": 3, "name": "Warfarin sodium"}
    with pytest.raises(APIError) as e:
        await gw.table("items").select("id").gt("id", 1).single().execute()
    assert e.value.code == "PGRST116" and "3 rows" in e.value.details
    with pytest.raises(APIError) as e:
        await gw.table("items").select("id").eq("id", 999).single().execute()
    assert e.value.code == "PGRST116"
    assert await gw.table("items").select("id").eq("id", 999).maybe_single().execute() is None
    r = await gw.table("items").select("id").eq("id", 1).maybe_single().execute()
    assert r.data == {"id": 1}


async def test_embedded_resources(gw):
    r = (
        await gw.table("items")
        .select("id,parts(label,weight)")
        .in_("id", [1, 2])
        .order("id")
        .order("weight", desc=True, foreign_table="parts")
        .execute()
    )
    assert r.data == [
        {"id": 1, "parts": [{"label": "box", "weight": 9}, {"label": "blister", "weight": 3}]},
        {"id": 2, "parts": []},
    ]
    r = (
        await gw.table("items")
        .select("id,parts!inner(label)")
        .eq("parts.label", "bottle")
        .execute()
    )
    assert r.data == [{"id": 3, "parts": [{"label": "bottle"}]}]
    r = (
        await gw.table("items")
        .select("id,p:parts(id)")
        .order("id")
        .limit(1, foreign_table="p")
        .execute()
    )
    assert [len(x["p"]) for x in r.data] == [1, 0, 1, 0]
    r = await gw.table("parts").select("label,item:items(name)").eq("id", 12).execute()
    assert r.data == [{"label": "bottle", "item": {"name": "Warfarin sodium"}}]
    r = await gw.table("items").select("id,parts(id)").not_.is_("parts", None).order("id").execute()
    assert [x["id"] for x in r.data] == [1, 3]
    with pytest.raises(APIError) as e:
        await gw.table("items").select("id").eq("parts.label", "x").execute()
    assert e.value.code == "PGRST108"
    with pytest.raises(APIError) as e:
        await gw.table("items").select("id,nothing(*)").execute()
    assert e.value.code == "PGRST200"


async def test_insert_update_delete_and_return_modes(gw):
    t = gw.table("items")
    r = await t.insert({"id": 50, "name": "new"}).execute()
    assert r.data[0]["tags"] == [] and r.data[0]["id"] == 50
    r = await t.insert({"id": 51, "name": "quiet"}, returning="minimal").execute()
    assert r.data == []
    r = await t.insert(
        [{"id": 52, "name": "a", "qty": 1}, {"id": 53, "name": "b"}], default_to_null=False
    ).execute()
    assert [x["qty"] for x in r.data] == [1, None] and r.data[1]["data"] == {}
    r = await t.update({"qty": 7, "data": {"k": [1, 2]}}).in_("id", [52, 53]).execute()
    assert sorted((x["id"], x["qty"], x["data"]["k"][1]) for x in r.data) == [
        (52, 7, 2),
        (53, 7, 2),
    ]
    r = await t.update({"qty": 8}, count="exact").eq("id", 52).execute()
    assert r.count == 1
    r = await t.delete(count="exact").in_("id", [50, 51, 52, 53]).execute()
    assert r.count == 4
    assert (await t.select("id").gte("id", 50).execute()).data == []


async def test_upsert_merge_and_ignore(gw):
    t = gw.table("items")
    await t.upsert({"id": 60, "name": "u1", "qty": 1}).execute()
    r = await t.upsert({"id": 60, "name": "u1", "qty": 2}).execute()
    assert r.data[0]["qty"] == 2
    r = await t.upsert({"id": 60, "name": "u1", "qty": 3}, ignore_duplicates=True).execute()
    assert r.data == []
    assert (await t.select("qty").eq("id", 60).single().execute()).data == {"qty": 2}
    owner = (await t.select("owner").eq("id", 60).single().execute()).data["owner"]
    r = await t.upsert(
        {"id": 61, "name": "u1", "owner": owner, "qty": 9}, on_conflict="name,owner"
    ).execute()
    assert (
        r.data[0]["id"] == 61 and r.data[0]["qty"] == 9
    )  # the row the key matched took the payload
    assert len((await t.select("id").eq("name", "u1").execute()).data) == 1


async def test_rpc_get_and_post(gw, stack):
    assert (await gw.rpc("add", {"a": 2, "b": 3}).execute()).data == 5
    assert (await gw.rpc("add", {"a": 2}, get=True).execute()).data == 3
    r = await gw.rpc("items_over", {"min_qty": 5}).select("id,name").order("id").execute()
    assert [x["id"] for x in r.data] == [1, 3]
    r = await gw.rpc("items_over", {"min_qty": 5}, get=True).eq("id", 3).execute()
    assert [x["id"] for x in r.data] == [3]
    assert (await gw.rpc("echo_json", {"payload": {"a": [1, "x"]}}).execute()).data == {
        "a": [1, "x"]
    }
    r = await gw.rpc("touch_nothing", {}).execute()
    assert r.data in ([], None, "")
    with pytest.raises(APIError) as e:
        await gw.rpc("add", {"nope": 1}).execute()
    assert e.value.code == "PGRST202"
    with pytest.raises(APIError) as e:
        await gw.rpc("fail", {"msg": "bad dose"}).execute()
    assert e.value.code == "P0001" and e.value.message == "bad dose"


async def test_csv(gw):
    r = await gw.table("items").select("id,name").in_("id", [1, 4]).order("id").csv().execute()
    assert r.data.splitlines() == ["id,name", "1,aspirin tablets", '4,"metformin, extended"']


@pytest.mark.parametrize(
    "call,code,status",
    [
        (lambda t: t.insert({"id": 1, "name": "dup"}), "23505", 409),
        (lambda t: t.insert({"id": 70}), "23502", 400),
        (lambda t: t.select("id").eq("id", "not-a-number"), "22P02", 400),
        (lambda t: t.select("nope"), "42703", 400),
        (lambda t: t.insert({"id": 71, "name": "x", "nope": 1}), "PGRST204", 400),
    ],
)
async def test_error_shapes(gw, stack, call, code, status):
    with pytest.raises(APIError) as e:
        await call(gw.table("items")).execute()
    assert e.value.code == code
    assert isinstance(e.value.message, str) and e.value.message
    async with httpx.AsyncClient() as http:  # and the status, as PostgREST sends it
        h = {
            "apikey": stack.service_role_key,
            "Accept-Profile": "gwtest",
            "Content-Profile": "gwtest",
        }
        builder = call(gw.table("items"))
        req = builder.request
        resp = await http.request(
            req.http_method,
            f"{stack.url}/rest/v1/items",
            params=req.params,
            headers=h,
            json=req.json if req.http_method != "GET" else None,
        )
        assert resp.status_code == status
        assert set(resp.json()) == {"code", "message", "details", "hint"}


async def test_fk_violation_is_409(gw):
    with pytest.raises(APIError) as e:
        await gw.table("parts").insert({"id": 99, "item_id": 12345, "label": "x"}).execute()
    assert e.value.code == "23503"


async def test_unknown_table_is_404(stack, service):
    async with httpx.AsyncClient() as http:
        resp = await http.get(
            f"{stack.url}/rest/v1/nope", headers={"apikey": stack.service_role_key}
        )
    assert resp.status_code == 404 and resp.json()["code"] == "PGRST205"
    with pytest.raises(APIError) as e:
        await service.table("nope").select("*").execute()
    assert e.value.code == "PGRST205"
