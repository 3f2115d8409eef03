"""One set of services and one RAG system per Streamlit server process.

Built on the runtime loop (DESIGN D6) the first time a page needs them, with the
outbox flusher started there. The ingestion worker runs in its own process under
`pharmgpt run` (services/launcher.py), which sets PHARMGPT_APP_RUNS_WORKER=false;
a bare `streamlit run` and the AppTests run it on this loop instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from localbase.files import private_umask
from rag.system import RagSystem
from services.container import Services
from services.runtime import Runtime, get_runtime


@dataclass
class AppContext:
    services: Services
    rag: RagSystem
    runtime: Runtime

    def run(self, coro, timeout: float | None = 60):
        return self.runtime.run(coro, timeout)

    def stream(self, agen, timeout: float | None = 120):
        return self.runtime.stream(agen, timeout)


@st.cache_resource(show_spinner="Starting PharmGPT…")
def app_context() -> AppContext:
    private_umask()  # this process's entry point: what it writes under the data directory is private
    rt = get_runtime()

    async def build() -> AppContext:
        services = await Services.create()
        rag = RagSystem(services)
        if services.settings.app_runs_worker:
            rag.start_worker()
        services.start_outbox_flusher()
        return AppContext(services, rag, rt)

    return rt.run(build(), timeout=180)
