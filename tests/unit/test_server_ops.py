"""Operating the trust server as notary-server is operated (issue 10), in-process:

* ``/_notary_server/health`` checks the database and that the server's keys decrypt, with
  notary's check names, and keeps its answer for a few seconds;
* ``/metrics`` has notary-server's series, names and labels, parsed with the Prometheus client;
* the keys the server makes are ECDSA P-256 unless told otherwise, and a repository keeps the
  keys it has;
* ``trustkit server`` says where it listens.

Two worker processes reporting one total, and a PostgreSQL database that goes away, are in
tests/interop/test_server_operability.py.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from trustkit.encoding import format_expires
from trustkit.errors import TrustkitError
from trustkit.keys import CryptoSigner, PublicKey, generate
from trustkit.keys.certs import root_key_for
from trustkit.metadata import BASE_ROLES, FileMeta, Metadata, RoleKeys, Root, Targets
from trustkit.server import health as health_module
from trustkit.server.app import ServerSettings, create_app
from trustkit.server.config import ServerConfig, describe, metrics_folder, prepare
from trustkit.server.health import HealthCheck
from trustkit.server.keys import ServerKeys
from trustkit.server.metrics import OPERATIONS, operation
from trustkit.server.storage import SERVER_KEYS, Storage

GUN = "registry.example.com/ops/app"
TUF = f"/v2/{GUN}/_trust/tuf/"
PASSPHRASE = "ops-test-passphrase"


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    store = Storage(f"sqlite:///{tmp_path / 'server.db'}")
    yield store
    store.close()


def client_for(storage: Storage, *, passphrase: str = PASSPHRASE, algorithm: str = "ecdsa") -> TestClient:
    return TestClient(create_app(storage, ServerKeys(storage, passphrase, algorithm), ServerSettings()))


def multipart(parts: dict[str, bytes]) -> tuple[dict[str, str], bytes]:
    boundary = uuid.uuid4().hex
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{role}"\r\n\r\n'.encode()
        + data
        + b"\r\n"
        for role, data in parts.items()
    )
    return {"Content-Type": f"multipart/form-data; boundary={boundary}"}, body + f"--{boundary}--\r\n".encode()


def server_key(client: TestClient, role: str) -> PublicKey:
    body = client.get(f"{TUF}{role}.key").json()
    return PublicKey(body["keytype"], body["keyval"]["public"])


def publish_first_version(client: TestClient) -> None:
    """Root v1 naming the server's timestamp and snapshot keys, and targets v1: the server signs
    the snapshot and the timestamp."""
    root_private = generate()
    root_key = root_key_for(root_private, GUN)
    targets_signer = CryptoSigner(generate())
    server = {role: server_key(client, role) for role in ("timestamp", "snapshot")}
    ids = {
        "root": root_key.keyid,
        "targets": targets_signer.public_key.keyid,
        **{r: k.keyid for r, k in server.items()},
    }
    keys = {root_key.keyid: root_key, targets_signer.public_key.keyid: targets_signer.public_key}
    keys.update({key.keyid: key for key in server.values()})
    later = datetime.now(UTC) + timedelta(days=365)
    root = Metadata(
        Root(expires=format_expires(later), version=1, keys=keys, roles={r: RoleKeys([ids[r]]) for r in BASE_ROLES})
    ).sign([(CryptoSigner(root_private), root_key.keyid)])
    targets = Metadata(
        Targets(expires=format_expires(later), version=1, targets={"v1": FileMeta.for_digest("ab" * 32, 42)})
    ).sign([(targets_signer, targets_signer.public_key.keyid)])
    headers, body = multipart({"root": root, "targets": targets})
    response = client.post(TUF, content=body, headers=headers)
    assert response.status_code == 200, response.text


# --------------------------------------------------------------------------------------------
# health


def test_health_is_200_and_an_empty_object_when_the_database_answers_and_keys_decrypt(storage: Storage) -> None:
    client = client_for(storage)
    publish_first_version(client)
    response = client.get("/_notary_server/health")
    assert (response.status_code, response.json()) == (200, {})


def test_health_is_503_naming_the_signing_check_when_the_keys_do_not_decrypt(storage: Storage) -> None:
    """A server started with another passphrase serves reads but cannot sign a timestamp."""
    publish_first_version(client_for(storage))
    response = client_for(storage, passphrase="not-the-passphrase").get("/_notary_server/health")
    assert response.status_code == 503
    assert list(response.json()) == ["Trust operational"]
    assert "cannot sign" in response.json()["Trust operational"]


def test_health_is_503_naming_the_database_check_when_its_tables_are_gone(storage: Storage) -> None:
    client = client_for(storage)
    with storage.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE tuf_files"))
    response = client.get("/_notary_server/health")
    assert response.status_code == 503 and "DB operational" in response.json()
    assert "sqlite" not in response.text.lower(), "the public body names the failure, not the database"


def test_health_keeps_its_answer_for_a_few_seconds(storage: Storage) -> None:
    now = [1000.0]
    keys = ServerKeys(storage, PASSPHRASE)
    health = HealthCheck(storage, keys, cache_seconds=5, clock=lambda: now[0])
    assert health.problems() == {}
    with storage.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE tuf_files"))
    now[0] += 4.9
    assert health.problems() == {}, "checked again within the cache time"
    now[0] += 0.2
    assert list(health.problems()) == ["DB operational"]


class HangingKeys:
    """Keys whose check hangs until released (a database that stops answering mid-query)."""

    def __init__(self) -> None:
        self.hang = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def check_can_sign(self) -> None:
        self.calls += 1
        if self.hang.is_set():
            self.release.wait(30)


def test_a_check_that_hangs_is_named_in_time_and_holds_one_thread(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health_module, "TIMEOUT_SECONDS", 0.3)
    keys = HangingKeys()
    health = HealthCheck(storage, keys, cache_seconds=0)  # type: ignore[arg-type]  # a stand-in for ServerKeys
    loop = asyncio.new_event_loop()  # the server's loop lives on; asyncio.run would wait for the thread
    try:
        assert loop.run_until_complete(health.answer(timeout=0.3)) == {}
        keys.hang.set()
        started = time.monotonic()
        hung = loop.run_until_complete(health.answer(timeout=0.3))
        assert hung == {"Trust operational": "the check did not finish in 0.3 s"}
        assert time.monotonic() - started < 2
        # while it hangs, probes are answered at once and start no other check
        assert list(health.problems()) == ["Trust operational"] and keys.calls == 2
    finally:
        keys.release.set()
        loop.close()
    for _ in range(100):  # the check that hung finishes, and the next probe is healthy again
        if health.problems() == {}:
            break
        time.sleep(0.05)
    assert health.problems() == {}


def test_with_no_key_stored_the_passphrase_is_checked_on_a_canary(storage: Storage) -> None:
    ServerKeys(storage, PASSPHRASE).check_can_sign()
    with pytest.raises(TrustkitError):
        ServerKeys(storage, "").check_can_sign()  # no passphrase: no key could be stored


# --------------------------------------------------------------------------------------------
# metrics


def families(client: TestClient) -> dict[str, list[tuple[dict[str, str], str, float]]]:
    """Each family's samples as ``(labels, sample name, value)``."""
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        family.name: [(sample.labels, sample.name, sample.value) for sample in family.samples]
        for family in text_string_to_metric_families(response.text)
    }


