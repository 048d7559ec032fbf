"""Benchmark ``sign-one``: sign and publish one tag into an initialised repository.

* trustkit: ``trustkit sign GUN:tag1 --digest sha256:HEX --size N`` on ``.../bench/trustkit``,
  initialised beforehand with ``trustkit init``.
* notary: ``notary addhash GUN tag1 N --sha256 HEX -p`` on ``.../bench/notary``, initialised
  beforehand with ``notary init GUN -p``. ``addhash`` is the closest equivalent: ``notary add``
  would also have to read and hash a file, which trustkit's command does not do.

Both tools accept re-signing a tag that is already signed (the target is replaced and a new
version published), so every hyperfine run can use the same tag name. Each run is a full
client round: load keys, fetch the current trust data, sign, publish.

Target (issue 15): trustkit within 4x notary's wall time (moonshot 3x).
"""

from __future__ import annotations

from harness import (
    Bench,
    Result,
    Row,
    expect_output,
    fake_digest,
    hyperfine,
    run_checked,
)

NAME = "sign-one"
TARGET_RATIO = 4.0  # issue 15 (moonshot 3)
TAG, SIZE = "tag1", 1234


def run() -> Result:
    result = Result(NAME)
    digest = fake_digest(1)
    with Bench() as bench:
        # trustkit's repository, initialised and published once.
        tk_trust = bench.path("trustkit-trust")
        tk_gun = bench.gun("trustkit")
        bench.run_trustkit(tk_trust, "init", tk_gun)
        tk_command = bench.trustkit(
            tk_trust, "sign", f"{tk_gun}:{TAG}", "--digest", f"sha256:{digest}", "--size", str(SIZE)
        )

        # notary's repository, on the same server.
        notary = bench.notary(bench.path("notary-trust"))
        nt_gun = bench.gun("notary")
        notary.run("init", nt_gun, "-p")
        nt_command = notary.argv("addhash", nt_gun, TAG, str(SIZE), "--sha256", digest, "-p")

        # Checked runs: both sign the tag, and the signature is visible to the other tool.
        expect_output(run_checked(tk_command, bench.tk_env, what="trustkit sign"), f"sha256:{digest}", "trustkit sign")
        expect_output(
            run_checked(nt_command, notary.env, what="notary addhash -p"), "Successfully published", "notary addhash -p"
        )
        expect_output(notary.run("lookup", tk_gun, TAG), digest, "notary lookup of trustkit's tag")
        expect_output(
            bench.run_trustkit(tk_trust, "verify", "--trust-only", f"{nt_gun}:{TAG}"),
            digest,
            "trustkit verify of notary's tag",
        )

        trustkit = hyperfine(tk_command, bench.tk_env, name="trustkit sign")
        notary_fig = hyperfine(nt_command, notary.env, name="notary addhash -p")
        result.rows.append(Row("sign + publish one tag", trustkit, notary_fig, target=TARGET_RATIO))
    return result
