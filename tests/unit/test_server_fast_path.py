"""The httptools protocol's fast path (server/protocol.py): which requests it answers from the
head, without an ASGI task, and which it leaves to uvicorn's usual way.  The app here is a
stand-in with one cached answer; tests/interop/test_server_fast_reads.py drives the real server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from trustkit.server.cache import Prepared
from trustkit.server.protocol import TimedHttpToolsProtocol

PATH = "/v2/example.com/app/_trust/tuf/targets.json"
BODY = b'{"signed":{},"signatures":[]}'
PREPARED = Prepared(1, BODY, ((b"content-length", str(len(BODY)).encode()), (b"cache-control", b"no-cache")), None)


class App:
    """Answers PATH from the cache; anything else through ASGI with a 404."""

    def __init__(self) -> None:
        self.asgi_calls: list[str] = []
        self.fast_calls: list[tuple[str, int, str]] = []

    def answer_now(self, path: str, headers: list[tuple[bytes, bytes]], size: int, client: str) -> Prepared | None:
        self.fast_calls.append((path, size, client))
        return PREPARED if path == PATH else None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.asgi_calls.append(scope["path"])
        await send({"type": "http.response.start", "status": 404, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 443)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def exchange(requests: bytes, *, paused: bool = False) -> tuple[App, bytes, int]:
    """Feed ``requests`` to a fresh connection; returns the app, what was written, and how many
    ASGI tasks were started."""
    app = App()

    async def run() -> tuple[bytes, int]:
        config = uvicorn.Config(app, lifespan="off", log_level="critical", access_log=False)
        config.load()
        state = ServerState()
        state.default_headers = [(b"date", b"Tue, 01 Dec 2026 08:00:00 GMT"), (b"server", b"uvicorn")]
        protocol = TimedHttpToolsProtocol(config, state, {}, asyncio.get_running_loop())
        transport = Transport()
        protocol.connection_made(transport)
        protocol.flow.write_paused = paused
        tasks = 0
        original = protocol._start_asgi_task  # noqa: SLF001 - counting uvicorn's usual way

        def counted(*args: Any) -> None:
            nonlocal tasks
            tasks += 1
            original(*args)

        protocol._start_asgi_task = counted  # type: ignore[method-assign]  # noqa: SLF001
        protocol.data_received(requests)
        await asyncio.sleep(0.05)
        protocol.connection_lost(None)
        return transport.written, tasks

    written, tasks = asyncio.run(run())
    return app, written, tasks


def get(path: str, *headers: str, version: str = "1.1") -> bytes:
    extra = "".join(f"{h}\r\n" for h in headers)
    return f"GET {path} HTTP/{version}\r\nHost: x\r\n{extra}\r\n".encode()


def test_a_cached_get_is_answered_from_the_head_without_a_task() -> None:
    app, written, tasks = exchange(get(PATH) + get(PATH))
    assert tasks == 0 and app.asgi_calls == []
    assert written.count(b"HTTP/1.1 200 OK\r\n") == 2 and written.endswith(BODY)
    assert b"content-length: 29\r\ncache-control: no-cache\r\n\r\n" in written
    assert b"200 OK\r\ndate: Tue, 01 Dec 2026 08:00:00 GMT\r\nserver: uvicorn\r\n" in written  # uvicorn's own
    path, size, client = app.fast_calls[0]
    assert path == PATH and client == "127.0.0.1"
    assert size == len(PATH) + len("GET") + len("HTTP/1.1") + len("x")  # request_size's rule


@pytest.mark.parametrize(
    "request_bytes",
    [
        get(PATH + "?x=1"),
        get(PATH.replace("targets", "%74argets")),
        get(PATH, "Connection: close"),
        get(PATH, version="1.0"),
        get(PATH, "Content-Length: 0"),
        get(PATH, "X-Forwarded-For: 10.0.0.1"),
        f"HEAD {PATH} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
        get("/v2/example.com/app/_trust/tuf/root.json"),  # not cached: the app says so
    ],
    ids=["query", "escape", "close", "http-1.0", "body", "proxied", "head", "miss"],
)
def test_anything_else_goes_the_usual_way(request_bytes: bytes) -> None:
    _, written, tasks = exchange(request_bytes)
    assert tasks == 1 and written.startswith(b"HTTP/1.1 404")


def test_a_client_that_does_not_read_its_answers_gets_the_usual_way() -> None:
    _, _, tasks = exchange(get(PATH), paused=True)
    assert tasks == 1


def test_a_request_pipelined_behind_one_in_progress_waits_its_turn() -> None:
    app, written, tasks = exchange(get("/v2/example.com/app/_trust/tuf/root.json") + get(PATH))
    # the second was queued behind the first (whose answer the app was still making), not
    # answered ahead of it from the cache
    assert tasks == 2 and written.count(b"HTTP/1.1 404") == 2
    assert [path for path, _, _ in app.fast_calls] == ["/v2/example.com/app/_trust/tuf/root.json"]
