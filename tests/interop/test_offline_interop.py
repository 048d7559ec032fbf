"""Offline signing and the air-gapped hand-over against the real notary-server, read back by the
real notary and docker clients.  "Offline" is the trust server at a closed port (the memory-backed
notary-server would lose its data if it were stopped and started)."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest

import images
import peers

pytestmark = pytest.mark.interop

DIGEST = "sha256:" + "3f" * 32
OTHER = "sha256:" + "c0" * 32
THIRD = "sha256:" + "5e" * 32


def closed() -> list[str]:
    """Global options that point trustkit at a trust server nobody listens on."""
    return ["--server", f"https://127.0.0.1:{peers.free_port()}"]


def lookup(notary_cli, gun: str, tag: str) -> str | None:
    """`notary lookup`: the tag's ``sha256:HEX``, None when it is not signed."""
    result = notary_cli().run("lookup", gun, tag, check=False)
    if result.returncode != 0:
        return None
    digest = result.stdout.split()[1]
    return digest if digest.startswith("sha256:") else f"sha256:{digest}"


def docker_tags(docker_cli, gun: str) -> dict[str, str]:
    inspect = json.loads(docker_cli().run("trust", "inspect", gun).stdout)
    return {t["SignedTag"]: t["Digest"] for t in inspect[0]["SignedTags"]}


def served(server: peers.NotaryServer, gun: str) -> dict[str, bytes]:
    return {role: server.get(f"/v2/{gun}/_trust/tuf/{role}.json").content for role in ("root", "targets", "snapshot")}


def owner_with_v1(trustkit_cli, gun: str):
    """A repository signed online (v1), its owner's cache current."""
    tk = trustkit_cli()
    tk.run("sign", f"{gun}:v1", "--digest", DIGEST, "--size", "100")
    tk.run("inspect", gun)  # any online read leaves the cache current
    return tk


def test_sign_offline_status_publish_read_by_notary_and_docker(notary_server, notary_cli, docker_cli, trustkit_cli):
    gun = f"{notary_server.host_port}/team/offline"
    tk = owner_with_v1(trustkit_cli, gun)
    sign_v2 = ["sign", f"{gun}:v2", "--digest", OTHER, "--size", "200"]

    down = tk.run(*closed(), *sign_v2, check=False)
    assert down.returncode == 1 and "--offline" in down.stderr and f"trustkit publish {gun}" in down.stderr

    kept = tk.run(*closed(), *sign_v2, "--offline")
    assert "Kept pending" in kept.stderr
    assert lookup(notary_cli, gun, "v2") is None  # nothing reached the server

    status = tk.run("status", gun).stdout
    assert f"+ v2 {OTHER} (200 bytes)" in status and "targets: version 2 (signed on version 1)" in status

    published = tk.run("publish", gun)
    assert "Published targets" in published.stdout and "as signed" in published.stdout
    assert lookup(notary_cli, gun, "v2") == OTHER
    assert docker_tags(docker_cli, gun) == {"v1": DIGEST.removeprefix("sha256:"), "v2": OTHER.removeprefix("sha256:")}
    assert "No changes pending" in tk.run("status", gun).stdout


def test_publish_re_signs_over_a_notary_publish_and_refuses_a_conflicting_one(
    notary_server, notary_cli, docker_cli, trustkit_cli
):
    gun = f"{notary_server.host_port}/team/merge"
    tk = owner_with_v1(trustkit_cli, gun)
    # notary itself, on the owner's key files, publishes while trustkit signs offline.
    notary = notary_cli(trust_dir=tk.trust_dir)
    tk.run(*closed(), "sign", f"{gun}:v2", "--digest", OTHER, "--size", "200", "--offline")
    notary.run("addhash", gun, "v3", "300", "--sha256", THIRD.removeprefix("sha256:"), "-p")
    assert "re-signed" in tk.run("publish", gun).stdout
    assert docker_tags(docker_cli, gun) == {
        "v1": DIGEST.removeprefix("sha256:"),
        "v2": OTHER.removeprefix("sha256:"),
        "v3": THIRD.removeprefix("sha256:"),
    }

    # Now the same tag, two ways: offline to OTHER, online (by notary) to THIRD.
    tk.run("inspect", gun)
    tk.run(*closed(), "sign", f"{gun}:v1", "--digest", OTHER, "--size", "200", "--offline")
    notary.run("addhash", gun, "v1", "300", "--sha256", THIRD.removeprefix("sha256:"), "-p")
    before = served(notary_server, gun)
    refused = tk.run("publish", gun, check=False)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "v1 in targets" in refused.stderr and "nothing was published" in refused.stderr
    assert served(notary_server, gun) == before
    assert lookup(notary_cli, gun, "v1") == THIRD
    assert "Dropped" in tk.run("status", gun, "--reset").stdout


