"""Signing-key material and the settings that carry it: what is accepted, what is refused, why."""

from __future__ import annotations

import json
import os

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pharmgpt.localbase.auth import JwtConfig, api_keys, verify
from pharmgpt.localbase.errors import ApiError
from pharmgpt.localbase.keys import (
    KeyMaterialError,
    KeySet,
    SigningKey,
    generate_es256,
    load_signing_key,
    new_api_keys,
)
from pharmgpt.services.config import Settings
from pharmgpt.services.errors import ConfigError

URL = "https://abc.supabase.co"


def pem(key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def test_jwk_pem_and_file_load_to_the_same_signer(tmp_path):
    key = generate_es256()
    jwk_text = json.dumps(key.private_jwk())
    path = tmp_path / "k.json"
    path.write_text(jwk_text)
    for material, kid in ((jwk_text, None), (pem(key.key), key.kid), (str(path), None)):
        loaded = load_signing_key(material, kid)
        assert (loaded.alg, loaded.kid) == ("ES256", key.kid)
        token = loaded.sign({"sub": "x"})
        assert jwt.get_unverified_header(token)["kid"] == key.kid
        jwt.decode(token, key.key.public_key(), algorithms=["ES256"])


def test_rs256_pem_needs_a_kid_and_2048_bits():
    big = rsa.generate_private_key(65537, 2048)
    assert load_signing_key(pem(big), "rk1").alg == "RS256"
    with pytest.raises(KeyMaterialError, match="kid"):
        load_signing_key(pem(big))
    with pytest.raises(KeyMaterialError, match="2048"):
        load_signing_key(pem(rsa.generate_private_key(65537, 1024)), "small")


@pytest.mark.parametrize(
    "material,message",
    [
        (json.dumps(generate_es256().public_jwk()), "public key"),
        ("{not json", "JSON"),
        ("just some words", "private JWK, a PEM"),
        (pem(ec.generate_private_key(ec.SECP384R1())), "P-256"),
    ],
)
def test_unusable_material_is_refused_with_a_reason(material, message):
    with pytest.raises(KeyMaterialError, match=message):
        load_signing_key(material, "k")


def test_public_jwk_never_has_private_parts():
    key = generate_es256()
    assert "d" not in key.public_jwk() and "d" in key.private_jwk()
    ks = KeySet.from_jwks(
        {"keys": [key.private_jwk(), SigningKey.shared_secret("s" * 40, "hs1").private_jwk()]}
    )
    assert ks.public_jwks() == {"keys": [key.public_jwk()]}  # the shared secret is never published
    with pytest.raises(KeyMaterialError):
        SigningKey.shared_secret("s" * 40).public_jwk()


def test_verify_by_kid_and_refusals():
    es, hs = generate_es256(), SigningKey.shared_secret("h" * 48, "hs-imported")
    cfg = JwtConfig(keys=KeySet.from_jwks({"keys": [es.verification_jwk(), hs.verification_jwk()]}))
    assert (
        verify(es.sign({"role": "authenticated", "aud": "authenticated"}), cfg)["role"]
        == "authenticated"
    )
    assert verify(hs.sign({"role": "authenticated"}), cfg)["role"] == "authenticated"
    legacy_token = jwt.encode(
        {"role": "anon"}, "h" * 48, algorithm="HS256"
    )  # no kid, no legacy secret here
    for bad in (
        legacy_token,
        generate_es256().sign({"role": "anon"}),
        jwt.encode({"role": "anon"}, "h" * 48, algorithm="HS256", headers={"kid": es.kid}),
    ):
        with pytest.raises(ApiError) as e:
            verify(bad, cfg)
        assert e.value.status == 401


def test_settings_accept_new_key_names_and_refuse_swaps(tmp_path):
    key = generate_es256()
    path = tmp_path / "signing.json"
    path.write_text(json.dumps(key.private_jwk()))
    api = new_api_keys()
    env = {
        "SUPABASE_URL": URL,
        "SUPABASE_PUBLISHABLE_KEY": api["anon"],
        "SUPABASE_SECRET_KEY": api["service_role"],
        "SUPABASE_JWT_SIGNING_KEY": str(path),
    }
    s = Settings.load(env)
    assert s.supabase_anon_key == api["anon"] and s.signing_key().kid == key.kid
    assert "ends" in s.describe()["supabase_jwt_signing_key"]
    with pytest.raises(ConfigError, match="swapped"):
        Settings.load(
            {
                **env,
                "SUPABASE_PUBLISHABLE_KEY": api["service_role"],
                "SUPABASE_SECRET_KEY": api["anon"],
            }
        )
    legacy = api_keys("x" * 48)
    with pytest.raises(ConfigError, match="swapped"):
        Settings.load({**env, "SUPABASE_PUBLISHABLE_KEY": legacy["service_role"]})
    with pytest.raises(ConfigError, match="both set"):
        Settings.load({**env, "SUPABASE_ANON_KEY": legacy["anon"]})
    with pytest.raises(ConfigError, match="sb_publishable_"):
        Settings.load({**env, "SUPABASE_PUBLISHABLE_KEY": "pk_live_abc"})
    with pytest.raises(ConfigError, match="SUPABASE_JWT_SIGNING_KEY"):
        Settings.load({k: v for k, v in env.items() if k != "SUPABASE_JWT_SIGNING_KEY"})
    with pytest.raises(ConfigError, match="public key"):
        Settings.load({**env, "SUPABASE_JWT_SIGNING_KEY": json.dumps(key.public_jwk())})


def test_legacy_secret_with_an_imported_kid_signs_hs256_with_that_kid():
    api = api_keys("x" * 48)
    s = Settings.load(
        {
            "SUPABASE_URL": URL,
            "SUPABASE_ANON_KEY": api["anon"],
            "SUPABASE_SERVICE_ROLE_KEY": api["service_role"],
            "SUPABASE_JWT_SECRET": "x" * 48,
            "SUPABASE_JWT_KID": "legacy-imported",
        }
    )
    assert (s.signing_key().alg, s.signing_key().kid) == ("HS256", "legacy-imported")


def test_keys_generate_writes_a_private_file_and_prints_the_public_jwk(tmp_path, capsys):
    from pharmgpt.cli import main

    out = tmp_path / "sub" / "key.json"
    assert main(["keys", "generate", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert os.stat(out).st_mode & 0o777 == 0o600
    key = load_signing_key(out.read_text())
    public = json.loads(printed[printed.index("{") : printed.index("}") + 1])
    assert public == key.public_jwk() and "d" not in public
    assert key.kid in printed and "Import an existing private key" in printed
    assert main(["keys", "generate", "--out", str(out)]) == 1  # never overwrites a key silently
    assert load_signing_key(out.read_text()).kid == key.kid
