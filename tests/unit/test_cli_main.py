"""``trustkit.cli.main`` turns every failure into one line and an exit status (and, with
``--format json``, an error object on stdout); the error classes are imported only when a
failure reaches it (issue 15: ``--help`` does not load them)."""

from __future__ import annotations

import json

import pytest

import trustkit.keys.store
from trustkit.cli import main


def run(capsys, *argv):
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    out, err = capsys.readouterr()
    return exited.value.code, out, err


def test_a_trustkit_error_is_one_line_and_status_1(capsys, tmp_path):
    status, _, err = run(capsys, "--trust-dir", str(tmp_path), "key", "export", "0123456789ab", "-o", "out.key")
    assert status == 1 and err == f"trustkit: error: no key 0123456789ab in {tmp_path / 'private'} " + (
        "(run `trustkit key list` to see the keys)\n"
    )


def test_a_trustkit_error_in_json(capsys, tmp_path):
    argv = ["--trust-dir", str(tmp_path), "key", "generate", "../bad", "--dir", str(tmp_path), "--format", "json"]
    status, out, err = run(capsys, *argv)
    assert status == 1 and err.startswith("trustkit: error: key name")
    assert json.loads(out)["error"]["code"] == "key_format"


def test_an_os_error_names_the_file(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE", "a-good-passphrase")
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    status, _, err = run(
        capsys, "--trust-dir", str(not_a_dir / "trust"), "key", "generate", "k", "--dir", str(tmp_path)
    )
    assert status == 1 and err.startswith("trustkit: error: ") and str(not_a_dir) in err


def test_a_bug_is_an_internal_error_line_and_debug_shows_it(capsys, monkeypatch, tmp_path):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(trustkit.keys.store, "generate_key", broken)
    argv = ["--trust-dir", str(tmp_path / "t"), "key", "generate", "k", "--dir", str(tmp_path)]
    status, _, err = run(capsys, *argv)
    assert status == 1 and "trustkit: internal error: RuntimeError: boom" in err
    with pytest.raises(RuntimeError, match="boom"):
        main(["--debug", *argv])
