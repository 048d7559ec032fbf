"""`trustkit mirror` between real servers: notary-server to trustkit server, trustkit server to
notary-server, and trustkit server to trustkit server.  Clients that trusted the repository on
the source (the notary CLI, docker, trustkit: their caches hold an old root) are pointed at the
destination and read it without a warning; the repository owner keeps publishing there."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest

import peers
from trustkit.metadata import Metadata

pytestmark = pytest.mark.interop

GUN = "127.0.0.1:5999/team/app"  # a loopback registry name: docker asks no registry about it
KEYS = Path(__file__).parents[2] / "keys"
DIGEST_A = "sha256:" + "ab" * 32
DIGEST_B = "sha256:" + "cd" * 32


# ---- helpers


def served(server, role: str, gun: str = GUN) -> bytes | None:
    response = server.get(f"/v2/{gun}/_trust/tuf/{role}.json")
    if response.status_code == 404:
        return None
    assert response.status_code == 200, (role, response.text)
    return response.content


def root_version(server, gun: str = GUN) -> int:
    data = served(server, "root", gun)
    return Metadata.from_bytes(data, role="root").signed.version if data else 0


def notary_tags(notary: peers.NotaryCLI, gun: str = GUN) -> set[str]:
    result = notary.run("list", gun)
    assert "warn" not in result.stderr.lower(), result.stderr
    return {line.split()[0] for line in result.stdout.splitlines()[2:] if line.strip()}


def docker_tags(docker: peers.DockerCLI, gun: str = GUN) -> set[str]:
    result = docker.run("trust", "inspect", gun)
    assert "warn" not in result.stderr.lower(), result.stderr
    return {row["SignedTag"] for row in json.loads(result.stdout)[0]["SignedTags"]}


def trust_ca(cli: peers.TrustkitCLI, server) -> None:
    """Put ``server``'s CA where docker (and trustkit) look for it."""
    folder = cli.config_dir / "tls" / server.host_port
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(server.ca_path, folder / "ca.crt")


def mirror_cli(tmp_path: Path, source, destination, name: str = "mirror") -> peers.TrustkitCLI:
    cli = peers.TrustkitCLI(tmp_path / name, destination)
    trust_ca(cli, source)
    return cli


def run_mirror(cli: peers.TrustkitCLI, trust_dir: Path, source, destination, *args: str, check: bool = True):
    return cli.run(
        "--trust-dir", trust_dir, "mirror", GUN, "--from", source.url, "--to", destination.url, *args, check=check
    )


# ---- the sources: published by the notary CLI, and by trustkit (docker's layout)


def publish_with_notary(notary_cli, source, tmp_path: Path) -> dict[str, object]:
    """notary's layout: a local snapshot key at first, a timestamp rotation, then the snapshot key
    handed to the server: root versions 1..3.  Old caches: notary and docker at root v1."""
    admin = notary_cli(trust_dir=tmp_path / "admin", server=source)
    artifact = tmp_path / "artifact"
    artifact.write_bytes(b"mirrored artifact\n")
    admin.run("init", GUN, "-p")
    admin.run("add", GUN, "v1", artifact, "-p")
    early = notary_cli(trust_dir=tmp_path / "early", server=source)
    assert notary_tags(early) == {"v1"}  # caches root v1
    docker = peers.DockerCLI(tmp_path / "docker", source)
    assert docker_tags(docker) == {"v1"}
    admin.run("key", "rotate", GUN, "timestamp", "-r")
    admin.run("key", "rotate", GUN, "snapshot", "-r")
    admin.run("add", GUN, "v2", artifact, "-p")
    assert root_version(source) == 3
    return {"admin": admin, "early": early, "docker": docker, "trust_dir": admin.trust_dir, "artifact": artifact}


