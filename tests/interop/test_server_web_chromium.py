"""The server's web page in a real browser: `trustkit server` runs as a subprocess, trustkit's CLI
publishes a repository into it over loopback HTTP, and headless Chromium (Debian's `chromium`)
renders the pages.  The DOM must show the tags, digests and signers; the screenshots are kept
under pytest's tmp dir and under artifacts/ (gitignored) for a person to look at."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.interop

ROOT_DIR = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT_DIR / "artifacts"
V1 = "sha256:" + "ab" * 32
V2 = "sha256:" + "0c" * 16 + "7e" * 16
V10 = "sha256:" + "5e" * 32


def chromium() -> str:
    """The Chromium binary; a missing one fails the test with the install command (never skips)."""
    found = shutil.which("chromium") or ("/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None)
    if not found:
        pytest.fail(
            "headless Chromium is not installed: run `apt-get install -y chromium` "
            "(Debian's chromium package; ./dev test installs it)",
            pytrace=False,
        )
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """`trustkit server` on a free loopback port with a fresh SQLite database; yields its URL."""
    port = free_port()
    log = (tmp_path / "server.log").open("wb")
    env = {**os.environ, "TRUSTKIT_SERVER_PASSPHRASE": "web-interop-passphrase"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trustkit",
            "server",
            "--listen",
            f"127.0.0.1:{port}",
            "--database",
            f"sqlite:///{tmp_path / 'db'}",
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/_notary_server/health", timeout=1, trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(f"trustkit server did not start:\n{(tmp_path / 'server.log').read_text()[-3000:]}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def trustkit(tmp_path: Path, url: str, *args: str) -> str:
    env = {
        **os.environ,
        "DOCKER_CONFIG": str(tmp_path / "docker"),
        "DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE": "web-root-passphrase",
        "DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE": "web-repo-passphrase",
    }
    env.pop("DOCKER_CONTENT_TRUST_SERVER", None)
    result = subprocess.run(
        [sys.executable, "-m", "trustkit", "--server", url, *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == 0, f"trustkit {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result.stdout


def browse(tmp_path: Path, url: str, *, screenshot: Path | None = None) -> str:
    """Run headless Chromium on ``url``: the rendered DOM (``--dump-dom``), or a screenshot."""
    profile = tmp_path / "chromium-profile"
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--no-proxy-server",
        f"--user-data-dir={profile}",
    ]
    command += [f"--screenshot={screenshot}", "--window-size=1280,900"] if screenshot else ["--dump-dom"]
    result = subprocess.run(
        [*command, url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, f"chromium failed on {url}:\n{result.stderr[-3000:]}"
    return result.stdout


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def shoot(tmp_path: Path, url: str, name: str) -> Path:
    shot = tmp_path / name
    browse(tmp_path, url, screenshot=shot)
    assert shot.exists(), f"chromium wrote no screenshot for {url}"
    assert png_size(shot) == (1280, 900)
    # A blank 1280x900 page compresses to a few kilobytes; a rendered one is far larger.
    assert shot.stat().st_size > 20_000, f"{shot} is only {shot.stat().st_size} bytes: nothing rendered?"
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copyfile(shot, ARTIFACTS / name)
    return shot


def test_the_web_page_in_headless_chromium(server: str, tmp_path: Path) -> None:
    chromium()  # fail first, with the install command, when the browser is missing
    host = server.removeprefix("http://")
    gun = f"{host}/team/app"
    trustkit(tmp_path, server, "sign", f"{gun}:v1", "--digest", V1, "--size", "1530")
    trustkit(tmp_path, server, "key", "generate", "alice", "--dir", str(tmp_path))
    trustkit(tmp_path, server, "signer", "add", "alice", gun, "--key", str(tmp_path / "alice.pub"))
    trustkit(tmp_path, server, "sign", f"{gun}:v2", "--digest", V2, "--size", "2048")
    trustkit(tmp_path, server, "sign", f"{gun}:v10", "--digest", V10, "--size", "4096")
    trustkit(tmp_path, server, "sign", f"{host}/team/web:1.0", "--digest", V1, "--size", "1530")
    trustkit(tmp_path, server, "repo", "immutable", gun)

    index = browse(tmp_path, f"{server}/")
    assert f'href="/repositories/{gun}"' in index and f"{host}/team/web" in index
    assert index.count("badge immutable") == 1

    page_url = f"{server}/repositories/{gun}"
    dom = browse(tmp_path, page_url)
    table = dom.split('<table id="tags">', 1)[1].split("</table>", 1)[0]
    rows = table.split("<tbody>", 1)[1].split("</tr>")[:-1]
    assert len(rows) == 3
    assert ">v1<" in rows[0] and V1.removeprefix("sha256:") in rows[0] and "Repo Admin" in rows[0]
    assert ">v2<" in rows[1] and V2.removeprefix("sha256:") in rows[1] and ">alice<" in rows[1]
    assert ">v10<" in rows[2] and V10.removeprefix("sha256:") in rows[2] and ">alice<" in rows[2]
    assert "badge immutable" in dom and ">alice</td>" in dom

    repository_png = shoot(tmp_path, page_url, "server-web-repository.png")
    index_png = shoot(tmp_path, f"{server}/", "server-web-index.png")
    print(f"\nscreenshots: {repository_png}, {index_png} (copies in {ARTIFACTS})")
