"""Layer `cli`: click commands, one module per group.  The only layer that prints, prompts or
exits; every TrustkitError becomes one line on stderr and exit status 1 (no traceback unless
``--debug``).  Commands are registered by name (:data:`COMMANDS`) and their module is imported
only when one of them runs, so ``trustkit --help`` and each command pay only for what they use
(tests/unit/test_lazy_imports.py)."""

from __future__ import annotations

import importlib
import sys
from typing import NoReturn

import click

from trustkit import __version__
from trustkit.cli.context import Context, pass_context

#: Every top-level command: name -> ("module:attribute", the first paragraph of its help).  The
#: help is repeated here so that ``trustkit --help`` lists the commands without importing them;
#: tests/unit/test_lazy_imports.py checks both columns against the commands themselves.
COMMANDS: dict[str, tuple[str, str]] = {
    "bundle": ("trustkit.cli.delegation:bundle", "Client bundles (UCP / MKE / MSR)."),
    "init": (
        "trustkit.cli.trustcmds:init",
        "Initialise trust for REPO and publish it: root and targets keys (the root key is reused if the "
        "store has one), snapshot and timestamp keys held by the server.",
    ),
    "inspect": (
        "trustkit.cli.trustcmds:inspect",
        "Show signed tags, signers and administrative keys (the `docker trust inspect` shape).",
    ),
    "key": ("trustkit.cli.keys:key", "Manage signing keys in the trust directory (notary/docker compatible)."),
    "login": (
        "trustkit.cli.push:login",
        "Check credentials against REGISTRY and store them in $DOCKER_CONFIG/config.json, as `docker login` "
        "does (or in the credential helper it names). The password comes from --password-stdin or a terminal "
        "prompt, never from the command line.",
    ),
    "logout": (
        "trustkit.cli.push:logout",
        "Remove REGISTRY's stored credentials, from $DOCKER_CONFIG/config.json and from the credential helper "
        "that holds them, as `docker logout` does.",
    ),
    "metadata": ("trustkit.cli.metadata:metadata", "Inspect trust metadata files (root.json, targets.json, ...)."),
    "mirror": (
        "trustkit.cli.mirror:mirror",
        "Copy the trust data of each GUN from the server --from to the server --to.",
    ),
    "publish": ("trustkit.cli.publish:publish", "Publish the changes of REPO signed with --offline."),
    "push": (
        "trustkit.cli.push:push",
        "Push SOURCE to the registry as IMAGE:TAG; sign it when content trust is on.",
    ),
    "refresh": (
        "trustkit.cli.delegation:refresh",
        "Re-sign roles before (or after) they expire, like `notary witness` + publish.",
    ),
    "repo": ("trustkit.cli.server:repo", "Repository settings on a trustkit server."),
    "revoke": (
        "trustkit.cli.trustcmds:revoke",
        "Remove a tag's signature (or, without a tag, every signed tag) and publish.",
    ),
    "server": (
        "trustkit.cli.server:server",
        "Run the Notary-compatible trust server (SQLite built in, PostgreSQL for several processes).",
    ),
    "sign": (
        "trustkit.cli.trustcmds:sign",
        "Sign IMAGE:TAG (several tags of one repository in one publish) and publish.",
    ),
    "signer": ("trustkit.cli.delegation:signer", "Delegate signing to team keys (docker trust signer)."),
    "status": (
        "trustkit.cli.publish:status",
        "List the changes of REPO signed offline and not yet published (like `notary status`).",
    ),
    "tag": (
        "trustkit.cli.push:tag",
        "Tag SOURCE_IMAGE (IMAGE:TAG or IMAGE@DIGEST) as IMAGE:TAG in the same registry, without uploading "
        "(blobs of another repository are mounted); sign it when content trust is on.",
    ),
    "verify": (
        "trustkit.cli.trustcmds:verify",
        "Verify that IMAGE:TAG is signed and print its trusted digest and size.",
    ),
}


def load_command(name: str) -> click.Command:
    """Import the module of the top-level command ``name`` and return the command."""
    module_name, attribute = COMMANDS[name][0].split(":")
    command = getattr(importlib.import_module(module_name), attribute)
    if name == "key":  # `key rotate` lives with the delegation commands (it republishes the GUN)
        from trustkit.cli.delegation import key_rotate

        command.add_command(key_rotate)
    if not isinstance(command, click.Command):  # pragma: no cover - a wrong table entry
        raise TypeError(f"{COMMANDS[name][0]} is not a click command")
    return command


