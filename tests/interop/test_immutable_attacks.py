"""The real notary CLI as the attacker against an immutable repository on `trustkit server`.

The attacker holds the targets key (the repository owner's, stolen or misused) and tries every way
notary offers to make a signed tag resolve elsewhere without editing the tag itself: narrowing
the paths of ``targets/releases``, removing the delegation, re-keying it, or shadowing the tag in
``targets``.  The server judges each update by what clients resolve (trustkit.trust.resolution), so
every one is refused with notary's ErrBadTargets, nothing is stored, and notary, docker and
trustkit still resolve the tag to the signed digest.  Changes that move no tag stay allowed.
"""

from __future__ import annotations

import hashlib
import json

import pytest

import peers

pytestmark = pytest.mark.interop

DIGEST_A = "sha256:" + "ab" * 32


def listed(notary: peers.NotaryCLI, gun: str) -> dict[str, str]:
    """``notary list`` as {tag: sha256 hex} (every role: notary's own resolution)."""
    out = notary.run("list", gun).stdout
    rows = [line.split() for line in out.splitlines()[2:] if line.strip()]
    return {row[0]: row[1] for row in rows if len(row) >= 2}


def timestamp_version(server: peers.TrustkitServer, gun: str) -> int:
    response = server.get(f"/v2/{gun}/_trust/tuf/timestamp.json")
    assert response.status_code == 200, response.text
    return json.loads(response.content)["signed"]["version"]


@pytest.fixture
def repo(trustkit_server, trustkit_cli, notary_cli, tmp_path):
    """An immutable repository: v1 signed by the signer dev1 into targets/releases."""
    gun = f"{trustkit_server.host_port}/team/immutable-attack"
    admin = trustkit_cli(server=trustkit_server)
    admin.run("key", "generate", "dev1", "--dir", tmp_path)
    admin.run("signer", "add", "dev1", gun, "--key", tmp_path / "dev1.pub")
    admin.run("sign", f"{gun}:v1", "--digest", DIGEST_A, "--size", "1")
    inspected = json.loads(admin.run("inspect", gun).stdout)[0]["SignedTags"]
    assert inspected == [{"SignedTag": "v1", "Digest": DIGEST_A.removeprefix("sha256:"), "Signers": ["dev1"]}]
    releases = json.loads(trustkit_server.get(f"/v2/{gun}/_trust/tuf/targets/releases.json").content)
    assert "v1" in releases["signed"]["targets"]
    assert "immutable now" in admin.run("repo", "immutable", gun).stdout
    # The attacker: the notary CLI on the owner's trust dir (same key files: it holds the targets key).
    attacker = notary_cli(trust_dir=admin.trust_dir, server=trustkit_server)
    return gun, admin, attacker


def signer_key(admin: peers.TrustkitCLI, gun: str) -> str:
    """dev1's key ID (a bare key: the ID notary lists is the same)."""
    return json.loads(admin.run("inspect", gun).stdout)[0]["Signers"][0]["Keys"][0]["ID"]