def publish_with_trustkit(source, tmp_path: Path) -> dict[str, object]:
    """docker's layout (server-managed snapshot), a signer with its delegation files, and a
    timestamp rotation: root versions 1..2.  Old caches: trustkit and notary at v1, docker at v2."""
    owner = peers.TrustkitCLI(tmp_path / "owner", source)
    owner.run("sign", f"{GUN}:v1", "--digest", DIGEST_A, "--size", "10")
    early_notary = peers.NotaryCLI(tmp_path / "early-notary", source)
    assert notary_tags(early_notary) == {"v1"}
    early_trustkit = peers.TrustkitCLI(tmp_path / "early-trustkit", source)
    early_trustkit.run("verify", "--trust-only", f"{GUN}:v1")
    owner.run("key", "generate", "alice", "--dir", tmp_path / "pub")
    owner.run("signer", "add", "alice", GUN, "--key", tmp_path / "pub" / "alice.pub")
    owner.run("sign", f"{GUN}:v2", "--digest", DIGEST_B, "--size", "20")  # into targets/releases and targets/alice
    owner.run("key", "rotate", GUN, "timestamp")
    docker = peers.DockerCLI(tmp_path / "docker", source)
    assert docker_tags(docker) == {"v1", "v2"}
    assert root_version(source) == 2
    return {
        "owner": owner,
        "early_notary": early_notary,
        "early_trustkit": early_trustkit,
        "docker": docker,
        "trust_dir": owner.trust_dir,
    }


# ---- the three directions


def check_copied(source, destination, roles: list[str]) -> None:
    """Targets and delegations byte for byte; a root for every version, one more than the source's."""
    for role in roles:
        assert served(destination, role) == served(source, role), role
    versions = root_version(source)
    assert root_version(destination) == versions + 1
    for version in range(1, versions + 2):
        assert destination.get(f"/v2/{GUN}/_trust/tuf/{version}.root.json").status_code == 200


def test_notary_server_to_trustkit_server(notary_server, trustkit_server, notary_cli, tmp_path):
    source, destination = notary_server, trustkit_server
    made = publish_with_notary(notary_cli, source, tmp_path)
    cli = mirror_cli(tmp_path, source, destination)

    # Without the root key nothing changes, and the message names the key.
    refused = run_mirror(cli, tmp_path / "empty-trust", source, destination, check=False)
    root = Metadata.from_bytes(served(source, "root"), role="root").signed
    assert refused.returncode == 1 and "root key" in refused.stderr, refused.stderr
    assert any(root.keys[k].canonical_id in refused.stderr for k in root.roles["root"].keyids), refused.stderr
    assert root_version(destination) == 0

    dry = run_mirror(cli, made["trust_dir"], source, destination, "--dry-run", "--format", "json")
    assert json.loads(dry.stdout)["repositories"][0]["status"] == "would be mirrored"
    assert json.loads(dry.stdout)["repositories"][0]["publishes"][0] == "root v1 + targets"
    assert root_version(destination) == 0

    done = run_mirror(cli, made["trust_dir"], source, destination)
    assert "mirrored" in done.stdout, done.stdout
    check_copied(source, destination, ["targets"])

    # Old caches, pointed at the destination: notary and docker at root v1.
    early = peers.NotaryCLI(made["early"].trust_dir, destination, config_path=tmp_path / "early-dest.json")
    assert notary_tags(early) == {"v1", "v2"}
    docker = peers.DockerCLI(made["docker"].config_dir, destination)
    assert docker_tags(docker) == {"v1", "v2"}
    # The owner goes on publishing there with the keys it has.
    admin = peers.NotaryCLI(made["trust_dir"], destination, config_path=tmp_path / "admin-dest.json")
    admin.run("add", GUN, "v3", made["artifact"], "-p")
    assert notary_tags(early) == {"v1", "v2", "v3"}

    again = run_mirror(
        mirror_cli(tmp_path, source, destination, "again"), made["trust_dir"], source, destination, check=False
    )
    assert again.returncode == 1 and "someone published to the destination" in again.stderr, again.stderr


