"""A scripted local stand-in for Groq / OpenAI-compatible chat servers.

It speaks the real wire protocol (HTTP/1.1, chunked `text/event-stream`, OpenAI-style error
bodies) so the providers are tested through the real `groq` SDK and httpx, not mocks. Each
request consumes the next scripted behaviour; every request is recorded for assertions.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CHAT_PATHS = ("/openai/v1/chat/completions", "/v1/chat/completions")
MODEL_PATHS = ("/openai/v1/models", "/v1/models")


@dataclass
class Tokens:
    """Stream these tokens. `chunked=False` ends the body by closing the socket (no framing)."""

    tokens: list[str]
    finish_reason: str | None = "stop"
    done: bool = True
    delay_s: float = 0.0
    chunked: bool = True


@dataclass
class DropAfter:
    """Stream these tokens, then cut the connection in the middle of the chunked body."""

    tokens: list[str]


@dataclass
class Endless:
    """Keep streaming `token` until the client goes away (or `limit_s` passes)."""

    token: str = "x"
    interval_s: float = 0.01
    limit_s: float = 4.0


@dataclass
class ErrorReply:
    status: int
    body: dict[str, Any] | str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class StreamError:
    """A 200 stream whose first event is an OpenAI-style error object."""

    message: str = "Internal error while generating"


Behaviour = Tokens | DropAfter | Endless | ErrorReply | StreamError


def _error_body(message: str, type_: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "code": code}}


def rate_limited(retry_after: str | None = "0") -> ErrorReply:
    headers = {"retry-after": retry_after} if retry_after is not None else {}
    body = _error_body("Rate limit reached", "tokens", "rate_limit_exceeded")
    return ErrorReply(429, body, headers)


def server_error(status: int = 500) -> ErrorReply:
    return ErrorReply(status, _error_body("Internal Server Error", "internal_server_error", None))


def model_not_found(model: str) -> ErrorReply:
    message = f"The model `{model}` does not exist or you do not have access to it."
    return ErrorReply(404, _error_body(message, "invalid_request_error", "model_not_found"))


def model_decommissioned(model: str) -> ErrorReply:
    message = f"The model `{model}` has been decommissioned and is no longer supported."
    return ErrorReply(400, _error_body(message, "invalid_request_error", "model_decommissioned"))


def unauthorized(status: int = 401) -> ErrorReply:
    return ErrorReply(
        status, _error_body("Invalid API Key", "invalid_request_error", "invalid_api_key")
    )


@dataclass
class Recorded:
    path: str
    model: str | None
    messages: list[dict[str, Any]]
    body: dict[str, Any]
    headers: dict[str, str]
    at: float


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 5  # idle keep-alive connections do not pin a thread for long
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
        pass

    def do_GET(self) -> None:
        """`/v1/models` lists `fake.listed_models` (None: the server has no such endpoint)."""
        fake = self.server.fake
        fake.requests.append(
            Recorded(
                self.path,
                None,
                [],
                {},
                {k.lower(): v for k, v in self.headers.items()},
                time.monotonic(),
            )
        )
        if self.path not in MODEL_PATHS or fake.listed_models is None:
            self._json(
                404,
                _error_body(f"Unknown path {self.path}", "invalid_request_error", "unknown_url"),
            )
            return
        self._json(
            200,
            {
                "object": "list",
                "data": [
                    {"id": m, "object": "model", "owned_by": "fake"} for m in fake.listed_models
                ],
            },
        )

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        fake = self.server.fake
        fake.requests.append(
            Recorded(
                path=self.path,
                model=body.get("model"),
                messages=body.get("messages") or [],
                body=body,
                headers={k.lower(): v for k, v in self.headers.items()},
                at=time.monotonic(),
            )
        )
        if self.path not in CHAT_PATHS:
            self._json(
                404,
                _error_body(f"Unknown path {self.path}", "invalid_request_error", "unknown_url"),
            )
            return
        behaviour = fake.next_behaviour()
        model = body.get("model") or "unknown"
        try:
            if isinstance(behaviour, ErrorReply):
                self._json(behaviour.status, behaviour.body, behaviour.headers)
            elif isinstance(behaviour, Tokens):
                self._stream(model, behaviour)
            elif isinstance(behaviour, DropAfter):
                self._drop(model, behaviour)
            elif isinstance(behaviour, Endless):
                self._endless(model, behaviour)
            else:
                self._start_stream(chunked=True)
                self._chunk(
                    b"data: "
                    + json.dumps(_error_body(behaviour.message, "api_error", None)).encode()
                    + b"\n\n"
                )
                self._end_chunks()
        except (BrokenPipeError, ConnectionResetError):
            fake.disconnected.set()
            self.close_connection = True

    # -- responses -------------------------------------------------------------------------

    def _json(
        self, status: int, body: dict[str, Any] | str, headers: dict[str, str] | None = None
    ) -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _start_stream(self, *, chunked: bool) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        if chunked:
            self.send_header("transfer-encoding", "chunked")
        else:
            self.send_header("connection", "close")
            self.close_connection = True
        self.end_headers()

    def _chunk(self, data: bytes, *, chunked: bool = True) -> None:
        if chunked:
            data = f"{len(data):x}\r\n".encode() + data + b"\r\n"
        self.wfile.write(data)
        self.wfile.flush()

    def _end_chunks(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _stream(self, model: str, b: Tokens) -> None:
        sse = _Sse(model)
        self._start_stream(chunked=b.chunked)
        self._chunk(sse.first(), chunked=b.chunked)
        for token in b.tokens:
            if b.delay_s:
                time.sleep(b.delay_s)
            self._chunk(sse.content(token), chunked=b.chunked)
        if b.finish_reason is not None:
            self._chunk(sse.last(b.finish_reason, len(b.tokens)), chunked=b.chunked)
        if b.done:
            self._chunk(b"data: [DONE]\n\n", chunked=b.chunked)
        if b.chunked:
            self._end_chunks()

    def _drop(self, model: str, b: DropAfter) -> None:
        sse = _Sse(model)
        self._start_stream(chunked=True)
        self._chunk(sse.first())
        for token in b.tokens:
            self._chunk(sse.content(token))
        time.sleep(0.02)  # let the client read the tokens before the connection dies
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def _endless(self, model: str, b: Endless) -> None:
        sse = _Sse(model)
        self._start_stream(chunked=True)
        self._chunk(sse.first())
        deadline = time.monotonic() + b.limit_s
        while time.monotonic() < deadline:
            self._chunk(sse.content(b.token))  # raises once the client has closed
            time.sleep(b.interval_s)
        self._chunk(sse.last("stop", 0))
        self._end_chunks()


class _Sse:
    """Chunks shaped like Groq's: role first, then content deltas, usage in `x_groq` last."""

    def __init__(self, model: str):
        self.model = model
        self.id = f"chatcmpl-{time.time_ns():x}"
        self.created = int(time.time())

    def _event(self, delta: dict[str, Any], finish: str | None, **extra: Any) -> bytes:
        chunk = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            **extra,
        }
        return b"data: " + json.dumps(chunk).encode() + b"\n\n"

    def first(self) -> bytes:
        return self._event({"role": "assistant", "content": ""}, None, x_groq={"id": "req_fake"})

    def content(self, token: str) -> bytes:
        return self._event({"content": token}, None)

    def last(self, finish: str, n_tokens: int) -> bytes:
        usage = {"prompt_tokens": 10, "completion_tokens": n_tokens, "total_tokens": 10 + n_tokens}
        return self._event({}, finish, x_groq={"id": "req_fake", "usage": usage})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeChatServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients resetting idle keep-alive connections is normal; anything else is loud."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class FakeChatServer:
    """Start with `with FakeChatServer() as server:`; `server.script(...)` queues behaviours."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.listed_models: list[str] | None = ["local-model"]
        self.disconnected = threading.Event()
        self._script: deque[Behaviour] = deque()
        self._lock = threading.Lock()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def models(self) -> list[str | None]:
        """The model of each chat request (listing the models is not one)."""
        return [r.model for r in self.requests if r.path in CHAT_PATHS]

    def script(self, *behaviours: Behaviour) -> None:
        with self._lock:
            self._script.extend(behaviours)

    def next_behaviour(self) -> Behaviour:
        with self._lock:
            if self._script:
                return self._script.popleft()
        return ErrorReply(500, _error_body("fake server: script exhausted", "test_error", None))

    def start(self) -> FakeChatServer:
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.fake = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None

    def __enter__(self) -> FakeChatServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
