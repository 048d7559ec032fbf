"""Smoke tests for the peer harness (tests/peers.py): the real peers start and answer.

These fail, never skip, when a peer binary is missing.
"""

from __future__ import annotations

import json

import pytest

import peers

pytestmark = pytest.mark.interop


def test_require_finds_installed_peers() -> None:
    for binary in ("notary", "notary-server", "docker"):
        assert peers.require(binary).endswith(binary)


def test_require_names_install_command_for_missing_binary() -> None:
    with pytest.raises(peers.PeerMissing) as info:
        peers.require("notary-definitely-not-installed")
    assert peers.INSTALL_COMMAND in str(info.value)
    assert peers.INSTALL_COMMAND == "apt-get install -y notary docker-registry skopeo"


def test_notary_server_health(notary_server: peers.NotaryServer) -> None:
    response = notary_server.get("/_notary_server/health")
    assert response.status_code == 200
    assert response.json() == {}
    assert notary_server.url == f"https://{notary_server.host_port}"
    assert notary_server.log_path.exists()
    # Unknown metadata: the server's 404 error envelope (wire spec 7.6).
    missing = notary_server.get(notary_server.metadata_path("example.com/none", "root.json"))
    assert missing.status_code == 404
    assert missing.json()["errors"][0]["code"] == "METADATA_NOT_FOUND"


def test_notary_cli_init_publish_list(notary_server, notary_cli, tmp_path) -> None:
    gun = "example.com/smoke/app"
    cli = notary_cli()
    target = tmp_path / "payload.txt"
    target.write_bytes(b"hello\n")

    cli.run("init", gun, "-p")
    cli.run("add", gun, "v1", target, "-p")
    listing = cli.run("list", gun).stdout
    assert "v1" in listing
    # sha256(b"hello\n")
    assert "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03" in listing

    # The server now serves the repository, exactly what the CLI cached.
    for role in ("root", "targets", "snapshot", "timestamp"):
        served = notary_server.get(notary_server.metadata_path(gun, f"{role}.json"))
        assert served.status_code == 200, role
        cached = cli.trust_dir / "tuf" / gun / "metadata" / f"{role}.json"
        assert cached.read_bytes() == served.content, role

    keys = sorted((cli.trust_dir / "private").glob("*.key"))
    assert len(keys) == 3  # root, targets, snapshot (the notary CLI signs snapshots itself)


def test_notary_cli_failure_message_has_output(notary_cli) -> None:
    cli = notary_cli()
    with pytest.raises(peers.PeerCommandFailed) as info:
        cli.run("list", "example.com/smoke/never-initialised")
    message = str(info.value)
    assert "exit status" in message and "--- stderr ---" in message
    assert info.value.result.returncode != 0


def test_docker_trust_key_generate_writes_role_header(docker_cli, tmp_path) -> None:
    docker = docker_cli()
    out = tmp_path / "pub"
    out.mkdir()  # docker does not create --dir itself
    docker.run("trust", "key", "generate", "alice", "--dir", out)

    pub = (out / "alice.pub").read_text()
    assert pub.startswith("-----BEGIN PUBLIC KEY-----\nrole: alice\n\n")
    (key_file,) = (docker.trust_dir / "private").glob("*.key")
    text = key_file.read_text()
    assert text.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----\nrole: alice\n\n")
    assert "gun:" not in text  # signer keys carry no gun header (wire spec 6.2)
    assert len(key_file.stem) == 64
    assert key_file.stat().st_mode & 0o777 == 0o600


def test_docker_trust_signer_add_and_inspect_daemonless(docker_cli, notary_server, tmp_path):
    docker = docker_cli()
    out = tmp_path / "pub"
    out.mkdir()
    gun = "registry.example.com/smoke/docker"
    docker.run("trust", "key", "generate", "alice", "--dir", out)
    docker.run("trust", "signer", "add", "--key", out / "alice.pub", "alice", gun)

    inspected = json.loads(docker.run("trust", "inspect", gun).stdout)
    assert [s["Name"] for s in inspected[0]["Signers"]] == ["alice"]
    assert {k["Name"] for k in inspected[0]["AdministrativeKeys"]} == {"Root", "Repository"}
    root = notary_server.get(notary_server.metadata_path(gun, "root.json"))
    assert root.status_code == 200


def test_golden_fixtures_match_manifest() -> None:
    """keys/manifest.json lists every file in keys/notary and keys/docker with its exact hash."""
    import hashlib
    from pathlib import Path

    keys = Path(__file__).resolve().parents[2] / "keys"
    manifest = json.loads((keys / "manifest.json").read_text(encoding="utf-8"))
    listed = {e["path"]: e for e in manifest["fixtures"]}
    on_disk = {
        p.relative_to(keys).as_posix() for sub in ("notary", "docker") for p in (keys / sub).rglob("*") if p.is_file()
    }
    assert set(listed) == on_disk
    for path, entry in listed.items():
        data = (keys / path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], path
        if entry["kind"] == "key":
            assert entry["test_fixture"] is True
            assert entry["passphrase"] in (peers.ROOT_PASSPHRASE, peers.REPO_PASSPHRASE)
            if entry["in_trust_dir"]:
                assert Path(path).stem == entry["keyid"]
    assert manifest["generated_at"].endswith("Z")
