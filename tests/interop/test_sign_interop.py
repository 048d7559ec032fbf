"""trustkit init/sign/verify/revoke against the real notary-server, checked by the real notary
and docker clients, all with passphrases from the environment and stdin closed."""

from __future__ import annotations

import json
import time

import pytest

pytestmark = pytest.mark.interop

DIGEST = "sha256:" + "3f" * 32
OTHER = "sha256:" + "c0" * 32


def notary_targets(notary_cli, gun: str) -> dict[str, tuple[str, int, str]]:
    """`notary list` as {tag: (digest hex, size, role)}."""
    out = notary_cli().run("list", gun).stdout
    rows = [line.split() for line in out.splitlines()[2:] if line.strip()]
    return {name: (digest, int(size), role) for name, digest, size, role in rows}


def test_init_and_sign_are_seen_by_notary_and_docker(notary_server, notary_cli, docker_cli, trustkit_cli):
    gun = f"{notary_server.host_port}/team/app"
    tk = trustkit_cli()
    tk.run("init", gun)
    tk.run("sign", f"{gun}:v1", f"{gun}:latest", "--digest", DIGEST, "--size", "1234")
    assert notary_targets(notary_cli, gun) == {
        "v1": ("3f" * 32, 1234, "targets"),
        "latest": ("3f" * 32, 1234, "targets"),
    }
    inspect = json.loads(docker_cli().run("trust", "inspect", gun).stdout)
    assert {(t["SignedTag"], t["Digest"]) for t in inspect[0]["SignedTags"]} == {
        ("v1", "3f" * 32),
        ("latest", "3f" * 32),
    }
    # trustkit's inspect has docker's shape and content.
    ours = json.loads(tk.run("inspect", gun).stdout)
    assert ours == inspect


def test_sign_initialises_a_new_repository_like_docker(notary_server, notary_cli, trustkit_cli):
    gun = f"{notary_server.host_port}/team/fresh"
    trustkit_cli().run("sign", f"{gun}:v1", "--digest", DIGEST, "--size", "7")
    assert notary_targets(notary_cli, gun) == {"v1": ("3f" * 32, 7, "targets")}


def test_verify_accepts_a_notary_signed_target_and_says_why_not(notary_server, notary_cli, trustkit_cli):
    gun = f"{notary_server.host_port}/team/by-notary"
    cli = notary_cli()
    cli.run("init", gun, "-p")
    cli.run("addhash", gun, "v1", "1234", "--sha256", "3f" * 32, "-p")
    tk = trustkit_cli()
    ok = tk.run("verify", "--trust-only", f"{gun}:v1", "--format", "json")
    assert json.loads(ok.stdout) == {
        "repository": gun,
        "tag": "v1",
        "digest": DIGEST,
        "size": 1234,
        "role": "targets",
        "pending": [],
    }
    assert tk.run("verify", "--trust-only", f"{gun}:v1", "--digest", DIGEST).returncode == 0
    wrong = tk.run("verify", "--trust-only", f"{gun}:v1", "--digest", OTHER, check=False)
    assert wrong.returncode == 4 and "signed for " + DIGEST in wrong.stderr
    unsigned = tk.run("verify", "--trust-only", f"{gun}:nope", check=False)
    assert unsigned.returncode == 3 and "no trust data" in unsigned.stderr
    uninitialised = tk.run("verify", "--trust-only", f"{notary_server.host_port}/team/none:v1", check=False)
    assert uninitialised.returncode == 3
    # The cache now allows an offline answer.
    assert tk.run("verify", "--trust-only", f"{gun}:v1", "--offline").stdout.split()[1] == DIGEST


def test_revoke_removes_the_tag_for_notary(notary_server, notary_cli, trustkit_cli):
    gun = f"{notary_server.host_port}/team/revoke"
    tk = trustkit_cli()
    tk.run("sign", f"{gun}:v1", f"{gun}:v2", "--digest", DIGEST, "--size", "1")
    tk.run("revoke", f"{gun}:v1")
    assert set(notary_targets(notary_cli, gun)) == {"v2"}
    assert tk.run("verify", "--trust-only", f"{gun}:v1", check=False).returncode == 3
    refused = tk.run("revoke", gun, check=False)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    tk.run("revoke", gun, "--yes")
    assert notary_targets(notary_cli, gun) == {}


def test_bulk_sign_from_file(notary_server, notary_cli, trustkit_cli, tmp_path):
    gun = f"{notary_server.host_port}/team/bulk"
    lines = [f"t{i} sha256:{i:064x} {100 + i}" for i in range(50)]
    (tmp_path / "tags.txt").write_text("# tag digest size\n" + "\n".join(lines) + "\n")
    result = trustkit_cli().run("sign", gun, "--from-file", tmp_path / "tags.txt", "--format", "json")
    assert len(json.loads(result.stdout)["signed"]) == 50
    listed = notary_targets(notary_cli, gun)
    assert listed["t7"] == (f"{7:064x}", 107, "targets") and len(listed) == 50


