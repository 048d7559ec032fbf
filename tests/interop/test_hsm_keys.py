"""Keys that never touch disk: a root, a targets and a delegation key on a real PKCS#11 token
(SoftHSM2, keys made by softhsm2-util and pkcs11-tool as a user makes them), used by trustkit
against the real notary-server and read by the real notary and docker clients; an AWS KMS key
through moto's KMS server on loopback.

Each test has its own SoftHSM2 (SOFTHSM2_CONF naming a config and token folder under tmp)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import peers

pytestmark = pytest.mark.interop

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
DIGEST = "sha256:" + "5e" * 32
PIN = "246810"


class SoftHSM:
    """A SoftHSM2 of its own: ``conf`` for SOFTHSM2_CONF, tokens under ``folder/tokens``."""

    def __init__(self, folder: Path) -> None:
        self.util = peers.require("softhsm2-util")
        self.tool = peers.require("pkcs11-tool")
        if not Path(MODULE).is_file():
            raise peers.PeerMissing(f"{MODULE} not found: `{peers.INSTALL_COMMAND}` (Debian package softhsm2)")
        (folder / "tokens").mkdir(parents=True)
        self.conf = folder / "softhsm2.conf"
        self.conf.write_text(
            f"directories.tokendir = {folder / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
        )
        self.env = {**os.environ, "SOFTHSM2_CONF": str(self.conf)}

    def token(self, label: str, pin: str = PIN) -> str:
        self._run(self.util, "--init-token", "--free", "--label", label, "--so-pin", "13572468", "--pin", pin)
        return label

    def keypair(self, token: str, label: str, key_id: str, key_type: str = "EC:prime256v1", pin: str = PIN) -> str:
        """A key pair made on the token (never outside it); returns its pkcs11 URI without a PIN."""
        self._run(
            self.tool, "--module", MODULE, "--token-label", token, "--login", "--pin", pin,
            "--keypairgen", "--key-type", key_type, "--label", label, "--id", key_id,
        )  # fmt: skip
        return f"pkcs11:token={token};object={label}?module-path={MODULE}"

    def _run(self, *argv: str) -> None:
        subprocess.run(argv, env=self.env, check=True, capture_output=True, timeout=60)


def _cli(trustkit_cli, hsm: SoftHSM, **env: str):
    return trustkit_cli(extra_env={"SOFTHSM2_CONF": str(hsm.conf), **env})


def _notary_list(notary_cli, gun: str) -> dict[str, tuple[str, int, str]]:
    out = notary_cli().run("list", gun).stdout
    rows = [line.split() for line in out.splitlines()[2:] if line.strip()]
    return {name: (digest, int(size), role) for name, digest, size, role in rows}


def _private_files(cli) -> list[str]:
    return sorted(p.name.split(".", 1)[1] for p in (cli.trust_dir / "private").iterdir())


def test_root_targets_and_delegation_keys_in_a_token(notary_server, notary_cli, docker_cli, trustkit_cli, tmp_path):
    hsm = SoftHSM(tmp_path / "hsm")
    hsm.token("admin")
    root_uri = hsm.keypair("admin", "root", "01")
    targets_uri = hsm.keypair("admin", "targets", "02")
    hsm.token("member")
    alice_uri = hsm.keypair("member", "alice", "10", key_type="rsa:2048")  # RSA-PSS signatures
    gun = f"{notary_server.host_port}/hsm/app"

    admin = _cli(trustkit_cli, hsm, TRUSTKIT_PKCS11_PIN=PIN)
    admin.run("init", gun, "--root-key", root_uri, "--targets-key", targets_uri)
    # The store keeps references only: no private key file was written.
    assert _private_files(admin) == ["ref", "ref"]
    listed = json.loads(admin.run("key", "list", "--format", "json").stdout)
    assert {(k["role"], k["location"]) for k in listed} == {
        ("root", 'pkcs11 token "admin"'),
        ("targets", 'pkcs11 token "admin"'),
    }
    assert all("pin" not in k["uri"] for k in listed)

    # The member registers the token key (PIN from a file, as pin-source), hands over NAME.pub.
    pin_file = tmp_path / "member.pin"
    pin_file.write_text(PIN + "\n")
    member = _cli(trustkit_cli, hsm)
    member.run("key", "load", f"{alice_uri}&pin-source={pin_file}", "--name", "alice", "--dir", tmp_path)
    assert (tmp_path / "alice.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----\nrole: alice\n")
    admin.run("signer", "add", "alice", gun, "--key", tmp_path / "alice.pub")
    member.run("sign", f"{gun}:v1", "--digest", DIGEST, "--size", "321")
    assert _private_files(member) == ["ref"]

    delegated = {"targets/alice", "targets/releases"}  # alice's key signs both; notary lists one
    [(tag, (digest, size, role))] = _notary_list(notary_cli, gun).items()
    assert (tag, digest, size) == ("v1", "5e" * 32, 321) and role in delegated
    inspect = json.loads(docker_cli().run("trust", "inspect", gun).stdout)[0]
    assert [(t["SignedTag"], t["Signers"]) for t in inspect["SignedTags"]] == [("v1", ["alice"])]
    admin_keys = {k["Name"]: [i["ID"] for i in k["Keys"]] for k in inspect["AdministrativeKeys"]}
    root_row = next(k for k in listed if k["role"] == "root")
    # docker shows root's certificate ID; the certificate carries the token's key
    cert_key = json.loads(admin.run("inspect", gun).stdout)[0]["AdministrativeKeys"]
    assert {k["Name"]: [i["ID"] for i in k["Keys"]] for k in cert_key} == admin_keys
    root_json = json.loads((admin.trust_dir / "tuf" / gun / "metadata" / "root.json").read_text())
    [root_id] = root_json["signed"]["roles"]["root"]["keyids"]
    assert admin_keys["Root"] == [root_id] and root_json["signatures"][0]["keyid"] == root_id
    assert root_row["keyid"] != root_id  # the reference is named by the bare key, root lists the certificate
    verified = json.loads(trustkit_cli().run("verify", "--trust-only", f"{gun}:v1", "--format", "json").stdout)
    assert verified["digest"] == DIGEST and verified["role"] in delegated

    # Rotating targets onto another token key: the new key signs, notary and docker follow.
    new_targets = hsm.keypair("admin", "targets2", "03")
    admin.run("key", "rotate", gun, "targets", "--key", new_targets)
    refs = json.loads(admin.run("key", "list", "--format", "json").stdout)
    new_id = next(k["keyid"] for k in refs if "targets2" in k["uri"])
    assert _private_files(admin) == ["ref", "ref", "ref"]
    inspect = json.loads(docker_cli().run("trust", "inspect", gun).stdout)[0]
    assert {k["Name"]: [i["ID"] for i in k["Keys"]] for k in inspect["AdministrativeKeys"]}["Repository"] == [new_id]
    assert _notary_list(notary_cli, gun)["v1"][:2] == ("5e" * 32, 321)


def test_root_rotation_onto_a_token_key(notary_server, notary_cli, trustkit_cli, tmp_path):
    """A root made as a key file is rotated onto a token key; notary walks from the old root."""
    hsm = SoftHSM(tmp_path / "hsm")
    hsm.token("vault")
    new_root = hsm.keypair("vault", "root2", "0a")
    gun = f"{notary_server.host_port}/hsm/rotate"
    admin = _cli(trustkit_cli, hsm, TRUSTKIT_PKCS11_PIN=PIN)
    admin.run("init", gun)
    admin.run("sign", f"{gun}:v1", "--digest", DIGEST, "--size", "1")
    reader = notary_cli()
    reader.run("list", gun)  # trusts the first root
    admin.run("key", "rotate", gun, "root", "--key", new_root)
    admin.run("sign", f"{gun}:v2", "--digest", DIGEST, "--size", "2")
    assert set(_notary_list(lambda: reader, gun)) == {"v1", "v2"}  # the same notary trust dir walked to the new root
    root_json = json.loads((admin.trust_dir / "tuf" / gun / "metadata" / "root.json").read_text())
    assert len(root_json["signatures"]) == 2  # old file key and new token key
    # The snapshot key too can live in the token: trustkit then signs snapshots there.
    snapshot_uri = hsm.keypair("vault", "snapshot", "0b", key_type="rsa:2048")
    admin.run("key", "rotate", gun, "snapshot", "--key", snapshot_uri)
    admin.run("sign", f"{gun}:v3", "--digest", DIGEST, "--size", "3")
    assert set(_notary_list(lambda: reader, gun)) == {"v1", "v2", "v3"}
    snapshot = json.loads((admin.trust_dir / "tuf" / gun / "metadata" / "snapshot.json").read_text())
    assert [s["method"] for s in snapshot["signatures"]] == ["rsapss"]


def test_no_pin_in_ci_fails_at_once_and_names_what_to_set(notary_server, trustkit_cli, tmp_path):
    hsm = SoftHSM(tmp_path / "hsm")
    hsm.token("ci")
    uri = hsm.keypair("ci", "root", "01")
    gun = f"{notary_server.host_port}/hsm/nopin"
    cli = _cli(trustkit_cli, hsm)
    started = time.monotonic()
    out = cli.run("init", gun, "--root-key", uri, check=False)
    assert out.returncode != 0 and time.monotonic() - started < 30
    assert "no PIN" in out.stderr and "TRUSTKIT_PKCS11_PIN" in out.stderr and "pin-source" in out.stderr
    assert not (cli.trust_dir / "tuf" / gun / "metadata" / "root.json").exists()  # nothing published
    wrong = _cli(trustkit_cli, hsm, TRUSTKIT_PKCS11_PIN="000000").run("init", gun, "--root-key", uri, check=False)
    assert wrong.returncode != 0 and "TRUSTKIT_PKCS11_PIN does not log in" in wrong.stderr
    cli = _cli(trustkit_cli, hsm, TRUSTKIT_PKCS11_PIN=PIN)  # with the PIN: the rest is named
    missing = cli.run("key", "load", uri.replace("object=root", "object=nosuch"), "--name", "x", check=False)
    assert missing.returncode != 0 and 'object "nosuch"' in missing.stderr
    no_token = cli.run("key", "load", uri.replace("token=ci", "token=other"), "--name", "x", check=False)
    assert no_token.returncode != 0 and 'no token "other"' in no_token.stderr and '"ci"' in no_token.stderr
    no_module = cli.run("key", "load", uri.replace(MODULE, "/nonexistent/p11.so"), "--name", "x", check=False)
    assert no_module.returncode != 0 and "/nonexistent/p11.so" in no_module.stderr
    assert not (cli.trust_dir / "private").exists() or not list((cli.trust_dir / "private").iterdir())


# --------------------------------------------------------------------------------------------
# AWS KMS through moto's KMS server


@pytest.fixture
def moto_kms(tmp_path):
    port = peers.free_port()
    log = (tmp_path / "moto.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/moto-api/", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    tail = (tmp_path / "moto.log").read_text(errors="replace")[-2000:]
                    raise peers.PeerError(f"moto's server did not start: {tail}") from None
                time.sleep(0.2)
        yield {
            "AWS_ENDPOINT_URL": url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    finally:
        peers.terminate(proc, 10)
        log.close()


def _kms_key(env: dict[str, str], spec: str) -> str:
    import boto3

    client = boto3.client(
        "kms",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    return client.create_key(KeyUsage="SIGN_VERIFY", KeySpec=spec)["KeyMetadata"]["KeyId"]


def test_aws_kms_key_is_registered_and_its_signatures_are_checked(moto_kms, notary_server, trustkit_cli, tmp_path):
    key_id = _kms_key(moto_kms, "ECC_NIST_P256")
    gun = f"{notary_server.host_port}/kms/app"
    cli = trustkit_cli(extra_env=moto_kms)
    loaded = json.loads(
        cli.run("key", "load", f"awskms:{key_id}", "--name", "kms", "--dir", tmp_path, "--format", "json").stdout
    )
    assert loaded["location"] == "AWS KMS" and loaded["uri"] == f"awskms:{key_id}" and loaded["algorithm"] == "ecdsa"
    assert (tmp_path / "kms.pub").is_file() and _private_files(cli) == ["ref"]
    cli.run("init", gun)
    cli.run("signer", "add", "kms", gun, "--key", tmp_path / "kms.pub")
    # securesystemslib's AWSSigner sends KMS the SHA-256 digest (MessageType=DIGEST); moto 5.2
    # ignores MessageType and hashes the digest again, so its signature is over another hash.
    # trustkit checks every token/KMS signature before using it: the sign fails, naming the key,
    # and nothing is published.
    out = cli.run("sign", f"{gun}:v1", "--digest", DIGEST, "--size", "1", check=False)
    assert out.returncode != 0 and "AWS KMS key" in out.stderr and "does not verify" in out.stderr
    assert "v1" not in json.loads(trustkit_cli().run("inspect", gun).stdout)[0]["SignedTags"]
