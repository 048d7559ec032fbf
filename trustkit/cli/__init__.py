"""Layer `cli`: click commands, one module per group.  The only layer that prints, prompts or
exits; every TrustkitError becomes one line on stderr and exit status 1 (no traceback unless
``--debug``).  Heavy imports happen inside commands so ``trustkit --version`` stays fast."""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from trustkit import __version__
from trustkit.cli.context import Context, pass_context


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
    help="Shared folder where partly signed threshold roles wait for co-signers (default: <trust dir>/staged).",
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


def _register() -> None:
    from trustkit.cli import delegation, mirror, server, trustcmds
    from trustkit.cli import push as push_commands
    from trustkit.cli.keys import key
    from trustkit.cli.metadata import metadata

    key.add_command(delegation.key_rotate)
    cli.add_command(key)
    cli.add_command(metadata)
    for command in (
        trustcmds.COMMANDS + delegation.COMMANDS + server.COMMANDS + push_commands.COMMANDS + mirror.COMMANDS
    ):
        cli.add_command(command)


_register()


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the click group, turning errors into exit statuses."""
    from trustkit.cli.output import emit_error_json, emit_json, error_object, wants_json
    from trustkit.errors import TrustkitError

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
    except TrustkitError as exc:
        if debug:
            raise
        click.echo(f"trustkit: error: {exc}", err=True)
        to_json = getattr(getattr(exc, "summary", None), "to_json", None)
        if as_json and callable(to_json):  # pushed but not signed: the push summary, and the error in it
            emit_json({**to_json(), "signed": False, "error": error_object(exc, str(exc), exc.exit_code)})
            sys.exit(exc.exit_code)
        fail(exc, str(exc), exc.exit_code)
    except KeyboardInterrupt as exc:
        click.echo("trustkit: interrupted", err=True)
        fail(exc, "interrupted", 130)
    except OSError as exc:
        if debug:
            raise
        message = f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}"
        click.echo(f"trustkit: error: {message}", err=True)
        fail(exc, message, 1)
    except Exception as exc:  # the one place that turns a bug into a clear line
        if debug:
            raise
        click.echo(f"trustkit: internal error: {type(exc).__name__}: {exc} (run with --debug for details)", err=True)
        fail(exc, f"internal error: {type(exc).__name__}: {exc}", 1)


__all__ = ["cli", "main", "pass_context"]
