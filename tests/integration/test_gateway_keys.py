"""The keys a Supabase project uses, on the real stack: ES256 signing keys by kid, the JWKS,
opaque sb_publishable_/sb_secret_ API keys, and the tokens that must be refused.

The default stack is a new project (ES256 + opaque keys). Under PHARMGPT_TEST_KEYS=legacy
the stack is a legacy project and the tests that only make sense on one kind skip.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pharmgpt.localbase.keys import generate_es256
from postgrest.exceptions import APIError

from tests.conftest import client_for

pytestmark = pytest.mark.integration


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_by_hand(header: dict, claims: dict, secret: bytes) -> str:
    """An HS256 token made without PyJWT, which (rightly) refuses a public key as an HMAC secret."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    sig = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(sig)}"


def user_claims(user_id: str, **extra) -> dict:
    now = int(time.time())
    return {
        "sub": user_id,
        "role": "authenticated",
        "aud": "authenticated",
        "iat": now,
        "exp": now + 600,
        **extra,
    }


@pytest.fixture
def new_project(stack):
    if stack.legacy:
        pytest.skip("the stack is a legacy project (PHARMGPT_TEST_KEYS=legacy)")
    return stack


async def get_as(
    stack, token: str, apikey: str | None = None, path: str = "conversations"
) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.get(
            f"{stack.url}/rest/v1/{path}",
            headers={"apikey": apikey or stack.anon_key, "Authorization": f"Bearer {token}"},
        )


def assert_401(resp: httpx.Response, code: str = "PGRST301") -> dict:
    assert resp.status_code == 401, resp.text
    body = resp.json()
    assert set(body) == {"code", "message", "details", "hint"}
    assert body["code"] == code, body
    return body


# ---------------------------------------------------------------- the default: a new project
async def test_services_sign_es256_tokens_with_kid_and_supabase_claims(
    new_project, services, account
):
    user, _ = await account()
    token, expires_at = services.backend.user_token(user.id)
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "ES256" and header["kid"] == new_project.signer.kid
    claims = jwt.decode(
        token, new_project.signer.key.public_key(), algorithms=["ES256"], audience="authenticated"
    )
    assert claims["sub"] == user.id and claims["role"] == "authenticated"
    assert claims["iss"] == new_project.url + "/auth/v1"
    assert (
        claims["exp"] == int(expires_at)
        and claims["exp"] - claims["iat"] == services.settings.user_jwt_ttl_s
    )
    uuid.UUID(claims["session_id"])
    # and the gateway accepts exactly that token as that user
    resp = await get_as(new_project, token, path=f"users?select=id&id=eq.{user.id}")
    assert resp.status_code == 200 and resp.json() == [{"id": user.id}]


def test_api_keys_are_opaque(new_project):
    assert new_project.anon_key.startswith("sb_publishable_") and "." not in new_project.anon_key
    assert (
        new_project.service_role_key.startswith("sb_secret_")
        and "." not in new_project.service_role_key
    )
    assert new_project.jwt_secret is None  # no legacy secret at all


async def test_jwks_serves_only_the_public_key(new_project):
    async with httpx.AsyncClient() as http:
        resp = await http.get(
            f"{new_project.url}/auth/v1/.well-known/jwks.json"
        )  # public: no apikey
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/json")
    keys = resp.json()["keys"]
    assert [k["kid"] for k in keys] == [new_project.signer.kid]
    (key,) = keys
    assert set(key) <= {"kty", "crv", "x", "y", "alg", "use", "key_ops", "kid"}
    assert "d" not in key and key["kty"] == "EC" and key["alg"] == "ES256"
    assert key == new_project.signer.public_jwk()
    # what it publishes verifies what the services sign
    token = new_project.signer.sign(user_claims(str(uuid.uuid4())))
    jwt.decode(token, jwt.PyJWK(key).key, algorithms=["ES256"], audience="authenticated")


async def test_forged_kid_is_refused(new_project, make_user):
    user = await make_user()
    await user.client.table("conversations").insert({"title": "mine"}).execute()
    other = generate_es256(kid=new_project.signer.kid)  # another key claiming the project's kid
    assert_401(await get_as(new_project, other.sign(user_claims(user.id))))
    unknown = generate_es256()  # a key the project never heard of
    body = assert_401(await get_as(new_project, unknown.sign(user_claims(user.id))))
    assert "No suitable key" in body["message"]


async def test_hs256_token_is_refused_by_an_es256_only_stack(new_project, make_user):
    user = await make_user()
    claims = user_claims(user.id)
    for token in (
        jwt.encode(claims, "s" * 64, algorithm="HS256"),  # no kid: there is no legacy secret
        jwt.encode(claims, "s" * 64, algorithm="HS256", headers={"kid": new_project.signer.kid}),
    ):
        assert_401(await get_as(new_project, token))
        with pytest.raises(APIError):
            await (
                (await client_for(new_project, token)).table("conversations").select("id").execute()
            )


async def test_alg_confusion_public_key_as_hmac_secret_is_refused(new_project, make_user):
    user = await make_user()
    public = new_project.signer.key.public_key()
    secrets = [
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        json.dumps(new_project.signer.public_jwk()).encode(),
    ]
    for secret in secrets:
        for header in (
            {"alg": "HS256", "typ": "JWT", "kid": new_project.signer.kid},
            {"alg": "HS256", "typ": "JWT"},
        ):
            token = hs256_by_hand(header, user_claims(user.id), secret)
            assert_401(await get_as(new_project, token))


