"""Benchmark ``startup``: what a trustkit command costs before it does any work.

* ``trustkit --help`` (lists every command; their modules are not imported) against the
  issue's absolute goal, with ``notary --help`` beside it for scale;
* the floors under it, trustkit only: the interpreter alone (``python -c pass``) and the
  interpreter plus click (``python -c "import click"``), so the table shows how much of
  ``--help`` is trustkit's own.

Every command runs from cached bytecode (harness rules) with hyperfine, medians compared.
"""

from __future__ import annotations

import peers
from harness import Bench, Result, Row, expect_output, hyperfine, run_checked, trustkit_program, trustkit_python

NAME = "startup"
HELP_LIMIT = 0.050  # issue 15: trustkit --help within 50 ms


def run() -> Result:
    result = Result(NAME)
    with Bench() as bench:  # for its environment (bytecode cache, no caller DOCKER_* variables)
        env = bench.tk_env
        help_command = [*trustkit_program(), "--help"]
        expect_output(run_checked(help_command, env, what="trustkit --help"), "verify", "trustkit --help")
        notary_help = [peers.require("notary"), "--help"]
        expect_output(run_checked(notary_help, env, what="notary --help"), "lookup", "notary --help")

        trustkit = hyperfine(help_command, env, name="trustkit --help", warmup=3, runs=30)
        notary = hyperfine(notary_help, env, name="notary --help", warmup=3, runs=30)
        result.rows.append(Row("`trustkit --help` (vs `notary --help`)", trustkit, notary, limit=HELP_LIMIT))
        for label, code in (("interpreter start-up (`python -c pass`)", "pass"), ("+ `import click`", "import click")):
            figure = hyperfine([str(trustkit_python()), "-c", code], env, name=label, warmup=3, runs=30)
            result.rows.append(Row(f"floor: {label}", figure, note="trustkit only"))
    result.notes.append("--help's goal is absolute (issue 15); the floors are what any click CLI in Python pays")
    return result
