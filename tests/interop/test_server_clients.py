"""Real clients against `trustkit server` (a real process, TLS, SQLite): the notary CLI, the
docker CLI and trustkit's own client do their whole job against it, keep doing it after the
server restarts (and after a new server process opens the same database file), and respect
immutable repositories, whose switch needs the admin scope when authentication is on."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import bcrypt
import pytest

import peers
from trustkit.metadata import Metadata

pytestmark = pytest.mark.interop

KEYS = Path(__file__).parents[2] / "keys"
RELEASES_PUB = KEYS / "notary" / "inputs" / "releases.pub"
DIGEST_A = "sha256:" + "ab" * 32
DIGEST_B = "sha256:" + "cd" * 32


# ---- helpers


def served(server, gun: str, role: str) -> Metadata:
    response = server.get(f"/v2/{gun}/_trust/tuf/{role}.json")
    assert response.status_code == 200, (role, response.text)
    return Metadata.from_bytes(response.content, role=role)


def server_key(server, gun: str, role: str) -> str:
    """The key ID of the server-managed ``role`` key, as ``GET <role>.key`` reports it."""
    from trustkit.keys import PublicKey

    body = json.loads(server.get(f"/v2/{gun}/_trust/tuf/{role}.key").content)
    return PublicKey(body["keytype"], body["keyval"]["public"]).keyid


def listed(notary: peers.NotaryCLI, gun: str) -> dict[str, str]:
    """``notary list`` as {tag: sha256 hex}."""
    out = notary.run("list", gun).stdout
    rows = [line.split() for line in out.splitlines()[2:] if line.strip()]
    return {row[0]: row[1] for row in rows if len(row) >= 2}


def docker_tags(docker: peers.DockerCLI, gun: str) -> tuple[dict[str, list[str]], dict]:
    entry = json.loads(docker.run("trust", "inspect", gun).stdout)[0]
    return {row["SignedTag"]: row["Signers"] for row in entry["SignedTags"]}, entry


def verified_digest(cli: peers.TrustkitCLI, image: str) -> str:
    return cli.run("verify", "--trust-only", image).stdout.split()[1]


@pytest.fixture
def tk(trustkit_server, trustkit_cli):
    """trustkit's client pointed at this test's trustkit server."""
    return lambda **kwargs: trustkit_cli(server=trustkit_server, **kwargs)


@pytest.fixture
def notary(trustkit_server, notary_cli):
    """The notary CLI pointed at this test's trustkit server."""
    return lambda **kwargs: notary_cli(server=trustkit_server, **kwargs)


@pytest.fixture
def docker(trustkit_server, docker_cli):
    """The docker CLI pointed at this test's trustkit server."""
    return lambda **kwargs: docker_cli(server=trustkit_server, **kwargs)


# ---- the notary CLI


def test_notary_cli_whole_lifecycle(trustkit_server, notary, tmp_path):
    gun = f"{trustkit_server.host_port}/team/notary"
    admin = notary()
    artifact = tmp_path / "artifact"
    artifact.write_bytes(b"hello trustkit server\n")
    admin.run("init", gun, "-p")
    admin.run("add", gun, "v1", artifact, "-p")
    assert set(listed(notary(), gun)) == {"v1"}

    admin.run("delegation", "add", gun, "targets/releases", RELEASES_PUB, "--all-paths", "-p")
    delegations = notary().run("delegation", "list", gun).stdout
    assert "targets/releases" in delegations and '"" <all paths>' in delegations

    old_targets = served(trustkit_server, gun, "root").signed.roles["targets"].keyids
    admin.run("key", "rotate", gun, "targets")
    admin.run("publish", gun)
    root = served(trustkit_server, gun, "root")
    assert root.signed.roles["targets"].keyids != old_targets and root.signed.version == 2
    assert set(listed(notary(), gun)) == {"v1"}

    # notary init keeps the snapshot key on the client; -r hands it to the server.
    assert served(trustkit_server, gun, "root").signed.roles["snapshot"].keyids != [
        server_key(trustkit_server, gun, "snapshot")
    ]
    admin.run("key", "rotate", gun, "snapshot", "-r")
    assert served(trustkit_server, gun, "root").signed.roles["snapshot"].keyids == [
        server_key(trustkit_server, gun, "snapshot")
    ]
    # Nothing is staged now: notary sends an empty multipart form, which must be accepted.
    admin.run("publish", gun)
    admin.run("add", gun, "v2", artifact, "-p")  # the server signs this snapshot
    assert set(listed(notary(), gun)) == {"v1", "v2"}

    admin.run("remove", gun, "v1", "-p")
    assert set(listed(notary(), gun)) == {"v2"}

    admin.run("delete", gun, "--remote")
    assert trustkit_server.get(f"/v2/{gun}/_trust/tuf/root.json").status_code == 404
    gone = notary().run("list", gun, check=False)
    assert gone.returncode != 0 and "does not have trust data" in gone.stdout + gone.stderr


