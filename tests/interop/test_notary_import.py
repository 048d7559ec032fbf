"""`trustkit server import` takes over a real notary-server + notary-signer deployment (Debian's
0.7, on PostgreSQL and on MariaDB with notary's schema): repositories published with the notary
CLI and docker (several versions, a server-managed snapshot, a delegation, a deleted repository)
are imported, and then the same clients, with the caches they had, read and publish through
`trustkit server` without a warning, signed by the same timestamp keys."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

import peers
from trustkit.metadata import Metadata

pytestmark = pytest.mark.interop

GUN = "example.com/import/app"  # several versions, then a server-managed snapshot
SIGNED = "example.com/import/signed"  # docker's signer (a delegation)
GONE = "example.com/import/gone"  # published, then deleted
TRUSTKIT_PASSPHRASE = "trustkit-import-test-passphrase"


class Deployment:
    """notary-server and notary-signer on ``backend``, as an operator runs them."""

    def __init__(self, backend: str, workdir: Path) -> None:
        self.backend = backend
        self.server_db = peers.NotaryDatabase(backend, "server")
        self.signer_db = peers.NotaryDatabase(backend, "signer")
        self.signer = peers.NotarySigner(workdir / "signer", self.signer_db)
        self.server = peers.NotaryServer(
            workdir / "server",
            config_overrides={
                "storage": {"backend": backend, "db_url": self.server_db.dsn},
                "trust_service": self.signer.server_config(),
            },
        )

    def start(self) -> None:
        self.signer.start()
        self.server.start()

    def stop(self) -> None:
        self.server.stop()
        self.signer.stop()

    def close(self) -> None:
        self.stop()
        self.server_db.drop()
        self.signer_db.drop()

    def rows(self, query: str) -> list[sa.Row]:
        engine = sa.create_engine(self.server_db.url)
        with engine.connect() as conn:
            rows = list(conn.execute(sa.text(query)))
        engine.dispose()
        return rows


@pytest.fixture(params=["postgres", "mysql"])
def deployment(request, tmp_path):
    deployment = Deployment(request.param, tmp_path / "notary")
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.close()


def write_target(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_text(f"content of {name}\n")
    return path


def publish_history(deployment: Deployment, notary: peers.NotaryCLI, docker: peers.DockerCLI, tmp_path: Path) -> None:
    """What a notary deployment holds after a while."""
    notary.run("init", GUN, "-p")
    for tag in ("v1", "v2"):
        notary.run("add", GUN, tag, write_target(tmp_path, tag), "-p")
    notary.run("key", "rotate", GUN, "snapshot", "-r")  # the server signs snapshots from now on
    notary.run("add", GUN, "v3", write_target(tmp_path, "v3"), "-p")
    # docker's signer: targets/releases and targets/alice, signed by alice's key
    docker.run("trust", "key", "generate", "alice", "--dir", str(tmp_path))
    docker.run("trust", "signer", "add", "--key", str(tmp_path / "alice.pub"), "alice", SIGNED)
    signer_notary = peers.NotaryCLI(docker.trust_dir, deployment.server, config_path=tmp_path / "docker-notary.json")
    signer_notary.run("add", SIGNED, "latest", write_target(tmp_path, "latest"), "--roles", "targets/releases", "-p")
    notary.run("init", GONE, "-p")
    notary.run("delete", GONE, "--remote")


class ServerFromNotaryConfig(peers.TrustkitServer):
    """`trustkit server --config` with a notary-server configuration file (section 3 of the issue):
    the operator's file, its storage pointed at the imported database, and nothing else."""

    def argv(self) -> list[str]:
        config = {
            "server": {
                "http_addr": self.host_port,
                "tls_cert_file": str(self.cert_path),
                "tls_key_file": str(self.key_path),
            },
            "trust_service": {"type": "remote", "hostname": "notarysigner", "port": "7899", "key_algorithm": "ecdsa"},
            "storage": {"backend": "sqlite3", "db_url": self.database.removeprefix("sqlite:///")},
            "logging": {"level": "info"},
        }
        path = self.workdir / "notary-server.json"
        path.write_text(json.dumps(config))
        return [self._python, "-m", "trustkit", "server", "--config", str(path)]


def run_import(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trustkit", "server", "import", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
        check=False,
    )


def tags(notary: peers.NotaryCLI, gun: str) -> list[str]:
    result = notary.run("list", gun)
    assert "warn" not in result.stderr.lower(), result.stderr
    return sorted(line.split()[0] for line in result.stdout.splitlines()[2:] if line.strip())