class LazyGroup(click.Group):
    """A group whose commands are imported when one is invoked (or its own help is asked for);
    the group's help lists them from :data:`COMMANDS` without importing anything."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            self.add_command(load_command(cmd_name), cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # A stand-in with the same first paragraph shortens its help exactly as the command would.
        rows = [
            (name, self.commands.get(name) or click.Command(name, help=COMMANDS[name][1]))
            for name in self.list_commands(ctx)
        ]
        rows = [(name, command) for name, command in rows if not command.hidden]
        if rows:
            limit = formatter.width - 6 - max(len(name) for name, _ in rows)
            with formatter.section("Commands"):
                formatter.write_dl([(name, command.get_short_help_str(limit)) for name, command in rows])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="trustkit", message="%(prog)s %(version)s")
@click.option(
    "--trust-dir",
    type=click.Path(file_okay=False),
    envvar="TRUSTKIT_TRUST_DIR",
    help="Trust directory (default: $DOCKER_CONFIG/trust, else ~/.docker/trust).",
)
@click.option(
    "--server",
    "server_url",
    metavar="URL",
    help="Notary server (default: $DOCKER_CONTENT_TRUST_SERVER, else derived from the registry).",
)
@click.option("--tls-ca", type=click.Path(dir_okay=False), help="CA bundle for the trust server.")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    envvar="TRUSTKIT_CONFIG",
    help="Client config with notary's trust_pinning section (default: ~/.config/trustkit/config.json).",
)
@click.option(
    "--staging-dir",
    type=click.Path(file_okay=False),
    envvar="TRUSTKIT_STAGING_DIR",
    help="Shared folder where partly signed threshold roles wait for co-signers (default: the trust server's "
    "staging area when it has one, as trustkit server does; else <trust dir>/staged).",
)
@click.option("--no-tofu", is_flag=True, help="Refuse repositories whose root is not pinned (no trust on first use).")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def cli(
    ctx: click.Context,
    trust_dir: str | None,
    server_url: str | None,
    tls_ca: str | None,
    config_file: str | None,
    staging_dir: str | None,
    no_tofu: bool,
    debug: bool,
) -> None:
    """Sign container images the Docker Content Trust way."""
    ctx.obj = Context(
        trust_dir=trust_dir,
        server_url=server_url,
        tls_ca=tls_ca,
        debug=debug,
        config_file=config_file,
        no_tofu=no_tofu,
        staging_dir=staging_dir,
    )


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the click group, turning errors into exit statuses."""
    from trustkit.cli.output import emit_error_json, emit_json, error_object, wants_json

    args = argv if argv is not None else sys.argv[1:]
    debug = "--debug" in args
    as_json = wants_json(args)

    def fail(exc: BaseException, message: str, status: int) -> NoReturn:
        if as_json:
            emit_error_json(exc, message, status)
        sys.exit(status)

    try:
        cli.main(args=argv, prog_name="trustkit", standalone_mode=False)
    except click.exceptions.Abort as exc:
        click.echo("trustkit: aborted", err=True)
        fail(exc, "aborted", 130)
    except click.ClickException as exc:
        exc.show()
        fail(exc, exc.format_message(), exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt as exc:
        click.echo("trustkit: interrupted", err=True)
        fail(exc, "interrupted", 130)
    except Exception as exc:
        # (the error classes are imported only when one is raised: --help never needs them)
        from trustkit.errors import TrustkitError

        if debug:
            raise
        if isinstance(exc, TrustkitError):
            click.echo(f"trustkit: error: {exc}", err=True)
            to_json = getattr(getattr(exc, "summary", None), "to_json", None)
            if as_json and callable(to_json):  # pushed but not signed: the push summary, and the error in it
                emit_json({**to_json(), "signed": False, "error": error_object(exc, str(exc), exc.exit_code)})
                sys.exit(exc.exit_code)
            fail(exc, str(exc), exc.exit_code)
        if isinstance(exc, OSError):
            message = f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}"
            click.echo(f"trustkit: error: {message}", err=True)
            fail(exc, message, 1)
        # the one place that turns a bug into a clear line
        click.echo(f"trustkit: internal error: {type(exc).__name__}: {exc} (run with --debug for details)", err=True)
        fail(exc, f"internal error: {type(exc).__name__}: {exc}", 1)


__all__ = ["COMMANDS", "cli", "load_command", "main", "pass_context"]
