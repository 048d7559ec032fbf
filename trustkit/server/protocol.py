"""Layer `server`: uvicorn's HTTP protocols with the read limits uvicorn lacks.

uvicorn closes idle keep-alive connections, but nothing else: a client that sends half a
request head, or stops in the middle of a body, holds its connection (and what it sent) for
ever, and a head may grow without bound.  These subclasses close a connection

* whose request head is not complete ``header_timeout`` seconds after its first byte (or after
  the connection opened, for the first request), however slowly it trickles in;
* whose request body makes no progress for ``body_timeout`` seconds (time the server itself
  stops reading, because the app has not taken what came, does not count);

and answer a head over ``max_head`` bytes (1 MiB, Go's ``http.DefaultMaxHeaderBytes``) with 431.

The httptools protocol also answers a plain keep-alive GET of cached current metadata at once,
from the request head, when the app offers ``answer_now`` (``app.AccessLog``/``CurrentReads``):
uvicorn would make a scope, a request cycle, an event and a task for it, together more than the
rest of the answer.  Anything else (a miss, a refusal, a query, an escape, a body, a proxy's
headers, HTTP/1.0, a pipelined request, a client not reading its answers) goes the usual way.

Pass one to uvicorn as ``uvicorn.Config(http=functools.partial(TimedHttpToolsProtocol,
header_timeout=..., body_timeout=...))``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from trustkit.server.metrics import head_size

LOG = logging.getLogger("trustkit.server")
MAX_HEAD = 1 << 20


class _Deadlines:
    """The one timer a connection needs: for its request head, or for its body's progress.

    The timer is not cancelled and re-armed per request (two timer operations per keep-alive
    request otherwise): when it fires it looks at what is due now and since when, and either
    closes the connection or sleeps for the rest of the time."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, header_timeout: float, body_timeout: float, expired: Any
    ) -> None:
        self.loop = loop
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self._expired = expired  # called with "head" or "body"
        self._timer: asyncio.TimerHandle | None = None
        self.waiting_for: str | None = None  # "head", "body", "idle" or None
        self.idle_timeout = 5.0  # keep-alive: how long a connection may wait for its next request
        self.since = 0.0  # when the head became due, or the body last moved

    def head(self) -> None:
        """A head is due (unless one already is: the first deadline holds)."""
        if self.waiting_for != "head":
            self._wait("head")

    def body(self) -> None:
        """A body is due; each piece of it moves the deadline (:meth:`moved`)."""
        self._wait("body")

    def moved(self) -> None:
        self.since = self.loop.time()

    def idle(self, seconds: float) -> None:
        """A keep-alive connection waits for its next request (uvicorn's keep-alive timeout,
        without a timer of its own per request)."""
        self.idle_timeout = seconds
        self._wait("idle")

    def again(self) -> None:
        """Wait again for the same thing, from now (the server, not the client, was the one waiting)."""
        if self.waiting_for is not None:
            self._wait(self.waiting_for)

    def cancel(self) -> None:
        """Nothing is due; the timer, if armed, finds that when it fires."""
        self.waiting_for = None

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self.waiting_for = None, None

    def _timeout(self, kind: str) -> float:
        return self.header_timeout if kind == "head" else self.body_timeout if kind == "body" else self.idle_timeout

    def _wait(self, kind: str) -> None:
        self.waiting_for = kind
        self.since = self.loop.time()
        due = self.since + self._timeout(kind)
        if self._timer is not None and self._timer.when() > due:
            self._timer.cancel()  # a shorter wait than the one armed: fire in time for it
            self._timer = None
        if self._timer is None:
            self._timer = self.loop.call_at(due, self._fire)

    def _fire(self) -> None:
        self._timer = None
        kind = self.waiting_for
        if kind is None:
            return  # nothing due: the next wait arms a timer again
        left = self.since + self._timeout(kind) - self.loop.time()
        if left > 0:
            self._timer = self.loop.call_at(self.since + self._timeout(kind), self._fire)
            return
        self._expired(kind)


