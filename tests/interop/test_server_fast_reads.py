"""Cached current metadata answered from the request head (server/protocol.py's fast path),
against a real trustkit server over TLS: the same bytes and headers as the usual way, in order
when pipelined, counted and logged, and fresh after a publish on the same connection."""

from __future__ import annotations

import json
import socket
import ssl
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import peers

pytestmark = pytest.mark.interop

GUN = "registry.example.com/team/fast"


class Connection:
    """One keep-alive TLS connection, requests written raw, responses read by Content-Length."""

    def __init__(self, server: peers.TrustkitServer) -> None:
        context = ssl.create_default_context(cafile=str(server.ca_path))
        self.sock = context.wrap_socket(
            socket.create_connection(("127.0.0.1", server.port), timeout=10), server_hostname="127.0.0.1"
        )
        self.buffer = b""

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, *paths: str) -> None:
        self.sock.sendall(b"".join(f"GET {p} HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n\r\n".encode() for p in paths))

    def response(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(65536)
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        length = int(headers["content-length"])
        while len(self.buffer) < length:
            self.buffer += self.sock.recv(65536)
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(lines[0].split()[1]), headers, body

    def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        self.send(path)
        return self.response()


def tuf(role: str) -> str:
    return f"/v2/{GUN}/_trust/tuf/{role}.json"


@pytest.fixture
def server(tmp_path: Path):
    with peers.TrustkitServer(tmp_path / "server", extra_args=["--workers", "1"]) as running:
        tk = peers.TrustkitCLI(tmp_path / "docker-config", running)  # type: ignore[arg-type]
        tk.run("sign", f"{GUN}:v1", "--digest", "sha256:" + "ab" * 32, "--size", "1")
        running.tk = tk  # type: ignore[attr-defined]
        yield running


def without_date(headers: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name != "date"}


def test_a_cached_answer_is_the_usual_answer(server: peers.TrustkitServer) -> None:
    with Connection(server) as connection:
        for role in ("targets", "timestamp", "snapshot", "root"):
            usual = connection.get(tuf(role) + "?from=the-usual-way")  # a query never takes the fast path
            first = connection.get(tuf(role))  # fills the cache if the usual way did not
            cached = connection.get(tuf(role))
            assert usual[0] == first[0] == cached[0] == 200
            assert usual[2] == cached[2] and json.loads(cached[2])["signed"]["_type"]
            assert without_date(usual[1]) == without_date(cached[1]), role
            assert "date" in cached[1] and cached[1]["server"] == usual[1]["server"]


def test_pipelined_requests_are_answered_in_order(server: peers.TrustkitServer) -> None:
    with Connection(server) as connection:
        expected = {role: connection.get(tuf(role))[2] for role in ("targets", "timestamp", "root")}
        order = ["targets", "root", "timestamp", "targets", "timestamp"]
        connection.send(*(tuf(role) + ("?q" if i == 1 else "") for i, role in enumerate(order)))
        assert [connection.response()[2] for _ in order] == [expected[role] for role in order]
        missing = connection.get(f"/v2/{GUN}/_trust/tuf/targets/nobody.json")
        assert missing[0] == 404 and json.loads(missing[2])["errors"][0]["code"] == "METADATA_NOT_FOUND"


def test_answers_from_the_head_are_counted_logged_and_fresh(server: peers.TrustkitServer) -> None:
    def get_role_count() -> float:
        text = server.get("/metrics").text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "notary_server_http_requests_total" and sample.labels == {
                    "code": "200",
                    "method": "get",
                    "operation": "GetRole",
                }:
                    return sample.value
        return 0.0

    with Connection(server) as connection:
        connection.get(tuf("targets"))
        before = get_role_count()
        lines_before = len(server.log_path.read_text().splitlines())
        for _ in range(25):
            assert connection.get(tuf("targets"))[0] == 200
        assert get_role_count() == before + 25
        time.sleep(0.2)
        logged = [json.loads(line) for line in server.log_path.read_text().splitlines()[lines_before:]]
        assert sum(1 for entry in logged if entry.get("path") == tuf("targets") and entry["status"] == 200) == 25

        old = json.loads(connection.get(tuf("targets"))[2])["signed"]
        server.tk.run("sign", f"{GUN}:v2", "--digest", "sha256:" + "cd" * 32, "--size", "2")  # type: ignore[attr-defined]
        new = json.loads(connection.get(tuf("targets"))[2])["signed"]  # same connection, at once
        assert new["version"] == old["version"] + 1 and "v2" in new["targets"]


def test_an_idle_connection_after_a_cached_answer_is_closed_at_the_keep_alive_timeout(
    server: peers.TrustkitServer,
) -> None:
    """uvicorn closes a keep-alive connection idle for 5 s; the fast path keeps that promise."""
    with Connection(server) as connection:
        connection.get(tuf("targets"))
        assert connection.get(tuf("targets"))[0] == 200  # from the head
        time.sleep(3)
        assert connection.get(tuf("targets"))[0] == 200  # still open, and the wait starts again
        started = time.monotonic()
        connection.sock.settimeout(15)
        assert connection.sock.recv(1) == b""  # closed by the server
        assert 4 < time.monotonic() - started < 8
