"""Streaming providers against a real local HTTP server speaking the Groq/OpenAI wire protocol."""

from __future__ import annotations

import asyncio
import gc
import socket
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing

import pytest
from pharmgpt.rag.llm import GroqProvider, LLMError, OpenAICompatProvider, Provider

from tests.unit.fake_openai_server import (
    DropAfter,
    Endless,
    FakeChatServer,
    StreamError,
    Tokens,
    model_decommissioned,
    model_not_found,
    rate_limited,
    server_error,
    unauthorized,
)

pytestmark = pytest.mark.timeout(5)

PRIMARY, FALLBACK = "primary-model", "fallback-model"
MESSAGES = [
    {"role": "system", "content": "You answer pharmacists."},
    {"role": "user", "content": "Max daily dose of paracetamol?"},
]


@pytest.fixture
def server() -> Iterator[FakeChatServer]:
    with FakeChatServer() as fake:
        yield fake


@pytest.fixture
async def groq(server: FakeChatServer) -> AsyncIterator[GroqProvider]:
    provider = GroqProvider(
        "test-key",
        models=[PRIMARY, FALLBACK],
        base_url=server.url,
        timeout_s=3,
        max_retries=2,
        max_wait_s=0.01,
    )
    yield provider
    await provider.aclose()


@pytest.fixture
async def compat(server: FakeChatServer) -> AsyncIterator[OpenAICompatProvider]:
    provider = OpenAICompatProvider(
        f"{server.url}/v1", "local-key", "local-model", timeout_s=3, max_retries=2, max_wait_s=0.01
    )
    yield provider
    await provider.aclose()


async def collect(stream: AsyncIterator[str], into: list[str] | None = None) -> str:
    """Join a stream; `into` keeps the tokens seen so far when the stream raises."""
    tokens = [] if into is None else into
    async with aclosing(stream) as s:
        async for token in s:
            tokens.append(token)
    return "".join(tokens)


# -- Groq ------------------------------------------------------------------------------------


async def test_groq_streams_tokens_in_order(server: FakeChatServer, groq: GroqProvider) -> None:
    server.script(Tokens(["Up ", "to ", "4 g ", "per ", "day."]))
    seen: list[str] = []
    text = await collect(groq.stream(MESSAGES, temperature=0.1, max_tokens=64), seen)
    assert seen == ["Up ", "to ", "4 g ", "per ", "day."]
    assert text == "Up to 4 g per day."
    (req,) = server.requests
    assert req.path == "/openai/v1/chat/completions"
    assert req.model == PRIMARY
    assert req.messages == MESSAGES
    assert req.body["stream"] is True and req.body["max_tokens"] == 64
    assert req.headers["authorization"] == "Bearer test-key"
    assert isinstance(groq, Provider) and groq.name == "groq"


async def test_groq_default_models_and_explicit_model_first(server: FakeChatServer) -> None:
    default = GroqProvider("k", base_url=server.url)
    assert default.models == [
        "meta-llama/llama-4-maverick-17b-128e-instruct",
        "llama-3.3-70b-versatile",
    ]
    server.script(model_not_found("custom"), Tokens(["ok"]))
    assert await collect(default.stream(MESSAGES, model="custom")) == "ok"
    assert server.models == ["custom", "meta-llama/llama-4-maverick-17b-128e-instruct"]
    await default.aclose()


async def test_groq_429_honours_retry_after_then_succeeds(server: FakeChatServer) -> None:
    provider = GroqProvider("k", models=[PRIMARY], base_url=server.url, max_wait_s=1.0)
    server.script(rate_limited("0.3"), Tokens(["fine"]))
    assert await collect(provider.stream(MESSAGES)) == "fine"
    assert server.models == [PRIMARY, PRIMARY]
    gap = server.requests[1].at - server.requests[0].at
    assert 0.28 <= gap < 1.0
    await provider.aclose()


async def test_groq_429_longer_than_cap_falls_back_without_waiting(
    server: FakeChatServer, groq: GroqProvider
) -> None:
    server.script(rate_limited("60"), Tokens(["from fallback"]))
    started = time.monotonic()
    assert await collect(groq.stream(MESSAGES)) == "from fallback"
    assert time.monotonic() - started < 1.0
    assert server.models == [PRIMARY, FALLBACK]


async def test_groq_5xx_exhausts_retries_then_falls_back(
    server: FakeChatServer, groq: GroqProvider
) -> None:
    server.script(server_error(500), server_error(503), server_error(502), Tokens(["ok"]))
    assert await collect(groq.stream(MESSAGES)) == "ok"
    assert server.models == [PRIMARY, PRIMARY, PRIMARY, FALLBACK]  # 1 try + 2 retries, then B


async def test_groq_error_event_in_stream_before_tokens_is_retried(
    server: FakeChatServer, groq: GroqProvider
) -> None:
    server.script(StreamError(), Tokens(["ok"]))
    assert await collect(groq.stream(MESSAGES)) == "ok"
    assert server.models == [PRIMARY, PRIMARY]