class _TimedProtocol(asyncio.Protocol):
    """What both protocols share (mixed in before uvicorn's class, whose methods ``super()`` reaches)."""

    transport: asyncio.Transport
    client: tuple[str, int] | None
    deadlines: _Deadlines

    def _start_deadlines(self, loop: asyncio.AbstractEventLoop, header_timeout: float, body_timeout: float) -> None:
        self.deadlines = _Deadlines(loop, header_timeout, body_timeout, self._timed_out)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.deadlines.head()

    def connection_lost(self, exc: Exception | None) -> None:
        self.deadlines.close()
        super().connection_lost(exc)

    def _server_busy(self) -> bool:
        """A response to an earlier request is still being made on this connection."""
        cycle = getattr(self, "cycle", None)
        return cycle is not None and not cycle.response_complete

    def _timed_out(self, kind: str) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if kind == "idle":  # no new request within the keep-alive timeout: close quietly, as uvicorn does
            self.transport.close()
            return
        if kind == "head" and self._server_busy():
            self.deadlines.again()  # a pipelined head waits for us, not we for it
            return
        if kind == "body" and self.flow.read_paused:  # type: ignore[attr-defined]  # uvicorn sets it, undeclared
            self.deadlines.again()  # we stopped reading: the app has not taken what came
            return
        timeout = self.deadlines.header_timeout if kind == "head" else self.deadlines.body_timeout
        LOG.warning(
            json.dumps({"event": f"request {kind} timed out", "seconds": timeout, "client": (self.client or ["-"])[0]})
        )
        self.deadlines.cancel()
        self.transport.close()

    def _refuse_head(self, limit: int) -> None:
        """431 for a head over ``limit`` bytes, then close (the rest of it is never parsed)."""
        LOG.warning(
            json.dumps({"event": "request head too large", "bytes": limit, "client": (self.client or ["-"])[0]})
        )
        self.deadlines.cancel()
        if not self._server_busy():
            body = (
                json.dumps(
                    {
                        "errors": [
                            {
                                "code": "TOO_LARGE",
                                "message": "The request is larger than the server accepts.",
                                "detail": f"the request head is over {limit} bytes",
                            }
                        ]
                    },
                    separators=(",", ":"),
                ).encode()
                + b"\n"
            )
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                b"content-type: application/json; charset=utf-8\r\n"
                b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
            )
        self.transport.close()