def value(samples: list[tuple[dict[str, str], str, float]], name: str, **labels: str) -> float:
    found = [v for got, sample, v in samples if sample == name and got == labels]
    assert len(found) == 1, (name, labels, samples)
    return found[0]


def test_metrics_count_requests_by_notarys_operation_code_and_method(storage: Storage) -> None:
    client = client_for(storage)
    for _ in range(3):
        assert client.get(f"{TUF}root.json").status_code == 404
    assert client.get(f"{TUF}timestamp.key").status_code == 200
    assert client.get(f"{TUF}1.root.json").status_code == 404
    assert client.get(f"{TUF}root.{'ab' * 32}.json").status_code == 404
    assert client.get(f"/v2/{GUN}/_trust/changefeed", params={"records": "10"}).status_code == 200
    client.get("/_notary_server/health")  # not an API operation: not counted, as in notary
    series = families(client)
    requests = series["notary_server_http_requests"]
    assert {(labels["operation"], labels["method"], labels["code"]): v for labels, _, v in requests} == {
        ("GetRole", "get", "404"): 3,
        ("GetKey", "get", "200"): 1,
        ("GetRoleByVersion", "get", "404"): 1,
        ("GetRoleByHash", "get", "404"): 1,
        ("Changefeed", "get", "200"): 1,
    }
    for summary in (
        "notary_server_http_request_duration_microseconds",
        "notary_server_http_request_size_bytes",
        "notary_server_http_response_size_bytes",
    ):
        samples = series[summary]
        # every operation is there from the start, as notary registers them
        assert {labels["operation"] for labels, _, _ in samples} == set(OPERATIONS.values())
        assert value(samples, f"{summary}_count", operation="GetRole") == 3
        assert value(samples, f"{summary}_count", operation="UpdateTUF") == 0
    key_body = len(client.get(f"{TUF}timestamp.key").content)
    responses = families(client)["notary_server_http_response_size_bytes"]
    assert value(responses, "notary_server_http_response_size_bytes_sum", operation="GetKey") == 2 * key_body
    assert any(name.startswith("process_") for name in series), "the standard process series"


