"""Benchmark ``lookup-10k``: verify one tag in a repository that has 10,000 signed tags.

Setup (not timed): 10,000 ``tagN sha256:HEX SIZE`` lines are signed with trustkit into both
``.../bench/trustkit`` and ``.../bench/notary`` (the latter from a second trustkit trust dir:
10,000 ``notary addhash`` commands would take minutes and prove nothing more). Both repositories
then hold the same ~1 MB targets.json on the same server, written in notary's wire format.

Timed (hyperfine, whole commands):

* trustkit: ``trustkit --trust-dir T verify GUN:tag5000``
* notary:   ``notary -d T lookup GUN tag5000``

each in two variants:

* cold: ``--prepare`` deletes the trust dir before every run, so each run trusts the root on
  first use and downloads and verifies root, timestamp, snapshot and the whole targets.json;
* warm: the trust dir is kept (the warm-up runs fill it), so each run only fetches timestamp.json,
  finds snapshot and targets unchanged and reads them from the local cache.

Target (from the issue): trustkit no slower than notary (ratio ≤ 1).
"""

from __future__ import annotations

import shutil

from harness import (
    Bench,
    Result,
    Row,
    expect_output,
    hyperfine,
    run_checked,
    write_tag_file,
)

NAME = "lookup-10k"
TAGS = 10_000
LOOKUP_INDEX = 5000
TARGET_RATIO = 1.0


def run() -> Result:
    result = Result(NAME)
    with Bench() as bench:
        tag_file = bench.path("tags.txt")
        tags = write_tag_file(tag_file, TAGS)
        tag, hexdigest, size = tags[LOOKUP_INDEX]
        tk_gun, nt_gun = bench.gun("trustkit"), bench.gun("notary")
        for gun, signer_dir in ((tk_gun, "signer-trustkit"), (nt_gun, "signer-notary")):
            bench.run_trustkit(bench.path(signer_dir), "sign", gun, "--from-file", str(tag_file))

        for variant in ("cold", "warm"):
            tk_trust = bench.path(f"trustkit-{variant}")
            tk_command = bench.trustkit(tk_trust, "verify", "--trust-only", f"{tk_gun}:{tag}")
            notary = bench.notary(bench.path(f"notary-{variant}"))
            nt_command = notary.argv("-d", str(notary.trust_dir), "lookup", nt_gun, tag)

            # Checked runs (these also fill the caches for the warm variant).
            expect_output(
                run_checked(tk_command, bench.tk_env, what="trustkit verify"),
                f"sha256:{hexdigest} {size}",
                "trustkit verify",
            )
            expect_output(
                run_checked(nt_command, notary.env, what="notary lookup"), f"sha256:{hexdigest} {size}", "notary lookup"
            )

            # A cold run starts from nothing: remove the whole trust dir (notary's client config
            # lives beside it, not inside, so it survives).
            cold = variant == "cold"
            trustkit = hyperfine(
                tk_command,
                bench.tk_env,
                name=f"trustkit verify ({variant})",
                prepare=["rm", "-rf", str(tk_trust)] if cold else None,
            )
            notary_fig = hyperfine(
                nt_command,
                notary.env,
                name=f"notary lookup ({variant})",
                prepare=["rm", "-rf", str(notary.trust_dir)] if cold else None,
            )

            # State what each variant really fetched (from the server's request log).
            for label, command, env, trust_dir in (
                ("trustkit", tk_command, bench.tk_env, tk_trust),
                ("notary", nt_command, notary.env, notary.trust_dir),
            ):
                if cold:
                    shutil.rmtree(trust_dir)
                fetched = bench.requests_of(command, env, what=f"{label} ({variant})")
                result.notes.append(f"{variant}: {label} fetched {', '.join(fetched) or 'nothing'}")

            what = "fresh trust dir: download + verify all" if cold else "warm cache: timestamp only"
            result.rows.append(
                Row(f"verify tag{LOOKUP_INDEX} of {TAGS:,} ({what})", trustkit, notary_fig, target=TARGET_RATIO)
            )
        sizes = [
            len(bench.server.get(bench.server.metadata_path(gun, "targets.json")).content) for gun in (tk_gun, nt_gun)
        ]
        result.notes.append(
            f"targets.json on the server: {sizes[0] / 1e6:.2f} MB (trustkit's GUN), "
            f"{sizes[1] / 1e6:.2f} MB (notary's GUN)"
        )
    return result
