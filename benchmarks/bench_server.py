"""Benchmark ``server``: `trustkit server` against `notary-server` on the same machine, same run.

Both servers get the same TLS certificate and key (``peers.make_tls``, written by the
notary-server harness and handed to trustkit), run as their users run them (notary-server:
memory storage, the Debian build; trustkit: its defaults, the built-in SQLite and one worker
per core), log one line per request, and hold the same kind of repository (init + 20 tags,
server-managed snapshot and timestamp), created with the same client code (trustkit's library).

* GET throughput of the current ``targets.json`` and ``timestamp.json`` with ``wrk -t1 -c16``
  (keep-alive TLS connections; wrk does not verify certificates), in rounds alternating between
  servers.  A wrk script counts every response that is not a 200: one fails the benchmark.
* Publishes per second, two ways, the same client code for both servers:
  - a raw publish loop: a trustkit ``Repository`` adds one tag, signs the next targets version and
    POSTs it (one request per publish; the server validates it and signs snapshot + timestamp);
  - ``sign_tags`` round trips: what ``trustkit sign`` does per tag (fetch and validate the trust
    data, sign, publish).

Ratios here are rates: ``trustkit / notary`` requests (or publishes) per second, so **above 1
means trustkit is faster** (the opposite reading of the time ratios in the other benchmarks).
The issue's goal is to be at least as fast as notary-server (ratio >= 1).

With ``py-spy`` on PATH (``pip install py-spy``) trustkit's workers are sampled during one more
wrk run of targets.json, and a note says where their Python time goes (by innermost frame).
"""

from __future__ import annotations

import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from harness import Figure, Result, Row, fake_digest, log, peers
from trustkit.client.notary import NotaryClient, make_http_client
from trustkit.keys import EnvPassphrases, KeyStore
from trustkit.ops import TagTarget, TrustSession, init_repository, sign_tags
from trustkit.reference import parse_repository

NAME = "server"
CORES = len(os.sched_getaffinity(0))  # trustkit's default --workers
WRK_THREADS, WRK_CONNECTIONS = 1, 16
# Counts the responses that are not 200 (wrk itself only reports status >= 400).
WRK_SCRIPT = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) not_ok = 0 end
function response(status, headers, body) if status ~= 200 then not_ok = not_ok + 1 end end
function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do total = total + thread:get("not_ok") end
  io.write(string.format("responses not 200: %d\\n", total))
end
"""
WRK_SECONDS, WRK_WARMUP_SECONDS, WRK_ROUNDS = 5, 1, 3
TAGS = 20  # tags in the repository whose targets.json is fetched
RAW_PUBLISHES, LIBRARY_PUBLISHES, PUBLISH_ROUNDS = 150, 30, 3
TARGET_RATIO = 1.0
PASSPHRASES = {
    "DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE": peers.ROOT_PASSPHRASE,
    "DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE": peers.REPO_PASSPHRASE,
}


@dataclass
class RateRow(Row):
    """A row of rates: ratio = trustkit / notary, and above 1 means trustkit is faster."""

    @property
    def ratio(self) -> float | None:
        if self.notary is None:
            return None
        return self.trustkit.mean / self.notary.mean

    @property
    def target_text(self) -> str:
        return "" if self.target is None else f"≥ {self.target:g} (rate)"

    @property
    def met(self) -> bool | None:
        ratio = self.ratio
        return None if self.target is None or ratio is None else ratio >= self.target


# --------------------------------------------------------------------------------------------
# clients: the same code for every server


def session_for(url: str, ca: Path, gun: str, trust_dir: Path) -> TrustSession:
    client = NotaryClient(url, gun, make_http_client(url, tls_ca=str(ca)))
    return TrustSession(parse_repository(gun), client, KeyStore(trust_dir, EnvPassphrases(PASSPHRASES)), trust_dir)


def close(session: TrustSession) -> None:
    session.client.client.close()


def populate(url: str, ca: Path, gun: str, trust_dir: Path) -> None:
    """A repository with ``TAGS`` signed tags (server-managed snapshot and timestamp)."""
    session = session_for(url, ca, gun, trust_dir)
    try:
        init_repository(session)
        sign_tags(session, [TagTarget(f"tag{i}", fake_digest(i), 1000 + i) for i in range(TAGS)])
    finally:
        close(session)


def raw_publishes(url: str, ca: Path, gun: str, trust_dir: Path, count: int, first: int) -> float:
    """Publishes per second of a loop that adds one tag, signs targets and POSTs it."""
    session = session_for(url, ca, gun, trust_dir)
    try:
        repo = session.repository()
        start = time.perf_counter()
        for i in range(first, first + count):
            repo.add_target(f"p{i}", TagTarget(f"p{i}", fake_digest(i), 500 + i).file_meta())
            session.client.publish(repo.publish_files())
        return count / (time.perf_counter() - start)
    finally:
        close(session)


def library_publishes(url: str, ca: Path, gun: str, trust_dir: Path, count: int, first: int) -> float:
    """Publishes per second of ``sign_tags`` (refresh, sign, publish), one tag each."""
    session = session_for(url, ca, gun, trust_dir)
    try:
        start = time.perf_counter()
        for i in range(first, first + count):
            sign_tags(session, [TagTarget(f"l{i}", fake_digest(i), 700 + i)])
        return count / (time.perf_counter() - start)
    finally:
        close(session)


# --------------------------------------------------------------------------------------------
# wrk


_RATE = re.compile(r"Requests/sec:\s+([0-9.]+)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET_ERRORS = re.compile(r"Socket errors:.*")
_LATENCY = re.compile(r"^\s+Latency\s+(\S+)", re.MULTILINE)
_NOT_200 = re.compile(r"^responses not 200: (\d+)$", re.MULTILINE)


def wrk(url: str, seconds: int) -> tuple[float, str]:
    """Requests per second over ``seconds``, and the mean latency wrk reports; every response a 200."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(WRK_SCRIPT)
        script.flush()
        argv = [
            peers.require("wrk"),
            f"-t{WRK_THREADS}",
            f"-c{WRK_CONNECTIONS}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            script.name,
            url,
        ]
        out = subprocess.run(
            argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=seconds + 60, check=True
        ).stdout
    rate, bad, errors, not_200 = (
        _RATE.search(out),
        _NON_2XX.search(out),
        _SOCKET_ERRORS.search(out),
        _NOT_200.search(out),
    )
    if rate is None or bad is not None or errors is not None or not_200 is None or not_200.group(1) != "0":
        raise AssertionError(f"wrk {url}: not a clean run (responses not 200, or socket errors):\n{out}")
    latency = _LATENCY.search(out)
    return float(rate.group(1)), latency.group(1) if latency else "?"


