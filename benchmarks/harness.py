"""Shared plumbing for the benchmarks: a notary-server per benchmark, the two clients pointed at
it, hyperfine, and the result rows that run.py prints and saves.

Every benchmark measures trustkit and its peer (the real ``notary`` CLI) in the same run, against
the same freshly started ``notary-server`` (tests/peers.py), and reports the ratio
``trustkit / notary``: below 1 means trustkit is faster (DESIGN.md, Conventions).

Rules every command here follows:

* stdin is closed (a tool that wants to prompt fails instead of hanging), passphrases come from
  the environment;
* trustkit runs as a user installs it: the console script of ``$TRUSTKIT_BENCH_VENV`` (``./dev
  bench`` makes ``.venv-bench`` with trustkit's runtime dependencies only: the test tools bring
  packages that httpx imports when present), else the one next to ``sys.executable``; with
  ``--tls-ca <server CA>``, ``DOCKER_CONTENT_TRUST_SERVER=<server URL>`` and a private
  ``DOCKER_CONFIG``; the caller's ``DOCKER_*``/``NOTARY_*``/``TRUSTKIT_*`` variables are dropped;
* trustkit runs from cached bytecode, as an installed package does: ``PYTHONDONTWRITEBYTECODE``
  is dropped and ``PYTHONPYCACHEPREFIX`` points into the benchmark's scratch directory (so the
  source tree gets no ``__pycache__``); every benchmark runs trustkit untimed before timing it;
* notary runs with the client config that :class:`peers.NotaryCLI` writes (server URL + CA).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

# tests/peers.py, the harness that runs the real peers; the benchmark modules import it from here.
import peers

REPO_ROOT = Path(__file__).resolve().parent.parent

HYPERFINE_INSTALL = "apt-get install -y hyperfine  (./dev bench installs it)"

# Variables of the caller that would steer either tool away from the benchmark's own setup.
_STEERING_PREFIXES = ("DOCKER_", "NOTARY_", "TRUSTKIT_")


def log(message: str) -> None:
    """Progress goes to stderr, so stdout carries only the results."""
    print(f"  .. {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# figures and result rows


@dataclass
class Figure:
    """One measured quantity: a wall time in seconds (``unit="s"``) or a rate (``"keys/s"``...)."""

    mean: float
    stddev: float | None = None
    min: float | None = None
    max: float | None = None
    runs: int = 1
    unit: str = "s"
    note: str = ""  # e.g. "scaled from 500 commands"
    median: float | None = None  # hyperfine's median: what the ratios compare when known

    @property
    def center(self) -> float:
        """The median when known (one slow run on a shared machine does not move it), else the mean."""
        return self.median if self.median is not None else self.mean

    @classmethod
    def from_samples(cls, samples: Sequence[float], unit: str = "s", note: str = "") -> Figure:
        return cls(
            mean=statistics.fmean(samples),
            stddev=statistics.stdev(samples) if len(samples) > 1 else None,
            min=min(samples),
            max=max(samples),
            runs=len(samples),
            unit=unit,
            note=note,
        )

    def scaled(self, factor: float, note: str) -> Figure:
        """The same figure multiplied by ``factor`` (used when a slow peer ran a smaller job)."""

        def mul(value: float | None) -> float | None:
            return None if value is None else value * factor

        return Figure(
            self.mean * factor,
            mul(self.stddev),
            mul(self.min),
            mul(self.max),
            self.runs,
            self.unit,
            note,
            mul(self.median),
        )

    def text(self) -> str:
        """Human form: ``123.4 ms ± 2.1 (n=10)`` (the median when known, ± the standard
        deviation) or ``1520 keys/s (n=3)``."""
        if self.unit == "s":
            scale, unit = (1e3, "ms") if self.center < 1.0 else (1.0, "s")
            digits = 1 if unit == "ms" else 3
            out = f"{self.center * scale:.{digits}f} {unit}"
            if self.stddev is not None:
                out += f" ± {self.stddev * scale:.{digits}f}"
        else:
            out = f"{self.mean:,.0f} {self.unit}"
            if self.stddev is not None:
                out += f" ± {self.stddev:,.0f}"
        out += f" (n={self.runs})"
        return out + (f" [{self.note}]" if self.note else "")

    def to_json(self) -> dict[str, Any]:
        def r(value: float | None) -> float | None:
            return None if value is None else float(f"{value:.5g}")

        out: dict[str, Any] = {
            "mean": r(self.mean),
            "median": r(self.median),
            "stddev": r(self.stddev),
            "min": r(self.min),
            "max": r(self.max),
            "runs": self.runs,
            "unit": self.unit,
        }
        if self.note:
            out["note"] = self.note
        return out


@dataclass
class Row:
    """One line of the results table: the same operation done by trustkit and by notary.

    ``target`` is the largest acceptable ratio (trustkit/notary) from the issue, if it set one;
    ``target_strict`` says whether the ratio must be strictly below it.  ``limit`` is an
    absolute goal instead: trustkit's wall time in seconds, whatever the peer's.  Times are
    compared by their medians when hyperfine measured them.
    """

    operation: str
    trustkit: Figure
    notary: Figure | None = None
    target: float | None = None
    target_strict: bool = False
    note: str = ""
    limit: float | None = None

    @property
    def ratio(self) -> float | None:
        if self.notary is None or self.notary.unit != "s" or self.trustkit.unit != "s":
            return None
        return self.trustkit.center / self.notary.center

    @property
    def target_text(self) -> str:
        if self.limit is not None:
            return f"≤ {self.limit * 1e3:g} ms"
        if self.target is None:
            return ""
        return f"{'<' if self.target_strict else '≤'} {self.target:g}"

    @property
    def met(self) -> bool | None:
        if self.limit is not None:
            return self.trustkit.center <= self.limit
        ratio = self.ratio
        if self.target is None or ratio is None:
            return None
        return ratio < self.target if self.target_strict else ratio <= self.target

    def to_json(self) -> dict[str, Any]:
        ratio = self.ratio
        out: dict[str, Any] = {
            "operation": self.operation,
            "trustkit": self.trustkit.to_json(),
            "notary": self.notary.to_json() if self.notary else None,
            "ratio": None if ratio is None else round(ratio, 4),
        }
        if self.target is not None or self.limit is not None:
            out["target"] = self.target_text
            out["met"] = self.met
        if self.note:
            out["note"] = self.note
        return out


@dataclass
class Result:
    """What one benchmark module returns: its rows plus free-text notes for the reader."""

    name: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0  # wall time of the whole benchmark, set by run.py
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rows": [row.to_json() for row in self.rows],
            "notes": self.notes,
            "seconds": round(self.seconds, 1),
        }
        if self.error:
            out["error"] = self.error
        return out


# --------------------------------------------------------------------------------------------
# the bench: one notary-server, scratch space, and both clients


def trustkit_program() -> list[str]:
    """How to start trustkit: the console script beside this interpreter, else ``-m trustkit``.

    Not the ``trustkit`` found on PATH: that may be a pyenv shim (a bash script that costs tens
    of milliseconds per call) or another installation altogether.
    """
    script = trustkit_python().with_name("trustkit")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [str(trustkit_python()), "-m", "trustkit"]


def trustkit_python() -> Path:
    """The interpreter of the trustkit under test: the user-like venv when ``./dev bench`` made one."""
    venv = os.environ.get("TRUSTKIT_BENCH_VENV")
    if venv and (Path(venv) / "bin" / "python").is_file():
        return Path(venv) / "bin" / "python"
    return Path(sys.executable)


class Bench:
    """A running ``notary-server`` plus a scratch directory, as a context manager.

    ``bench.trustkit(trust_dir, ...)`` and ``bench.notary(trust_dir)`` give commands for the
    two clients; ``bench.gun("trustkit")`` is ``127.0.0.1:<port>/bench/trustkit``.
    """

    def __init__(self) -> None:
        self._server = peers.NotaryServer()
        self.tmp: Path | None = None
        self.tk_env: dict[str, str] = {}

    def __enter__(self) -> Self:
        self.tmp = Path(tempfile.mkdtemp(prefix="trustkit-bench-"))
        try:
            self._server.start()
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        docker_config = self.path("docker-config")
        docker_config.mkdir(mode=0o700)
        self.tk_env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(_STEERING_PREFIXES) and k != "PYTHONDONTWRITEBYTECODE"
        }
        self.tk_env.update(
            {
                # An installed trustkit runs from cached bytecode; a caller's PYTHONDONTWRITEBYTECODE
                # would make every run recompile trustkit from source. The cache goes to scratch
                # space (not __pycache__ in the source tree) and the first, untimed runs fill it.
                "PYTHONPYCACHEPREFIX": str(self.path("pycache")),
                "DOCKER_CONFIG": str(docker_config),
                "DOCKER_CONTENT_TRUST_SERVER": self._server.url,
                "DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE": peers.ROOT_PASSPHRASE,
                "DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE": peers.REPO_PASSPHRASE,
            }
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)

    @property
    def server(self) -> peers.NotaryServer:
        return self._server

    def path(self, name: str) -> Path:
        assert self.tmp is not None, "use Bench as a context manager"
        return self.tmp / name

    def gun(self, name: str) -> str:
        return f"{self._server.host_port}/bench/{name}"

    # -- commands ----------------------------------------------------------------------------

    def trustkit(self, trust_dir: Path, *args: str) -> list[str]:
        """``trustkit --trust-dir D --tls-ca CA ARGS`` (run it with :attr:`tk_env`)."""
        return [*trustkit_program(), "--trust-dir", str(trust_dir), "--tls-ca", str(self._server.ca_path), *args]

    def notary(self, trust_dir: Path) -> peers.NotaryCLI:
        """A notary client with its own trust dir; its config file sits *beside* the trust dir,
        so deleting the trust dir (a cold cache) keeps the config."""
        return peers.NotaryCLI(trust_dir, self._server)

    def run_trustkit(self, trust_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return run_checked(self.trustkit(trust_dir, *args), self.tk_env, what="trustkit")

    def requests_of(self, argv: Sequence[str], env: Mapping[str, str], *, what: str) -> list[str]:
        """Run a command and return what it fetched from the server, read from notary-server's
        request log: ``timestamp.json``, ``targets.<hash>.json`` (hash shortened)...

        Used to state, not assume, what a "cold" or "warm" run downloads.
        """
        mark = self._server.log_path.stat().st_size
        run_checked(argv, env, what=what)
        time.sleep(0.3)  # the server logs a request after answering it; let it catch up
        with self._server.log_path.open("rb") as log_file:
            log_file.seek(mark)
            lines = log_file.read().decode("utf-8", "replace").splitlines()
        fetched = []
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            uri = entry.get("http.request.uri") if entry.get("msg") == "response completed" else None
            if uri:
                name = uri.split("/_trust/tuf/", 1)[-1]
                fetched.append(re.sub(r"\.[0-9a-f]{64}\.", ".<hash>.", name))
        return fetched


def run_checked(
    argv: Sequence[str], env: Mapping[str, str], *, what: str, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run a command with stdin closed; raise with its output if it fails."""
    result = subprocess.run(
        list(argv),
        env=dict(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise peers.PeerCommandFailed(
            f"{what} failed with exit status {result.returncode}: {shlex.join(argv)}\n"
            f"--- stdout ---\n{result.stdout[-2000:]}\n--- stderr ---\n{result.stderr[-2000:]}",
            result,
        )
    return result


def expect_output(result: subprocess.CompletedProcess[str], needle: str, what: str) -> None:
    """A sanity check before timing: the command really did what the benchmark assumes."""
    if needle not in result.stdout:
        raise AssertionError(f"{what}: expected {needle!r} in its output, got:\n{result.stdout[-1000:]}")


# --------------------------------------------------------------------------------------------
# timing


def hyperfine(
    command: Sequence[str],
    env: Mapping[str, str],
    *,
    name: str,
    prepare: Sequence[str] | None = None,
    warmup: int = 2,
    runs: int = 10,
) -> Figure:
    """Time a whole command with hyperfine and return its mean wall time.

    ``-N`` (no intermediate shell): both tools are measured as plain exec'd processes, so no
    shell start-up has to be estimated and subtracted. ``prepare`` runs before every timed run
    (and is not timed). hyperfine is itself started with stdin closed, so the commands are too.
    """
    binary = shutil.which("hyperfine")
    if binary is None:
        raise peers.PeerMissing(f"hyperfine not found on PATH; install: {HYPERFINE_INSTALL}")
    log(f"hyperfine {name}: {warmup} warm-up + {runs} runs")
    with tempfile.TemporaryDirectory(prefix="trustkit-hyperfine-") as scratch:
        export = Path(scratch) / "hyperfine.json"
        argv = [
            binary,
            "-N",
            "--style",
            "none",
            "--warmup",
            str(warmup),
            "--runs",
            str(runs),
            "--export-json",
            str(export),
            "--command-name",
            name,
        ]
        if prepare is not None:
            argv += ["--prepare", shlex.join(prepare)]
        argv.append(shlex.join(command))
        run_checked(argv, env, what=f"hyperfine ({name})", timeout=3600)
        data = json.loads(export.read_text())["results"][0]
    return Figure(
        mean=data["mean"],
        stddev=data["stddev"],
        min=data["min"],
        max=data["max"],
        runs=len(data["times"]),
        median=data["median"],
    )


def wall_time(action: Callable[[], object]) -> float:
    """Seconds ``action()`` took on the monotonic high-resolution clock."""
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def throughput(operation: Callable[[], object], unit: str, *, min_seconds: float = 1.0, rounds: int = 3) -> Figure:
    """Operations per second of an in-process call: ``rounds`` rounds of at least
    ``min_seconds`` each; the figure is the mean over rounds (spread = their stddev)."""
    rates = []
    for _ in range(rounds):
        count, start = 0, time.perf_counter()
        while True:
            operation()
            count += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        rates.append(count / elapsed)
    return Figure.from_samples(rates, unit=unit)


# --------------------------------------------------------------------------------------------
# test data


def fake_digest(index: int) -> str:
    """A deterministic sha256 hex for tag number ``index`` (any 64 hex digits will do)."""
    return hashlib.sha256(f"trustkit-bench-manifest-{index}".encode()).hexdigest()


def write_tag_file(path: Path, count: int) -> list[tuple[str, str, int]]:
    """Write ``count`` lines ``tagN sha256:HEX SIZE`` (trustkit's ``--from-file`` format) and
    return the same ``(tag, hex, size)`` triples for the notary side."""
    tags = [(f"tag{i}", fake_digest(i), 1000 + i) for i in range(count)]
    path.write_text("".join(f"{tag} sha256:{hexdigest} {size}\n" for tag, hexdigest, size in tags))
    return tags


# --------------------------------------------------------------------------------------------
# the machine


def machine_info() -> dict[str, str]:
    """What the figures were measured on: they mean little without it."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def version(argv: list[str]) -> str:
        try:
            out = subprocess.run(
                argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30, check=False
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            return "?"
        return " ".join(out.split())

    return {
        "nproc": str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()),
        "cpu": cpu or platform.processor() or "?",
        "os": platform.platform(),
        # Other work on the machine shows up as noise (and as a wider ± on the faster tool).
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()) + " (1/5/15 min, at start)",
        "python": f"{platform.python_version()} ({sys.executable})",
        "trustkit": f"{' '.join(trustkit_program())} (run from cached bytecode)",
        # Debian's build leaves `notary version` blank but for the Go version; ask dpkg too.
        "notary": f"{version(['dpkg-query', '-W', '-f', '${Version}', 'notary']) or '?'} "
        f"({version([peers.require('notary'), 'version'])})",
        "hyperfine": version(["hyperfine", "--version"]),
    }
