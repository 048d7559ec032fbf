"""cli: every bad input gives one clear line and an exit status, never a traceback, and leaves
the key store untouched."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from trustkit.cli import main
from trustkit.keys import generate

PASS = "test-passphrase"


@pytest.fixture
def run(tmp_path, monkeypatch, capsys):
    """Run the CLI in-process with a fresh trust dir and no passphrase variables."""
    for name in (
        "DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE",
        "DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE",
        "NOTARY_ROOT_PASSPHRASE",
        "NOTARY_TARGETS_PASSPHRASE",
        "NOTARY_SNAPSHOT_PASSPHRASE",
        "NOTARY_DELEGATION_PASSPHRASE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.chdir(tmp_path)

    def invoke(*args, env=None):
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
        out, err = capsys.readouterr()
        for key in env or {}:
            monkeypatch.delenv(key)
        return code, out, err

    return invoke


REPO_ENV = {"DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE": PASS}


def private_files(tmp_path):
    folder = tmp_path / "docker" / "trust" / "private"
    return sorted(folder.iterdir()) if folder.exists() else []


def assert_one_line_error(code, err, needle):
    assert code == 1
    assert err.startswith("trustkit: error: ") or err.startswith("Error: ")
    assert "Traceback" not in err
    assert needle in err


def test_version(run):
    code, out, _ = run("--version")
    assert code == 0 and out.startswith("trustkit ")


def test_generate_list_export_remove(run, tmp_path):
    code, out, err = run("key", "generate", "alice", "--format", "json", env=REPO_ENV)
    assert code == 0, err
    info = json.loads(out)
    assert Path(info["public_key"]).read_text().startswith("-----BEGIN PUBLIC KEY-----\nrole: alice")
    code, out, _ = run("key", "list", "--format", "json")
    assert [k["keyid"] for k in json.loads(out)] == [info["keyid"]]
    code, out, _ = run("key", "export", info["keyid"][:8])
    assert out.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----\nrole: alice\n")
    code, _, err = run("key", "remove", info["keyid"])
    assert code == 2 and "--yes" in err  # no TTY: refuses rather than prompting
    code, _, _ = run("key", "remove", info["keyid"], "--yes")
    assert code == 0 and private_files(tmp_path) == []


def test_no_passphrase_fails_at_once_naming_the_variable(run, tmp_path):
    code, _, err = run("key", "generate", "alice")
    assert_one_line_error(code, err, "DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE")
    assert private_files(tmp_path) == []
    assert not (tmp_path / "alice.pub").exists()


def test_passwd(run, tmp_path):
    _, out, _ = run("key", "generate", "alice", "--format", "json", env=REPO_ENV)
    keyid = json.loads(out)["keyid"]
    (tmp_path / "new").write_text("another-passphrase\n")
    code, _, err = run("key", "passwd", keyid, "--new-passphrase-file", str(tmp_path / "new"), env=REPO_ENV)
    assert code == 0, err
    code, _, err = run("key", "passwd", keyid, "--new-passphrase-file", str(tmp_path / "new"), env=REPO_ENV)
    assert_one_line_error(code, err, "does not decrypt")  # the old passphrase no longer works


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"garbage\n", "holds no PEM block"),
        (
            b"-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n",
            "truncated",
        ),
        (
            b"-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n",
            "not a PKCS#8 private key",
        ),
        (b"-----BEGIN PUBLIC KEY-----\nMAA=\n-----END PUBLIC KEY-----\n", "holds no private key"),
    ],
)
def test_key_load_bad_pem(run, tmp_path, content, needle):
    path = tmp_path / "bad.pem"
    path.write_bytes(content)
    path.chmod(0o600)
    code, _, err = run("key", "load", str(path), env=REPO_ENV)
    assert_one_line_error(code, err, needle)
    assert private_files(tmp_path) == []


def test_key_load_wrong_passphrase_is_distinct(run, tmp_path):
    path = tmp_path / "enc.pem"
    path.write_bytes(
        generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"right-passphrase"),
        )
    )
    path.chmod(0o600)
    code, _, err = run(
        "key",
        "load",
        str(path),
        "--name",
        "ci",
        env={"DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE": "wrong-passphrase"},
    )
    assert_one_line_error(code, err, "passphrase")
    assert "does not decrypt" in err
    assert private_files(tmp_path) == []


@pytest.mark.parametrize("headers", [False, True])
@pytest.mark.parametrize("fmt", ["PKCS8", "TraditionalOpenSSL"])
def test_key_load_takes_any_pem(run, tmp_path, headers, fmt):
    """docker/cli #1095 silently dropped some keys; every form must load."""
    pem = (
        generate()
        .private_bytes(
            serialization.Encoding.PEM,
            getattr(serialization.PrivateFormat, fmt),
            serialization.NoEncryption(),
        )
        .decode()
    )
    if headers:
        first, rest = pem.split("\n", 1)
        pem = f"{first}\nrole: teamkey\n\n{rest}"
    path = tmp_path / "k.pem"
    path.write_text(pem)
    path.chmod(0o600)
    code, out, err = run("key", "load", str(path), "--format", "json", env=REPO_ENV)
    assert code == 0, err
    assert json.loads(out)["role"] == ("teamkey" if headers else "signer")
    assert len(private_files(tmp_path)) == 1


@pytest.mark.parametrize("name", ["Alice", "targets/../x", "", "a" * 256])
def test_invalid_key_name(run, tmp_path, name):
    code, _, err = run("key", "generate", name, env=REPO_ENV)
    assert_one_line_error(code, err, "key name")
    assert private_files(tmp_path) == []


def _doc(version="1", extra=""):
    return (
        '{"signed":{"_type":"Targets","delegations":{"keys":{},"roles":[]},"expires":"2030-01-01T00:00:00Z",'
        '"targets":{}' + extra + ',"version":' + version + '},"signatures":[]}'
    ).encode()


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (_doc(extra=',"targets":{}'), "duplicate key"),
        (_doc("NaN"), "NaN"),
        (_doc("true"), "must be an integer, not bool"),
        (_doc("9" * 5000), "too large"),
        (b'{"signed":' + b"[" * 5000 + b"]" * 5000 + b',"signatures":[]}', "nested"),
        (b"\x00\x01", "not valid JSON"),
    ],
)
def test_metadata_check_bad_json(run, tmp_path, content, needle):
    path = tmp_path / "targets.json"
    path.write_bytes(content)
    code, _, err = run("metadata", "check", str(path))
    assert_one_line_error(code, err, needle)


def test_usage_errors_exit_2(run):
    code, _, err = run("key", "generate")
    assert code == 2 and "Missing argument" in err


def test_console_script_has_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "trustkit", "--trust-dir", str(tmp_path), "key", "export", "abc"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
