"""Golden interop: trust data and keys written by the real notary 0.7.0 and docker CLIs are
read by trustkit byte-for-byte, and what trustkit writes is used by them.

Static fixtures come from keys/ (made by keys/regenerate.py); the live tests start a real
notary-server and drive the real CLIs."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import peers
from trustkit.encoding import format_expires
from trustkit.keys import CryptoSigner, EnvPassphrases, KeyStore, PublicKey, generate, load_public_pem
from trustkit.keys.certs import root_key_for
from trustkit.metadata import BASE_ROLES, FileMeta, Metadata, RoleKeys, Root, Targets
from trustkit.trust.trusted_set import TrustedSet

pytestmark = pytest.mark.interop

KEYS = Path(__file__).parents[2] / "keys"
MANIFEST = json.loads((KEYS / "manifest.json").read_text())
GENERATED = datetime.fromisoformat(MANIFEST["generated_at"].replace("Z", "+00:00"))
PASS_ENV = {
    "DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE": peers.ROOT_PASSPHRASE,
    "DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE": peers.REPO_PASSPHRASE,
}
METADATA_FIXTURES = [
    f for f in MANIFEST["fixtures"] if f["kind"] in ("metadata", "cache") and f["path"].endswith(".json")
]
KEY_FIXTURES = [f for f in MANIFEST["fixtures"] if f["kind"] == "key"]


def role_of(path: str) -> str:
    """`.../metadata/targets/qa.json` -> `targets/qa`; `2.root.json` -> `root`."""
    rel = path.split("/metadata/", 1)[1].removesuffix(".json")
    head, _, tail = rel.rpartition(".")
    return tail if head.isdigit() else rel


@pytest.mark.parametrize("fixture", METADATA_FIXTURES, ids=lambda f: f["path"])
def test_reserialising_notary_metadata_gives_identical_bytes(fixture):
    data = (KEYS / fixture["path"]).read_bytes()
    meta = Metadata.from_bytes(data, role=role_of(fixture["path"]))
    assert meta.to_bytes() == data


def walk(metadata_dir: Path, gun: str, now: datetime) -> TrustedSet:
    """Verify a whole repository as a client does on first contact: root chain from 1.root.json,
    then timestamp, snapshot, targets and every delegation (hashes, thresholds, expiry)."""
    trusted = TrustedSet((metadata_dir / "1.root.json").read_bytes(), gun=gun, now=now, first_contact=True)
    version = 2
    while (metadata_dir / f"{version}.root.json").exists():
        trusted.update_root((metadata_dir / f"{version}.root.json").read_bytes())
        version += 1
    assert trusted.root_data == (metadata_dir / "root.json").read_bytes()
    trusted.check_root_fresh()
    trusted.update_timestamp((metadata_dir / "timestamp.json").read_bytes())
    trusted.update_snapshot((metadata_dir / "snapshot.json").read_bytes())
    trusted.update_targets((metadata_dir / "targets.json").read_bytes())
    pending = [d.name for d in trusted.targets["targets"].signed.delegations.roles]
    while pending:
        role = pending.pop(0)
        if (metadata_dir / f"{role}.json").exists():
            loaded = trusted.update_targets((metadata_dir / f"{role}.json").read_bytes(), role)
            pending += [d.name for d in loaded.signed.delegations.roles]
    return trusted


@pytest.mark.parametrize("repo", ["notary", "docker"])
def test_every_signature_in_the_golden_repositories_verifies(repo):
    info = MANIFEST["repositories"][repo]
    trusted = walk(KEYS / info["metadata_dir"], info["gun"], GENERATED + timedelta(minutes=5))
    assert trusted.root.signed.version == info["root_versions"]
    assert set(trusted.targets) == {"targets", *info["delegations"]}
    for name, target in info["targets"].items():
        meta = trusted.targets[target["role"]].signed.targets[name]
        assert meta.sha256_hex == target["sha256"] and meta.length == target["length"]


def test_golden_rsa_delegation_uses_rsapss():
    data = (KEYS / "notary/metadata/targets/qa.json").read_bytes()
    assert {s.method for s in Metadata.from_bytes(data, role="targets/qa").signatures} == {"rsapss"}


@pytest.mark.parametrize("fixture", KEY_FIXTURES, ids=lambda f: f["path"])
def test_peer_key_files_decrypt_and_are_named_by_canonical_id(fixture, tmp_path):
    if fixture["in_trust_dir"]:
        store = KeyStore(KEYS / fixture["path"].split("/private/")[0], lambda request: fixture["passphrase"])
        assert Path(fixture["path"]).stem == fixture["keyid"]
    else:  # `notary key generate -o` output: what `trustkit key load` takes
        from trustkit.keys.store import import_key

        store = KeyStore(tmp_path, lambda request: fixture["passphrase"])
        import_key(store, (KEYS / fixture["path"]).read_bytes())
    signer, info = store.load(fixture["keyid"])
    assert signer.public_key.keyid == fixture["keyid"]
    assert info.role == fixture["role"] and info.gun == fixture["gun"]
    assert signer.public_key.algorithm == fixture["algorithm"]
    listed = {k.keyid: k.algorithm for k in store.list()}
    assert listed[fixture["keyid"]] == fixture["algorithm"]


def test_docker_pub_file_matches_its_private_key():
    alice = load_public_pem((KEYS / "docker" / "alice.pub").read_bytes())
    ids = {f["keyid"] for f in KEY_FIXTURES if f["role"] == "alice"}
    assert ids == {alice.keyid}


# ---- live peers


def fetch_all(server: peers.NotaryServer, gun: str, roles: list[str]) -> dict[str, bytes]:
    out = {}
    for role in roles:
        response = server.get(f"/v2/{gun}/_trust/tuf/{role}.json")
        assert response.status_code == 200, (role, response.text)
        out[role] = response.content
    return out


def test_notary_published_repository_is_read_exactly(notary_server, notary_cli, tmp_path):
    gun = "example.com/live/app"
    cli = notary_cli()
    (tmp_path / "artifact").write_bytes(b"hello notary\n")
    cli.run("init", gun, "-p")
    cli.run("add", gun, "v1", str(tmp_path / "artifact"), "-p")
    cli.run("key", "rotate", gun, "targets")
    cli.run("publish", gun)
    files = fetch_all(notary_server, gun, ["root", "targets", "snapshot", "timestamp"])
    for role, data in files.items():
        assert Metadata.from_bytes(data, role=role).to_bytes() == data
    metadata_dir = tmp_path / "served"
    for role, data in files.items():
        (metadata_dir / f"{role}.json").parent.mkdir(parents=True, exist_ok=True)
        (metadata_dir / f"{role}.json").write_bytes(data)
    latest = Metadata.from_bytes(files["root"], role="root").signed.version
    assert latest == 2  # the targets key rotation re-signed root
    for version in range(1, latest + 1):
        served = notary_server.get(f"/v2/{gun}/_trust/tuf/{version}.root.json").content
        (metadata_dir / f"{version}.root.json").write_bytes(served)
    trusted = walk(metadata_dir, gun, datetime.now(UTC))
    target = trusted.targets["targets"].signed.targets["v1"]
    assert target.matches(b"hello notary\n") is None


def publish_with_trustkit(server: peers.NotaryServer, gun: str, trust_dir: Path) -> CryptoSigner:
    """The docker-style first publish, written by trustkit: root (certificate key, CN=GUN) and
    targets signed locally; snapshot and timestamp keys fetched from the server (Appendix B)."""
    store = KeyStore(trust_dir, EnvPassphrases(PASS_ENV))
    root_private, targets_private = generate(), generate()
    store.add(root_private, role="root")
    store.add(targets_private, role="targets", gun=gun)
    with server.client() as http:
        server_keys = {}
        for role in ("timestamp", "snapshot"):
            body = json.loads(http.get(f"/v2/{gun}/_trust/tuf/{role}.key").content)
            server_keys[role] = PublicKey(body["keytype"], body["keyval"]["public"])
        now = datetime.now(UTC)
        root_key = root_key_for(root_private, gun)
        targets_signer = CryptoSigner(targets_private)
        keys = {root_key.keyid: root_key, targets_signer.public_key.keyid: targets_signer.public_key}
        keys.update({k.keyid: k for k in server_keys.values()})
        role_ids = {
            "root": root_key.keyid,
            "targets": targets_signer.public_key.keyid,
            **{r: k.keyid for r, k in server_keys.items()},
        }
        root = Metadata(
            Root(
                expires=format_expires(now + timedelta(days=3650)),
                version=1,
                keys=keys,
                roles={r: RoleKeys([role_ids[r]]) for r in BASE_ROLES},
            )
        )
        targets = Metadata(
            Targets(
                expires=format_expires(now + timedelta(days=1095)),
                version=1,
                targets={"from-trustkit": FileMeta.for_digest("ab" * 32, 42)},
            )
        )
        parts = [
            ("files", ("root", root.sign([(CryptoSigner(root_private), root_key.keyid)]), "application/octet-stream")),
            (
                "files",
                (
                    "targets",
                    targets.sign([(targets_signer, targets_signer.public_key.keyid)]),
                    "application/octet-stream",
                ),
            ),
        ]
        response = http.post(f"/v2/{gun}/_trust/tuf/", files=parts)
        assert response.status_code == 200, response.text
    return targets_signer


def test_notary_uses_trustkit_keys_and_metadata(notary_server, notary_cli, tmp_path):
    gun = "example.com/live/from-trustkit"
    trust_dir = tmp_path / "trust"
    targets_signer = publish_with_trustkit(notary_server, gun, trust_dir)
    cli = notary_cli(trust_dir=trust_dir)
    listed = cli.run("list", gun).stdout
    assert "from-trustkit" in listed and "ab" * 32 in listed
    keys = cli.run("key", "list").stdout
    line = next(line for line in keys.splitlines() if targets_signer.public_key.keyid in line)
    assert line.split()[0] == "targets"  # notary shortens the GUN column, so check the role
    # notary signs with trustkit's encrypted targets key and publishes.
    (tmp_path / "artifact").write_bytes(b"signed by notary with a trustkit key\n")
    cli.run("add", gun, "v2", str(tmp_path / "artifact"), "-p")
    fresh = notary_cli()
    listed = fresh.run("list", gun).stdout
    assert "v2" in listed and "from-trustkit" in listed
    targets = Metadata.from_bytes(notary_server.get(f"/v2/{gun}/_trust/tuf/targets.json").content, role="targets")
    assert [s.keyid for s in targets.signatures] == [targets_signer.public_key.keyid]


def test_docker_generated_key_is_listed_and_used_by_trustkit(docker_cli, tmp_path, monkeypatch, capsys):
    docker = docker_cli()
    (tmp_path / "pub").mkdir()
    docker.run("trust", "key", "generate", "alice", "--dir", str(tmp_path / "pub"))
    public = load_public_pem((tmp_path / "pub" / "alice.pub").read_bytes())
    from trustkit.cli import main

    monkeypatch.setenv("DOCKER_CONFIG", str(docker.trust_dir.parent))
    main(["key", "list", "--format", "json"])
    listed = json.loads(capsys.readouterr().out)
    assert [(k["keyid"], k["role"], k["gun"], k["algorithm"]) for k in listed] == [
        (public.keyid, "alice", None, "ecdsa")
    ]
    store = KeyStore(docker.trust_dir, EnvPassphrases(PASS_ENV))
    signer, _ = store.load(public.keyid)
    assert public.verify(signer.method, b"payload", signer.sign(b"payload"))


def test_docker_signer_add_accepts_a_trustkit_pub(docker_cli, notary_server, tmp_path):
    docker = docker_cli()
    store = KeyStore(tmp_path / "tk", EnvPassphrases(PASS_ENV))
    from trustkit.keys.store import generate_key

    stored, pub = generate_key(store, "bob", pub_dir=tmp_path)
    gun = f"{notary_server.host_port}/team/app"
    docker.run("trust", "signer", "add", "--key", str(pub), "bob", gun)
    inspect = json.loads(docker.run("trust", "inspect", gun).stdout)
    signers = {s["Name"]: [k["ID"] for k in s["Keys"]] for s in inspect[0]["Signers"]}
    assert signers == {"bob": [stored.keyid]}
    releases = Metadata.from_bytes(notary_server.get(f"/v2/{gun}/_trust/tuf/targets.json").content, role="targets")
    assert stored.keyid in releases.signed.delegations.role("targets/releases").keyids


def test_key_fixtures_survive_a_copy_with_docker_modes(tmp_path):
    """Git checkouts drop 0600; trustkit reads the copied store all the same."""
    shutil.copytree(KEYS / "docker" / "trust", tmp_path / "trust")
    store = KeyStore(tmp_path / "trust", lambda request: peers.REPO_PASSPHRASE)
    assert {k.role for k in store.list()} >= {"alice", "carol", "dave", "targets", "root"}
