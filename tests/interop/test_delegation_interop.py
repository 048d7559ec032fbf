"""Delegations, client bundles, thresholds and rotation against the real notary-server, checked
by the real docker and notary clients."""

from __future__ import annotations

import json
import zipfile
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from trustkit.keys import generate

pytestmark = pytest.mark.interop

DIGEST = "sha256:" + "ab" * 32


def make_bundle(folder, cn="dev1", *, days_valid=(-1, 365), key=None, cert_key=None):
    """A UCP-style client bundle: cert.pem (CN = user), key.pem, ca.pem."""
    folder.mkdir(parents=True, exist_ok=True)
    key = key or generate()
    cert_key = cert_key or key
    ca_key = generate()
    now = datetime.now(UTC)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "UCP Client Root CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(days=2))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca_name)
        .public_key(cert_key.public_key())
        .serial_number(2)
        .not_valid_before(now + timedelta(days=days_valid[0]))
        .not_valid_after(now + timedelta(days=days_valid[1]))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return folder


def signed_tags(docker_cli, gun):
    inspect = json.loads(docker_cli().run("trust", "inspect", gun).stdout)
    return {row["SignedTag"]: row["Signers"] for row in inspect[0]["SignedTags"]}, inspect[0]


def test_signer_added_by_docker_signs_with_trustkit(notary_server, docker_cli, trustkit_cli, tmp_path):
    gun = f"{notary_server.host_port}/team/docker-signer"
    admin = docker_cli()
    member = trustkit_cli()
    member.run("key", "generate", "carol", "--dir", tmp_path)  # a delegate key only
    admin.run("trust", "signer", "add", "--key", tmp_path / "carol.pub", "carol", gun)
    member.run("sign", f"{gun}:v1", "--digest", DIGEST, "--size", "42")
    tags, _ = signed_tags(docker_cli, gun)
    assert tags == {"v1": ["carol"]}
    keys = json.loads(member.run("key", "list", "--format", "json").stdout)
    assert [k["role"] for k in keys] == ["carol"]  # signed holding nothing but carol's key


def test_bundle_member_signs_and_docker_shows_them(notary_server, docker_cli, trustkit_cli, tmp_path):
    gun = f"{notary_server.host_port}/team/bundle"
    admin = trustkit_cli()
    admin.run("init", gun)
    bundle_dir = make_bundle(tmp_path / "bundle")
    archive = tmp_path / "ucp-bundle-dev1.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name in ("cert.pem", "key.pem", "ca.pem"):
            zf.write(bundle_dir / name, name)
    member = trustkit_cli()
    imported = json.loads(member.run("bundle", "import", archive, "--dir", tmp_path, "--format", "json").stdout)
    assert (tmp_path / "dev1.crt").read_bytes() == (bundle_dir / "cert.pem").read_bytes()
    assert imported["signer"] == "dev1" and "trustkit signer add dev1" in imported["admin_command"]
    admin.run("signer", "add", "dev1", gun, "--key", bundle_dir / "cert.pem")
    _, entry = signed_tags(docker_cli, gun)
    assert [s["Name"] for s in entry["Signers"]] == ["dev1"]
    assert entry["Signers"][0]["Keys"] == [{"ID": imported["keyid"]}]  # canonical ID of the cert's key
    member.run("sign", f"{gun}:v1", "--digest", DIGEST, "--size", "1")
    tags, _ = signed_tags(docker_cli, gun)
    assert tags == {"v1": ["dev1"]}


def test_notary_lists_trustkit_delegations(notary_server, notary_cli, trustkit_cli, tmp_path):
    gun = f"{notary_server.host_port}/team/delegations"
    admin = trustkit_cli()
    admin.run("key", "generate", "alice", "--dir", tmp_path)
    admin.run("signer", "add", "alice", gun, "--key", tmp_path / "alice.pub", "--paths", "release-")
    listing = notary_cli().run("delegation", "list", gun).stdout
    assert "targets/alice" in listing and "targets/releases" in listing and "release-" in listing


def test_two_of_three_needs_two_signers(notary_server, trustkit_cli, tmp_path):
    gun = f"{notary_server.host_port}/team/threshold"
    admin = trustkit_cli()
    members = []
    for name in ("m1", "m2", "m3"):
        member = trustkit_cli()
        member.run("key", "generate", name, "--dir", tmp_path)
        members.append(member)
    keys = [arg for name in ("m1", "m2", "m3") for arg in ("--key", tmp_path / f"{name}.pub")]
    admin.run("signer", "add", "team", gun, *keys, "--threshold", "2")
    stage = tmp_path / "shared-staging"
    first = members[0].run(
        "--staging-dir", stage, "sign", f"{gun}:v1", "--digest", DIGEST, "--size", "5", "--format", "json"
    )
    assert json.loads(first.stdout)["published"] == [] and "targets/team" in json.loads(first.stdout)["pending"]
    not_yet = members[2].run("--staging-dir", stage, "verify", "--trust-only", f"{gun}:v1", check=False)
    assert not_yet.returncode == 6 and "1 of the 2 signatures" in not_yet.stderr
    members[1].run("--staging-dir", stage, "sign", f"{gun}:v1", "--digest", DIGEST, "--size", "5")
    assert trustkit_cli().run("verify", "--trust-only", f"{gun}:v1").stdout.split()[1] == DIGEST


