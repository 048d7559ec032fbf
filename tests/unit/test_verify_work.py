"""The shape of the work behind ``verify`` on a 10,000-tag repository (issue 15): the big
targets.json is read, hashed and parsed once per update, cold or warm; a warm update reads each
cached file once and rewrites none that did not change; the cyclic garbage collector stays out
of the big parse.  Counted on the real updater against the simulator (an in-memory Notary server)."""

from __future__ import annotations

import gc
import hashlib
from collections import Counter
from pathlib import Path

import pytest

from simulator import Simulator, cache_state
from trustkit.client import updater as updater_module
from trustkit.metadata import FileMeta, Metadata
from trustkit.metadata import payload as payload_module
from trustkit.roles import ROOT, SNAPSHOT, TARGETS, TIMESTAMP

TAGS = 10_000


@pytest.fixture(scope="module")
def sim():
    simulator = Simulator()
    listing = simulator.targets[TARGETS].targets
    for i in range(TAGS):
        listing[f"tag{i}"] = FileMeta.for_digest(hashlib.sha256(str(i).encode()).hexdigest(), 1000 + i)
    simulator.publish()
    assert len(simulator.current(TARGETS)) > 900_000
    yield simulator
    simulator.close()


class Work:
    """Counts, during one update: files parsed (by role), hashes computed over the big
    targets.json, cache files read and written (by role), garbage collections."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, big: bytes) -> None:
        self.parsed: Counter[str] = Counter()
        self.hashed: Counter[str] = Counter()
        self.read: Counter[str] = Counter()
        self.written: Counter[str] = Counter()
        self.collections = 0
        parse = Metadata.from_bytes.__func__

        def from_bytes(cls, data, *, role=None, **kwargs):
            self.parsed[role] += 1
            return parse(cls, data, role=role, **kwargs)

        real_new = hashlib.new

        def new(name, data=b"", **kwargs):
            if len(data) == len(big):
                self.hashed[name] += 1
            return real_new(name, data, **kwargs)

        read_bytes = Path.read_bytes

        def read(path):
            data = read_bytes(path)
            self.read[path.name] += 1
            return data

        def write(path, data, *args, **kwargs):
            self.written[Path(path).name] += 1
            return real_write(path, data, *args, **kwargs)

        real_write = updater_module.atomic_write
        monkeypatch.setattr(Metadata, "from_bytes", classmethod(from_bytes))
        monkeypatch.setattr(payload_module.hashlib, "new", new)
        monkeypatch.setattr(Path, "read_bytes", read)
        monkeypatch.setattr(updater_module, "atomic_write", write)
        self.counting = False  # collections are counted only while this is set
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start" and self.counting:
            self.collections += 1

    def close(self) -> None:
        gc.callbacks.remove(self._on_gc)


@pytest.fixture
def work(sim, monkeypatch):
    counter = Work(monkeypatch, sim.current(TARGETS))
    yield counter
    counter.close()


def test_a_cold_update_parses_and_hashes_the_big_targets_once_and_writes_each_file_once(sim, work, tmp_path):
    trusted = sim.updater(tmp_path).refresh(delegations="releases")
    assert len(trusted.targets[TARGETS].signed.targets) == TAGS
    assert work.parsed == {ROOT: 1, TIMESTAMP: 1, SNAPSHOT: 1, TARGETS: 1}
    assert work.hashed == {"sha256": 1, "sha512": 1}
    assert work.written == {f"{role}.json": 1 for role in (ROOT, TIMESTAMP, SNAPSHOT, TARGETS)}
    assert set(cache_state(tmp_path)) == {f"{sim.gun}/metadata/{r}.json" for r in (ROOT, TIMESTAMP, SNAPSHOT, TARGETS)}


def test_a_warm_update_reads_hashes_and_parses_each_file_once_and_rewrites_none(sim, work, tmp_path):
    sim.updater(tmp_path).refresh(delegations="releases")
    before = cache_state(tmp_path)
    for counter in (work.parsed, work.hashed, work.read, work.written):
        counter.clear()
    sim.requests.clear()

    trusted = sim.updater(tmp_path).refresh(delegations="releases")

    assert sim.requests == ["timestamp.json"]
    assert trusted.targets[TARGETS].signed.targets["tag5000"].length == 6000
    # The server's timestamp is the cached one: the cached file is not parsed for its version.
    assert work.parsed == {ROOT: 1, TIMESTAMP: 1, SNAPSHOT: 1, TARGETS: 1}
    assert work.hashed == {"sha256": 1, "sha512": 1}  # by the updater; the trusted set's check is remembered
    assert work.read["targets.json"] == 1 and work.read["snapshot.json"] == 1 and work.read["root.json"] == 1
    assert not work.written
    assert cache_state(tmp_path) == before


def test_a_warm_update_after_a_publish_writes_what_changed_only(sim, work, tmp_path):
    sim.updater(tmp_path).refresh(delegations="releases")
    work.written.clear()
    sim.publish(roles=[])  # a new snapshot and timestamp; root and targets unchanged
    sim.updater(tmp_path).refresh(delegations="releases")
    assert work.written == {"timestamp.json": 1, "snapshot.json": 1}
    assert cache_state(tmp_path)[f"{sim.gun}/metadata/{SNAPSHOT}.json"] == sim.current(SNAPSHOT)


def test_the_big_parse_runs_without_the_cyclic_collector_and_leaves_it_as_it_found_it(sim, work):
    data = sim.current(TARGETS)
    junk = [[i] for i in range(50_000)]  # a heap with something in it, as the CLI's is
    work.counting = True
    Metadata.from_bytes(data, role=TARGETS)
    work.counting = False
    assert work.collections == 0
    assert gc.isenabled()
    gc.disable()
    try:
        Metadata.from_bytes(data, role=TARGETS)
        assert not gc.isenabled()  # a caller that turned it off keeps it off
    finally:
        gc.enable()
    del junk


def test_a_changed_cached_file_is_fetched_and_hashed_again(sim, work, tmp_path):
    """The remembered match is for one bytes object only: a cached file that no longer matches
    the snapshot is replaced from the server and the new bytes are checked."""
    sim.updater(tmp_path).refresh(delegations="releases")
    cached = tmp_path / "tuf" / sim.gun / "metadata" / "targets.json"
    cached.write_bytes(cached.read_bytes().replace(b'"tag5000"', b'"tag5001"', 1))
    work.hashed.clear()
    sim.requests.clear()
    trusted = sim.updater(tmp_path).refresh(delegations="releases")
    assert sim.fetched(r"targets\.[0-9a-f]{64}\.json")
    assert work.hashed == {"sha256": 2, "sha512": 1}  # the stale copy fails on sha256; the fetched one is checked
    assert "tag5000" in trusted.targets[TARGETS].signed.targets
    assert cached.read_bytes() == sim.current(TARGETS)