# ---- the docker CLI


def test_docker_trust_signer_add_inspect_revoke(trustkit_server, docker, tk, tmp_path):
    gun = f"{trustkit_server.host_port}/team/docker"
    admin = docker()
    (tmp_path / "pub").mkdir()
    admin.run("trust", "key", "generate", "alice", "--dir", tmp_path / "pub")
    admin.run("trust", "signer", "add", "--key", tmp_path / "pub" / "alice.pub", "alice", gun)
    tags, entry = docker_tags(docker(), gun)
    assert tags == {} and [s["Name"] for s in entry["Signers"]] == ["alice"]
    assert [k["Name"] for k in entry["AdministrativeKeys"]] == ["Root", "Repository"]

    # A tag to revoke: trustkit signs it with alice's key, from docker's own trust dir.
    signed = tk(config_dir=admin.config_dir).run("sign", f"{gun}:v1", "--digest", DIGEST_A, "--size", "7")
    assert "targets/alice" in signed.stdout
    tags, _ = docker_tags(docker(), gun)
    assert tags == {"v1": ["alice"]}
    admin.run("trust", "sign", f"{gun}:v1")  # daemonless re-sign of an existing tag, published again
    assert verified_digest(tk(), f"{gun}:v1") == DIGEST_A

    admin.run("trust", "revoke", "-y", f"{gun}:v1")
    tags, entry = docker_tags(docker(), gun)
    assert tags == {} and [s["Name"] for s in entry["Signers"]] == ["alice"]
    assert tk().run("verify", "--trust-only", f"{gun}:v1", check=False).returncode == 3


# ---- trustkit's own client


def test_trustkit_init_sign_verify_inspect_revoke(trustkit_server, tk, notary, docker):
    gun = f"{trustkit_server.host_port}/team/trustkit"
    admin = tk()
    admin.run("init", gun)
    admin.run("sign", f"{gun}:v1", f"{gun}:v2", "--digest", DIGEST_A, "--size", "10")
    reader = tk()
    assert verified_digest(reader, f"{gun}:v1") == DIGEST_A
    assert reader.run("verify", "--trust-only", f"{gun}:v2", "--digest", DIGEST_B, check=False).returncode == 4
    inspected = json.loads(reader.run("inspect", gun).stdout)[0]
    assert {t["SignedTag"]: t["Digest"] for t in inspected["SignedTags"]} == {"v1": "ab" * 32, "v2": "ab" * 32}
    assert inspected == docker_tags(docker(), gun)[1]  # the same shape and content as docker's
    admin.run("revoke", f"{gun}:v1", "--yes")
    assert reader.run("verify", "--trust-only", f"{gun}:v1", check=False).returncode == 3
    assert set(listed(notary(), gun)) == {"v2"}