@pytest.mark.parametrize("reply", [model_not_found, model_decommissioned])
async def test_groq_unknown_model_falls_back_at_once(
    server: FakeChatServer, groq: GroqProvider, reply
) -> None:
    server.script(reply(PRIMARY), Tokens(["ok"]))
    assert await collect(groq.stream(MESSAGES)) == "ok"
    assert server.models == [PRIMARY, FALLBACK]


async def test_groq_all_models_gone_says_so(server: FakeChatServer, groq: GroqProvider) -> None:
    server.script(model_not_found(PRIMARY), model_decommissioned(FALLBACK))
    with pytest.raises(LLMError, match="None of the configured language models") as err:
        await collect(groq.stream(MESSAGES))
    assert [d["model"] for d in err.value.details] == [PRIMARY, FALLBACK]


async def test_groq_everything_failing_raises_clear_error(
    server: FakeChatServer, groq: GroqProvider
) -> None:
    server.script(*[server_error(500)] * 6)
    with pytest.raises(LLMError, match="having problems") as err:
        await collect(groq.stream(MESSAGES))
    assert err.value.code == "llm" and not err.value.partial
    assert server.models == [PRIMARY] * 3 + [FALLBACK] * 3
    assert "Traceback" not in err.value.message


async def test_groq_rate_limit_everywhere_says_wait(
    server: FakeChatServer, groq: GroqProvider
) -> None:
    server.script(*[rate_limited("0")] * 6)
    with pytest.raises(LLMError, match="wait a minute"):
        await collect(groq.stream(MESSAGES))
    assert len(server.requests) == 6


@pytest.mark.parametrize("status", [401, 403])
async def test_groq_refused_key_is_not_retried(
    server: FakeChatServer, groq: GroqProvider, status: int
) -> None:
    server.script(unauthorized(status), Tokens(["never"]))
    with pytest.raises(LLMError, match="The Groq API key was refused") as err:
        await collect(groq.stream(MESSAGES))
    assert len(server.requests) == 1
    assert err.value.details[0]["status"] == status


async def test_groq_mid_stream_disconnect_raises_after_tokens(
    server: FakeChatServer, groq: GroqProvider
) -> None:
    server.script(DropAfter(["Take ", "500 mg"]), Tokens(["must not be used"]))
    seen: list[str] = []
    with pytest.raises(LLMError, match="The answer was cut off") as err:
        await collect(groq.stream(MESSAGES), seen)
    assert seen == ["Take ", "500 mg"]
    assert err.value.partial
    assert len(server.requests) == 1  # never retried after text was shown


async def test_groq_clean_eof_without_finish_is_not_complete(
    server: FakeChatServer, groq: GroqProvider
) -> None:
    server.script(Tokens(["Take ", "500"], finish_reason=None, done=False, chunked=False))
    seen: list[str] = []
    with pytest.raises(LLMError, match="cut off") as err:
        await collect(groq.stream(MESSAGES), seen)
    assert seen == ["Take ", "500"] and err.value.partial


async def test_groq_length_limit_is_reported(server: FakeChatServer, groq: GroqProvider) -> None:
    server.script(Tokens(["The dose is"], finish_reason="length"))
    with pytest.raises(LLMError, match="maximum answer length") as err:
        await collect(groq.stream(MESSAGES))
    assert err.value.partial


async def test_groq_early_stop_closes_the_http_stream(
    server: FakeChatServer, groq: GroqProvider
) -> None:
    server.script(Endless("tok "))
    async with aclosing(groq.stream(MESSAGES)) as stream:
        async for token in stream:
            assert token == "tok "
            break
    assert await asyncio.to_thread(server.disconnected.wait, 2.0)
    assert len(server.requests) == 1


async def test_groq_plain_break_also_closes_the_stream(
    server: FakeChatServer, groq: GroqProvider
) -> None:
    server.script(Endless("tok "))
    async for _token in groq.stream(MESSAGES):
        break  # the async generator is finalised by the event loop's asyncgen hook
    gc.collect()
    for _ in range(5):
        await asyncio.sleep(0)
    assert await asyncio.to_thread(server.disconnected.wait, 2.0)


async def test_groq_unreachable_server_is_a_clear_error() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = GroqProvider(
        "k", base_url=f"http://127.0.0.1:{port}", max_retries=1, max_wait_s=0.01, timeout_s=2
    )
    with pytest.raises(LLMError, match="Could not reach the Groq service") as err:
        await collect(provider.stream(MESSAGES))
    assert len(err.value.details) == 2  # one model only: the host is the same for all models
    await provider.aclose()


# -- OpenAI-compatible -------------------------------------------------------------------------


