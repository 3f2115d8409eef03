"""JWT checks and SQL generation, without a database."""

from __future__ import annotations

import time

import jwt
import pytest
from pharmgpt.localbase.auth import JwtConfig, api_keys, mint, verify
from pharmgpt.localbase.errors import ApiError
from pharmgpt.localbase.grammar import parse_query
from pharmgpt.localbase.schema_cache import Column, SchemaCache, Table
from pharmgpt.localbase.sqlbuilder import Builder

SECRET = "s" * 40


def test_keys_are_stable_and_verify():
    k1, k2 = api_keys(SECRET), api_keys(SECRET)
    assert k1 == k2
    assert verify(k1["service_role"], JwtConfig(SECRET))["role"] == "service_role"


@pytest.mark.parametrize(
    "token",
    [
        jwt.encode(
            {"role": "authenticated", "exp": int(time.time()) - 60}, SECRET, algorithm="HS256"
        ),
        jwt.encode({"role": "authenticated", "aud": "other"}, SECRET, algorithm="HS256"),
        jwt.encode(
            {"role": "authenticated"}, "other-secret-xxxxxxxxxxxxxxxxxxxxxxxxx", algorithm="HS256"
        ),
        jwt.encode({"role": "authenticated"}, SECRET, algorithm="HS384"),
        "eyJhbGciOiJub25lIn0.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.",
    ],
)
def test_bad_tokens(token):
    with pytest.raises(ApiError) as e:
        verify(token, JwtConfig(SECRET))
    assert e.value.status == 401


def test_minted_user_token():
    tok = mint(SECRET, "authenticated", sub="u1", aud="authenticated", lifetime_s=60)
    claims = verify(tok, JwtConfig(SECRET))
    assert claims["sub"] == "u1" and claims["exp"] - claims["iat"] == 60


def _cache() -> SchemaCache:
    c = SchemaCache(schemas=["public"])
    c.tables[("public", "t")] = Table(
        "public",
        "t",
        {"id": Column("id", "integer", False, True), "name": Column("name", "text", True, False)},
        ["id"],
    )
    c.types = {"text": "text", "integer": "integer"}
    return c


def test_values_are_parameters_never_sql():
    b = Builder(_cache(), "public")
    q = parse_query([("name", "eq.x'; drop table t; --"), ("id", "in.(1,2)")])
    st = b.read("t", q, count="exact", limit=None, offset=None)
    assert "drop" not in st.sql.lower()
    assert "x'; drop table t; --" in st.params and '{"1","2"}' in st.params


def test_unknown_identifiers_never_reach_sql():
    b = Builder(_cache(), "public")
    with pytest.raises(ApiError) as e:
        b.read("t", parse_query([("nope", "eq.1")]), count=None, limit=None, offset=None)
    assert e.value.code == "42703"
    with pytest.raises(ApiError) as e:
        b.read("missing", parse_query([]), count=None, limit=None, offset=None)
    assert e.value.status == 404
    with pytest.raises(ApiError):
        b.read("t", parse_query([("select", "id::notatype")]), count=None, limit=None, offset=None)
