"""A real HTTP server on loopback that imitates an OpenAI-compatible chat-completions endpoint.

Tests script its replies: `server.reply(...)` queues what the next requests get (good answers, garbage,
partial JSON, slow answers, 429 with Retry-After, 5xx); when the queue is empty it gives `server.default`.
Every request it received is kept in `server.requests` (headers and JSON body) for assertions.
Fixtures: `llm_server` (a running server), `llm_down_url` (a loopback URL where nothing listens).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Reply:
    """One scripted answer: `content` becomes the assistant message; `body` (raw bytes) overrides the envelope."""

    content: str = ""
    status: int = 200
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    finish_reason: str = "stop"


def good(value: Any) -> Reply:
    """A 200 answer whose message is `value` as JSON."""
    return Reply(content=json.dumps(value))


GARBAGE = Reply(content="Sure! Here are some ideas: physics, Germany, and famous people.")
PARTIAL = Reply(content='{"components": [{"name": "physics", "phrases": ["E = mc', finish_reason="length")
NOT_JSON_BODY = Reply(body=b"<html>502 Bad Gateway</html>")


def rate_limited(retry_after: str = "0") -> Reply:
    return Reply(status=429, headers={"Retry-After": retry_after}, body=b'{"error": {"message": "slow down"}}')


def server_error(status: int = 503) -> Reply:
    return Reply(status=status, body=b'{"error": {"message": "overloaded"}}')


def slow(seconds: float, value: Any = None) -> Reply:
    return Reply(content=json.dumps(value if value is not None else {}), delay_s=seconds)


class FakeLLMServer:
    """The running server: `base_url`, scripted replies, recorded requests."""

    def __init__(self) -> None:
        self.default = Reply(content="ok")
        self.requests: list[dict] = []
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read server.requests
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    payload = json.loads(raw)
                except ValueError:
                    payload = None
                reply = server._next(self.path, dict(self.headers), payload)
                try:
                    if reply.delay_s:
                        time.sleep(reply.delay_s)
                    self._send(reply, payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout): nothing to answer
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def _send(self, reply: Reply, payload: Any) -> None:
                body = reply.body
                if body is None:
                    model = payload.get("model", "") if isinstance(payload, dict) else ""
                    body = json.dumps(
                        {
                            "id": f"chatcmpl-{len(server.requests)}",
                            "object": "chat.completion",
                            "model": model,
                            "choices": [
                                {
                                    "index": 0,
                                    "message": {"role": "assistant", "content": reply.content},
                                    "finish_reason": reply.finish_reason,
                                }
                            ],
                            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
                        }
                    ).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def reply(self, *replies: Reply) -> None:
        """Queue replies for the next requests, in order."""
        with self._lock:
            self._queue.extend(replies)

    def _next(self, path: str, headers: dict, payload: Any) -> Reply:
        with self._lock:
            self.requests.append({"path": path, "headers": headers, "json": payload, "at": time.monotonic()})
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if path.rstrip("/") != "/v1/chat/completions":
                return Reply(status=404, body=b'{"error": {"message": "no such route"}}')
            return self._queue.popleft() if self._queue else self.default

    def start(self) -> FakeLLMServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def free_loopback_url() -> str:
    """A loopback URL on a port where nothing listens (the endpoint is down)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


@pytest.fixture
def llm_server() -> Iterator[FakeLLMServer]:
    server = FakeLLMServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def llm_down_url() -> str:
    return free_loopback_url()
