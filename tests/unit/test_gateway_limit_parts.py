"""Pure parts of the gateway's limits: the SQLSTATE catalogue, Prefer handling and the
filter budget (the real-stack behaviour is in tests/integration/test_gateway_limits.py)."""

from __future__ import annotations

import time

import pytest
from pharmgpt.localbase.errors import CODES, ApiError, pgrst, status_for_sqlstate
from pharmgpt.localbase.grammar import Budget, parse_query
from pharmgpt.localbase.prefer import parse_prefer


@pytest.mark.parametrize(
    "state,status",
    [
        ("08006", 503),
        ("09000", 500),
        ("0L000", 403),
        ("0P000", 403),
        ("23503", 409),
        ("23505", 409),
        ("25006", 405),
        ("25001", 500),
        ("28000", 403),
        ("2D000", 500),
        ("38000", 500),
        ("39000", 500),
        ("3B000", 500),
        ("40001", 500),
        ("40P01", 500),
        ("53400", 500),
        ("53300", 503),
        ("54001", 500),
        ("55P03", 500),
        ("57014", 500),
        ("57P01", 503),
        ("58030", 500),
        ("F0000", 500),
        ("HV000", 500),
        ("P0001", 400),
        ("P0002", 500),
        ("XX000", 500),
        ("42883", 404),
        ("42P01", 404),
        ("42P17", 500),
        ("0A000", 400),
        ("22P02", 400),
        ("42703", 400),
        ("PT404", 404),
        ("PT999", 500),
    ],
)
def test_sqlstate_statuses_follow_postgrest(state, status):
    assert status_for_sqlstate(state, "authenticated", "anon") == status


def test_privilege_and_special_cases():
    assert status_for_sqlstate("42501", "anon", "anon") == 401
    assert status_for_sqlstate("42501", "authenticated", "anon") == 403
    assert status_for_sqlstate("21000", "x", "anon", "DELETE requires a WHERE clause") == 400
    assert status_for_sqlstate("21000", "x", "anon", "more than one row returned") == 500
    assert status_for_sqlstate("22023", "x", "anon", 'role "ghost" does not exist') == 401


def test_catalogue_codes_carry_their_status():
    for code, (status, _) in CODES.items():
        assert pgrst(code, "m").status == status
    assert pgrst("PGRST003", "m").status == 504


def test_every_gateway_code_comes_from_the_one_catalogue():
    """PostgREST keeps its codes in one place; so does localbase: a PGRST/LB code written anywhere
    in localbase/ is in CODES, and no error names such a code with a status of its own."""
    import re
    from pathlib import Path

    import pharmgpt.localbase as localbase

    sources = {
        p.name: p.read_text(encoding="utf-8")
        for p in Path(localbase.__file__).parent.glob("*.py")
        if p.name != "errors.py"
    }
    used = {
        code
        for text in sources.values()
        for code in re.findall(r'"((?:PGRST|LB)[0-9A-Z]{3})"', text)
    }
    assert {"PGRST116", "PGRST301", "PGRST205", "LB507"} <= used  # the scan sees the codes in use
    assert used - CODES.keys() == set()
    own_status = [
        name
        for name, text in sources.items()
        if re.search(r'ApiError\(\s*[^,]+,\s*"(?:PGRST|LB)', text)
    ]
    assert own_status == []


def test_prefer_is_lenient_by_default_and_strict_on_request():
    p = parse_prefer("return=representation, count=bogus, foo=bar, tx=rollback")
    assert (p.ret, p.count, p.strict) == ("representation", None, False)
    assert p.invalid == ["count=bogus", "foo=bar", "tx=rollback"]
    assert parse_prefer("handling=strict, count=exact, tx=commit").count == "exact"
    with pytest.raises(ApiError) as e:
        parse_prefer("handling=strict, max-affected=5")
    assert (e.value.status, e.value.code) == (400, "PGRST122")
    assert "max-affected" in e.value.hint


def test_filter_budget_is_checked_in_linear_time_before_recursion():
    deep = "(" + "or(" * 50_000 + "a.eq.1" + ")" * 50_000 + ")"
    t = time.perf_counter()
    with pytest.raises(ApiError) as e:
        parse_query([("or", deep)])
    assert e.value.code == "LB401" and time.perf_counter() - t < 1  # one scan, no recursion
    parse_query([("or", "(a.eq.1,or(b.eq.2,and(c.eq.3,d.in.(1,2))))")], budget=Budget(10, 3))
    with pytest.raises(ApiError):
        parse_query([(f"c{i}", "eq.1") for i in range(11)], budget=Budget(10, 3))
    with pytest.raises(ApiError) as e:
        parse_query([("select", "id," + "a(" * 20 + "id" + ")" * 20)])
    assert e.value.code == "LB401"


def test_nul_in_the_query_string_is_refused():
    with pytest.raises(ApiError) as e:
        parse_query([("name", "eq.a\x00b")])
    assert (e.value.status, e.value.code) == (400, "LB400")


async def test_user_slots_bound_one_user_and_leave_others_free():
    import asyncio

    from pharmgpt.localbase.fairness import UserSlots

    slots = UserSlots(2, 0.3)
    running = peak = 0

    async def job():
        nonlocal running, peak
        async with slots.hold("u"):
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.05)
            running -= 1

    await asyncio.gather(*[job() for _ in range(5)])
    assert peak == 2

    async def hold_long():
        async with slots.hold("u"):
            await asyncio.sleep(5)

    busy = [asyncio.create_task(hold_long()) for _ in range(2)]
    await asyncio.sleep(0.05)
    with pytest.raises(ApiError) as e:
        async with slots.hold("u"):
            pass
    assert (e.value.status, e.value.code) == (429, "LB429")
    async with slots.hold("v"):  # another user is not held up
        pass
    async with slots.hold(None):  # the service role is not limited
        pass
    for t in busy:
        t.cancel()
    await asyncio.gather(*busy, return_exceptions=True)
    assert slots.in_use("u") == 0 and not slots._slots