def import_and_reimport(deployment: Deployment, target: str, files: int, changes: int) -> None:
    """The import (the flags, or notary's config files for MariaDB), then a re-run that finds nothing new."""
    env = {**deployment.signer.environment, "TRUSTKIT_SERVER_PASSPHRASE": TRUSTKIT_PASSPHRASE}
    if deployment.backend == "mysql":  # the config-file form: notary's own files name the databases
        args = [
            "--notary-server-config",
            str(deployment.server.config_path),
            "--notary-signer-config",
            str(deployment.signer.config_path),
        ]
    else:
        args = ["--notary-server-db", deployment.server_db.dsn, "--notary-signer-db", deployment.signer_db.dsn]
    first = run_import(*args, "--database", target, "--format", "json", env=env)
    assert first.returncode == 0, first.stderr + first.stdout
    report = json.loads(first.stdout)
    by_gun = {repo["gun"]: repo for repo in report["repositories"]}
    assert sorted(by_gun) == [GUN, SIGNED]  # the deleted repository has no files left
    assert all(repo["status"] == "imported" and not repo["problems"] for repo in by_gun.values())
    assert by_gun[GUN]["keys"] == 2  # timestamp and the server-managed snapshot key
    assert sum(repo["versions"] for repo in by_gun.values()) == files
    assert report["changes"] == changes

    again = run_import(*args, "--database", target, env=env)
    assert again.returncode == 0, again.stderr
    assert "nothing new" in again.stdout


def served_as_notary_had_it(server: peers.TrustkitServer, source_files: list, source_changes: list) -> None:
    """Every historical version, by version and by checksum, and the changefeed in its order."""
    for row in source_files:
        data = bytes(row.data)
        by_version = server.get(f"/v2/{row.gun}/_trust/tuf/{row.version}.{row.role}.json")
        by_checksum = server.get(f"/v2/{row.gun}/_trust/tuf/{row.role}.{hashlib.sha256(data).hexdigest()}.json")
        assert by_version.content == data and by_checksum.content == data, (row.gun, row.role, row.version)
    feed = json.loads(server.get("/v2/_trust/changefeed?change_id=0&records=100").content)
    assert [(r["GUN"], r["Version"], r["Category"]) for r in feed["records"]] == source_changes


def test_import_then_clients_carry_on(deployment, notary_cli, docker_cli, tmp_path):
    notary = notary_cli(trust_dir=tmp_path / "notary-trust", server=deployment.server)
    docker = docker_cli(config_dir=tmp_path / "docker", server=deployment.server)
    publish_history(deployment, notary, docker, tmp_path)
    # The clients' caches, as they are before the move.
    assert tags(notary, GUN) == ["v1", "v2", "v3"]
    inspected_before = json.loads(docker.run("trust", "inspect", SIGNED).stdout)
    assert inspected_before[0]["SignedTags"][0]["SignedTag"] == "latest"
    source_files = deployment.rows("SELECT gun, role, version, data FROM tuf_files ORDER BY id")
    assert {(r.gun, r.role) for r in source_files} >= {(SIGNED, "targets/releases")}
    source_changes = [
        (r.gun, r.version, r.category)
        for r in deployment.rows("SELECT gun, version, category FROM changefeed ORDER BY id")
    ]
    timestamp_key = json.loads(deployment.server.get(f"/v2/{GUN}/_trust/tuf/timestamp.key").content)
    snapshot_key = json.loads(deployment.server.get(f"/v2/{GUN}/_trust/tuf/snapshot.key").content)
    tk_before = peers.TrustkitCLI(tmp_path / "trustkit-client", deployment.server)
    assert "v3" in tk_before.run("inspect", GUN).stdout
    deployment.stop()  # the operator stops notary, then imports

    target = f"sqlite:///{tmp_path / 'trustkit' / 'trustkit-server.db'}"
    import_and_reimport(deployment, target, len(source_files), len(source_changes))

    kind = ServerFromNotaryConfig if deployment.backend == "mysql" else peers.TrustkitServer
    with kind(tmp_path / "trustkit", database=target, passphrase=TRUSTKIT_PASSPHRASE) as server:
        served_as_notary_had_it(server, source_files, source_changes)
        assert json.loads(server.get(f"/v2/{GUN}/_trust/tuf/timestamp.key").content) == timestamp_key

        # The same clients, the same caches, the new server: no warning, and publishing goes on.
        moved = peers.NotaryCLI(notary.trust_dir, server, config_path=tmp_path / "moved-notary.json")
        assert tags(moved, GUN) == ["v1", "v2", "v3"]
        moved.run("add", GUN, "v4", write_target(tmp_path, "v4"), "-p")
        assert tags(moved, GUN) == ["v1", "v2", "v3", "v4"]
        for role, key in (("timestamp", timestamp_key), ("snapshot", snapshot_key)):  # the keys notary-signer held
            signed = Metadata.from_bytes(server.get(f"/v2/{GUN}/_trust/tuf/{role}.json").content)
            assert [s.keyid for s in signed.signatures] == [peers_keyid(key)], role
        moved_docker = peers.DockerCLI(docker.config_dir, server)
        inspected = moved_docker.run("trust", "inspect", SIGNED)
        assert "warn" not in inspected.stderr.lower(), inspected.stderr
        assert json.loads(inspected.stdout) == inspected_before
        tk = peers.TrustkitCLI(tk_before.config_dir, server)  # trustkit's cache from before the move
        inspected = tk.run("inspect", GUN)
        assert "v4" in inspected.stdout and "warn" not in inspected.stderr.lower(), inspected.stderr


def peers_keyid(key: dict) -> str:
    from trustkit.keys import PublicKey

    return PublicKey(key["keytype"], key["keyval"]["public"]).keyid
