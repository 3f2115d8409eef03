"""The one place PharmGPT is put together: Settings → local stack → Services → RAG → worker.

Every entry point (the `pharmgpt` command, the launcher, the doctor, the Streamlit process
through app/context.py) builds what it needs here, so the order and the embedded rule
(DESIGN D1: no Supabase URL means the local stack in the data directory) are written once.
The product packages never import this module; it imports them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from pharmgpt.services.config import Settings, data_dir, data_dir_source, describe_data
from pharmgpt.services.container import Services
from pharmgpt.services.errors import ConfigError

if TYPE_CHECKING:
    from pharmgpt.localbase.stack import LocalStack, StackInfo
    from pharmgpt.rag_system import RagSystem


def load_settings() -> Settings:
    return Settings.load()


def default_data_dir() -> tuple[Path, str]:
    """The data directory a command uses without --data-dir, and why (printed by
    `pharmgpt local`)."""
    chosen = data_dir()
    return chosen, data_dir_source(chosen)


# ---------------------------------------------------------------------- the local stack
def local_stack(settings: Settings) -> LocalStack:
    """The embedded stack (Postgres + gateway) over the settings' data directory."""
    from pharmgpt.localbase.stack import LocalStack

    return LocalStack(settings.data_dir)


def running_gateway(settings: Settings) -> StackInfo | None:
    """The data directory's gateway when it is running (the doctor and the admin page ask)."""
    return local_stack(settings).running_gateway()


def on_stack(settings: Settings, info: StackInfo) -> Settings:
    """The settings pointed at a running local stack (its URL and keys)."""
    return dataclasses.replace(settings, **info.settings_overrides())


def start_stack(settings: Settings) -> Settings:
    """Bring the local stack up when the settings are embedded; the settings to use then."""
    if not settings.embedded:
        return settings
    return on_stack(settings, local_stack(settings).up())


# ---------------------------------------------------------------------- services and RAG
async def build_services(settings: Settings | None = None, *, start_local: bool = True) -> Services:
    """The services, on the local stack when nothing else is configured (started if needed)."""
    settings = settings or load_settings()
    if settings.embedded and start_local:
        settings = await asyncio.to_thread(start_stack, settings)
    return await Services.create(settings)


def build_rag(services: Services, **options) -> RagSystem:
    """The retrieval, indexing and answering side over the services, with its worker."""
    from pharmgpt.rag_system import RagSystem

    return RagSystem(services, **options)


@asynccontextmanager
async def open_services(
    settings: Settings | None = None,
    *,
    announce: TextIO | None = None,
    existing_database: bool = False,
) -> AsyncIterator[Services]:
    """Services for one command, closed afterwards. `announce`: print which database and data
    directory are used there first. `existing_database`: never create an embedded database (a
    ConfigError instead), and stop the stack afterwards when it was not running before."""
    settings = settings or load_settings()
    if announce is not None:
        print(describe_data(settings), file=announce, flush=True)
    stack = None
    if settings.embedded and existing_database:
        stack = local_stack(settings)
        if not stack.pg.initialized():
            raise ConfigError(
                f"There is no PharmGPT database in {settings.data_dir}. Start the app once there "
                "(`pharmgpt run`), or set PHARMGPT_DATA_DIR to the directory the app uses."
            )
        if stack.pg.status().running:
            stack = None  # someone else's: leave it running
    try:
        services = await build_services(settings)
        try:
            yield services
        finally:
            await services.close()
    finally:
        if stack is not None:
            await asyncio.to_thread(stack.down)


@asynccontextmanager
async def open_system(
    settings: Settings | None = None, *, announce: TextIO | None = sys.stdout
) -> AsyncIterator[RagSystem]:
    """Services and the RAG side for one command (`pharmgpt worker`, `reconcile`)."""
    async with open_services(settings, announce=announce) as services:
        yield build_rag(services)


async def build_app_process(settings: Settings | None = None) -> tuple[Services, RagSystem]:
    """What one Streamlit server process runs on (app/context.py), built on its runtime loop:
    the outbox flusher, the warm-up, and the in-process worker unless `pharmgpt run` supervises
    workers beside it (PHARMGPT_APP_RUNS_WORKER=false)."""
    services = await build_services(settings)
    rag = build_rag(services)
    if services.settings.app_runs_worker:
        rag.start_worker()
    services.start_outbox_flusher()
    if services.settings.warm_start:
        rag.warmup.start()
    return services, rag
