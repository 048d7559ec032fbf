"""On a terminal trustkit asks for passphrases (twice for a new key) instead of failing."""

import os
import sys

import pexpect

from trustkit.keys import KeyStore


def spawn(tmp_path, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_CONTENT_TRUST", "NOTARY_")) and k != "CI"}
    return pexpect.spawn(
        sys.executable,
        ["-m", "trustkit", "--trust-dir", str(tmp_path / "trust"), *args],
        env=env,
        encoding="utf-8",
        timeout=30,
    )


def test_new_key_passphrase_is_asked_twice_and_checked(tmp_path):
    child = spawn(tmp_path, "key", "generate", "alice", "--dir", str(tmp_path))
    child.expect('Enter a new passphrase for signer "alice" key')
    child.sendline("short")
    child.expect("Repeat passphrase")
    child.sendline("short")
    child.expect("at least 8 characters")
    child.expect("Enter a new passphrase")
    child.sendline("long-enough-passphrase")
    child.expect("Repeat passphrase")
    child.sendline("long-enough-passphrase")
    child.expect("Public key written")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    keyid = KeyStore(tmp_path / "trust", lambda r: "").list()[0].keyid
    store = KeyStore(tmp_path / "trust", lambda r: "long-enough-passphrase")
    assert store.load(keyid)[0]


def test_wrong_passphrase_is_asked_again_then_refused(tmp_path):
    store = KeyStore(tmp_path / "trust", lambda r: "right-passphrase")
    from trustkit.keys import generate

    stored = store.add(generate(), role="targets", gun="example.com/a/b")
    (tmp_path / "new").write_text("another-passphrase")
    child = spawn(tmp_path, "key", "passwd", stored.keyid, "--new-passphrase-file", str(tmp_path / "new"))
    for _ in range(3):
        child.expect("Enter passphrase for repository key")
        child.sendline("wrong")
    child.expect("wrong passphrase")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