class _HeadWithBody:
    """A response's transport that holds its head until the body's first write and sends both
    in one write: one TLS record and one system call, not two (a third more small responses a
    second).  uvicorn writes the body of every response but a HEAD one (an empty body too), and
    closes the transport when a response is cut short, which sends what is held first.  An
    interim ``100 Continue`` goes out at once."""

    __slots__ = ("_held", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        if self._held is not None:
            data, self._held = self._held + data, None
        elif data[:5] == b"HTTP/" and data[9:10] != b"1" and data[-4:] == b"\r\n\r\n":
            self._held = data  # a final response's head
            return
        self._transport.write(data)

    def close(self) -> None:
        if self._held is not None:
            self._transport.write(self._held)
            self._held = None
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class TimedHttpToolsProtocol(_TimedProtocol, HttpToolsProtocol):
    """uvicorn's httptools protocol (the one ``uvicorn[standard]`` runs) with the limits above."""

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        header_timeout: float = 30.0,
        body_timeout: float = 30.0,
        max_head: int = MAX_HEAD,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._start_deadlines(self.loop, header_timeout, body_timeout)
        self.max_head = max_head
        self._head_bytes: int | None = 0  # bytes received since the head began; None once it is complete
        self._answer_now = _fast_answers(self.app)
        self._answered = False  # the current request was answered from its head (fast path)

    def data_received(self, data: bytes) -> None:
        if self._head_bytes is not None:
            if self._head_bytes > self.max_head:  # the head's last piece may carry some of the body
                self._refuse_head(self.max_head)
                return
            self._head_bytes += len(data)
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.deadlines.head()

    def on_headers_complete(self) -> None:
        self._head_bytes = None
        if self._answer_now is not None and self._answer_from_head(self._answer_now):
            return
        self.deadlines.body()  # until the message is complete (at once for a request without a body)
        super().on_headers_complete()
        # The cycle was just made and its task not yet run: nothing is written before this.
        if self.scope["method"] != "HEAD":  # a HEAD response has no body write to carry its head
            self.cycle.transport = _HeadWithBody(self.transport)  # type: ignore[assignment]  # a transport's duck

    def on_body(self, body: bytes) -> None:
        self.deadlines.moved()
        super().on_body(body)

    def on_message_complete(self) -> None:
        self.deadlines.cancel()
        self._head_bytes = 0  # what comes next is the next request's head
        if self._answered:
            # uvicorn's on_response_complete, but the keep-alive wait is the connection's one timer
            self._answered = False
            self.server_state.total_requests += 1
            if not self.transport.is_closing():
                self.flow.resume_reading()
                self.deadlines.idle(self.timeout_keep_alive)
            return
        super().on_message_complete()

    def _answer_from_head(self, answer_now: Callable[..., Any]) -> bool:
        """Write the cached answer to a plain GET now; False when it must go the usual way."""
        parser = self.parser
        if (
            parser.get_method() != b"GET"
            or self._server_busy()
            or self.pipeline
            or self.flow.write_paused  # the client is not reading: uvicorn's way waits for it
            or parser.get_http_version() != "1.1"
            or not parser.should_keep_alive()
        ):
            return False
        url = self.url
        if not url.startswith(b"/v2/") or b"?" in url or b"%" in url or b"#" in url:
            return False
        headers = self.headers
        if any(name in _NOT_PLAIN for name, _ in headers):
            return False
        try:
            path = url.decode("ascii")
        except UnicodeDecodeError:
            return False
        client = self.client[0] if self.client else "-"
        prepared = answer_now(path, headers, head_size(url, "GET", b"", "1.1", headers), client)
        if prepared is None:
            return False
        head = [b"HTTP/1.1 200 OK\r\n"]
        for name, value in (*self.server_state.default_headers, *prepared.headers):
            head += (name, b": ", value, b"\r\n")
        head += (b"\r\n", prepared.body)
        self.transport.write(b"".join(head))
        self._answered = True
        return True


# Request headers that send a GET the usual way: a body, a proxy's forwarded address (uvicorn's
# proxy middleware rewrites the client), an expectation.
_NOT_PLAIN = frozenset({b"content-length", b"transfer-encoding", b"x-forwarded-for", b"x-forwarded-proto", b"expect"})


def _fast_answers(app: Any) -> Callable[..., Any] | None:
    """The app's ``answer_now`` (under uvicorn's wrappers), or None when it has none."""
    for _ in range(8):
        answer = getattr(app, "answer_now", None)
        if answer is not None:
            return answer  # type: ignore[no-any-return]  # found by name on an untyped app
        app = getattr(app, "app", None)
        if app is None:
            return None
    return None


class TimedH11Protocol(_TimedProtocol, H11Protocol):
    """uvicorn's pure-Python h11 protocol with the same timeouts (h11 caps heads itself, at 16 KiB,
    so ``max_head`` is only taken for the same signature)."""

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        header_timeout: float = 30.0,
        body_timeout: float = 30.0,
        max_head: int = MAX_HEAD,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._start_deadlines(self.loop, header_timeout, body_timeout)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow_state()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow_state()

    def _follow_state(self) -> None:
        """h11 has no callbacks: read where the request is from its state after each event."""
        if self.transport is None or self.transport.is_closing():
            self.deadlines.cancel()
            return
        state = self.conn.their_state
        if state is h11.IDLE:
            if self.conn.trailing_data[0] and self.conn.our_state is h11.IDLE:
                self.deadlines.head()  # part of the next head has come
        elif state is h11.SEND_BODY:
            if self.deadlines.waiting_for == "body":
                self.deadlines.moved()
            else:
                self.deadlines.body()
        else:
            self.deadlines.cancel()
