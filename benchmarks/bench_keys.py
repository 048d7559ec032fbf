"""Benchmark ``keys``: key generation.

Peer comparison (whole commands, hyperfine --warmup 2 --runs 10):

* trustkit: ``trustkit --trust-dir D key generate bench --dir X`` — an ECDSA P-256 key,
  encrypted into ``D/private``, plus ``X/bench.pub``. ``--prepare`` deletes ``X/bench.pub``
  before every run, because trustkit refuses to overwrite an existing public key file.
* notary: ``notary -d D key generate ecdsa --role targets/bench`` — the same key type, encrypted
  into ``D/private`` (notary prints the public key instead of writing a file).

Then trustkit's in-process library throughput, which has no peer equivalent (notary is only
reachable as a CLI from here), printed as absolute numbers:

* keys/s: ``generate("ecdsa")`` + ``KeyStore.add`` (PKCS#8 encryption + atomic 0600 write);
* signatures/s and verifications/s: ECDSA P-256 over a ~1 KB canonical targets payload, with
  ``CryptoSigner.sign`` and ``PublicKey.verify``.
"""

from __future__ import annotations

import datetime
import tempfile

from harness import (
    Bench,
    Result,
    Row,
    expect_output,
    fake_digest,
    hyperfine,
    log,
    peers,
    run_checked,
    throughput,
)
from trustkit.encoding import canonical_json, format_expires
from trustkit.keys import CryptoSigner, EnvPassphrases, KeyStore, generate
from trustkit.metadata import FileMeta, Targets

NAME = "keys"
PAYLOAD_BYTES = 1024


def run() -> Result:
    result = Result(NAME)
    # Key generation needs no server, but the benchmark starts one like the others do, so notary
    # runs with the same client config (remote server + CA) as everywhere else.
    with Bench() as bench:
        tk_store, pub_dir = bench.path("trustkit-trust"), bench.path("pub")
        pub_dir.mkdir()
        tk_command = bench.trustkit(tk_store, "key", "generate", "bench", "--dir", str(pub_dir))
        tk_prepare = ["rm", "-f", str(pub_dir / "bench.pub")]

        notary = bench.notary(bench.path("notary-trust"))
        nt_command = notary.argv("-d", str(notary.trust_dir), "key", "generate", "ecdsa", "--role", "targets/bench")

        # One checked run of each first: a failure here shows the tool's own message, and it
        # proves the commands do what the benchmark claims.
        expect_output(
            run_checked(tk_command, bench.tk_env, what="trustkit key generate"),
            "Generated ecdsa key",
            "trustkit key generate",
        )
        expect_output(
            run_checked(nt_command, notary.env, what="notary key generate"),
            "Generated new ecdsa targets/bench key",
            "notary key generate",
        )

        trustkit = hyperfine(tk_command, bench.tk_env, name="trustkit key generate", prepare=tk_prepare)
        notary_fig = hyperfine(nt_command, notary.env, name="notary key generate")
        result.rows.append(Row("key generate (ecdsa, whole command)", trustkit, notary_fig, target=4.0))  # issue 15

    result.rows.extend(library_rows())
    result.notes.append(
        "library rows are trustkit only: notary has no equivalent in-process API to call from "
        "here, so they are absolute numbers with no ratio"
    )
    return result


def targets_payload(min_bytes: int = PAYLOAD_BYTES) -> bytes:
    """Canonical JSON of a targets role with just enough docker-style tags to reach
    ``min_bytes``: what a signer signs when publishing a small repository."""
    expires = format_expires(datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC))
    targets = Targets(expires=expires, version=2)
    index = 0
    while len(payload := canonical_json(targets.to_dict())) < min_bytes:
        targets.targets[f"tag{index}"] = FileMeta.for_digest(fake_digest(index), 1000 + index)
        index += 1
    return payload


def library_rows() -> list[Row]:
    """In-process throughput of trustkit's key layer (no subprocesses, no network)."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="trustkit-bench-keys-") as scratch:
        store = KeyStore(scratch, EnvPassphrases(environ={}))  # passphrase given explicitly below

        def generate_and_store() -> None:
            store.add(generate("ecdsa"), role="bench", passphrase=peers.REPO_PASSPHRASE)

        log("library: ecdsa generate + encrypt + store")
        rows.append(
            Row(
                "library: ecdsa generate+encrypt+store",
                throughput(generate_and_store, "keys/s"),
                note="no peer equivalent",
            )
        )

    payload = targets_payload()
    signer = CryptoSigner(generate("ecdsa"))
    public = signer.public_key
    signature = signer.sign(payload)
    if not public.verify(signer.method, payload, signature):
        raise AssertionError("a fresh ECDSA signature does not verify; the library is broken")

    log(f"library: ECDSA P-256 sign/verify over a {len(payload)}-byte canonical targets payload")
    rows.append(
        Row(
            f"library: ECDSA P-256 sign ({len(payload)} B targets)",
            throughput(lambda: signer.sign(payload), "sigs/s"),
            note="no peer equivalent",
        )
    )
    rows.append(
        Row(
            f"library: ECDSA P-256 verify ({len(payload)} B targets)",
            throughput(lambda: public.verify("ecdsa", payload, signature), "verifs/s"),
            note="no peer equivalent",
        )
    )
    return rows
