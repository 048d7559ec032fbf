"""`trustkit server import` from notary's tables (here notary's SQLite form; PostgreSQL and
MariaDB with the real notary-server and notary-signer are in tests/interop/test_notary_import.py):
notary-signer's JWE keys, notary's database addresses, the checks that keep a bad repository
out whole, idempotent re-runs, the changefeed's order, an interrupted run, and notary-server's
configuration file as `trustkit server --config`."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from jwcrypto import jwe, jwk

import peers
from simulator import Key, Simulator, new_key
from trustkit.errors import KeyFormatError, TrustkitError
from trustkit.metadata import Metadata, Targets
from trustkit.roles import SNAPSHOT, TARGETS, TIMESTAMP
from trustkit.server.config import ServerConfig
from trustkit.server.keys import ServerKeys
from trustkit.server.notary_config import sqlalchemy_url
from trustkit.server.notary_import import (
    Importer,
    NotaryServerDB,
    NotarySignerDB,
    decrypt_signer_key,
    environment_passphrases,
    private_key_from_notary,
)
from trustkit.server.storage import Storage

ALIAS = "timestamp_1"
SIGNER_PASSPHRASE = "signer-passphrase"
TARGET_PASSPHRASE = "trustkit-passphrase"
START = datetime(2026, 1, 5, 9, 0)


# ---- a notary deployment's databases, in notary's SQLite form

SERVER_SCHEMA = """
CREATE TABLE tuf_files (id integer PRIMARY KEY AUTOINCREMENT, created_at datetime, updated_at datetime,
  deleted_at datetime, gun varchar(255) NOT NULL, role varchar(255) NOT NULL, version integer NOT NULL,
  sha256 varchar(64), data blob NOT NULL, UNIQUE (gun, role, version));
CREATE TABLE changefeed (id integer PRIMARY KEY AUTOINCREMENT, created_at datetime, gun varchar(255) NOT NULL,
  version integer NOT NULL, sha256 varchar(64), category varchar(20) NOT NULL DEFAULT 'update');
"""
SIGNER_SCHEMA = """
CREATE TABLE private_keys (id integer PRIMARY KEY AUTOINCREMENT, created_at datetime, updated_at datetime,
  deleted_at datetime, key_id varchar(255) NOT NULL UNIQUE, encryption_alg varchar(255) NOT NULL,
  keywrap_alg varchar(255) NOT NULL, algorithm varchar(50) NOT NULL, passphrase_alias varchar(50) NOT NULL,
  public blob NOT NULL, private blob NOT NULL, gun varchar(255) NOT NULL, role varchar(255) NOT NULL,
  last_used datetime);