def test_export_on_a_keyed_machine_publish_from_on_a_keyless_one(
    notary_server, notary_cli, docker_cli, trustkit_cli, tmp_path
):
    gun = f"{notary_server.host_port}/team/airgap"
    machine_a = owner_with_v1(trustkit_cli, gun)
    machine_a.run(*closed(), "sign", f"{gun}:v2", "--digest", OTHER, "--size", "200", "--offline")
    handover = tmp_path / "handover.tar"
    machine_a.run(*closed(), "publish", gun, "--export", handover)

    machine_b = trustkit_cli(passphrases=False)  # its own trust dir, and no keys
    done = machine_b.run("publish", "--from", handover)
    assert "Checked and published targets" in done.stdout
    assert not (machine_b.trust_dir / "private").exists() or not any((machine_b.trust_dir / "private").iterdir())
    assert lookup(notary_cli, gun, "v2") == OTHER
    assert docker_tags(docker_cli, gun)["v2"] == OTHER.removeprefix("sha256:")
    assert "already published" in machine_a.run("publish", gun).stdout


def _retarred(source: Path, target: Path, change) -> Path:
    with tarfile.open(source) as tar:
        members = [(info.name, tar.extractfile(info).read()) for info in tar]
    with tarfile.open(target, "w") as tar:
        for name, data in members:
            new = change(name, data)
            info = tarfile.TarInfo(name)
            info.size = len(new)
            tar.addfile(info, io.BytesIO(new))
    return target


def test_tampered_and_stale_exports_are_refused_and_the_server_is_unchanged(
    notary_server, notary_cli, trustkit_cli, tmp_path
):
    gun = f"{notary_server.host_port}/team/hostile"
    machine_a = owner_with_v1(trustkit_cli, gun)
    machine_a.run(*closed(), "sign", f"{gun}:v2", "--digest", OTHER, "--size", "200", "--offline")
    handover = tmp_path / "handover.tar"
    machine_a.run(*closed(), "publish", gun, "--export", handover)
    machine_b = trustkit_cli(passphrases=False)
    before = served(notary_server, gun)

    # One byte of the signed targets changed (the size 200 -> 900): the manifest's hash gives it away.
    tampered = _retarred(handover, tmp_path / "tampered.tar", lambda n, d: d.replace(b'"length":200', b'"length":900'))
    refused = machine_b.run("publish", "--from", tampered, check=False)
    assert refused.returncode == 1 and "not the file its manifest lists" in refused.stderr
    assert served(notary_server, gun) == before

    # Someone publishes with the same keys in the meantime: the export no longer builds on the current version.
    other = trustkit_cli()
    shutil.copytree(machine_a.trust_dir / "private", other.trust_dir / "private")
    other.run("sign", f"{gun}:v3", "--digest", THIRD, "--size", "300")
    before = served(notary_server, gun)
    stale = machine_b.run("publish", "--from", handover, check=False)
    assert stale.returncode == 1 and "signed on version 1" in stale.stderr and "now has version 2" in stale.stderr
    assert served(notary_server, gun) == before
    assert lookup(notary_cli, gun, "v2") is None


def test_a_signed_push_that_cannot_reach_the_trust_server_pushes_nothing_and_says_how(registry, tmp_path):
    image = images.build_oci_layout(tmp_path / "layout", ref="v1", layers=2)
    tk = peers.TrustkitCLI(tmp_path / "docker-config", None, extra_env={"DOCKER_CONTENT_TRUST": "1"})
    target = f"{registry.host_port}/team/unsigned:v1"
    failed = tk.run(*closed(), "push", f"oci:{image.layout}:v1", target, check=False)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert "nothing was pushed" in failed.stderr and "--disable-content-trust" in failed.stderr
    assert f"trustkit sign {target}" in failed.stderr
    assert registry.get("/v2/_catalog").json()["repositories"] == []
    # As the message says: unsigned now...
    tk.run(*closed(), "push", f"oci:{image.layout}:v1", target, "--disable-content-trust")
    assert registry.get("/v2/_catalog").json()["repositories"] == ["team/unsigned"]
