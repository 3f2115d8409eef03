"""Runtime bridge, cache, metrics, configuration and password hashing, in-process."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time

import pytest
from pharmgpt.services import passwords
from pharmgpt.services.cache import TTLCache
from pharmgpt.services.config import Settings
from pharmgpt.services.errors import ConfigError
from pharmgpt.services.metrics import Metrics, timed
from pharmgpt.services.runtime import Runtime


def test_runtime_runs_coroutines_on_one_background_loop():
    rt = Runtime()
    try:

        async def where():
            return threading.current_thread().name, id(asyncio.get_running_loop())

        a, b = rt.run(where()), rt.run(where())
        assert a == b and a[0] == "pharmgpt-runtime"

        async def boom():
            raise ValueError("x")

        with pytest.raises(ValueError):
            rt.run(boom())
    finally:
        rt.stop()


def test_runtime_streams_and_closes_a_stopped_stream():
    rt = Runtime()
    closed = []

    async def tokens():
        try:
            for i in range(100):
                await asyncio.sleep(0)
                yield i
        finally:
            closed.append(True)

    try:
        out = []
        gen = rt.stream(tokens())
        for t in gen:
            out.append(t)
            if t == 4:
                break
        gen.close()
        assert out == [0, 1, 2, 3, 4] and closed == [True]
        assert list(rt.stream(tokens())) == list(range(100))
    finally:
        rt.stop()


def test_cache_ttl_lru_prefix_invalidation_and_memory_ceiling():
    c = TTLCache({"convs": 0.05, "user": 60}, max_entries=3)
    c.set(("convs", "u1", 1), "a")
    assert c.get(("convs", "u1", 1)) == "a"
    time.sleep(0.06)
    assert TTLCache.missing(c.get(("convs", "u1", 1)))
    for i in range(4):
        c.set(("user", f"u{i}"), i)
    assert len(c) == 3 and TTLCache.missing(c.get(("user", "u0")))  # least recent went first
    c.set(("convs", "u1", "a"), 1)
    c.set(("convs", "u2", "a"), 2)
    c.invalidate("convs", "u1")
    assert TTLCache.missing(c.get(("convs", "u1", "a"))) and c.get(("convs", "u2", "a")) == 2
    tiny = TTLCache({"x": 60}, max_entries=1000, memory_limit_mb=1)
    for i in range(100):
        tiny.set(("x", i), i)
    assert len(tiny) == 0  # this process is far above 1 MB: the cache empties itself


def test_metrics_percentiles_and_decorator():
    m = Metrics(slow_ms=1e9)
    for v in range(1, 101):
        m.record("op", float(v))
    s = m.snapshot()["op"]
    assert (s.count, s.p50_ms, s.p95_ms, s.max_ms) == (100, 51.0, 95.0, 100.0)

    class Svc:
        metrics = m

        @timed("svc.fail")
        async def fail(self):
            raise RuntimeError

    with pytest.raises(RuntimeError):
        asyncio.run(Svc().fail())
    assert m.snapshot()["svc.fail"].errors == 1


def test_settings_from_env_validated_and_masked(tmp_path):
    s = Settings.load(
        {
            "PHARMGPT_BCRYPT_ROUNDS": "10",
            "PHARMGPT_DATA_DIR": str(tmp_path),
            "GROQ_API_KEY": "gsk_secret1234",
        }
    )
    assert s.bcrypt_rounds == 10 and s.data_dir == tmp_path and s.embedded
    assert "secret" not in s.describe()["groq_api_key"] and "…1234" in s.describe()["groq_api_key"]
    with pytest.raises(ConfigError, match="SUPABASE_ANON_KEY"):
        Settings.load({"SUPABASE_URL": "https://x.supabase.co"})
    with pytest.raises(ConfigError, match="must be a int"):
        Settings.load({"PHARMGPT_BCRYPT_ROUNDS": "many"})
    with pytest.raises(ConfigError, match="between 4 and 16"):
        Settings.load({"PHARMGPT_BCRYPT_ROUNDS": "40"})


def test_password_hashing_schemes():
    h = passwords.hash_password("p" * 100, rounds=4)
    assert h.startswith("$2b$04$") and passwords.verify_password("p" * 100, h)
    assert not passwords.verify_password("p" * 99, h)
    assert not passwords.verify_password("x", "not a hash")
    salt = "ab" * 32
    legacy = hashlib.sha256(("secret" + salt).encode()).hexdigest()
    assert passwords.verify_password("secret", legacy, passwords.LEGACY, salt)
    assert not passwords.verify_password("secret", legacy, passwords.LEGACY, None)
    assert passwords.needs_rehash(legacy, passwords.LEGACY, 12)
    assert passwords.needs_rehash(h, passwords.BCRYPT, 12) and not passwords.needs_rehash(
        h, passwords.BCRYPT, 4
    )


@pytest.fixture
def no_old_checkout_data(tmp_path, monkeypatch):
    """A fresh user: no data in the checkout's old default, a home of its own, no secrets file."""
    from pharmgpt.services import config

    monkeypatch.setattr(config, "LEGACY_DATA_DIR", tmp_path / "checkout" / ".pharmgpt")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.delenv("PHARMGPT_DATA_DIR", raising=False)
    monkeypatch.setenv("PHARMGPT_SECRETS_FILE", str(tmp_path / "none.toml"))
    return config