"""


def jwe_encrypt(raw: bytes, passphrase: str, alg: str = "PBES2-HS256+A128KW") -> str:
    token = jwe.JWE(plaintext=raw, protected=json.dumps({"alg": alg, "enc": "A256GCM"}))
    token.add_recipient(
        jwk.JWK.from_password(passphrase) if alg.startswith("PBES2") else jwk.JWK.generate(kty="oct", size=128)
    )
    return token.serialize(compact=True)


def notary_private_bytes(key: Key) -> tuple[str, bytes, bytes]:
    """(algorithm, public, private) as notary-signer stores them: SPKI DER, SEC1 DER."""
    private = key.signer.private_key
    return (
        "ecdsa",
        private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
        private.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        ),
    )


class Deployment:
    """notary-server's and notary-signer's SQLite databases, filled from simulators."""

    def __init__(self, folder: Path) -> None:
        self.server_path, self.signer_path = folder / "server.db", folder / "signer.db"
        for path, schema in ((self.server_path, SERVER_SCHEMA), (self.signer_path, SIGNER_SCHEMA)):
            with sqlite3.connect(path) as db:
                db.executescript(schema)
        self.clock = START

    @property
    def server_url(self) -> str:
        return f"sqlite:///{self.server_path}"

    @property
    def signer_url(self) -> str:
        return f"sqlite:///{self.signer_path}"

    def tick(self) -> str:
        self.clock += timedelta(seconds=1)
        return self.clock.strftime("%Y-%m-%d %H:%M:%S")

    def add_files(self, sim: Simulator, *, skip: set[tuple[str, int]] = frozenset()) -> None:
        """Every version ``sim`` published that is not yet here, oldest first, and a changefeed
        record for each timestamp."""
        with sqlite3.connect(self.server_path) as db:
            have = set(db.execute("SELECT role, version FROM tuf_files WHERE gun = ?", (sim.gun,)))
            for name, data in self.versions(sim):
                version, role = name
                if (role, version) in have or (role, version) in skip:
                    continue
                when = self.tick()
                sha = hashlib.sha256(data).hexdigest()
                db.execute(
                    "INSERT INTO tuf_files (created_at, gun, role, version, sha256, data) VALUES (?,?,?,?,?,?)",
                    (when, sim.gun, role, version, sha, data),
                )
                if role == TIMESTAMP:
                    db.execute(
                        "INSERT INTO changefeed (created_at, gun, version, sha256, category) VALUES (?,?,?,?,'update')",
                        (when, sim.gun, version, sha),
                    )

    @staticmethod
    def versions(sim: Simulator) -> list[tuple[tuple[int, str], bytes]]:
        found = []
        for name, data in sim.files.items():
            match = re.fullmatch(r"(\d+)\.(.+)\.json", name)
            if match:
                found.append(((int(match[1]), match[2]), data))
        order = {"root": 0, "targets": 1, "snapshot": 3, "timestamp": 4}
        return sorted(found, key=lambda item: (item[0][0], order.get(item[0][1], 2)))

    def add_key(
        self,
        gun: str,
        role: str,
        key: Key,
        *,
        alias: str = ALIAS,
        passphrase: str = SIGNER_PASSPHRASE,
        private: str | None = None,
    ) -> None:
        algorithm, public, raw = notary_private_bytes(key)
        text = private if private is not None else jwe_encrypt(raw, passphrase)
        with sqlite3.connect(self.signer_path) as db:
            db.execute(
                "INSERT INTO private_keys (created_at, key_id, encryption_alg, keywrap_alg, algorithm, "
                "passphrase_alias, public, private, gun, role) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    self.tick(),
                    key.keyid,
                    "A256GCM",
                    "PBES2-HS256+A128KW",
                    algorithm,
                    alias,
                    public,
                    text.encode(),
                    gun,
                    role,
                ),
            )

    def delete(self, gun: str) -> None:
        with sqlite3.connect(self.server_path) as db:
            db.execute("DELETE FROM tuf_files WHERE gun = ?", (gun,))
            db.execute(
                "INSERT INTO changefeed (created_at, gun, version, sha256, category) VALUES (?,?,0,'','deletion')",
                (self.tick(), gun),
            )

    def changes(self) -> list[tuple[str, int, str]]:
        with sqlite3.connect(self.server_path) as db:
            return list(db.execute("SELECT gun, version, category FROM changefeed ORDER BY id"))

    def files(self, gun: str) -> list[tuple[str, int, bytes]]:
        with sqlite3.connect(self.server_path) as db:
            return list(db.execute("SELECT role, version, data FROM tuf_files WHERE gun = ?", (gun,)))


def repository(gun: str, *, versions: int = 2) -> Simulator:
    sim = Simulator(gun)
    for number in range(versions):
        sim.add_target(f"v{number}")
        sim.publish()
    return sim


@pytest.fixture
def deployment(tmp_path):
    return Deployment(tmp_path)


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path):
    """trustkit's database: SQLite, or a fresh PostgreSQL database of this test's own."""
    if request.param == "sqlite":
        storage = Storage(f"sqlite:///{tmp_path / 'trustkit.db'}")
        yield storage
        storage.close()
        return
    with peers.postgres_database("trustkit_import") as (url, _):
        storage = Storage(url)
        try:
            yield storage
        finally:
            storage.close()


def run_import(deployment: Deployment, target: Storage, env: dict[str, str] | None = None):
    server, signer = NotaryServerDB(deployment.server_url), NotarySignerDB(deployment.signer_url)
    try:
        passphrases = environment_passphrases(
            env if env is not None else {f"NOTARY_SIGNER_{ALIAS.upper()}": SIGNER_PASSPHRASE}
        )
        return Importer(server, signer, target, TARGET_PASSPHRASE, passphrases).run()
    finally:
        server.close()
        signer.close()


def stored_files(target: Storage, gun: str) -> dict[tuple[str, int], str]:
    return target.stored_checksums(gun)


# ---- notary-signer's keys


def test_signer_keys_decrypt_as_notary_signer_encrypts_them():
    key = new_key()
    algorithm, _, raw = notary_private_bytes(key)
    text = jwe_encrypt(raw, SIGNER_PASSPHRASE)
    assert decrypt_signer_key(text, SIGNER_PASSPHRASE) == raw
    assert private_key_from_notary(algorithm, raw).private_numbers() == key.signer.private_key.private_numbers()
    with pytest.raises(KeyFormatError, match="wrong passphrase"):
        decrypt_signer_key(text, "another passphrase")
    with pytest.raises(KeyFormatError, match="not notary-signer's"):
        decrypt_signer_key(jwe_encrypt(raw, SIGNER_PASSPHRASE, alg="A128KW"), SIGNER_PASSPHRASE)
    with pytest.raises(KeyFormatError):
        decrypt_signer_key("not.a.jwe", SIGNER_PASSPHRASE)


def test_ed25519_keys_are_notary_s_64_bytes():
    private = ed25519.Ed25519PrivateKey.generate()
    seed = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    loaded = private_key_from_notary("ed25519", seed + public)
    assert loaded.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw) == public
    with pytest.raises(KeyFormatError):
        private_key_from_notary("ed25519", seed)


@pytest.mark.parametrize(
    ("dsn", "backend", "url"),
    [
        (
            "postgres://server@db:5432/notaryserver?sslmode=disable",
            None,
            "postgresql+psycopg://server@db:5432/notaryserver?sslmode=disable",
        ),
        (
            "server:p@ss/w:rd@tcp(mysql:3306)/notaryserver?parseTime=True",
            "mysql",
            "mysql+pymysql://server:p%40ss%2Fw%3Ard@mysql:3306/notaryserver",
        ),
        (
            "root@tcp(127.0.0.1:3306)/notaryserver?parseTime=True&charset=utf8",
            None,
            "mysql+pymysql://root@127.0.0.1:3306/notaryserver?charset=utf8",
        ),
        (
            "signer@unix(/run/mysqld/mysqld.sock)/notarysigner",
            "mysql",
            "mysql+pymysql://signer@localhost/notarysigner?unix_socket=%2Frun%2Fmysqld%2Fmysqld.sock",
        ),
        ("mysql://root@127.0.0.1/notary", None, "mysql+pymysql://root@127.0.0.1/notary"),
        ("/var/lib/notary/notary.db", "sqlite3", "sqlite:////var/lib/notary/notary.db"),
        ("postgresql+psycopg://u@h/db", None, "postgresql+psycopg://u@h/db"),
    ],
)
def test_notary_database_addresses(dsn, backend, url):
    assert sqlalchemy_url(dsn, backend) == url


def test_an_unreadable_address_is_refused_without_its_password():
    with pytest.raises(TrustkitError) as caught:
        sqlalchemy_url("user:secret@nonsense", "postgres")
    assert "secret" not in str(caught.value)


# ---- importing


def test_import_keeps_every_version_and_the_server_keys(deployment, target):
    sim = repository("example.com/team/app", versions=3)
    sim.rotate(TARGETS)  # root v2
    sim.add_target("after-rotation")
    sim.publish()
    deployment.add_files(sim)
    deployment.add_key(sim.gun, TIMESTAMP, sim.keys[TIMESTAMP][0])
    deployment.add_key(sim.gun, SNAPSHOT, sim.keys[SNAPSHOT][0])  # a server-managed snapshot
    deployment.add_key(sim.gun, TIMESTAMP, new_key())  # an older key no root lists any more

    result = run_import(deployment, target)

    assert [(r.gun, r.status, r.problems) for r in result.repositories] == [(sim.gun, "imported", [])]
    source = deployment.files(sim.gun)
    assert result.repositories[0].versions == len(source) and result.repositories[0].keys == 3
    for role, version, data in source:
        assert target.by_version(sim.gun, role, version).data == data
        assert target.by_checksum(sim.gun, role, hashlib.sha256(data).hexdigest()).data == data
    assert target.by_version(sim.gun, "root", 1).created_at == datetime(2026, 1, 5, 9, 0, 1, tzinfo=UTC)
    keys = ServerKeys(target, TARGET_PASSPHRASE)
    for role in (TIMESTAMP, SNAPSHOT):
        signer, keyid = keys.signer(sim.gun, role, [sim.keys[role][0].keyid])
        assert keyid == sim.keys[role][0].keyid
        assert signer.public_key.keyid == keyid  # decrypts under trustkit's passphrase, and is the same key
    assert [(c.gun, c.version, c.category) for c in target.changes(None, 0, 100)] == deployment.changes()

    again = run_import(deployment, target, env={})  # keys already held need no passphrase
    assert again.nothing_new and again.repositories[0].status == "nothing new"

    sim.add_target("later")
    sim.publish()
    deployment.add_files(sim)
    later = run_import(deployment, target)
    assert later.repositories[0].versions == 3 and later.changes == 1  # targets, snapshot, timestamp


def test_a_bad_repository_is_skipped_whole_and_the_rest_go_on(deployment, target):
    good, bad = repository("example.com/good"), repository("example.com/bad")
    intruder = new_key()
    bad.add_target("evil")
    bad.publish(sign_with={TARGETS: [intruder]})  # a targets version no root allowed
    for sim in (good, bad):
        deployment.add_files(sim)
        deployment.add_key(sim.gun, TIMESTAMP, sim.keys[TIMESTAMP][0])

    result = run_import(deployment, target)

    status = {r.gun: (r.status, r.problems) for r in result.repositories}
    assert status["example.com/good"] == ("imported", [])
    assert status["example.com/bad"][0] == "failed"
    assert "targets version 3 is not signed" in " ".join(status["example.com/bad"][1])
    assert stored_files(target, "example.com/bad") == {}
    assert target.server_keys("example.com/bad", TIMESTAMP) == []
    assert {c.gun for c in target.changes(None, 0, 100)} == {"example.com/good"}
    assert result.changes_skipped == 3


@pytest.mark.parametrize("damage", ["broken chain", "no timestamp key", "no passphrase", "wrong passphrase"])
def test_what_a_repository_fails_on(deployment, target, damage):
    sim = repository("example.com/team/app")
    env = {f"NOTARY_SIGNER_{ALIAS.upper()}": SIGNER_PASSPHRASE}
    if damage == "broken chain":
        sim.rotate_root(sign_with="new")  # root v2 not signed by root v1's key
    deployment.add_files(sim)
    if damage != "no timestamp key":
        deployment.add_key(
            sim.gun,
            TIMESTAMP,
            sim.keys[TIMESTAMP][0],
            passphrase="other" if damage == "wrong passphrase" else SIGNER_PASSPHRASE,
        )
    if damage == "no passphrase":
        env = {}

    result = run_import(deployment, target, env)

    repo = result.repositories[0]
    assert repo.status == "failed" and stored_files(target, sim.gun) == {}
    expected = {
        "broken chain": "root version 2 is not signed by root version 1",
        "no timestamp key": "notary-signer holds none of the timestamp keys",
        "no passphrase": f"set NOTARY_SIGNER_{ALIAS.upper()}",
        "wrong passphrase": "wrong passphrase",
    }[damage]
    assert expected in " ".join(repo.problems)


def test_data_already_in_trustkit_that_differs_rolls_the_repository_back(deployment, target):
    sim = repository("example.com/team/app")
    deployment.add_files(sim)
    deployment.add_key(sim.gun, TIMESTAMP, sim.keys[TIMESTAMP][0])
    other = Metadata(Targets(expires=sim.targets[TARGETS].expires, version=2)).sign([sim.keys[TARGETS][0].pair])
    target.update_many(sim.gun, [("targets", 2, other)], now=datetime.now(UTC))

    result = run_import(deployment, target)

    assert result.repositories[0].status == "failed"
    assert "targets version 2 differs" in result.repositories[0].problems[0]
    assert stored_files(target, sim.gun) == {("targets", 2): hashlib.sha256(other).hexdigest()}  # nothing added
    assert target.server_keys(sim.gun, TIMESTAMP) == []


def test_a_deleted_repository_keeps_its_changefeed_in_order(deployment, target):
    first, gone, last = repository("example.com/a"), repository("example.com/gone"), repository("example.com/z")
    deployment.add_files(first)
    deployment.add_files(gone)
    deployment.add_files(last, skip={("timestamp", 2), ("snapshot", 2), ("targets", 2)})
    deployment.delete(gone.gun)
    deployment.add_files(last)  # interleaved with the others in the feed
    for sim in (first, last):
        deployment.add_key(sim.gun, TIMESTAMP, sim.keys[TIMESTAMP][0])

    result = run_import(deployment, target)

    assert sorted(r.gun for r in result.repositories) == ["example.com/a", "example.com/z"]
    assert [(c.gun, c.version, c.category) for c in target.changes(None, 0, 100)] == deployment.changes()
    assert ("example.com/gone", 0, "deletion") in deployment.changes()
    assert run_import(deployment, target).changes == 0


def test_an_interrupted_import_leaves_whole_repositories_and_resumes(deployment, tmp_path):
    sims = [repository(f"example.com/many/r{number:02}", versions=4) for number in range(24)]
    for sim in sims:
        deployment.add_files(sim)
        deployment.add_key(sim.gun, TIMESTAMP, sim.keys[TIMESTAMP][0])
    database = f"sqlite:///{tmp_path / 'target' / 'trustkit.db'}"
    argv = [
        sys.executable,
        "-m",
        "trustkit",
        "server",
        "import",
        "--notary-server-db",
        deployment.server_url,
        "--notary-signer-db",
        deployment.signer_url,
        "--database",
        database,
    ]
    env = {
        **os.environ,
        f"NOTARY_SIGNER_{ALIAS.upper()}": SIGNER_PASSPHRASE,
        "TRUSTKIT_SERVER_PASSPHRASE": TARGET_PASSPHRASE,
    }
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    done = [proc.stderr.readline() for _ in range(3)]  # three repositories reported imported
    assert all(line.endswith(": imported\n") for line in done), done
    time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    proc.stderr.close()

    target = Storage(database)
    try:
        counts = [len(stored_files(target, sim.gun)) for sim in sims]
        assert 3 <= sum(1 for count in counts if count) < len(sims)  # it was stopped part way
        assert set(counts) <= {0, len(deployment.files(sims[0].gun))}  # each repository whole or absent
        resumed = subprocess.run(
            argv + ["--format", "json"], env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert resumed.returncode == 0, resumed.stderr
        report = json.loads(resumed.stdout)
        assert {r["status"] for r in report["repositories"][:3]} == {"nothing new"}
        assert all(len(stored_files(target, sim.gun)) == len(deployment.files(sim.gun)) for sim in sims)
        assert [(c.gun, c.version, c.category) for c in target.changes(None, 0, 1000)] == deployment.changes()
    finally:
        target.close()


def test_the_command_needs_both_databases(tmp_path):
    from click.testing import CliRunner

    from trustkit.cli import cli

    result = CliRunner().invoke(cli, ["server", "import", "--notary-server-db", "postgres://x/y"])
    assert result.exit_code == 2 and "--notary-signer-db" in result.output


# ---- notary-server's configuration file as `trustkit server --config`


def test_notary_server_config_is_a_drop_in(tmp_path):
    config = {
        "server": {"http_addr": ":4443", "tls_cert_file": "./notary-server.crt", "tls_key_file": "./notary-server.key"},
        "trust_service": {"type": "remote", "hostname": "notarysigner", "port": "7899", "key_algorithm": "ecdsa"},
        "storage": {"backend": "postgres", "db_url": "postgres://server@db:5432/notaryserver?sslmode=disable"},
        "auth": {
            "type": "token",
            "options": {
                "realm": "https://auth.example.com/token",
                "service": "notary",
                "issuer": "auth.example.com",
                "rootcertbundle": "/etc/certs/root.crt",
            },
        },
        "repositories": {"gun_prefixes": ["docker.io/", "example.com/"]},
        "caching": {"max_age": {"current_metadata": 60, "consistent_metadata": 86400}},
        "logging": {"level": "debug"},
    }
    path = tmp_path / "server.json"
    path.write_text(json.dumps(config))

    loaded = ServerConfig.load(str(path), {})

    assert loaded.listen == "0.0.0.0:4443"
    assert loaded.tls_cert == str(tmp_path / "notary-server.crt")
    assert loaded.database == "postgresql+psycopg://server@db:5432/notaryserver?sslmode=disable"
    assert (loaded.auth, loaded.token_realm, loaded.token_service, loaded.token_issuer, loaded.token_root_certs) == (
        "token",
        "https://auth.example.com/token",
        "notary",
        "auth.example.com",
        "/etc/certs/root.crt",
    )
    assert loaded.gun_prefixes == ["docker.io/", "example.com/"]
    assert (loaded.current_max_age, loaded.consistent_max_age) == (60, 86400)


def test_notary_server_settings_trustkit_does_not_support_are_named(tmp_path):
    config = {
        "server": {"http_addr": ":4443"},
        "storage": {"backend": "rethinkdb", "db_url": "rdb:28015"},
        "auth": {"type": "token", "options": {"realm": "r", "rootcertbundle": "c"}},
        "reporting": {"bugsnag": {"api_key": "x"}},
        "gun_prefixes": ["a/"],
    }
    path = tmp_path / "server.json"
    path.write_text(json.dumps(config))
    with pytest.raises(TrustkitError) as caught:
        ServerConfig.load(str(path), {})
    message = str(caught.value)
    for key in ("storage.backend", "reporting.bugsnag.api_key", "gun_prefixes"):
        assert key in message


def test_the_target_is_never_notary_s_own_database(deployment, tmp_path):
    from click.testing import CliRunner

    from trustkit.cli import cli

    result = CliRunner().invoke(
        cli,
        [
            "server",
            "import",
            "--notary-server-db",
            deployment.server_url,
            "--notary-signer-db",
            deployment.signer_url,
            "--database",
            f"sqlite:///{tmp_path}/./server.db",
        ],
        env={"TRUSTKIT_SERVER_PASSPHRASE": TARGET_PASSPHRASE},
    )
    assert result.exit_code == 1 and "must be trustkit's own database" in str(result.exception)
    with sqlite3.connect(deployment.server_path) as db:  # notary's database was not touched
        assert [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == [
            "tuf_files",
            "sqlite_sequence",
            "changefeed",
        ]
