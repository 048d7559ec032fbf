"""Each command imports only what it uses (issue 15): the CLI registers its commands by name and
imports a command's module when it runs, and the heavy libraries (x509, the registry and push
code, the server's stack) load only on the paths that need them.

The commands run for real in a subprocess, against a real notary-server; a small runner calls
``trustkit.cli.main`` and then writes ``sorted(sys.modules)`` to a file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest

import peers
from trustkit.cli import COMMANDS, cli, load_command

RUNNER = """
import sys
from trustkit.cli import main
try:
    main(sys.argv[2:])
finally:
    with open(sys.argv[1], "w", encoding="utf-8") as out:
        out.write("\\n".join(sorted(sys.modules)))
"""

#: Modules no command of the signing client needs: the server's stack and the other commands.
NEVER = {
    "trustkit.server",
    "sqlalchemy",
    "starlette",
    "uvicorn",
    "psycopg",
    "pymysql",
    "jwcrypto",
    "jwt",
    "prometheus_client",
    "trustkit.cli.server",
    "trustkit.cli.mirror",
    "trustkit.cli.migrate",
}
#: ... and those that a command touching neither the network nor trust data does not need.
OFFLINE = {
    "httpx",
    "rich",
    "pygments",
    "certifi",
    "cryptography.x509",
    "securesystemslib",
    "trustkit.client",
    "trustkit.oci",
    "trustkit.ops",
    "trustkit.trust",
    "trustkit.metadata",
    "trustkit.cli.push",
    "trustkit.cli.trustcmds",
}
#: sign and verify talk to the trust server only: no registry or push code, no progress bars of ours.
TRUST_ONLY = {"trustkit.oci", "trustkit.cli.push", "trustkit.cli.delegation", "trustkit.cli.keys", "securesystemslib"}


def modules_after(argv: list[str], env: dict[str, str], tmp_path: Path) -> set[str]:
    out = tmp_path / f"modules-{len(list(tmp_path.iterdir()))}.txt"
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, str(out), *argv],
        check=False,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return set(out.read_text(encoding="utf-8").split())


def loaded(modules: set[str], forbidden: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == f or m.startswith(f + ".") for f in forbidden))


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "docker-config"
    config.mkdir()
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "NOTARY_", "TRUSTKIT_"))}
    environ.update(
        {
            "DOCKER_CONFIG": str(config),
            "DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE": peers.ROOT_PASSPHRASE,
            "DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE": peers.REPO_PASSPHRASE,
        }
    )
    return environ


def test_help_imports_no_command(env, tmp_path):
    modules = modules_after(["--help"], env, tmp_path)
    ours = sorted(m for m in modules if m.startswith("trustkit."))
    assert ours == ["trustkit.cli", "trustkit.cli.context", "trustkit.cli.output"]
    assert not loaded(modules, NEVER | OFFLINE | {"cryptography"})


def test_key_generate_touches_neither_network_nor_trust_data(env, tmp_path):
    argv = ["--trust-dir", str(tmp_path / "trust"), "key", "generate", "dev", "--dir", str(tmp_path)]
    modules = modules_after(argv, env, tmp_path)
    assert (tmp_path / "dev.pub").is_file()
    assert not loaded(modules, NEVER | OFFLINE)


def test_sign_and_verify_load_the_trust_client_only(env, tmp_path, notary_server):
    env["DOCKER_CONTENT_TRUST_SERVER"] = notary_server.url
    gun = f"{notary_server.host_port}/lazy/imports"
    base = ["--trust-dir", str(tmp_path / "trust"), "--tls-ca", str(notary_server.ca_path)]
    modules_after([*base, "init", gun], env, tmp_path)
    digest = "sha256:" + "ab" * 32
    signing = modules_after([*base, "sign", f"{gun}:v1", "--digest", digest, "--size", "12"], env, tmp_path)
    assert "trustkit.client.notary" in signing  # it did publish
    assert not loaded(signing, NEVER | TRUST_ONLY)
    verifying = modules_after([*base, "verify", "--trust-only", f"{gun}:v1"], env, tmp_path)
    assert not loaded(verifying, NEVER | TRUST_ONLY)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_command_table_matches_the_commands(name):
    """The table's module names the command, and its help line shortens to what the command's
    own help would show, at any terminal width."""
    command = load_command(name)
    assert command.name == name
    stand_in = click.Command(name, help=COMMANDS[name][1])
    for limit in (30, 45, 60, 80, 120, 400):
        assert stand_in.get_short_help_str(limit) == command.get_short_help_str(limit)


def test_every_command_of_the_modules_is_in_the_table():
    from trustkit.cli import delegation, mirror, publish, push, server, trustcmds
    from trustkit.cli.keys import key
    from trustkit.cli.metadata import metadata

    defined = {c.name for m in (trustcmds, delegation, server, push, mirror, publish) for c in m.COMMANDS}
    assert defined | {key.name, metadata.name} == set(COMMANDS)


def test_help_lists_every_command_and_key_has_rotate():
    from click.testing import CliRunner

    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    listed = result.output.split("Commands:")[1]
    assert all(f"  {name} " in listed for name in COMMANDS)
    assert "rotate" in CliRunner().invoke(cli, ["key", "--help"]).output


def test_an_unsigned_push_loads_neither_keys_nor_trust_data(env, tmp_path, registry):
    import images

    layout = images.build_oci_layout(tmp_path / "layout", ref="v1", layers=2).layout
    argv = ["push", f"oci:{layout}:v1", f"{registry.host_port}/lazy/push:v1", "--quiet"]
    cold = modules_after(argv, env, tmp_path)
    mark = registry.log_path.stat().st_size
    warm = modules_after(argv, env, tmp_path)  # every blob present: HEADs and the manifest only
    time.sleep(0.3)  # the registry logs a request after answering it
    with registry.log_path.open("rb") as log:
        log.seek(mark)
        methods = re.findall(rb"http\.request\.method=(\w+)", log.read())
    assert sorted(methods) == [b"HEAD"] * 3 + [b"PUT"]  # two layers and the config; no GET /v2/ probe
    assert "trustkit.oci.push" in warm
    signing = {"cryptography", "trustkit.keys", "trustkit.metadata", "trustkit.trust", "trustkit.ops"}
    assert not loaded(warm, NEVER | signing | {"trustkit.client.notary"})
    assert not loaded(cold, NEVER | {"trustkit.trust", "trustkit.ops", "trustkit.client.notary"})


def runtime_closure(name: str, extras: frozenset[str] = frozenset()) -> set[str]:
    """The distributions installing ``name`` (with ``extras``) brings, as pip resolves them."""
    from importlib.metadata import PackageNotFoundError, requires

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: set[tuple[str, frozenset[str]]] = set()  # a package is walked again only for other extras
    todo = [(name, extras)]
    while todo:
        current, wanted = todo.pop()
        if (canonicalize_name(current), wanted) in seen:
            continue
        seen.add((canonicalize_name(current), wanted))
        try:
            lines = requires(current) or []
        except PackageNotFoundError:
            continue  # a requirement for another platform or Python
        for line in lines:
            requirement = Requirement(line)
            environments = [{"extra": extra} for extra in ("", *wanted)]
            if requirement.marker is None or any(requirement.marker.evaluate(e) for e in environments):
                todo.append((requirement.name, frozenset(requirement.extras)))
    return {package for package, _ in seen}


def test_nothing_trustkit_installs_brings_httpxs_command_line_tool():
    """httpx imports its own command-line tool (rich, pygments) whenever they are installed: ~40 ms
    in every command that talks to a server.  trustkit's progress bars are click's, and no
    runtime dependency may bring them back (the test tools may: pytest needs pygments)."""
    closure = runtime_closure("trustkit")
    assert {"httpx", "click", "cryptography"} <= closure  # the walk does find dependencies
    assert not closure & {"rich", "pygments"}, sorted(closure & {"rich", "pygments"})