# --------------------------------------------------------------------------------------------


@dataclass
class Server:
    label: str  # "notary-server", "trustkit", ...
    url: str
    ca: Path
    host_port: str

    def gun(self, name: str) -> str:
        return f"{self.host_port}/bench/{name}"


def run() -> Result:
    result = Result(NAME)
    peers.require("wrk")
    scratch = Path(tempfile.mkdtemp(prefix="trustkit-bench-server-"))
    try:
        with peers.NotaryServer(scratch / "notary-server") as notary:
            tls = (scratch / "notary-server" / "tls.crt", scratch / "notary-server" / "tls.key")  # its TLS pair
            with peers.TrustkitServer(scratch / "trustkit", tls=tls) as trustkit:  # its defaults: workers = cores
                servers = [
                    Server("notary-server", notary.url, notary.ca_path, notary.host_port),
                    Server(f"trustkit defaults: {CORES} workers", trustkit.url, trustkit.ca_path, trustkit.host_port),
                ]
                measure(servers, scratch, result)
                result.notes.extend(
                    profile(trustkit, f"{trustkit.url}/v2/{servers[1].gun('read')}/_trust/tuf/targets.json", scratch)
                )
                failures = [
                    line
                    for line in trustkit.log_path.read_text(errors="replace").splitlines()
                    if '"status": 5' in line or "Traceback" in line
                ]
                if failures:
                    raise AssertionError(f"{trustkit.url} answered 5xx or failed:\n" + "\n".join(failures[:5]))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result.notes.append(
        "ratios in this table are RATES (trustkit / notary requests or publishes per second): "
        "above 1 means trustkit is faster; the goal is ≥ 1"
    )
    return result