async def test_alg_none_and_other_algorithms_are_refused(new_project, make_user):
    user = await make_user()
    none = (
        f"{_b64(json.dumps({'alg': 'none', 'kid': new_project.signer.kid}).encode())}."
        f"{_b64(json.dumps(user_claims(user.id)).encode())}."
    )
    body = assert_401(await get_as(new_project, none))
    assert "algorithm" in body["message"]
    kid = {"kid": new_project.signer.kid}
    es384 = jwt.encode(
        user_claims(user.id),
        ec.generate_private_key(ec.SECP384R1()),
        algorithm="ES384",
        headers=kid,
    )
    assert "algorithm" in assert_401(await get_as(new_project, es384))["message"]
    rs256 = jwt.encode(
        user_claims(user.id), rsa.generate_private_key(65537, 2048), algorithm="RS256", headers=kid
    )  # an algorithm the gateway knows, but not this key's
    assert "algorithm" in assert_401(await get_as(new_project, rs256))["message"]


async def test_expired_token_is_refused(new_project, make_user):
    user = await make_user()
    now = int(time.time())
    token = new_project.signer.sign(user_claims(user.id, iat=now - 3600, exp=now - 120))
    body = assert_401(await get_as(new_project, token), code="PGRST303")
    assert body["message"] == "JWT expired"


@pytest.mark.parametrize(
    "kind",
    ["wrong_prefix", "secret_body_as_publishable", "unknown_secret", "truncated", "legacy_jwt"],
)
async def test_bad_api_keys_are_refused(new_project, kind):
    publishable, secret = new_project.anon_key, new_project.service_role_key
    apikey = {
        "wrong_prefix": "sb_secrets_" + secret.removeprefix("sb_secret_"),
        "secret_body_as_publishable": "sb_publishable_" + secret.removeprefix("sb_secret_"),
        "unknown_secret": "sb_secret_" + "A" * 43,
        "truncated": publishable[:-1],
        # a JWT apikey, even one signed with the project's own key: legacy keys are off here
        "legacy_jwt": new_project.signer.sign(
            {"role": "service_role", "iat": 0, "exp": 4102444800}
        ),
    }[kind]
    async with httpx.AsyncClient() as http:
        resp = await http.get(
            f"{new_project.url}/rest/v1/users?select=id", headers={"apikey": apikey}
        )
    body = assert_401(resp)
    assert ("Legacy API keys are disabled" if kind == "legacy_jwt" else "Invalid API key") == body[
        "message"
    ]
    client = await client_for(
        new_project, None, apikey
    )  # the supabase client sends it in both headers
    with pytest.raises(APIError):
        await client.table("users").select("id").execute()


async def test_publishable_key_is_anon_and_secret_key_is_service_role(new_project, make_user):
    user = await make_user()
    anon = await client_for(new_project)  # apikey + Authorization: Bearer sb_publishable_…
    with pytest.raises(APIError) as e:
        await anon.table("users").select("id").execute()
    assert e.value.code == "42501"  # anon has no grant on users
    service = await client_for(
        new_project, new_project.service_role_key, new_project.service_role_key
    )
    rows = (await service.table("users").select("id").eq("id", user.id).execute()).data
    assert rows == [{"id": user.id}]


async def test_a_publishable_key_cannot_borrow_the_secret_key_as_bearer(new_project):
    async with httpx.AsyncClient() as http:
        resp = await http.get(
            f"{new_project.url}/rest/v1/users?select=id",
            headers={
                "apikey": new_project.anon_key,
                "Authorization": f"Bearer {new_project.service_role_key}",
            },
        )
    assert_401(resp)


async def test_secret_key_with_a_user_token_acts_as_that_user(new_project, make_user):
    a, b = await make_user("a"), await make_user("b")
    client = await client_for(new_project, a.token, new_project.service_role_key)
    rows = (await client.table("users").select("id").in_("id", [a.id, b.id]).execute()).data
    assert rows == [{"id": a.id}]  # RLS applies: the user token decides, not the key


# ---------------------------------------------------------------- the legacy job
def test_legacy_stack_uses_hs256_and_jwt_keys(stack):
    if not stack.legacy:
        pytest.skip("the stack is a new project (default)")
    for key, role in ((stack.anon_key, "anon"), (stack.service_role_key, "service_role")):
        assert jwt.get_unverified_header(key)["alg"] == "HS256"
        assert jwt.decode(key, stack.jwt_secret, algorithms=["HS256"])["role"] == role
    token = stack.signer.sign(user_claims(str(uuid.uuid4())))
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}


async def test_legacy_services_sign_hs256_without_kid(stack, services, account):
    if not stack.legacy:
        pytest.skip("the stack is a new project (default)")
    user, _ = await account()
    token, _ = services.backend.user_token(user.id)
    assert "kid" not in jwt.get_unverified_header(token)
    resp = await get_as(stack, token, path=f"users?select=id&id=eq.{user.id}")
    assert resp.status_code == 200 and resp.json() == [{"id": user.id}]
    async with httpx.AsyncClient() as http:
        resp = await http.get(f"{stack.url}/auth/v1/.well-known/jwks.json")
    assert resp.json() == {"keys": []}  # a shared secret is never published
