"""Gateway overhead and throughput: localbase's /rest/v1 against direct SQL.

Measures, in one run on a throwaway stack:
  * p50/p95 of a 20-row select, a single insert and an RPC call, each
    (a) as the same SQL on a direct psycopg connection,
    (b) as raw HTTP to the gateway (httpx, no client library),
    (c) through the official supabase async client;
  * requests/s of a simple select with 8 concurrent clients.

    .venv/bin/python bench/gateway.py [--iterations 300] [--seconds 10] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psycopg
from supabase import AsyncClientOptions, acreate_client

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from pharmgpt.localbase.auth import mint  # noqa: E402
from pharmgpt.localbase.stack import LocalStack  # noqa: E402

from bench.figures import pct  # noqa: E402


async def timed(fn, n: int, warmup: int = 20) -> list[float]:
    for _ in range(warmup):
        await fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        await fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


async def main(args) -> dict:
    root = Path(tempfile.mkdtemp(prefix="pgb-", dir="/tmp"))
    stack = LocalStack(root / "data", gateway_port=0)
    info = stack.up()
    try:
        return await run(info, args)
    finally:
        stack.down()
        stack.pg.reset()


async def run(info, args) -> dict:
    uid = str(uuid.uuid4())
    svc = await acreate_client(info.url, info.service_role_key)
    await (
        svc.table("users")
        .insert({"id": uid, "username": f"bench-{uid[:8]}", "password_hash": "$2b$12$" + "x" * 53})
        .execute()
    )
    token = mint(info.signer, "authenticated", sub=uid, aud="authenticated", lifetime_s=3600)
    client = await acreate_client(
        info.url, info.anon_key, AsyncClientOptions(headers={"Authorization": f"Bearer {token}"})
    )
    conv = (await client.table("conversations").insert({"title": "bench"}).execute()).data[0]["id"]
    await (
        client.table("messages")
        .insert(
            [
                {
                    "conversation_id": conv,
                    "role": "user",
                    "content": f"message {i} about warfarin dosing",
                }
                for i in range(200)
            ],
            default_to_null=False,
        )
        .execute()
    )

    direct = await psycopg.AsyncConnection.connect(info.db_uri, autocommit=True)
    http = httpx.AsyncClient(
        base_url=f"{info.url}/rest/v1",
        headers={"apikey": info.anon_key, "Authorization": f"Bearer {token}"},
    )

    select_sql = (
        "SELECT id, role, content, created_at FROM public.messages "
        "WHERE conversation_id = %s ORDER BY created_at LIMIT 20"
    )
    insert_sql = (
        "INSERT INTO public.messages (conversation_id, user_id, role, content) "
        "VALUES (%s, %s, 'user', 'bench insert') RETURNING *"
    )
    rpc_sql = "SELECT * FROM public.search_conversations('warfarin', 20)"

    async def d_select():
        await (await direct.execute(select_sql, (conv,))).fetchall()

    async def d_insert():
        await (await direct.execute(insert_sql, (conv, uid))).fetchall()

    async def d_rpc():
        async with direct.transaction():  # the RPC reads auth.uid(); give it the same claims
            await direct.execute(
                "SELECT set_config('request.jwt.claims', %s, true)",
                (json.dumps({"sub": uid, "role": "authenticated"}),),
            )
            await (await direct.execute(rpc_sql)).fetchall()

    sel_params = {
        "select": "id,role,content,created_at",
        "conversation_id": f"eq.{conv}",
        "order": "created_at.asc",
        "limit": "20",
    }

    async def h_select():
        r = await http.get("/messages", params=sel_params)
        assert r.status_code == 200 and len(r.json()) == 20

    async def h_insert():
        r = await http.post(
            "/messages",
            json={"conversation_id": conv, "role": "user", "content": "bench insert"},
            headers={"Prefer": "return=representation"},
        )
        assert r.status_code == 201

    async def h_rpc():
        r = await http.post("/rpc/search_conversations", json={"query": "warfarin"})
        assert r.status_code == 200

    async def c_select():
        r = (
            await client.table("messages")
            .select("id,role,content,created_at")
            .eq("conversation_id", conv)
            .order("created_at")
            .limit(20)
            .execute()
        )
        assert len(r.data) == 20

    async def c_insert():
        await (
            client.table("messages")
            .insert({"conversation_id": conv, "role": "user", "content": "bench insert"})
            .execute()
        )

    async def c_rpc():
        await client.rpc("search_conversations", {"query": "warfarin"}).execute()

    n = args.iterations
    results: dict = {"latency_ms": {}}
    for name, fns in [
        ("select_20_rows", (d_select, h_select, c_select)),
        ("insert_1_row", (d_insert, h_insert, c_insert)),
        ("rpc", (d_rpc, h_rpc, c_rpc)),
    ]:
        row = {}
        for label, fn in zip(("direct_sql", "gateway_http", "supabase_client"), fns, strict=True):
            xs = await timed(fn, n)
            row[label] = {"p50": round(statistics.median(xs), 3), "p95": round(pct(xs, 95), 3)}
        row["gateway_overhead_p50"] = round(
            row["gateway_http"]["p50"] - row["direct_sql"]["p50"], 3
        )
        row["client_overhead_p50"] = round(
            row["supabase_client"]["p50"] - row["direct_sql"]["p50"], 3
        )
        results["latency_ms"][name] = row

    async def throughput(make_call, concurrency: int, seconds: float) -> float:
        done = 0
        stop = time.perf_counter() + seconds

        async def worker(call):
            nonlocal done
            while time.perf_counter() < stop:
                await call()
                done += 1

        calls = [await make_call() for _ in range(concurrency)]
        t = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in calls))
        return done / (time.perf_counter() - t)

    one_params = {"select": "id,title", "id": f"eq.{conv}"}

    async def make_http():
        h = httpx.AsyncClient(
            base_url=f"{info.url}/rest/v1",
            headers={"apikey": info.anon_key, "Authorization": f"Bearer {token}"},
        )

        async def call():
            r = await h.get("/conversations", params=one_params)
            assert r.status_code == 200

        return call

    async def make_client():
        c = await acreate_client(
            info.url,
            info.anon_key,
            AsyncClientOptions(headers={"Authorization": f"Bearer {token}"}),
        )

        async def call():
            await c.table("conversations").select("id,title").eq("id", conv).execute()

        return call

    results["throughput_rps_8_clients"] = {
        "gateway_http": round(await throughput(make_http, 8, args.seconds), 1),
        "supabase_client": round(await throughput(make_client, 8, args.seconds), 1),
    }
    results["machine"] = {
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cores": __import__("os").cpu_count(),
    }
    results["iterations"] = n
    await direct.close()
    await http.aclose()
    return results


def report(r: dict) -> None:
    print(f"gateway benchmark ({r['iterations']} iterations each; ms)")
    print(
        f"{'statement':<16}{'direct p50':>11}{'p95':>8}{'http p50':>10}{'p95':>8}"
        f"{'client p50':>12}{'p95':>8}{'gw ovh':>9}"
    )
    for name, row in r["latency_ms"].items():
        d, h, c = row["direct_sql"], row["gateway_http"], row["supabase_client"]
        print(
            f"{name:<16}{d['p50']:>11.2f}{d['p95']:>8.2f}{h['p50']:>10.2f}{h['p95']:>8.2f}"
            f"{c['p50']:>12.2f}{c['p95']:>8.2f}{row['gateway_overhead_p50']:>9.2f}"
        )
    t = r["throughput_rps_8_clients"]
    print(
        f"throughput, 8 concurrent clients: {t['gateway_http']} req/s raw HTTP, "
        f"{t['supabase_client']} req/s through the supabase client"
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    res = asyncio.run(main(a))
    print(json.dumps(res, indent=2)) if a.json else report(res)