def measure(servers: list[Server], scratch: Path, result: Result) -> None:
    notary, *trustkits = servers
    for server in servers:
        log(f"populating {server.label}: init + {TAGS} tags")
        populate(server.url, server.ca, server.gun("read"), scratch / f"trust-read-{server.label}")
        populate(server.url, server.ca, server.gun("publish"), scratch / f"trust-publish-{server.label}")

    # GET throughput, alternating servers each round so drift hits all of them alike.
    rates: dict[tuple[str, str], list[float]] = {}
    latency: dict[tuple[str, str], list[str]] = {}
    for role in ("targets", "timestamp"):
        sizes = []
        for server in servers:  # a warm-up, and what each one serves (same shape, own keys)
            url = f"{server.url}/v2/{server.gun('read')}/_trust/tuf/{role}.json"
            with httpx.Client(verify=ssl.create_default_context(cafile=str(server.ca))) as client:
                sizes.append(f"{server.label} {len(client.get(url).raise_for_status().content)} B")
            wrk(url, WRK_WARMUP_SECONDS)
        for round_ in range(WRK_ROUNDS):
            for server in servers:
                url = f"{server.url}/v2/{server.gun('read')}/_trust/tuf/{role}.json"
                log(f"wrk {role}.json on {server.label} (round {round_ + 1}/{WRK_ROUNDS}, {WRK_SECONDS} s)")
                rate, mean_latency = wrk(url, WRK_SECONDS)
                rates.setdefault((role, server.label), []).append(rate)
                latency.setdefault((role, server.label), []).append(mean_latency)
        for trustkit in trustkits:
            setup = trustkit.label.removeprefix("trustkit ")
            result.rows.append(
                RateRow(
                    f"GET current {role}.json, wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} ({setup})",
                    Figure.from_samples(rates[(role, trustkit.label)], unit="req/s"),
                    Figure.from_samples(rates[(role, notary.label)], unit="req/s"),
                    target=TARGET_RATIO,
                )
            )
        result.notes.append(
            f"{role}.json ({', '.join(sizes)}) mean latency per round: "
            + "; ".join(f"{server.label} {', '.join(latency[(role, server.label)])}" for server in servers)
        )

    # Publishes per second: the same client loops for every server.
    loops: list[tuple[str, Callable[..., float], int]] = [
        ("publish: sign targets + POST (raw loop)", raw_publishes, RAW_PUBLISHES),
        ("publish: sign_tags (refresh + sign + POST)", library_publishes, LIBRARY_PUBLISHES),
    ]
    for label, loop, count in loops:
        done: dict[str, list[float]] = {}
        for round_ in range(PUBLISH_ROUNDS):
            for server in servers:
                log(f"{label} on {server.label}: {count} publishes (round {round_ + 1}/{PUBLISH_ROUNDS})")
                first = 10_000 * (round_ + 1) + (100_000 if loop is library_publishes else 0)
                done.setdefault(server.label, []).append(
                    loop(
                        server.url,
                        server.ca,
                        server.gun("publish"),
                        scratch / f"trust-publish-{server.label}",
                        count,
                        first,
                    )
                )
        for trustkit in trustkits:
            result.rows.append(
                RateRow(
                    f"{label} ({trustkit.label.removeprefix('trustkit ')})",
                    Figure.from_samples(done[trustkit.label], unit="publishes/s"),
                    Figure.from_samples(done[notary.label], unit="publishes/s"),
                    target=TARGET_RATIO,
                )
            )


# --------------------------------------------------------------------------------------------
# where the one-worker server spends its time under wrk (py-spy, when installed)

_IDLE = ("Condition.wait", "EpollSelector.select", "Queue.get", "Event.wait", "_worker")
_CATEGORIES = [  # first match of the sampled (innermost) frame's file wins
    (
        "database: SQLAlchemy Core + sqlite3 (query, fetch, connections)",
        ("sqlalchemy/", "server/storage.py", "sqlite3"),
    ),
    (
        "TLS and socket writes/reads (ssl, asyncio sslproto/selector)",
        ("ssl.py", "sslproto.py", "selector_events.py", "asyncio/"),
    ),
    ("HTTP/1.1 parsing and ASGI glue (uvicorn h11_impl, h11)", ("uvicorn/", "h11/")),
    (
        "Starlette routing/middleware and the anyio thread-pool hop",
        ("starlette/", "anyio/", "threading.py", "queue.py", "concurrent/"),
    ),
    ("access log (logging)", ("logging/",)),
    ("trustkit handlers and metadata parsing", ("trustkit/", "json/")),
]


def profile(server: peers.TrustkitServer, url: str, scratch: Path) -> list[str]:
    """Sample the server's workers with py-spy during a wrk run and say where their Python time goes."""
    beside = Path(sys.executable).with_name("py-spy")  # ./dev bench installs it into the venv
    spy = str(beside) if beside.is_file() else shutil.which("py-spy")
    if spy is None:
        return [
            (
                "no profile: py-spy is neither in this venv nor on PATH (`./dev bench` installs it) to see "
                "where the server spends its time"
            )
        ]
    pid = server.pid
    raw = scratch / "py-spy.txt"
    log(f"py-spy on the server (pid {pid} and its workers) during wrk of targets.json")
    recorder = subprocess.Popen(
        [
            spy,
            "record",
            "-p",
            str(pid),
            "-d",
            str(WRK_SECONDS),
            "-r",
            "250",
            "-f",
            "raw",
            "-o",
            str(raw),
            "--nonblocking",
            "--gil",
            "--subprocesses",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    rate, _ = wrk(url, WRK_SECONDS)
    output = recorder.communicate(timeout=60)[0]
    if recorder.returncode != 0 or not raw.is_file():
        return [f"no profile: py-spy failed ({output.strip().splitlines()[-1:] or '?'})"]
    busy: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        leaf = stack.rsplit(";", 1)[-1]
        if not count.isdigit() or leaf.startswith(_IDLE):
            continue
        category = next((name for name, marks in _CATEGORIES if any(mark in leaf for mark in marks)), "other")
        busy[category] = busy.get(category, 0) + int(count)
        total += int(count)
    if not total:
        return ["no profile: py-spy recorded no busy samples"]
    shares = ", ".join(f"{name} {100 * n / total:.0f}%" for name, n in sorted(busy.items(), key=lambda x: -x[1]))
    held = 100 * total / (WRK_SECONDS * 250 * CORES)
    return [
        (
            f"profile of trustkit ({CORES} workers) serving targets.json under wrk ({rate:,.0f} req/s while sampled; "
            f"py-spy "
            f"--gil: only samples where a thread holds the GIL, i.e. Python CPU time, by innermost frame; the GIL "
            f"was held in {held:.0f}% of samples): {shares}"
        )
    ]