def test_trustkit_threshold_signers(trustkit_server, tk, tmp_path):
    gun = f"{trustkit_server.host_port}/team/threshold"
    admin, members = tk(), [tk() for _ in range(3)]
    for name, member in zip(("m1", "m2", "m3"), members, strict=False):
        member.run("key", "generate", name, "--dir", tmp_path)
    keys = [arg for name in ("m1", "m2", "m3") for arg in ("--key", tmp_path / f"{name}.pub")]
    admin.run("signer", "add", "team", gun, *keys, "--threshold", "2")
    stage = tmp_path / "shared-staging"
    first = json.loads(
        members[0]
        .run("--staging-dir", stage, "sign", f"{gun}:v1", "--digest", DIGEST_A, "--size", "5", "--format", "json")
        .stdout
    )
    assert first["published"] == [] and "targets/team" in first["pending"]
    not_yet = tk().run("verify", "--trust-only", f"{gun}:v1", check=False)
    assert not_yet.returncode == 3, not_yet.stderr  # nothing reached the server yet
    members[1].run("--staging-dir", stage, "sign", f"{gun}:v1", "--digest", DIGEST_A, "--size", "5")
    assert verified_digest(tk(), f"{gun}:v1") == DIGEST_A
    team = served(trustkit_server, gun, "targets/team")
    assert len(team.signatures) == 2


def test_trustkit_root_rotation_with_readers_holding_the_old_root(trustkit_server, tk, notary):
    gun = f"{trustkit_server.host_port}/team/rotate-root"
    admin = tk()
    admin.run("sign", f"{gun}:v1", "--digest", DIGEST_A, "--size", "1")
    old_reader, notary_reader = tk(), notary()
    assert verified_digest(old_reader, f"{gun}:v1") == DIGEST_A  # caches root v1
    assert set(listed(notary_reader, gun)) == {"v1"}
    old_root = served(trustkit_server, gun, "root").signed.roles["root"].keyids
    admin.run("key", "rotate", gun, "root")
    root = served(trustkit_server, gun, "root")
    assert root.signed.version == 2 and root.signed.roles["root"].keyids != old_root
    admin.run("sign", f"{gun}:v2", "--digest", DIGEST_B, "--size", "2")
    assert verified_digest(old_reader, f"{gun}:v2") == DIGEST_B  # walks 1.root.json -> 2.root.json
    assert set(listed(notary_reader, gun)) == {"v1", "v2"}


# ---- restarts


def test_every_client_keeps_publishing_after_a_restart(trustkit_server, tk, notary, docker, tmp_path):
    host = trustkit_server.host_port
    tk_gun, notary_gun, docker_gun = f"{host}/team/r-tk", f"{host}/team/r-notary", f"{host}/team/r-docker"
    admin, notary_admin, docker_admin = tk(), notary(), docker()
    artifact = tmp_path / "artifact"
    artifact.write_bytes(b"before and after\n")
    admin.run("sign", f"{tk_gun}:v1", "--digest", DIGEST_A, "--size", "1")
    notary_admin.run("init", notary_gun, "-p")
    notary_admin.run("key", "rotate", notary_gun, "snapshot", "-r")  # both keys on the server now
    notary_admin.run("add", notary_gun, "v1", artifact, "-p")
    (tmp_path / "pub").mkdir()
    docker_admin.run("trust", "key", "generate", "dora", "--dir", tmp_path / "pub")
    docker_admin.run("trust", "signer", "add", "--key", tmp_path / "pub" / "dora.pub", "dora", docker_gun)
    keys_before = {
        gun: (server_key(trustkit_server, gun, "timestamp"), server_key(trustkit_server, gun, "snapshot"))
        for gun in (tk_gun, notary_gun, docker_gun)
    }

    trustkit_server.restart()

    # The server's keys survived (notary-server's local signer would have lost them): the same
    # keys are served, and every client publishes with them.
    assert {
        gun: (server_key(trustkit_server, gun, "timestamp"), server_key(trustkit_server, gun, "snapshot"))
        for gun in keys_before
    } == keys_before
    admin.run("sign", f"{tk_gun}:v2", "--digest", DIGEST_B, "--size", "2")
    notary_admin.run("add", notary_gun, "v2", artifact, "-p")
    tk(config_dir=docker_admin.config_dir).run("sign", f"{docker_gun}:v1", "--digest", DIGEST_A, "--size", "3")
    docker_admin.run("trust", "revoke", "-y", f"{docker_gun}:v1")
    docker_admin.run("trust", "signer", "add", "--key", tmp_path / "pub" / "dora.pub", "dora2", docker_gun)

    reader = tk()
    assert verified_digest(reader, f"{tk_gun}:v1") == DIGEST_A and verified_digest(reader, f"{tk_gun}:v2") == DIGEST_B
    assert set(listed(notary(), notary_gun)) == {"v1", "v2"}
    tags, entry = docker_tags(docker(), docker_gun)
    assert tags == {} and sorted(s["Name"] for s in entry["Signers"]) == ["dora", "dora2"]


