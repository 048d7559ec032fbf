"""Benchmark ``sign-2000``: sign 2,000 tags of one repository.

* trustkit: one ``trustkit sign GUN --from-file FILE`` (lines ``tagN sha256:HEX SIZE``): every
  tag is signed in a single publish.
* notary: it has no bulk command, so a user scripts it: 2,000 x ``notary addhash GUN tagN SIZE
  --sha256 HEX`` (staged locally, no ``-p``) followed by one ``notary publish GUN``. The 2,000
  commands run sequentially from Python and the whole loop plus the publish is timed.

Every repetition signs into a fresh repository (its own GUN, initialised beforehand and not
timed), so all runs do the same work: 2,000 new tags into an empty, initialised repository.
Both sides are timed the same way (``time.perf_counter`` around the subprocesses).

If the notary loop projects to more than :data:`NOTARY_BUDGET_SECONDS`, notary does only
:data:`REDUCED_TAGS` tags and its time is scaled up linearly; the output then says so.

Target (from the issue): trustkit under 1/10 of notary's time.
"""

from __future__ import annotations

import time
from functools import partial

from harness import (
    Bench,
    Figure,
    Result,
    Row,
    expect_output,
    log,
    peers,
    run_checked,
    wall_time,
    write_tag_file,
)

NAME = "sign-2000"
TAGS = 2000
TARGET_RATIO = 0.1
TRUSTKIT_REPEATS = 3
NOTARY_REPEATS = 2
NOTARY_BUDGET_SECONDS = 180.0  # per notary repetition
REDUCED_TAGS = 500
PROBE = 100  # notary commands timed before deciding whether the full 2,000 fit the budget


def run() -> Result:
    result = Result(NAME)
    with Bench() as bench:
        tag_file = bench.path("tags.txt")
        tags = write_tag_file(tag_file, TAGS)
        last_tag, last_hex, _ = tags[-1]

        # ---- trustkit: one command per repetition, each into its own initialised repository.
        tk_trust = bench.path("trustkit-trust")
        tk_times = []
        for rep in range(TRUSTKIT_REPEATS):
            gun = bench.gun(f"trustkit-{rep}")
            bench.run_trustkit(tk_trust, "init", gun)
            command = bench.trustkit(tk_trust, "sign", gun, "--from-file", str(tag_file))
            log(f"trustkit sign --from-file ({TAGS} tags), repetition {rep + 1}/{TRUSTKIT_REPEATS}")
            tk_times.append(wall_time(partial(run_checked, command, bench.tk_env, what="trustkit sign --from-file")))
            expect_output(
                bench.run_trustkit(tk_trust, "verify", "--trust-only", f"{gun}:{last_tag}"),
                last_hex,
                "trustkit verify after bulk sign",
            )

        # ---- notary: N x addhash + publish per repetition, each into its own repository.
        notary = bench.notary(bench.path("notary-trust"))
        nt_times, publish_times, count = [], [], TAGS
        for rep in range(NOTARY_REPEATS):
            gun = bench.gun(f"notary-{rep}")
            notary.run("init", gun, "-p")
            log(f"notary: {count} x addhash + publish, repetition {rep + 1}/{NOTARY_REPEATS}")
            elapsed, publish, count = _notary_bulk(notary, gun, tags[:count])
            nt_times.append(elapsed)
            publish_times.append(publish)
            tag, hexdigest, _ = tags[count - 1]
            expect_output(notary.run("lookup", gun, tag), hexdigest, "notary lookup after bulk publish")

        trustkit = Figure.from_samples(tk_times)
        notary_fig = Figure.from_samples(nt_times)
        if count < TAGS:
            notary_fig = notary_fig.scaled(TAGS / count, f"scaled from {count} tags")
            result.notes.append(
                f"notary was too slow for {TAGS} tags within {NOTARY_BUDGET_SECONDS:.0f} s on this "
                f"machine: it signed {count} tags and its time was multiplied by {TAGS / count:g} "
                "(linear scaling; its single publish is scaled too, a slight overestimate)"
            )
        result.rows.append(
            Row(
                f"sign {TAGS} tags (trustkit: 1 command; notary: {TAGS} addhash + publish)",
                trustkit,
                notary_fig,
                target=TARGET_RATIO,
                target_strict=True,
            )
        )

        # Where notary's time goes: per-command process start-up and staging, versus the one publish.
        publish = Figure.from_samples(publish_times)
        per_command = (Figure.from_samples(nt_times).mean - publish.mean) / count
        result.notes.append(
            f"notary breakdown: {per_command * 1e3:.1f} ms per addhash command (staging only), "
            f"then one publish of {count} staged tags: {publish.text()}"
        )
    return result


def _notary_bulk(notary: peers.NotaryCLI, gun: str, tags: list[tuple[str, str, int]]) -> tuple[float, float, int]:
    """Stage ``tags`` with one ``notary addhash`` each, then ``notary publish``.

    Returns the wall time of the whole, the time of the publish alone, and how many tags were
    staged: after :data:`PROBE` commands the rest is projected, and if the full list would not
    fit :data:`NOTARY_BUDGET_SECONDS` the list is cut to :data:`REDUCED_TAGS`.
    """
    start = time.perf_counter()
    index = 0
    while index < len(tags):
        if index == PROBE and len(tags) > REDUCED_TAGS:
            projected = (time.perf_counter() - start) / PROBE * len(tags)
            if projected > NOTARY_BUDGET_SECONDS:
                log(f"notary projects to {projected:.0f} s for {len(tags)} tags; reducing to {REDUCED_TAGS}")
                tags = tags[:REDUCED_TAGS]
        tag, hexdigest, size = tags[index]
        run_checked(
            notary.argv("addhash", gun, tag, str(size), "--sha256", hexdigest), notary.env, what="notary addhash"
        )
        index += 1
    publish_start = time.perf_counter()
    published = run_checked(notary.argv("publish", gun), notary.env, what="notary publish")
    end = time.perf_counter()
    expect_output(published, "Successfully published", "notary publish")
    return end - start, end - publish_start, len(tags)
