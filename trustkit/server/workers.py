"""Layer `server`: several worker processes, each accepting on a listening socket of its own.

With one listening socket shared by the workers, the worker that wakes first accepts every
connection waiting (uvloop takes the whole backlog), so keep-alive clients that connect together
(a proxy's pool, a load tester, a CI fleet) end up on one worker while the others idle: 16
connections split 16/0 or 14/2 and served a third fewer requests than split evenly.  Here each
worker gets its own socket bound with ``SO_REUSEPORT`` to the same address, and the kernel
spreads new connections over them evenly.

The supervisor is uvicorn's (signals, health pings, replacing a worker that dies); only the
socket each worker slot gets is ours, and a replacement takes over the slot (and socket) of the
worker it replaces.  Adding workers by signal (SIGTTIN/SIGTTOU) is not offered: the number of
sockets is fixed at start.
"""

from __future__ import annotations

import errno
import socket
from typing import Any

from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess, Process

from trustkit.errors import TrustkitError


def bind_listeners(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` sockets bound to ``host:port`` with ``SO_REUSEPORT``, ready to inherit.

    The address is first bound without ``SO_REUSEPORT``: another server already on the port
    (even another trustkit server, which could otherwise join it silently) is an error here.

    The protocol is IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on connections accepted
    from such a socket, and without it every response waited for the client's delayed ACK."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise TrustkitError(f"{host}:{port} is already in use by another program") from None
        raise TrustkitError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    finally:
        probe.close()
    listeners = []
    try:
        for _ in range(count):
            listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            listeners.append(listener)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            listener.bind((host, port))
            listener.set_inheritable(True)
    except OSError as exc:
        for listener in listeners:
            listener.close()
        raise TrustkitError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return listeners


class BalancedWorkers(Multiprocess):
    """uvicorn's supervisor, with worker slot ``i`` always serving on ``listeners[i]``."""

    def __init__(self, config: Any, listeners: list[socket.socket]) -> None:
        super().__init__(config, sockets=[])
        self.listeners = listeners
        self.processes_num = len(listeners)

    def _worker(self, slot: int) -> Process:
        process = Process(self.config, [self.listeners[slot]])
        process.start()
        return process

    def init_processes(self) -> None:
        self.processes = [self._worker(slot) for slot in range(self.processes_num)]

    def restart_all(self) -> None:
        """SIGHUP: each slot's replacement serves before the worker it replaces is stopped
        (both accept on the slot's socket meanwhile)."""
        for slot, old in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new = self._worker(slot)
            if not new.wait_until_ready(self.config.timeout_worker_healthcheck, self.should_exit):
                new.kill()
                new.join()
                return
            old.terminate()
            old.join()
            self.processes[slot] = new

    def keep_subprocess_alive(self) -> None:
        """A worker that died or hangs is replaced on its own slot; one that fails to start
        stops the server, as uvicorn does (it would fail the same way on every restart)."""
        for slot, process in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()
            process.join()
            if process.exitcode == STARTUP_FAILURE:
                self.should_exit.set()
                return
            self.processes[slot] = self._worker(slot)

    def handle_ttin(self) -> None:
        """Not offered: one socket per worker, fixed at start."""

    def handle_ttou(self) -> None:
        """Not offered: one socket per worker, fixed at start."""


__all__ = ["BalancedWorkers", "bind_listeners"]