def test_a_new_server_process_on_the_same_sqlite_file(trustkit_server, trustkit_cli, notary_cli, tmp_path):
    gun = f"{trustkit_server.host_port}/team/moved"
    first = trustkit_cli(server=trustkit_server)
    first.run("sign", f"{gun}:v1", "--digest", DIGEST_A, "--size", "1")
    notary_dir = tmp_path / "notary-trust"
    notary_cli(trust_dir=notary_dir, server=trustkit_server).run("list", gun)  # caches the trust data
    trustkit_server.stop()
    # Another process, another port and TLS certificate, the same database file (and passphrase).
    with peers.TrustkitServer(tmp_path / "second", database=trustkit_server.database) as second:
        assert second.database.startswith("sqlite:///")
        admin = trustkit_cli(config_dir=first.config_dir, server=second)
        admin.run("sign", f"{gun}:v2", "--digest", DIGEST_B, "--size", "2")
        reader = trustkit_cli(server=second)
        assert verified_digest(reader, f"{gun}:v1") == DIGEST_A and verified_digest(reader, f"{gun}:v2") == DIGEST_B
        cached = notary_cli(trust_dir=notary_dir, server=second)  # a client that knew the first process
        assert set(listed(cached, gun)) == {"v1", "v2"}
        assert served(second, gun, "timestamp").signed.version == 2


# ---- immutable repositories


def test_immutable_repository_refuses_changes_from_every_client(trustkit_server, tk, notary, tmp_path):
    gun = f"{trustkit_server.host_port}/team/immutable"
    admin = tk()
    admin.run("sign", f"{gun}:v1", "--digest", DIGEST_A, "--size", "1")
    # The notary CLI works on the same trust dir (same key files), so it holds the targets key.
    notary_admin = notary(trust_dir=admin.trust_dir)
    other = tmp_path / "other"
    other.write_bytes(b"other content\n")
    assert "immutable now" in admin.run("repo", "immutable", gun).stdout
    assert trustkit_server.get(f"/v2/{gun}/_trust/settings").json() == {"immutable": True}
    timestamp = served(trustkit_server, gun, "timestamp").signed.version

    moved = admin.run("sign", f"{gun}:v1", "--digest", DIGEST_B, "--size", "1", check=False)
    assert moved.returncode == 1 and "is immutable: v1 would point at another digest" in moved.stderr
    revoked = admin.run("revoke", f"{gun}:v1", "--yes", check=False)
    assert revoked.returncode == 1 and "is immutable: v1 would no longer resolve" in revoked.stderr

    changed = notary_admin.run("add", gun, "v1", other, "-p", check=False)
    assert changed.returncode == 1 and "is immutable: v1 would point at another digest" in changed.stdout
    notary_admin.run("reset", gun, "--all")  # a failed -p stays staged (tests/peers.py)
    removed = notary_admin.run("remove", gun, "v1", "-p", check=False)
    assert removed.returncode == 1 and "is immutable: v1 would no longer resolve" in removed.stdout
    notary_admin.run("reset", gun, "--all")
    deleted = notary_admin.run("delete", gun, "--remote", check=False)
    assert deleted.returncode == 1 and "is immutable: its trust data cannot be deleted" in deleted.stdout
    assert served(trustkit_server, gun, "timestamp").signed.version == timestamp  # nothing was stored

    # New tags can still be signed, by either client.
    admin.run("sign", f"{gun}:v2", "--digest", DIGEST_B, "--size", "2")
    notary_admin = notary(trust_dir=admin.trust_dir)  # its cache went with the refused delete
    notary_admin.run("add", gun, "v3", other, "-p")
    reader = tk()
    assert verified_digest(reader, f"{gun}:v1") == DIGEST_A and verified_digest(reader, f"{gun}:v2") == DIGEST_B
    assert set(listed(notary(), gun)) == {"v1", "v2", "v3"}

    assert "mutable now" in admin.run("repo", "immutable", gun, "--off").stdout
    admin.run("sign", f"{gun}:v1", "--digest", DIGEST_B, "--size", "1")
    assert verified_digest(tk(), f"{gun}:v1") == DIGEST_B
    admin.run("revoke", f"{gun}:v2", "--yes")
    assert set(listed(notary(), gun)) == {"v1", "v3"}
    notary_admin.run("delete", gun, "--remote")
    assert trustkit_server.get(f"/v2/{gun}/_trust/tuf/root.json").status_code == 404


