"""trustkit.client.notary against the real notary-server 0.7.0 (Debian), over TLS on loopback.

These fail, never skip, when notary-server is missing (see tests/peers.py).
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import peers
from trustkit.client.notary import NotaryClient, make_http_client
from trustkit.errors import NetworkError, OversizedError, ServerRejectedError

pytestmark = pytest.mark.interop

GUN = "example.com/trustkit/interop"


@pytest.fixture
def client(notary_server: peers.NotaryServer, tmp_path: Path) -> Iterator[NotaryClient]:
    http = make_http_client(notary_server.url, tls_ca=str(notary_server.ca_path), config_dir=tmp_path)
    yield NotaryClient(notary_server.url, GUN, http)
    http.close()


def test_ping(client: NotaryClient) -> None:
    client.ping()


def test_server_keys_change_on_every_get_before_a_root_exists(client: NotaryClient) -> None:
    first = client.get_key("timestamp")
    second = client.get_key("timestamp")
    assert first.keytype == second.keytype == "ed25519"  # the harness's trust_service.key_algorithm
    assert first.keyid != second.keyid
    rotated = client.rotate_key("snapshot")
    assert rotated.keytype == "ed25519"


def test_unknown_gun_has_no_root(client: NotaryClient) -> None:
    assert client.get("root", max_size=1 << 20) is None
    assert client.get("timestamp", max_size=1 << 20) is None
    assert client.get("root", version=1, max_size=1 << 20) is None


def test_96_hex_checksum_passes_the_router_but_is_never_found(client: NotaryClient) -> None:
    assert client.get("root", checksum="a" * 96, max_size=1 << 20) is None
    assert client.get("root", checksum="a" * 128, max_size=1 << 20) is None


def test_publishing_garbage_is_rejected_with_the_real_code(client: NotaryClient) -> None:
    with pytest.raises(ServerRejectedError) as info:
        client.publish({"root": b"this is not json"})
    assert info.value.status == 400
    assert info.value.code == "MALFORMED_JSON"
    assert info.value.detail is None  # the server omits detail for this error
    assert GUN in str(info.value)


def test_publishing_without_root_is_an_invalid_update(client: NotaryClient) -> None:
    with pytest.raises(ServerRejectedError) as info:
        client.publish({"targets/releases": b"{}"})
    assert info.value.code == "INVALID_UPDATE"
    assert info.value.detail == {
        "Name": "ErrValidation",
        "Error": {"Msg": "no pre-existing root and no root provided in update."},
    }
    assert "no pre-existing root and no root provided in update. (ErrValidation)" in str(info.value)


def test_changefeed_and_delete(client: NotaryClient) -> None:
    assert client.changefeed() == {"count": 0, "records": None}
    client.delete()  # nothing to delete is still 200


def test_reads_what_the_notary_cli_published(notary_cli, client: NotaryClient) -> None:
    cli = notary_cli()
    cli.run("init", GUN, "-p")
    cached = cli.trust_dir / "tuf" / GUN / "metadata"
    root = client.get("root", max_size=1 << 20)
    assert root == (cached / "root.json").read_bytes()
    assert client.get("root", version=1, max_size=1 << 20) == root
    timestamp = client.get("timestamp", max_size=1 << 20)
    assert timestamp is not None
    snapshot = client.get("snapshot", max_size=1 << 20)
    assert snapshot is not None
    digest = hashlib.sha256(snapshot).hexdigest()
    assert client.get("snapshot", checksum=digest, max_size=1 << 20) == snapshot
    with pytest.raises(OversizedError, match="larger than 100 bytes"):
        client.get("root", max_size=100)
    # Now a root exists: the server returns the timestamp key that root names, every time.
    assert client.get_key("timestamp") == client.get_key("timestamp")


def test_tls_failure_without_the_ca(notary_server: peers.NotaryServer, tmp_path: Path) -> None:
    with make_http_client(notary_server.url, config_dir=tmp_path) as http, pytest.raises(NetworkError) as info:
        NotaryClient(notary_server.url, GUN, http).ping()
    assert f"$DOCKER_CONFIG/tls/{notary_server.host_port}/ca.crt" in str(info.value)


def test_ca_found_in_the_docker_config_tls_dir(notary_server: peers.NotaryServer, tmp_path: Path) -> None:
    tls_dir = tmp_path / "tls" / notary_server.host_port
    tls_dir.mkdir(parents=True)
    shutil.copy(notary_server.ca_path, tls_dir / "ca.crt")
    with make_http_client(notary_server.url, config_dir=tmp_path) as http:
        NotaryClient(notary_server.url, GUN, http).ping()