def test_trustkit_server_to_notary_server(trustkit_server, notary_server, tmp_path):
    source, destination = trustkit_server, notary_server
    made = publish_with_trustkit(source, tmp_path)
    cli = mirror_cli(tmp_path, source, destination)

    done = run_mirror(cli, made["trust_dir"], source, destination)
    assert "mirrored" in done.stdout, done.stdout
    check_copied(source, destination, ["targets", "targets/releases", "targets/alice"])
    again = run_mirror(cli, made["trust_dir"], source, destination)
    assert "up to date" in again.stdout, again.stdout

    source.stop()  # from here on, only the destination can answer
    # notary with its old config (still naming the source), told the new server with -s
    moved = made["early_notary"].run("-s", destination.url, "--tlscacert", destination.ca_path, "list", GUN)
    assert "warn" not in moved.stderr.lower() and {"v1", "v2"} <= set(moved.stdout.split()), moved
    early_trustkit = peers.TrustkitCLI(made["early_trustkit"].config_dir, destination)
    assert early_trustkit.run("verify", "--trust-only", f"{GUN}:v2").stdout.split()[1] == DIGEST_B
    docker = peers.DockerCLI(made["docker"].config_dir, destination)
    assert docker_tags(docker) == {"v1", "v2"}


def test_trustkit_server_to_trustkit_server(trustkit_server, tmp_path):
    source = trustkit_server
    made = publish_with_trustkit(source, tmp_path)
    with peers.TrustkitServer(tmp_path / "destination") as destination:
        cli = mirror_cli(tmp_path, source, destination)
        done = run_mirror(cli, made["trust_dir"], source, destination)
        assert "mirrored" in done.stdout, done.stdout
        check_copied(source, destination, ["targets", "targets/releases", "targets/alice"])

        # The source moves on: the next run uploads only the new files, unchanged.
        made["owner"].run("sign", f"{GUN}:v3", "--digest", DIGEST_A, "--size", "10")
        updated = run_mirror(cli, made["trust_dir"], source, destination, "--format", "json")
        result = json.loads(updated.stdout)["repositories"][0]
        assert result["status"] == "updated" and "targets/releases" in result["publishes"][0], result
        check_copied(source, destination, ["targets", "targets/releases", "targets/alice"])

        early_trustkit = peers.TrustkitCLI(made["early_trustkit"].config_dir, destination)
        assert early_trustkit.run("verify", "--trust-only", f"{GUN}:v3").stdout.split()[1] == DIGEST_A
        early_notary = peers.NotaryCLI(
            made["early_notary"].trust_dir, destination, config_path=tmp_path / "early-dest.json"
        )
        assert notary_tags(early_notary) == {"v1", "v2", "v3"}
        docker = peers.DockerCLI(made["docker"].config_dir, destination)
        assert docker_tags(docker) == {"v1", "v2", "v3"}


def test_all_mirrors_every_live_repository_of_the_sources_catalog(notary_server, trustkit_server, notary_cli, tmp_path):
    source, destination = notary_server, trustkit_server
    admin = notary_cli(trust_dir=tmp_path / "admin", server=source)
    artifact = tmp_path / "artifact"
    artifact.write_bytes(b"catalog artifact\n")
    names = [f"127.0.0.1:5999/team/{name}" for name in ("one", "two", "gone")]
    for gun in names:
        admin.run("init", gun, "-p")
        admin.run("add", gun, "v1", artifact, "-p")
    admin.run("delete", names[2], "--remote")

    cli = mirror_cli(tmp_path, source, destination)
    result = cli.run(
        "--trust-dir",
        admin.trust_dir,
        "mirror",
        "--all",
        "--from",
        source.url,
        "--to",
        destination.url,
        "--format",
        "json",
    )
    report = json.loads(result.stdout)
    assert [(r["repository"], r["status"]) for r in report["repositories"]] == [
        (names[0], "mirrored"),
        (names[1], "mirrored"),
    ], report
    for gun in names[:2]:
        assert served(destination, "targets", gun) == served(source, "targets", gun)
        reader = peers.NotaryCLI(tmp_path / "reader", destination, config_path=tmp_path / "reader.json")
        assert notary_tags(reader, gun) == {"v1"}
    assert served(destination, "root", names[2]) is None


