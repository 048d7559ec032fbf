"""One key written three ways by openssl (a PEM public key, the same point compressed with
``openssl ec -conv_form compressed``, a certificate) cannot stand for two signers of a threshold:
``trustkit signer add`` refuses it before anything is published, and says why."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import peers

pytestmark = pytest.mark.interop

DIGEST = "sha256:" + "ab" * 32


def openssl(*args: str | Path) -> None:
    subprocess.run([peers.require("openssl"), *map(str, args)], check=True, capture_output=True, timeout=60)


@pytest.fixture
def spellings(tmp_path: Path) -> dict[str, Path]:
    key = tmp_path / "k.pem"
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
    out = {"pem": tmp_path / "k.pub", "compressed": tmp_path / "k-compressed.pub", "certificate": tmp_path / "k.crt"}
    openssl("ec", "-in", key, "-pubout", "-out", out["pem"])
    openssl("ec", "-in", key, "-pubout", "-conv_form", "compressed", "-out", out["compressed"])
    openssl("req", "-new", "-x509", "-key", key, "-subj", "/CN=team", "-days", "30", "-out", out["certificate"])
    other = tmp_path / "other.pem"
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", other)
    out["other"] = tmp_path / "other.pub"
    openssl("ec", "-in", other, "-pubout", "-out", out["other"])
    assert out["compressed"].read_text() != out["pem"].read_text()
    return out


@pytest.mark.parametrize("second", ["compressed", "certificate"])
def test_signer_add_refuses_one_key_spelled_twice_for_a_threshold(trustkit_server, trustkit_cli, spellings, second):
    gun = f"{trustkit_server.host_port}/team/spellings-{second}"
    admin = trustkit_cli(server=trustkit_server)
    admin.run("sign", f"{gun}:v1", "--digest", DIGEST, "--size", "1")
    before = trustkit_server.get(f"/v2/{gun}/_trust/tuf/targets.json").content
    refused = admin.run(
        "signer",
        "add",
        "team",
        gun,
        "--key",
        spellings["pem"],
        "--key",
        spellings[second],
        "--threshold",
        "2",
        check=False,
    )
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "same key" in refused.stderr or "different keys" in refused.stderr, refused.stderr
    assert trustkit_server.get(f"/v2/{gun}/_trust/tuf/targets.json").content == before  # nothing published

    admin.run("signer", "add", "team", gun, "--key", spellings["pem"], "--key", spellings["other"], "--threshold", "2")
    signers = json.loads(admin.run("inspect", gun).stdout)[0]["Signers"]
    assert [(s["Name"], len(s["Keys"])) for s in signers] == [("team", 2)]