def test_one_data_directory_for_every_command(tmp_path, monkeypatch, capsys, no_old_checkout_data):
    """PHARMGPT_DATA_DIR, else one per-user default: never the directory a command is run from."""
    import json

    from pharmgpt.cli import main
    from pharmgpt.services.config import data_dir, describe_data
    from pharmgpt.wiring import default_data_dir

    monkeypatch.chdir(tmp_path)  # `pharmgpt local …` used to mean $CWD/.pharmgpt
    user = tmp_path / "home" / ".local" / "share" / "pharmgpt"
    assert (
        data_dir()
        == user
        == default_data_dir()[0]
        == Settings.load().data_dir
        == Settings().data_dir
    )
    assert data_dir({}) == user and data_dir({"PHARMGPT_DATA_DIR": ""}) == user
    assert data_dir({"PHARMGPT_DATA_DIR": "~/pgt"}) == tmp_path / "home" / "pgt"
    elsewhere = tmp_path / "elsewhere"
    monkeypatch.setenv("PHARMGPT_DATA_DIR", str(elsewhere))
    assert data_dir() == elsewhere == default_data_dir()[0] == Settings.load().data_dir
    assert describe_data(Settings.load()) == (
        f"database: embedded Postgres in {elsewhere / 'pgdata'}; data dir "
        f"{elsewhere} (from PHARMGPT_DATA_DIR)"
    )
    assert describe_data(Settings.load({})) == (
        f"database: embedded Postgres in {user / 'pgdata'}; data dir {user} (the default)"
    )
    assert "Supabase at https://x.supabase.co" in describe_data(
        Settings(supabase_url="https://x.supabase.co")
    )
    # `pharmgpt local status` says which directory it looked at (stderr: its stdout is JSON)
    assert main(["local", "status"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["data_dir"] == str(elsewhere)
    assert f"data dir: {elsewhere} (from PHARMGPT_DATA_DIR)" in out.err


def test_the_default_data_directory_follows_xdg_and_never_the_package(
    tmp_path, monkeypatch, no_old_checkout_data
):
    config = no_old_checkout_data
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert config.data_dir() == tmp_path / "xdg" / "pharmgpt"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/xdg")  # the spec: ignore a relative one
    assert config.data_dir() == tmp_path / "home" / ".local" / "share" / "pharmgpt"
    # an installed package: its site-packages/.pharmgpt is never used, even holding files
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    (site / ".pharmgpt").mkdir(parents=True)
    (site / ".pharmgpt" / "localbase.json").write_text("{}")
    monkeypatch.setattr(config, "PROJECT_ROOT", site)
    monkeypatch.setattr(config, "LEGACY_DATA_DIR", site / ".pharmgpt")
    assert config.data_dir() == tmp_path / "home" / ".local" / "share" / "pharmgpt"


def test_a_checkout_keeps_the_data_it_already_has(tmp_path, monkeypatch, no_old_checkout_data):
    """A checkout's user loses nothing: <checkout>/.pharmgpt stays in use while it holds data."""
    config = no_old_checkout_data
    old = config.LEGACY_DATA_DIR
    old.mkdir(parents=True)
    assert (
        config.data_dir() == tmp_path / "home" / ".local" / "share" / "pharmgpt"
    )  # empty: not in use
    (old / "pgdata").mkdir()
    assert config.data_dir() == old == Settings.load().data_dir == Settings().data_dir
    said = config.describe_data(Settings.load())
    assert said.endswith(
        f"data dir {old} (the checkout's old default, kept because it holds data; set "
        "PHARMGPT_DATA_DIR to move it)"
    )
    monkeypatch.setenv("PHARMGPT_DATA_DIR", str(tmp_path / "moved"))
    assert config.data_dir() == tmp_path / "moved"


def test_the_secrets_file_is_found_in_the_current_directory_then_the_data_directory(
    tmp_path, monkeypatch, no_old_checkout_data
):
    config = no_old_checkout_data
    monkeypatch.delenv("PHARMGPT_SECRETS_FILE")
    monkeypatch.setattr(config, "PROJECT_ROOT", tmp_path / "checkout")
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "home" / ".local" / "share" / "pharmgpt"
    data.mkdir(parents=True)
    (data / "secrets.toml").write_text('PHARMGPT_BCRYPT_ROUNDS = "5"\n')
    assert config.secrets_path() == data / "secrets.toml" and Settings.load().bcrypt_rounds == 5
    (tmp_path / "checkout" / ".streamlit").mkdir(parents=True)
    (tmp_path / "checkout" / ".streamlit" / "secrets.toml").write_text(
        'PHARMGPT_BCRYPT_ROUNDS = "6"\n'
    )
    assert Settings.load().bcrypt_rounds == 6  # a checkout's own file, wherever the command runs
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_text('PHARMGPT_BCRYPT_ROUNDS = "7"\n')
    assert (
        config.secrets_path() == tmp_path / ".streamlit" / "secrets.toml"
        and Settings.load().bcrypt_rounds == 7
    )
    monkeypatch.setenv("PHARMGPT_SECRETS_FILE", str(data / "secrets.toml"))
    assert Settings.load().bcrypt_rounds == 5


def test_keys_generate_defaults_to_the_data_directory(
    tmp_path, monkeypatch, capsys, no_old_checkout_data
):
    from pharmgpt.cli import main

    monkeypatch.setenv("PHARMGPT_DATA_DIR", str(tmp_path / "data"))
    assert main(["keys", "generate"]) == 0
    key = tmp_path / "data" / "jwt-signing-key.json"
    assert str(key) in capsys.readouterr().out and key.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "data").stat().st_mode & 0o077 == 0


def test_admin_promote_never_creates_an_empty_database(tmp_path, monkeypatch, capsys):
    from pharmgpt.cli import main

    for key in (
        "SUPABASE_URL",
        "SUPABASE_ANON_KEY",
        "SUPABASE_SERVICE_ROLE_KEY",
        "SUPABASE_JWT_SECRET",
    ):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PHARMGPT_SECRETS_FILE", str(tmp_path / "none.toml"))
    monkeypatch.setenv("PHARMGPT_DATA_DIR", str(tmp_path / "wrong"))
    assert main(["admin", "promote", "alice"]) == 1
    out = capsys.readouterr().out
    assert f"database: embedded Postgres in {tmp_path / 'wrong' / 'pgdata'}" in out
    assert (
        f"There is no PharmGPT database in {tmp_path / 'wrong'}" in out
        and "PHARMGPT_DATA_DIR" in out
    )
    assert not (tmp_path / "wrong" / "pgdata").exists()