def test_requests_of_one_loop_turn_are_written_together_and_a_scrape_sees_them_all() -> None:
    """Counts wait for the end of the event loop's turn; a scrape in between writes them first."""
    from trustkit.server.metrics import Metrics

    series = Metrics()
    writes = []

    async def burst() -> bytes:
        for size in (10, 20, 30):
            series.observe("GetRole", "GET", 200, seconds=0.001, request_bytes=100, response_bytes=size)
        writes.append(dict(series._pending))  # noqa: SLF001 - what waits for the turn's end
        return series.exposition()  # before the turn ends

    text = asyncio.run(burst()).decode()
    assert writes == [{(200, "GET", "GetRole"): [3, pytest.approx(3000), 300, 60]}]
    found = {
        (sample.name, sample.labels.get("operation"), sample.labels.get("code")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert found[("notary_server_http_requests_total", "GetRole", "200")] == 3
    assert found[("notary_server_http_response_size_bytes_count", "GetRole", None)] == 3
    assert found[("notary_server_http_response_size_bytes_sum", "GetRole", None)] == 60
    assert found[("notary_server_http_request_duration_microseconds_sum", "GetRole", None)] == pytest.approx(3000)


def test_a_publish_and_a_delete_are_counted_as_update_and_delete(storage: Storage) -> None:
    client = client_for(storage)
    publish_first_version(client)
    assert client.delete(TUF).status_code == 200
    requests = families(client)["notary_server_http_requests"]
    assert value(requests, "notary_server_http_requests_total", code="200", method="post", operation="UpdateTUF") == 1
    assert value(requests, "notary_server_http_requests_total", code="200", method="delete", operation="DeleteTUF") == 1


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", f"{TUF}", "UpdateTUF"),
        ("DELETE", f"{TUF}", "DeleteTUF"),
        ("GET", f"{TUF}targets.json", "GetRole"),
        ("GET", f"{TUF}targets/releases.json", "GetRole"),
        ("GET", f"{TUF}3.snapshot.json", "GetRoleByVersion"),
        ("GET", f"{TUF}timestamp.{'0f' * 32}.json", "GetRoleByHash"),
        ("GET", f"{TUF}snapshot.key", "GetKey"),
        ("POST", f"{TUF}timestamp.key", "RotateKey"),
        ("GET", f"/v2/{GUN}/_trust/changefeed", "Changefeed"),
        ("GET", "/v2/_trust/changefeed", "Changefeed"),
        ("GET", f"/v2/{'a/' * 600}_trust/tuf/root.json", "GetRole"),  # too long to be remembered: routed each time
        ("GET", "/v2/", None),  # notary's catalog route is not instrumented
        ("GET", f"/v2/{GUN}/_trust/settings", None),  # trustkit's own route
        ("GET", "/metrics", None),
        ("GET", "/_notary_server/health", None),
    ],
)
def test_routes_carry_notarys_operation_names(method: str, path: str, expected: str | None) -> None:
    assert operation(method, path) == expected


# --------------------------------------------------------------------------------------------
# server keys


@pytest.mark.parametrize(("algorithm", "keytype"), [("ecdsa", "ecdsa"), ("ed25519", "ed25519"), ("rsa", "rsa")])
def test_new_server_keys_are_of_the_configured_type(storage: Storage, algorithm: str, keytype: str) -> None:
    client = client_for(storage, algorithm=algorithm)
    assert server_key(client, "timestamp").keytype == keytype
    assert server_key(client, "snapshot").keytype == keytype


def test_the_default_is_ecdsa_and_the_server_signs_with_it(storage: Storage) -> None:
    client = TestClient(create_app(storage, ServerKeys(storage, PASSPHRASE), ServerSettings()))
    publish_first_version(client)
    root = Metadata.from_bytes(client.get(f"{TUF}root.json").content, role="root").signed
    for role in ("timestamp", "snapshot"):
        served = Metadata.from_bytes(client.get(f"{TUF}{role}.json").content, role=role)
        assert root.keys[root.roles[role].keyids[0]].keytype == "ecdsa"
        assert served.verify_by(root.signing_rule(role)), f"{role} is signed by the ECDSA key root names"


