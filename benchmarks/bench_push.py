"""Benchmark ``push``: ``trustkit push`` against ``skopeo copy`` into the same docker-registry.

The image: a fresh 7-layer image of about 20 MB (random, so incompressible, gzip-wrapped
layers) in an OCI layout, built by tests/images.py.  Both tools push the same layout to the same
Debian ``docker-registry`` on loopback (plain HTTP; skopeo with ``--dest-tls-verify=false``),
each into its own repository, content trust off (skopeo does not sign).

* cold: an empty registry every run.  hyperfine's ``--prepare`` runs this file with
  ``--reset``, which empties the registry's storage (it runs with no blob-descriptor cache, so
  that is safe between requests) and deletes both tools' local caches (trustkit's blob-location
  cache, skopeo's blob-info cache), so no run can skip or mount anything.
* warm: the image is already in the repository; every blob answers ``HEAD`` 200 and only the
  manifest is written again.

Peak memory is the maximum resident set size reported by ``/usr/bin/time -v`` for one run of
each, cold and warm.  Goals: a cold push no slower than skopeo; a warm re-push within 1.5x (issue 15).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import harness  # noqa: F401 - first: it puts tests/ on sys.path (for images and peers when run as --reset)
import images
import peers
from harness import Figure, Result, Row, hyperfine, log, run_checked, trustkit_program

NAME = "push"
MB = 1024 * 1024
LAYER_SIZES = [6 * MB, 4 * MB, 3 * MB, 3 * MB, 2 * MB, 1 * MB, 1 * MB]  # 20 MB in 7 layers
# skopeo, as root, keeps its blob-info cache here (c/image's default outside rootless mode).
SKOPEO_CACHES = [
    Path("/var/lib/containers/cache/blob-info-cache-v1.boltdb"),
    Path.home() / ".local/share/containers/cache/blob-info-cache-v1.boltdb",
]


def reset(paths: list[str]) -> None:
    """``--reset STORAGE [FILE...]``: empty the registry storage, delete the cache files."""
    storage, *files = map(Path, paths)
    shutil.rmtree(storage, ignore_errors=True)
    storage.mkdir(parents=True, exist_ok=True)
    for file in files:
        file.unlink(missing_ok=True)


def peak_rss_mb(argv: list[str], env: dict[str, str], *, what: str) -> float:
    """Maximum resident set size of one run, from GNU time -v."""
    time_binary = shutil.which("time", path="/usr/bin") or "/usr/bin/time"
    if not Path(time_binary).exists():
        raise peers.PeerMissing("/usr/bin/time not found; install: apt-get install -y time (./dev bench does)")
    result = run_checked([time_binary, "-v", *argv], env, what=what)
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr)
    if match is None:
        raise AssertionError(f"no peak memory in the output of {what}:\n{result.stderr[-1000:]}")
    return int(match.group(1)) / 1024


def run() -> Result:
    result = Result(NAME)
    scratch = Path(__import__("tempfile").mkdtemp(prefix="trustkit-bench-push-"))
    try:
        with peers.Registry(scratch / "registry") as registry:
            log(f"building a {len(LAYER_SIZES)}-layer image of {sum(LAYER_SIZES) // MB} MB")
            image = images.build_oci_layout(scratch / "layout", ref="v1", sizes=LAYER_SIZES)
            total = sum(p.stat().st_size for p in (image.layout / "blobs" / "sha256").iterdir())
            docker_config = scratch / "docker-config"
            docker_config.mkdir(mode=0o700)
            env = {
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("DOCKER_", "NOTARY_", "TRUSTKIT_")) and k != "PYTHONDONTWRITEBYTECODE"
            }
            env.update({"DOCKER_CONFIG": str(docker_config), "PYTHONPYCACHEPREFIX": str(scratch / "pycache")})
            tk_cache = docker_config / "trustkit" / "push-cache.json"

            trustkit = [
                *trustkit_program(),
                "push",
                f"oci:{image.layout}:v1",
                f"{registry.host_port}/bench/trustkit:v1",
                "--quiet",
            ]
            skopeo = [
                peers.require("skopeo"),
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
                f"oci:{image.layout}:v1",
                f"docker://{registry.host_port}/bench/skopeo:v1",
            ]
            prepare = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--reset",
                str(registry.storage_dir),
                str(tk_cache),
                *map(str, SKOPEO_CACHES),
            ]

            # Checked runs: both push the image, and the registry serves the same manifest digest.
            run_checked(prepare, env, what="reset")
            out = run_checked(trustkit, env, what="trustkit push").stdout
            if image.digest not in out:
                raise AssertionError(f"trustkit push did not report {image.digest}: {out}")
            run_checked(skopeo, env, what="skopeo copy")
            for repo in ("bench/trustkit", "bench/skopeo"):
                if registry.manifest_status(repo, "v1") != 200:
                    raise AssertionError(f"{repo}:v1 is not in the registry after the checked run")

            cold_tk = hyperfine(trustkit, env, name="trustkit push (cold)", prepare=prepare, warmup=1, runs=8)
            cold_sk = hyperfine(skopeo, env, name="skopeo copy (cold)", prepare=prepare, warmup=1, runs=8)
            # warm: both repositories hold the image
            run_checked(trustkit, env, what="trustkit push")
            run_checked(skopeo, env, what="skopeo copy")
            warm_tk = hyperfine(trustkit, env, name="trustkit push (warm)", warmup=2, runs=15)
            warm_sk = hyperfine(skopeo, env, name="skopeo copy (warm)", warmup=2, runs=15)

            memory = {}
            for label, argv in (("trustkit", trustkit), ("skopeo", skopeo)):
                run_checked(prepare, env, what="reset")
                memory[(label, "cold")] = peak_rss_mb(argv, env, what=f"{label} (cold)")
            run_checked(trustkit, env, what="trustkit push")
            for label, argv in (("trustkit", trustkit), ("skopeo", skopeo)):
                memory[(label, "warm")] = peak_rss_mb(argv, env, what=f"{label} (warm)")

        result.rows.append(
            Row(
                f"cold push, 7 layers / {total / MB:.1f} MB, empty registry (vs skopeo copy)",
                cold_tk,
                cold_sk,
                target=1.0,
            )
        )
        result.rows.append(Row("warm re-push, every blob present (vs skopeo copy)", warm_tk, warm_sk, target=1.5))
        for phase in ("cold", "warm"):
            tk_mb, sk_mb = memory[("trustkit", phase)], memory[("skopeo", phase)]
            result.rows.append(
                Row(
                    f"peak memory, {phase} (vs skopeo copy; ratio {tk_mb / sk_mb:.2f})",
                    Figure(tk_mb, unit="MB"),
                    Figure(sk_mb, unit="MB"),
                )
            )
        version = subprocess.run(["skopeo", "--version"], capture_output=True, text=True, check=True).stdout
        skopeo_version = version.split()[-1]
        result.notes.append(
            f"the peer column is skopeo copy (skopeo {skopeo_version}), both into Debian's docker-registry on loopback"
        )
        result.notes.append(
            f"cold: {cold_tk.center / cold_sk.center:.2f}x skopeo's wall time (medians); "
            f"warm: {warm_tk.center / warm_sk.center:.2f}x; peak RSS cold "
            f"{memory[('trustkit', 'cold')]:.0f} MB vs {memory[('skopeo', 'cold')]:.0f} MB"
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return result


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--reset":
        reset(sys.argv[2:])
    else:
        sys.exit("usage: bench_push.py --reset STORAGE [FILE...]   (run the benchmark with benchmarks/run.py push)")