def test_immutable_needs_the_admin_scope(trustkit_cli, tmp_path):
    htpasswd = tmp_path / "htpasswd"
    users = {"alice": "alice-password", "admin": "admin-password"}
    htpasswd.write_text(
        "".join(
            f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()}\n"
            for user, password in users.items()
        )
    )
    args = ["--auth", "htpasswd", "--htpasswd", str(htpasswd), "--admin", "admin"]
    with peers.TrustkitServer(tmp_path / "server", extra_args=args) as server:
        gun = f"{server.host_port}/team/locked"

        def client(user: str | None) -> peers.TrustkitCLI:
            cli = trustkit_cli(server=server)
            if user is not None:
                auth = base64.b64encode(f"{user}:{users[user]}".encode()).decode()
                (cli.config_dir / "config.json").write_text(json.dumps({"auths": {server.host_port: {"auth": auth}}}))
            return cli

        alice, admin = client("alice"), client("admin")
        alice.run("sign", f"{gun}:v1", "--digest", DIGEST_A, "--size", "1")  # push is enough to sign
        refused = client("alice").run("repo", "immutable", gun, check=False)  # good password, no admin scope
        assert refused.returncode == 1 and 'does not allow "alice"' in refused.stderr, refused.stderr
        anonymous = client(None).run("repo", "immutable", gun, check=False)
        assert anonymous.returncode == 1 and "anonymous" in anonymous.stderr, anonymous.stderr
        with server.client() as http:  # the raw answer to a token without the admin scope
            token = http.get(
                "/auth/token",
                params={"service": "trustkit", "scope": f"repository:{gun}:admin"},
                auth=("alice", users["alice"]),
            ).json()["token"]
            put = http.put(
                f"/v2/{gun}/_trust/settings",
                content=b'{"immutable": true}',
                headers={"Authorization": f"Bearer {token}"},
            )
            assert put.status_code in (401, 403), put.text
        alice.run("sign", f"{gun}:v1", "--digest", DIGEST_B, "--size", "1")  # still mutable

        admin.run("repo", "immutable", gun)
        moved = alice.run("sign", f"{gun}:v1", "--digest", DIGEST_A, "--size", "1", check=False)
        assert moved.returncode == 1 and "immutable" in moved.stderr
        alice.run("sign", f"{gun}:v2", "--digest", DIGEST_A, "--size", "2")
        assert alice.run("repo", "immutable", gun, "--off", check=False).returncode == 1
        admin.run("repo", "immutable", gun, "--off")
        alice.run("sign", f"{gun}:v1", "--digest", DIGEST_A, "--size", "1")
        assert verified_digest(alice, f"{gun}:v1") == DIGEST_A