async def test_compat_catalogue_is_openai_model_else_the_servers_list(
    server: FakeChatServer,
) -> None:
    from pharmgpt.services.answering import choose_model

    fixed = OpenAICompatProvider(f"{server.url}/v1", None, "local-model", timeout_s=3)
    assert await fixed.catalogue() == ["local-model"] and server.requests == []  # no need to ask
    server.listed_models = ["qwen2.5-7b-instruct", "llama3.1:8b"]
    listed = OpenAICompatProvider(f"{server.url}/v1", None, timeout_s=3, max_retries=0)
    assert await listed.catalogue() == ["qwen2.5-7b-instruct", "llama3.1:8b"]
    assert await listed.catalogue() == ["qwen2.5-7b-instruct", "llama3.1:8b"]
    assert [r.path for r in server.requests] == ["/v1/models"]  # asked once, remembered
    choice = choose_model(await listed.catalogue(), "meta-llama/llama-4-maverick-17b-128e-instruct")
    assert choice.model == "qwen2.5-7b-instruct" and "is not offered here" in choice.notice
    assert choose_model(await listed.catalogue(), "llama3.1:8b").notice is None
    assert choose_model(await listed.catalogue(), "").model == "qwen2.5-7b-instruct"
    server.script(Tokens(["ok"]))
    assert await collect(listed.stream(MESSAGES, model=choice.model)) == "ok"
    assert server.models == ["qwen2.5-7b-instruct"]
    server.listed_models = None
    mute = OpenAICompatProvider(f"{server.url}/v1", None, timeout_s=3)
    with pytest.raises(LLMError, match="did not list its models. Set OPENAI_MODEL"):
        await mute.catalogue()
    for p in (fixed, listed, mute):
        await p.aclose()


async def test_compat_streams_and_handles_done(
    server: FakeChatServer, compat: OpenAICompatProvider
) -> None:
    server.script(Tokens(["Ibu", "profen"]))
    seen: list[str] = []
    assert await collect(compat.stream(MESSAGES, max_tokens=32), seen) == "Ibuprofen"
    assert seen == ["Ibu", "profen"]
    (req,) = server.requests
    assert req.path == "/v1/chat/completions"
    assert req.model == "local-model" and req.messages == MESSAGES
    assert req.body["stream"] is True and req.body["max_tokens"] == 32
    assert req.headers["authorization"] == "Bearer local-key"
    assert isinstance(compat, Provider) and compat.name == "openai-compatible"


async def test_compat_done_without_finish_reason_is_complete(
    server: FakeChatServer, compat: OpenAICompatProvider
) -> None:
    server.script(Tokens(["a", "b"], finish_reason=None, done=True))
    assert await collect(compat.stream(MESSAGES, model="other")) == "ab"
    assert server.models == ["other"]


async def test_compat_retries_429_and_5xx(
    server: FakeChatServer, compat: OpenAICompatProvider
) -> None:
    server.script(rate_limited("0"), server_error(502), Tokens(["ok"]))
    assert await collect(compat.stream(MESSAGES)) == "ok"
    assert len(server.requests) == 3


async def test_compat_gives_up_after_retries(
    server: FakeChatServer, compat: OpenAICompatProvider
) -> None:
    server.script(server_error(500), server_error(500), server_error(500), Tokens(["late"]))
    with pytest.raises(LLMError, match="language model server at .* is having problems"):
        await collect(compat.stream(MESSAGES))
    assert len(server.requests) == 3


async def test_compat_error_event_is_retried(
    server: FakeChatServer, compat: OpenAICompatProvider
) -> None:
    server.script(StreamError(), Tokens(["ok"]))
    assert await collect(compat.stream(MESSAGES)) == "ok"


async def test_compat_refused_key(server: FakeChatServer, compat: OpenAICompatProvider) -> None:
    server.script(unauthorized())
    with pytest.raises(LLMError, match="refused the API key"):
        await collect(compat.stream(MESSAGES))
    assert len(server.requests) == 1


async def test_compat_mid_stream_disconnect(
    server: FakeChatServer, compat: OpenAICompatProvider
) -> None:
    server.script(DropAfter(["half ", "an"]))
    seen: list[str] = []
    with pytest.raises(LLMError, match="cut off") as err:
        await collect(compat.stream(MESSAGES), seen)
    assert seen == ["half ", "an"] and err.value.partial
    assert len(server.requests) == 1


async def test_compat_early_stop_closes_the_http_stream(
    server: FakeChatServer, compat: OpenAICompatProvider
) -> None:
    server.script(Endless())
    async with aclosing(compat.stream(MESSAGES)) as stream:
        async for _token in stream:
            break
    assert await asyncio.to_thread(server.disconnected.wait, 2.0)


def test_provider_survives_a_new_event_loop_per_call(server: FakeChatServer) -> None:
    """Streamlit-style: each interaction runs in its own `asyncio.run` loop."""
    provider = GroqProvider("k", models=[PRIMARY], base_url=server.url)
    server.script(Tokens(["one"]), Tokens(["two"]))

    async def one_interaction() -> str:
        try:
            return await collect(provider.stream(MESSAGES))
        finally:
            await provider.aclose()  # the loop is about to end: release its pooled sockets

    def ask() -> str:
        return asyncio.run(one_interaction())

    with ThreadPoolExecutor(1) as pool:  # no loop may be running in the calling thread
        assert pool.submit(ask).result(timeout=3) == "one"
        assert pool.submit(ask).result(timeout=3) == "two"
    assert len(provider._clients._by_loop) == 0