def test_root_rotation_keeps_old_clients_working(notary_server, notary_cli, trustkit_cli):
    gun = f"{notary_server.host_port}/team/rotate-root"
    admin = trustkit_cli()
    admin.run("sign", f"{gun}:v1", "--digest", DIGEST, "--size", "1")
    reader = notary_cli()
    assert "v1" in reader.run("list", gun).stdout  # caches root v1
    old_root = json.loads(admin.run("inspect", gun).stdout)[0]["AdministrativeKeys"][0]["Keys"][0]["ID"]
    admin.run("key", "rotate", gun, "root")
    new_root = json.loads(admin.run("inspect", gun).stdout)[0]["AdministrativeKeys"][0]["Keys"][0]["ID"]
    assert new_root != old_root
    admin.run("sign", f"{gun}:v2", "--digest", DIGEST, "--size", "2")
    listed = reader.run("list", gun).stdout  # walks root v1 -> v2 with the old root cached
    assert "v1" in listed and "v2" in listed
    assert trustkit_cli().run("verify", "--trust-only", f"{gun}:v2").returncode == 0


def test_targets_rotation_retires_the_old_key(notary_server, notary_cli, trustkit_cli):
    from trustkit.metadata import Metadata

    gun = f"{notary_server.host_port}/team/rotate-targets"
    admin = trustkit_cli()
    admin.run("sign", f"{gun}:v1", "--digest", DIGEST, "--size", "1")
    old_targets = Metadata.from_bytes(notary_server.get(f"/v2/{gun}/_trust/tuf/targets.json").content, role="targets")
    admin.run("key", "rotate", gun, "targets")
    root = Metadata.from_bytes(notary_server.get(f"/v2/{gun}/_trust/tuf/root.json").content, role="root")
    new_targets = Metadata.from_bytes(notary_server.get(f"/v2/{gun}/_trust/tuf/targets.json").content, role="targets")
    old_id = old_targets.signatures[0].keyid
    assert root.signed.roles["targets"].keyids != [old_id] and old_id not in root.signed.keys
    # The old key's signature no longer counts: the old targets file fails under the new root.
    rule = root.signed.signing_rule("targets")
    assert not old_targets.verify_by(rule)
    assert new_targets.verify_by(rule)
    assert "v1" in notary_cli().run("list", gun).stdout


def test_server_managed_snapshot_and_timestamp_rotation(notary_server, notary_cli, trustkit_cli):
    gun = f"{notary_server.host_port}/team/rotate-server"
    admin = trustkit_cli()
    admin.run("init", gun, "--local-snapshot")
    admin.run("key", "rotate", gun, "snapshot", "--server-managed")
    admin.run("key", "rotate", gun, "timestamp")
    admin.run("sign", f"{gun}:v1", "--digest", DIGEST, "--size", "1")
    assert "v1" in notary_cli().run("list", gun).stdout


def test_signer_remove_refuses_the_last_releases_signer(notary_server, trustkit_cli, docker_cli, tmp_path):
    gun = f"{notary_server.host_port}/team/remove"
    admin = trustkit_cli()
    for name in ("alice", "bob"):
        admin.run("key", "generate", name, "--dir", tmp_path)
        admin.run("signer", "add", name, gun, "--key", tmp_path / f"{name}.pub")
    admin.run("signer", "remove", "alice", gun)
    refused = admin.run("signer", "remove", "bob", gun, check=False)
    assert refused.returncode == 1 and "--force" in refused.stderr
    _, entry = signed_tags(docker_cli, gun)
    assert [s["Name"] for s in entry["Signers"]] == ["bob"]
    admin.run("signer", "remove", "bob", gun, "--force")
    _, entry = signed_tags(docker_cli, gun)
    assert entry["Signers"] == []


