"""Layer `server`: uvicorn's HTTP protocols with the read limits uvicorn lacks.

uvicorn closes idle keep-alive connections, but nothing else: a client that sends half a
request head, or stops in the middle of a body, holds its connection (and what it sent) for
ever, and a head may grow without bound.  These subclasses close a connection

* whose request head is not complete ``header_timeout`` seconds after its first byte (or after
  the connection opened, for the first request), however slowly it trickles in;
* whose request body makes no progress for ``body_timeout`` seconds (time the server itself
  stops reading, because the app has not taken what came, does not count);

and answer a head over ``max_head`` bytes (1 MiB, Go's ``http.DefaultMaxHeaderBytes``) with 431.

Pass one to uvicorn as ``uvicorn.Config(http=functools.partial(TimedHttpToolsProtocol,
header_timeout=..., body_timeout=...))``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

LOG = logging.getLogger("trustkit.server")
MAX_HEAD = 1 << 20


class _Deadlines:
    """The one timer a connection needs: for its request head, or for its body's progress."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, header_timeout: float, body_timeout: float, expired: Any
    ) -> None:
        self.loop = loop
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self._expired = expired  # called with "head" or "body"
        self._timer: asyncio.TimerHandle | None = None
        self.waiting_for: str | None = None  # "head", "body" or None
        self.progress = 0.0  # when the body last moved

    def head(self) -> None:
        """A head is due (unless one already is: the first deadline holds)."""
        if self.waiting_for != "head":
            self._arm("head", self.header_timeout)

    def body(self) -> None:
        """A body is due; each piece of it moves the deadline (:meth:`moved`)."""
        self.progress = self.loop.time()
        self._arm("body", self.body_timeout)

    def moved(self) -> None:
        self.progress = self.loop.time()  # cheaper than a new timer for every piece

    def again(self, delay: float | None = None) -> None:
        """Wait again for the same thing (the server, not the client, was the one waiting)."""
        if self.waiting_for is not None:
            kind = self.waiting_for
            self._arm(
                kind, delay if delay is not None else self.header_timeout if kind == "head" else self.body_timeout
            )

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self.waiting_for = None, None

    def _arm(self, kind: str, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.waiting_for = kind
        self._timer = self.loop.call_later(delay, self._fire, kind)

    def _fire(self, kind: str) -> None:
        self._timer = None
        if kind == "body":
            idle = self.loop.time() - self.progress
            if idle < self.body_timeout:  # it moved since the timer was set
                self._arm("body", self.body_timeout - idle)
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
        self.deadlines.cancel()
        super().connection_lost(exc)

    def _server_busy(self) -> bool:
        """A response to an earlier request is still being made on this connection."""
        cycle = getattr(self, "cycle", None)
        return cycle is not None and not cycle.response_complete

    def _timed_out(self, kind: str) -> None:
        if self.transport is None or self.transport.is_closing():
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
        super().on_message_complete()


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