def test_a_repository_keeps_its_ed25519_keys_when_the_default_changes(storage: Storage) -> None:
    old = client_for(storage, algorithm="ed25519")
    publish_first_version(old)
    new = client_for(storage)  # restarted with the ECDSA default
    assert server_key(new, "timestamp").keytype == "ed25519"
    headers, body = multipart({})
    assert new.post(TUF, content=body, headers=headers).status_code == 200  # still signs with its key
    rotated = new.post(f"{TUF}timestamp.key").json()  # what `key rotate --server-managed` asks for
    assert rotated["keytype"] == "ecdsa"


def test_an_unknown_key_algorithm_is_refused(storage: Storage) -> None:
    with pytest.raises(ValueError, match="ecdsa, ed25519, rsa"):
        ServerKeys(storage, PASSPHRASE, "dsa")
    with pytest.raises(TrustkitError, match="--key-algorithm"):
        ServerConfig.load(None, {"key_algorithm": "dsa"})


def test_the_key_algorithm_comes_from_the_config_file_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "server.json"
    config.write_text(json.dumps({"key_algorithm": "rsa"}))
    assert ServerConfig.load(str(config), {}).key_algorithm == "rsa"
    monkeypatch.setenv("TRUSTKIT_SERVER_KEY_ALGORITHM", "ed25519")
    assert ServerConfig.load(str(config), {}).key_algorithm == "ed25519"
    assert ServerConfig.load(None, {"key_algorithm": "ecdsa"}).key_algorithm == "ecdsa"


@pytest.mark.parametrize("algorithm", ["ed25519", "rsa", "ecdsa"])
def test_notary_servers_key_algorithm_is_taken_from_its_config_file(tmp_path: Path, algorithm: str) -> None:
    notary = {"trust_service": {"type": "remote", "key_algorithm": algorithm}, "storage": {"backend": "memory"}}
    (tmp_path / "server.json").write_text(json.dumps(notary))
    assert ServerConfig.load(str(tmp_path / "server.json"), {}).key_algorithm == algorithm


# --------------------------------------------------------------------------------------------
# start-up


def test_the_start_up_message_says_where_and_how_it_serves(tmp_path: Path) -> None:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    said = json.loads(
        describe(
            ServerConfig(
                listen="127.0.0.1:4443",
                database="postgresql://trust:s3cret@db.example.com/notary",
                tls_cert=str(cert),
                tls_key=str(key),
                auth="none",
                workers=2,
            )
        )
    )
    assert said["event"] == "trustkit server listening"
    assert said["url"] == "https://127.0.0.1:4443" and said["workers"] == 2
    assert said["tls"] == str(cert) and said["auth"] == "none (open)"
    assert said["database"] == "postgresql://trust:***@db.example.com/notary"
    assert said["health"] == "https://127.0.0.1:4443/_notary_server/health"
    plain = json.loads(describe(ServerConfig(listen="0.0.0.0:4443", database="sqlite:////srv/trust.db", auth="none")))
    assert plain["url"] == "http://127.0.0.1:4443" and plain["listen"] == "every address (0.0.0.0)"
    assert plain["tls"] == "none (plain HTTP)" and plain["database"] == "sqlite:////srv/trust.db"


def test_prepare_empties_the_metrics_folder_of_a_previous_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSTKIT_SERVER_PASSPHRASE", PASSPHRASE)
    config = ServerConfig(database=f"sqlite:///{tmp_path / 'data' / 'server.db'}")
    prepare(config)
    folder = metrics_folder(config)
    (folder / "counter_12345.db").write_bytes(b"old counts")
    prepare(config)
    assert folder.is_dir() and list(folder.iterdir()) == []
    assert folder.stat().st_mode & 0o777 == 0o700


def test_health_body_stays_small_and_public(storage: Storage) -> None:
    """The stored key that fails is named by the check, never shown."""
    publish_first_version(client_for(storage))
    with storage.engine.connect() as conn:
        private = conn.execute(sa.select(SERVER_KEYS.c.private)).scalars().first()
    response = client_for(storage, passphrase="wrong").get("/_notary_server/health")
    assert private is not None and private[40:80] not in response.text and len(response.content) < 200