def test_no_passphrase_fails_at_once_naming_the_variable(notary_server, trustkit_cli):
    gun = f"{notary_server.host_port}/team/nopass"
    tk = trustkit_cli(passphrases=False)
    started = time.monotonic()
    result = tk.run("init", gun, check=False)
    assert time.monotonic() - started < 30
    assert result.returncode == 1
    assert "DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE" in result.stderr and "Traceback" not in result.stderr
    assert notary_server.get(f"/v2/{gun}/_trust/tuf/root.json").status_code == 404  # nothing published


def test_wrong_passphrase_is_a_clear_error(notary_server, trustkit_cli):
    gun = f"{notary_server.host_port}/team/wrongpass"
    trustkit_cli().run("init", gun)
    config = trustkit_cli().config_dir
    good = trustkit_cli(config_dir=config)
    good.run("init", f"{gun}2")
    bad = trustkit_cli(
        config_dir=config,
        passphrases=False,
        extra_env={
            "DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE": "wrong",
            "DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE": "wrong",
        },
    )
    result = bad.run("sign", f"{gun}2:v1", "--digest", DIGEST, "--size", "1", check=False)
    assert result.returncode == 1 and "does not decrypt" in result.stderr


def test_tls_ca_comes_from_docker_config_or_fails_clearly(notary_server, trustkit_cli):
    gun = f"{notary_server.host_port}/team/tls"
    trustkit_cli().run("init", gun)  # the CA is in $DOCKER_CONFIG/tls/<host:port>/ca.crt
    no_ca = trustkit_cli(install_ca=False)
    result = no_ca.run("verify", "--trust-only", f"{gun}:v1", check=False)
    assert result.returncode == 7
    assert "ca.crt" in result.stderr or "--tls-ca" in result.stderr
    with_flag = no_ca.run("--tls-ca", notary_server.ca_path, "verify", "--trust-only", f"{gun}:v1", check=False)
    assert with_flag.returncode == 3  # reachable now; the tag is simply not signed


def test_unreachable_server_has_its_own_exit_status(trustkit_cli, notary_server):
    import peers

    port = peers.free_port()
    tk = trustkit_cli(extra_env={"DOCKER_CONTENT_TRUST_SERVER": f"https://127.0.0.1:{port}"})
    result = tk.run("verify", "--trust-only", f"127.0.0.1:{port}/team/app:v1", check=False)
    assert result.returncode == 7 and "Traceback" not in result.stderr


def test_trust_pinning_and_no_tofu(notary_server, trustkit_cli, tmp_path):
    gun = f"{notary_server.host_port}/team/pinned"
    owner = trustkit_cli()
    owner.run("sign", f"{gun}:v1", "--digest", DIGEST, "--size", "1")
    root_id = json.loads(owner.run("inspect", gun).stdout)[0]["AdministrativeKeys"][0]["Keys"][0]["ID"]
    refused = trustkit_cli().run("--no-tofu", "verify", "--trust-only", f"{gun}:v1", check=False)
    assert refused.returncode == 6 and "trust on first use is disabled" in refused.stderr
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"trust_pinning": {"certs": {gun: [root_id]}, "disable_tofu": True}}))
    assert trustkit_cli().run("--config", config, "verify", "--trust-only", f"{gun}:v1").returncode == 0
    config.write_text(json.dumps({"trust_pinning": {"certs": {gun: ["ab" * 32]}}}))
    mismatch = trustkit_cli().run("--config", config, "verify", "--trust-only", f"{gun}:v1", check=False)
    assert mismatch.returncode == 6 and "pinned" in mismatch.stderr


def test_local_snapshot_key(notary_server, notary_cli, trustkit_cli):
    gun = f"{notary_server.host_port}/team/local-snapshot"
    tk = trustkit_cli()
    tk.run("init", gun, "--local-snapshot")
    keys = json.loads(tk.run("key", "list", "--format", "json").stdout)
    assert {(k["role"], k["gun"]) for k in keys} >= {("snapshot", gun), ("targets", gun), ("root", None)}
    tk.run("sign", f"{gun}:v1", "--digest", DIGEST, "--size", "9")
    assert notary_targets(notary_cli, gun) == {"v1": ("3f" * 32, 9, "targets")}
    from trustkit.metadata import Metadata

    root = Metadata.from_bytes(notary_server.get(f"/v2/{gun}/_trust/tuf/root.json").content, role="root")
    snapshot = Metadata.from_bytes(notary_server.get(f"/v2/{gun}/_trust/tuf/snapshot.json").content, role="snapshot")
    snapshot_key = next(k["keyid"] for k in keys if k["role"] == "snapshot")
    assert root.signed.roles["snapshot"].keyids == [snapshot_key]
    assert [s.keyid for s in snapshot.signatures] == [snapshot_key]
