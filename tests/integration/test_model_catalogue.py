"""The one model catalogue on the real stack: the provider owns its models and default, so a
user with default preferences sends OPENAI_MODEL to an OpenAI-compatible server (issue 13),
and a stored preference the server does not offer falls back to its default with a notice."""

from __future__ import annotations

import uuid

import pytest
import pytest_asyncio
from pharmgpt.rag_system import RagSystem, make_provider
from pharmgpt.services.answering import AnswerService
from pharmgpt.services.config import Settings

from tests.unit.fake_openai_server import FakeChatServer, Tokens

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LABEL = (
    b"Atorvastatin calcium tablets.\n\nDosage and administration: the recommended starting dose of "
    b"atorvastatin is 10 or 20 mg once daily. The dosage range is 10 to 80 mg once daily.\n"
)
QUESTION = "What is the recommended starting dose of atorvastatin?"


@pytest_asyncio.fixture(scope="module")
async def pharmacist(services):
    rag = RagSystem(services, use_configured_provider=False)
    user = await services.users.create_user(f"cat-{uuid.uuid4().hex[:8]}", "long enough pw 1")
    await services.documents.register_upload(user.id, "atorvastatin.txt", LABEL)
    while await rag.worker.run_once():
        pass
    return rag, user


async def ask(engine, user_id, conv_id):
    return [e async for e in engine.answer(user_id, conv_id, QUESTION)]


def engine_for(services, rag, provider):
    return AnswerService(
        services.conversations, services.documents, services.preferences, rag.planner, provider
    )


async def test_default_preferences_send_openai_model(services, pharmacist):
    rag, user = pharmacist
    assert (await services.preferences.get_all(user.id))["model"] == ""  # nothing chosen
    with FakeChatServer() as server:
        settings = Settings.load(
            env={"OPENAI_BASE_URL": f"{server.url}/v1", "OPENAI_MODEL": "local-model"}
        )
        provider = make_provider(settings)
        server.script(Tokens(["Start at 10 or 20 mg once daily [1]."]))
        conv = await services.conversations.create_conversation(user.id)
        events = await ask(engine_for(services, rag, provider), user.id, conv.id)
        assert server.models == ["local-model"]
        done = next(e for e in events if e["type"] == "done")["message"]
        assert done.model == "local-model" and not [e for e in events if e["type"] == "notice"]
        await provider.aclose()


async def test_a_stored_model_the_server_lacks_falls_back_with_a_notice(services, pharmacist):
    rag, user = pharmacist
    await services.preferences.set(
        user.id, "model", "meta-llama/llama-4-maverick-17b-128e-instruct"
    )
    try:
        with FakeChatServer() as server:
            server.listed_models = ["qwen2.5-7b-instruct"]  # no OPENAI_MODEL: the server's own list
            provider = make_provider(Settings.load(env={"OPENAI_BASE_URL": f"{server.url}/v1"}))
            server.script(Tokens(["10 or 20 mg [1]."]))
            conv = await services.conversations.create_conversation(user.id)
            events = await ask(engine_for(services, rag, provider), user.id, conv.id)
            assert server.models == ["qwen2.5-7b-instruct"]
            notice = next(e for e in events if e["type"] == "notice")["text"]
            assert "meta-llama/llama-4-maverick-17b-128e-instruct is not offered here" in notice
            assert "qwen2.5-7b-instruct" in notice
            await provider.aclose()
    finally:
        await services.preferences.delete(user.id, "model")