def test_tag_signed_only_by_a_removed_signer_is_not_trusted(notary_server, trustkit_cli, tmp_path):
    gun = f"{notary_server.host_port}/team/removed-signer"
    admin = trustkit_cli()
    alice = trustkit_cli()
    alice.run("key", "generate", "alice", "--dir", tmp_path)
    admin.run("key", "generate", "bob", "--dir", tmp_path)
    admin.run("signer", "add", "alice", gun, "--key", tmp_path / "alice.pub")
    admin.run("signer", "add", "bob", gun, "--key", tmp_path / "bob.pub")
    alice.run("sign", f"{gun}:v1", "--digest", DIGEST, "--size", "1")
    assert trustkit_cli().run("verify", "--trust-only", f"{gun}:v1").returncode == 0
    admin.run("signer", "remove", "alice", gun)
    result = trustkit_cli().run("verify", "--trust-only", f"{gun}:v1", check=False)
    assert result.returncode in (3, 6), result.stderr  # releases no longer carries a valid signature for it


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"days_valid": (-10, -1)}, "expired"),
        ({"days_valid": (5, 365)}, "not valid until"),
        ({"cert_key": "other"}, "does not belong to cert.pem"),
        ({"cn": "Not A Name"}, "--name"),
    ],
)
def test_bad_bundles_are_refused_and_store_nothing(trustkit_cli, tmp_path, change, message):
    if change.get("cert_key") == "other":
        change = {"cert_key": generate()}
    bundle_dir = make_bundle(tmp_path / "bundle", **change)
    member = trustkit_cli()
    result = member.run("bundle", "import", bundle_dir, check=False)
    assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr
    assert json.loads(member.run("key", "list", "--format", "json").stdout) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["targets/../x"], "must match"),
        ([""], "empty"),
        (["a" * 256], "255"),
        (["releases"], "reserved"),
        (["ok", "--threshold", "0"], "between 1"),
        (["ok", "--threshold", "2"], "between 1"),
    ],
)
def test_bad_signer_arguments_publish_nothing(notary_server, trustkit_cli, tmp_path, args, message):
    gun = f"{notary_server.host_port}/team/bad-signer"
    admin = trustkit_cli()
    admin.run("key", "generate", "k", "--dir", tmp_path)
    result = admin.run("signer", "add", args[0], gun, "--key", tmp_path / "k.pub", *args[1:], check=False)
    assert result.returncode in (1, 2) and message in result.stderr and "Traceback" not in result.stderr
    assert notary_server.get(f"/v2/{gun}/_trust/tuf/root.json").status_code == 404


def test_key_remove_names_the_roles_it_would_orphan(notary_server, trustkit_cli, tmp_path):
    gun = f"{notary_server.host_port}/team/orphan"
    admin = trustkit_cli()
    admin.run("key", "generate", "alice", "--dir", tmp_path)
    admin.run("signer", "add", "alice", gun, "--key", tmp_path / "alice.pub")
    admin.run("sign", f"{gun}:v1", "--digest", DIGEST, "--size", "1")  # caches the delegations
    keyid = next(
        k["keyid"] for k in json.loads(admin.run("key", "list", "--format", "json").stdout) if k["role"] == "alice"
    )
    refused = admin.run("key", "remove", keyid, "--yes", check=False)
    assert refused.returncode == 1
    assert f"{gun} targets/alice" in refused.stderr and f"{gun} targets/releases" in refused.stderr
    admin.run("key", "remove", keyid, "--yes", "--force")


def test_a_delegation_notary_removed_leaves_trustkits_cache(notary_server, notary_cli, trustkit_cli, tmp_path):
    """notary removes a signer's role; a trustkit reader's next update drops its cached file
    (it would otherwise stay a rollback floor for a role of that name forever)."""
    gun = f"{notary_server.host_port}/team/pruned"
    admin = trustkit_cli()
    for name in ("alice", "bob"):
        admin.run("key", "generate", name, "--dir", tmp_path)
        admin.run("signer", "add", name, gun, "--key", tmp_path / f"{name}.pub")
    admin.run("sign", f"{gun}:v1", "--digest", DIGEST, "--size", "1")
    reader = trustkit_cli()
    reader.run("inspect", gun)
    cache = reader.trust_dir / "tuf" / gun / "metadata" / "targets"
    assert {"alice.json", "bob.json", "releases.json"} <= {p.name for p in cache.iterdir()}
    owner = notary_cli(trust_dir=admin.trust_dir)
    owner.run("delegation", "remove", gun, "targets/alice", "-p", input="y\n")
    assert "targets/alice" not in notary_cli(trust_dir=tmp_path / "notary-reader").run("delegation", "list", gun).stdout
    signers = json.loads(reader.run("inspect", gun).stdout)[0]["Signers"]
    assert [s["Name"] for s in signers] == ["bob"]
    assert {p.name for p in cache.iterdir()} == {"bob.json", "releases.json"}
    assert reader.run("verify", "--trust-only", f"{gun}:v1").stdout.split()[1] == DIGEST
