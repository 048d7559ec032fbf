"""Run trustkit's benchmarks against the real peer and print trustkit's figures beside notary's.

    python benchmarks/run.py [NAME ...]       # ./dev bench [NAME ...]; no NAME: all of them

Each benchmark starts its own notary-server (tests/peers.py), runs trustkit and the ``notary``
CLI against it in the same run, and reports ``ratio = trustkit / notary`` (below 1: trustkit is
faster), checked against the target the issue set where there is one. The table goes to stdout,
progress to stderr, and a compact JSON summary to ``benchmarks/results/latest.json`` (a run of
some benchmarks only: ``last-partial.json``, so the full run's figures stay).

Benchmarks are run on demand, never as part of the test suite (DESIGN.md, Conventions).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
import traceback
from pathlib import Path

import bench_keys
import bench_lookup_10k
import bench_push
import bench_server
import bench_sign_2000
import bench_sign_one
import bench_startup
from harness import Result, machine_info

BENCHMARKS = {
    module.NAME: module
    for module in (
        bench_startup,
        bench_keys,
        bench_sign_one,
        bench_sign_2000,
        bench_lookup_10k,
        bench_push,
        bench_server,
    )
}
RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
# A run of some benchmarks only does not replace the full run's figures, which the README cites.
PARTIAL_RESULTS = RESULTS.with_name("last-partial.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"benchmarks to run (default: all): {', '.join(BENCHMARKS)}"
    )
    parser.add_argument(
        "--json",
        type=Path,
        help=f"where to write the summary (default: {RESULTS.name} for a full run, {PARTIAL_RESULTS.name} otherwise)",
    )
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    names = list(dict.fromkeys(args.names)) or list(BENCHMARKS)
    if args.json is None:
        args.json = RESULTS if set(names) == set(BENCHMARKS) else PARTIAL_RESULTS

    machine = machine_info()
    print("trustkit benchmarks (ratio = trustkit / notary; < 1 means trustkit is faster)")
    for key, value in machine.items():
        print(f"  {key:<10} {value}")
    sys.stdout.flush()

    results = []
    for name in names:
        print(f"\n== {name}", flush=True)
        started = time.perf_counter()
        try:
            result = BENCHMARKS[name].run()
        except Exception as exc:  # noqa: BLE001 - report the failure, carry on with the rest
            traceback.print_exc()
            result = Result(name, error=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        result.seconds = time.perf_counter() - started
        print_result(result)
        results.append(result)

    write_json(args.json, machine, results)
    print(f"\nsummary written to {args.json}")
    failed = [r.name for r in results if r.error]
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def print_result(result: Result) -> None:
    """One table per benchmark: operation | trustkit | notary | ratio | target."""
    if result.error:
        print(f"  ERROR: {result.error}")
    header = ["operation", "trustkit", "notary", "ratio", "target"]
    lines = []
    for row in result.rows:
        ratio = row.ratio
        target = f"{row.target_text} {'met' if row.met else 'NOT met'}" if row.met is not None else ""
        lines.append(
            [
                row.operation,
                row.trustkit.text(),
                row.notary.text() if row.notary else f"n/a ({row.note})" if row.note else "n/a",
                f"{ratio:.2f}" if ratio is not None else "-",
                target,
            ]
        )
    if lines:
        widths = [max(len(cells[i]) for cells in [header, *lines]) for i in range(len(header))]
        for cells in [header, ["-" * w for w in widths], *lines]:
            print("  " + "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip())
    for note in result.notes:
        print(f"  note: {note}")
    print(f"  ({result.seconds:.0f} s)")


def write_json(path: Path, machine: dict[str, str], results: list[Result]) -> None:
    """A small summary (no per-run samples) of this run's benchmarks."""
    summary = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "ratio": "trustkit / notary (< 1: trustkit faster)",
        "benchmarks": {r.name: r.to_json() for r in results},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
