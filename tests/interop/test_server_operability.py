"""`trustkit server` operated as notary-server is (issue 10), as a real process:

* its health check goes 503 when its PostgreSQL database is dropped, and 200 again when the
  database is back;
* two worker processes report one total on ``/metrics``, read with the Prometheus client's parser;
* the notary CLI and docker read repositories whose server-held keys are ECDSA P-256 (the new
  default), and a repository made with Ed25519 keys keeps them until its root holder rotates;
* it says where it listens when it starts.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

import peers
from trustkit.metadata import Metadata
from trustkit.server.storage import Storage

pytestmark = pytest.mark.interop

HEALTH = "/_notary_server/health"
DIGEST = "sha256:" + "ab" * 32


def served_root(server: peers.TrustkitServer, gun: str) -> Metadata:
    response = server.get(f"/v2/{gun}/_trust/tuf/root.json")
    assert response.status_code == 200, response.text
    return Metadata.from_bytes(response.content, role="root")


def server_key_types(server: peers.TrustkitServer, gun: str) -> dict[str, str]:
    """The key type root lists for each role."""
    root = served_root(server, gun).signed
    return {
        role: root.keys[root.roles[role].keyids[0]].keytype for role in ("root", "targets", "snapshot", "timestamp")
    }


def wait_for_health(server: peers.TrustkitServer, status: int, seconds: float = 30) -> dict[str, str]:
    """Poll the health check until it answers ``status``; its body then."""
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        last = server.get(HEALTH)
        if last.status_code == status:
            return last.json()
        time.sleep(0.25)
    raise AssertionError(f"health never answered {status} in {seconds}s (last: {last and last.status_code})")


# --------------------------------------------------------------------------------------------
# health


def test_health_is_503_while_the_postgresql_database_is_gone_and_200_when_it_is_back(
    tmp_path: Path, pg_database: tuple[str, str]
) -> None:
    url, name = pg_database
    with peers.TrustkitServer(tmp_path, database=url) as server:
        gun = "example.com/health/app"
        assert server.get(f"/v2/{gun}/_trust/tuf/timestamp.key").status_code == 200  # a stored key to decrypt
        assert wait_for_health(server, 200) == {}

        with psycopg.connect(peers.POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        problems = wait_for_health(server, 503)
        assert "DB operational" in problems, problems
        assert server.get(f"/v2/{gun}/_trust/tuf/root.json").status_code == 500  # notary's UNKNOWN, no traceback

        # The database comes back (restored: here, re-created with trustkit's schema).
        with psycopg.connect(peers.POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        Storage(url).close()
        assert wait_for_health(server, 200) == {}
        assert server.get(f"/v2/{gun}/_trust/tuf/root.json").status_code == 404


# --------------------------------------------------------------------------------------------
# metrics


def scrape(server: peers.TrustkitServer) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """``{sample name: {sorted labels: value}}`` from one scrape, on a new connection."""
    response = server.get("/metrics")
    assert response.status_code == 200
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def per_worker_get_roles(folder: Path) -> dict[str, float]:
    """How many GetRole requests each worker's own file holds (the client's merge, per file)."""
    counts: dict[str, float] = {}
    for path in folder.glob("counter_*.db"):
        for family in MultiProcessCollector.merge([str(path)]):
            for sample in family.samples:
                if sample.name.endswith("requests_total") and sample.labels.get("operation") == "GetRole":
                    counts[path.name] = counts.get(path.name, 0) + sample.value
    return counts


def get_concurrently(server: peers.TrustkitServer, path: str, clients: int, each: int) -> list[int]:
    """``clients`` connections at once, ``each`` GETs on each: busy workers leave connections to the other."""

    def one_client() -> list[int]:
        with server.client() as http:
            return [http.get(path).status_code for _ in range(each)]

    with ThreadPoolExecutor(clients) as pool:
        return [status for statuses in pool.map(lambda _: one_client(), range(clients)) for status in statuses]


def test_two_workers_report_one_total(tmp_path: Path) -> None:
    with peers.TrustkitServer(tmp_path, extra_args=["--workers", "2"]) as server:
        folder = tmp_path / "metrics" / server.host_port.replace(":", "_")
        gets = 0
        for _ in range(20):  # until both workers have served some (the first round nearly always does)
            statuses = get_concurrently(server, "/v2/example.com/metrics/app/_trust/tuf/root.json", 8, 5)
            assert set(statuses) == {404}
            gets += len(statuses)
            per_worker = per_worker_get_roles(folder)
            if len(per_worker) == 2 and all(per_worker.values()):
                break
        assert len(per_worker) == 2 and all(per_worker.values()), f"both workers served requests: {per_worker}"
        assert sum(per_worker.values()) == gets
        keys = 10
        for _ in range(keys):
            assert server.get("/v2/example.com/metrics/app/_trust/tuf/timestamp.key").status_code == 200

        for _ in range(6):  # each scrape lands on either worker: every one reports the total
            series = scrape(server)
            requests = series["notary_server_http_requests_total"]
            assert requests[(("code", "404"), ("method", "get"), ("operation", "GetRole"))] == gets
            assert requests[(("code", "200"), ("method", "get"), ("operation", "GetKey"))] == keys
            durations = series["notary_server_http_request_duration_microseconds_count"]
            assert durations[(("operation", "GetRole"),)] == gets
            assert series["notary_server_http_response_size_bytes_count"][(("operation", "UpdateTUF"),)] == 0
            assert series["process_resident_memory_bytes"][()] > 0 and series["process_cpu_seconds_total"][()] > 0
        # It said where it listens, first thing, and its log is JSON lines throughout.
        lines = server.log_path.read_text().splitlines()
        said = json.loads(lines[0])
        assert said["event"] == "trustkit server listening" and said["url"] == f"https://{server.host_port}"
        assert said["workers"] == 2 and said["tls"] == str(server.cert_path) and said["auth"] == "none (open)"
        assert said["database"] == server.database
        assert all(isinstance(json.loads(line), dict) for line in lines)


# --------------------------------------------------------------------------------------------
# ECDSA server keys, read by the notary CLI and docker


def test_notary_and_docker_read_a_repository_whose_server_keys_are_ecdsa(
    trustkit_server: peers.TrustkitServer, notary_cli, docker_cli, tmp_path: Path
) -> None:
    gun = f"{trustkit_server.host_port}/team/ecdsa"
    admin = notary_cli(server=trustkit_server)
    artifact = tmp_path / "artifact"
    artifact.write_bytes(b"signed with the server's ECDSA timestamp key\n")
    admin.run("init", gun, "-p")
    admin.run("key", "rotate", gun, "snapshot", "-r")  # the server signs snapshots too
    admin.run("add", gun, "v1", artifact, "-p")
    assert server_key_types(trustkit_server, gun) == {
        "root": "ecdsa-x509",
        "targets": "ecdsa",
        "snapshot": "ecdsa",
        "timestamp": "ecdsa",
    }
    assert "v1" in notary_cli(server=trustkit_server).run("list", gun).stdout
    inspected = json.loads(docker_cli(server=trustkit_server).run("trust", "inspect", gun).stdout)[0]
    assert [row["SignedTag"] for row in inspected["SignedTags"]] == ["v1"]


def test_a_repository_keeps_its_ed25519_keys_until_its_root_holder_rotates(
    tmp_path: Path, trustkit_cli, notary_cli
) -> None:
    with peers.TrustkitServer(tmp_path, extra_args=["--key-algorithm", "ed25519"]) as server:
        gun = f"{server.host_port}/team/legacy"
        admin = trustkit_cli(server=server)
        admin.run("init", gun)
        admin.run("sign", f"{gun}:v1", "--digest", DIGEST, "--size", "10")
        assert server_key_types(server, gun)["timestamp"] == "ed25519"
        reader = notary_cli(server=server)
        assert "v1" in reader.run("list", gun).stdout  # caches this root

        server.extra_args = []  # restarted with the default, ECDSA
        server.restart()
        admin.run("sign", f"{gun}:v2", "--digest", DIGEST, "--size", "10")
        assert server_key_types(server, gun)["timestamp"] == "ed25519", "an existing repository keeps its key"

        admin.run("key", "rotate", gun, "timestamp", "--server-managed")
        assert server_key_types(server, gun)["timestamp"] == "ecdsa"
        listed = reader.run("list", gun).stdout  # the reader follows the new root
        assert "v1" in listed and "v2" in listed