def assert_refused(result, gun: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{gun} is immutable: v1 would" in result.stdout + result.stderr, result.stdout + result.stderr


def assert_v1_still_signed(gun, trustkit_server, trustkit_cli, notary_cli, tmp_path, name) -> None:
    """Fresh clients (no cache) of every kind still resolve v1 to the signed digest."""
    reader = trustkit_cli(server=trustkit_server, config_dir=tmp_path / f"reader-{name}")
    assert reader.run("verify", "--trust-only", f"{gun}:v1").stdout.split()[1] == DIGEST_A
    assert listed(notary_cli(trust_dir=tmp_path / f"notary-{name}", server=trustkit_server), gun)[
        "v1"
    ] == DIGEST_A.removeprefix("sha256:")


def test_narrowing_the_releases_paths_then_shadowing_the_tag_is_refused(
    repo, trustkit_server, trustkit_cli, notary_cli, tmp_path
):
    gun, _, attacker = repo
    before = timestamp_version(trustkit_server, gun)
    # The reproduction from the issue: the delegation loses every path, then v1 is added to targets.
    narrowed = attacker.run("delegation", "remove", gun, "targets/releases", "--all-paths", "-p", check=False)
    assert_refused(narrowed, gun)
    attacker.run("reset", gun, "--all")  # a failed -p stays staged
    other = tmp_path / "other"
    other.write_bytes(b"the attacker's manifest\n")
    shadowed = attacker.run("add", gun, "v1", other, "-p", check=False)  # into targets: notary's walk finds it first
    assert_refused(shadowed, gun)
    attacker.run("reset", gun, "--all")
    assert timestamp_version(trustkit_server, gun) == before  # nothing was stored
    assert_v1_still_signed(gun, trustkit_server, trustkit_cli, notary_cli, tmp_path, "paths")


def test_removing_the_delegation_or_its_only_key_is_refused(repo, trustkit_server, trustkit_cli, notary_cli, tmp_path):
    gun, admin, attacker = repo
    before = timestamp_version(trustkit_server, gun)
    removed = attacker.run("delegation", "remove", gun, "targets/releases", "-p", input="yes\n", check=False)
    assert_refused(removed, gun)
    attacker.run("reset", gun, "--all")
    # notary writes the key-less delegation as "keyids": null; it parses, and it moves v1 to nothing.
    dropped = attacker.run("delegation", "remove", gun, "targets/releases", signer_key(admin, gun), "-p", check=False)
    assert_refused(dropped, gun)
    attacker.run("reset", gun, "--all")
    assert timestamp_version(trustkit_server, gun) == before
    assert_v1_still_signed(gun, trustkit_server, trustkit_cli, notary_cli, tmp_path, "removed")


def test_re_keying_the_delegation_is_refused(repo, trustkit_server, trustkit_cli, notary_cli, tmp_path):
    """Adding the attacker's key and dropping dev1's: the releases file is no longer signed by a
    listed key, so clients would skip it and v1 would resolve to nothing."""
    gun, admin, attacker = repo
    admin.run("key", "generate", "mallory", "--dir", tmp_path)
    attacker.run("delegation", "add", gun, "targets/releases", tmp_path / "mallory.pub", "-p")  # moves nothing
    listing = attacker.run("delegation", "list", gun).stdout
    dev1 = signer_key(admin, gun)
    assert dev1 in listing
    before = timestamp_version(trustkit_server, gun)
    rekeyed = attacker.run("delegation", "remove", gun, "targets/releases", dev1, "-p", check=False)
    assert_refused(rekeyed, gun)
    attacker.run("reset", gun, "--all")
    assert timestamp_version(trustkit_server, gun) == before
    assert_v1_still_signed(gun, trustkit_server, trustkit_cli, notary_cli, tmp_path, "rekeyed")


def test_changes_that_move_no_tag_stay_allowed(repo, trustkit_server, trustkit_cli, notary_cli, tmp_path):
    gun, admin, attacker = repo
    admin.run("key", "generate", "qa", "--dir", tmp_path)
    attacker.run("delegation", "add", gun, "targets/qa", tmp_path / "qa.pub", "--all-paths", "-p")
    artifact = tmp_path / "v2"
    artifact.write_bytes(b"v2 manifest\n")
    attacker.run("add", gun, "v2", artifact, "-p")
    # v1 signed again into targets with the same digest and size: the resolution does not move.
    attacker.run("addhash", gun, "v1", "1", "--sha256", DIGEST_A.removeprefix("sha256:"), "-p")
    tags = listed(notary_cli(trust_dir=tmp_path / "notary-allowed", server=trustkit_server), gun)
    assert tags == {"v1": DIGEST_A.removeprefix("sha256:"), "v2": hashlib.sha256(b"v2 manifest\n").hexdigest()}
    assert_v1_still_signed(gun, trustkit_server, trustkit_cli, notary_cli, tmp_path, "allowed")


def test_a_mutable_repository_accepts_notarys_key_less_delegation(trustkit_server, trustkit_cli, notary_cli, tmp_path):
    """Removing a delegation's last key is an ordinary notary operation (it writes "keyids": null);
    the server stores it as notary-server does, and every client still reads the repository."""
    gun = f"{trustkit_server.host_port}/team/keyless"
    admin = trustkit_cli(server=trustkit_server)
    admin.run("key", "generate", "qa", "--dir", tmp_path)
    admin.run("sign", f"{gun}:v1", "--digest", DIGEST_A, "--size", "1")
    owner = notary_cli(trust_dir=admin.trust_dir, server=trustkit_server)
    owner.run("delegation", "add", gun, "targets/qa", tmp_path / "qa.pub", "--all-paths", "-p")
    qa = owner.run("delegation", "list", gun).stdout
    keyid = next(
        word for line in qa.splitlines() if line.startswith("targets/qa") for word in line.split() if len(word) == 64
    )
    owner.run("delegation", "remove", gun, "targets/qa", keyid, "-p")
    served = json.loads(trustkit_server.get(f"/v2/{gun}/_trust/tuf/targets.json").content)
    assert [r["keyids"] for r in served["signed"]["delegations"]["roles"] if r["name"] == "targets/qa"] == [None]
    reader = trustkit_cli(server=trustkit_server)
    assert reader.run("verify", "--trust-only", f"{gun}:v1").stdout.split()[1] == DIGEST_A
    assert json.loads(reader.run("inspect", gun).stdout)[0]["Signers"] == [{"Name": "qa", "Keys": []}]
    assert listed(notary_cli(trust_dir=tmp_path / "notary-reader", server=trustkit_server), gun) == {
        "v1": DIGEST_A.removeprefix("sha256:")
    }