def test_notary_server_to_notary_server_with_the_owners_snapshot_key(notary_server, notary_cli, tmp_path):
    """notary's layout end to end on notary-server: the snapshots of the first root versions are
    signed with the owner's snapshot key, which notary-server checks against what it stores."""
    source = notary_server
    made = publish_with_notary(notary_cli, source, tmp_path)
    with peers.NotaryServer(tmp_path / "destination") as destination:
        done = run_mirror(mirror_cli(tmp_path, source, destination), made["trust_dir"], source, destination)
        assert "mirrored" in done.stdout, done.stdout
        check_copied(source, destination, ["targets"])
        early = peers.NotaryCLI(made["early"].trust_dir, destination, config_path=tmp_path / "early-dest.json")
        assert notary_tags(early) == {"v1", "v2"}
        docker = peers.DockerCLI(made["docker"].config_dir, destination)
        assert docker_tags(docker) == {"v1", "v2"}


def test_servers_behind_logins_use_dockers_credentials_for_each_host(tmp_path):
    """Both servers ask for a login (htpasswd, token flow).  A login for the server's own host
    wins; without one, the repository's registry login is used, as docker does.  --all needs the
    source's catalog, which it gives its admins only."""
    users = {"admin": "admin-password", "alice": "alice-password"}
    htpasswd = peers.write_htpasswd(tmp_path / "htpasswd", users)
    args = ["--auth", "htpasswd", "--htpasswd", str(htpasswd), "--admin", "admin"]
    registry = GUN.split("/", maxsplit=1)[0]
    with (
        peers.TrustkitServer(tmp_path / "source", extra_args=args) as source,
        peers.TrustkitServer(tmp_path / "destination", extra_args=args) as destination,
    ):

        def logged_in(name: str, logins: dict[str, str]) -> peers.TrustkitCLI:
            """A trustkit client with docker logins: ``{host: user}``."""
            cli = mirror_cli(tmp_path, source, destination, name)
            auths = {
                host: {"auth": base64.b64encode(f"{user}:{users[user]}".encode()).decode()}
                for host, user in logins.items()
            }
            (cli.config_dir / "config.json").write_text(json.dumps({"auths": auths}))
            return cli

        owner = logged_in("owner", {registry: "alice"})
        owner.env["DOCKER_CONTENT_TRUST_SERVER"] = source.url
        owner.run("sign", f"{GUN}:v1", "--digest", DIGEST_A, "--size", "10")
        trust_dir = owner.trust_dir

        anonymous = run_mirror(
            logged_in("anonymous", {source.host_port: "alice"}), trust_dir, source, destination, check=False
        )
        assert anonymous.returncode == 1 and destination.host_port in anonymous.stderr, anonymous.stderr
        no_catalog = logged_in("no-catalog", {source.host_port: "alice", destination.host_port: "alice"}).run(
            "--trust-dir", trust_dir, "mirror", "--all", "--from", source.url, "--to", destination.url, check=False
        )
        assert no_catalog.returncode == 1 and "catalog" in no_catalog.stderr, no_catalog.stderr

        admin = logged_in("admin", {source.host_port: "admin", registry: "alice"})
        done = admin.run(
            "--trust-dir",
            trust_dir,
            "mirror",
            "--all",
            "--from",
            source.url,
            "--to",
            destination.url,
            "--format",
            "json",
        )
        assert [(r["repository"], r["status"]) for r in json.loads(done.stdout)["repositories"]] == [(GUN, "mirrored")]
        reader = logged_in("reader", {registry: "alice"})
        reader.env["DOCKER_CONTENT_TRUST_SERVER"] = destination.url
        assert reader.run("verify", "--trust-only", f"{GUN}:v1").stdout.split()[1] == DIGEST_A
