"""Layer `cli`: ``trustkit server`` and ``trustkit repo immutable``."""

from __future__ import annotations

import click

from trustkit.cli.context import Context, pass_context
from trustkit.cli.migrate import server_import
from trustkit.cli.repos import repo_list, repo_show


@click.group("server", invoke_without_command=True)
@click.option("--listen", help="HOST:PORT (default 127.0.0.1:4443).")
@click.option("--database", help="sqlite:///PATH or postgresql://... (default: SQLite in the user's data folder).")
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True))
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True))
@click.option("--workers", type=int, help="Worker processes (use PostgreSQL for more than one machine).")
@click.option(
    "--passphrase-file",
    type=click.Path(dir_okay=False),
    help="Passphrase for the server's keys (or TRUSTKIT_SERVER_PASSPHRASE).",
)
@click.option("--auth", type=click.Choice(["none", "htpasswd", "token"]), help="How clients authenticate.")
@click.option(
    "--htpasswd", type=click.Path(dir_okay=False, exists=True), help="bcrypt htpasswd file (--auth htpasswd)."
)
@click.option("--admin", "admins", multiple=True, help="htpasswd user allowed to delete, rotate and change settings.")
@click.option("--token-realm", help="Token service URL (--auth token).")
@click.option("--token-service", help="Expected token audience.")
@click.option("--token-issuer", help="Expected token issuer.")
@click.option("--token-root-certs", type=click.Path(dir_okay=False, exists=True), help="CA bundle that signs tokens.")
@click.option(
    "--public-read",
    is_flag=True,
    default=None,
    help="Anonymous clients may pull every repository (notary list, docker trust inspect, the web page); "
    "push, delete, key rotation and settings still need a login.  With --auth htpasswd the built-in "
    "token service gives anonymous clients a pull-only token; with --auth token, your token service "
    'must do so for notary clients.  Also TRUSTKIT_SERVER_PUBLIC_READ=1 or "public_read": true.',
)
@click.option(
    "--login-burst",
    type=click.IntRange(min=0),
    help="Failed logins (token service and web page) a client address may make before it is slowed "
    "down (default 10; 0 turns the limit off).  Then it gets 429 with Retry-After.  Counted per "
    "worker process, per address (per /64 for IPv6).",
)
@click.option(
    "--login-interval",
    type=click.IntRange(min=1),
    help="After the burst, one more login attempt per this many seconds (default 6).",
)
@click.option(
    "--gun-prefix",
    "gun_prefixes",
    multiple=True,
    help="Serve only repositories under these prefixes (others: 404; a publish: INVALID_GUN).",
)
@click.option(
    "--header-timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds a client has to send a request's head before its connection is closed (default 30).",
)
@click.option(
    "--body-timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds a request body may stall before its connection is closed (default 30).",
)
@click.option(
    "--key-algorithm",
    type=click.Choice(["ecdsa", "ed25519", "rsa"]),
    help="Type of the timestamp and snapshot keys the server makes for new repositories (default ecdsa: "
    "P-256, as notary-signer's key_algorithm made them on Docker Hub, Harbor and MSR).  Existing "
    "repositories keep their keys until the root holder rotates them "
    "(trustkit key rotate GUN timestamp --server-managed).",
)
@click.option(
    "--registry",
    help="Registry URL (http(s)://HOST[:PORT]) whose tags the web page compares with the signed ones: "
    "a badge per tag says whether the registry serves the signed manifest, another one (drift), or none.",
)
@click.option(
    "--registry-ca", type=click.Path(dir_okay=False, exists=True), help="CA file for --registry and its token service."
)
@click.option(
    "--registry-user",
    help="Login for --registry (basic or its token service); the password from TRUSTKIT_SERVER_REGISTRY_PASSWORD "
    'or "registry_password" in --config.',
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, exists=True),
    help="JSON file with the same settings (flags and TRUSTKIT_SERVER_* variables override it).",
)
@click.pass_context
def server(ctx: click.Context, /, config_file: str | None, **flags: object) -> None:  # ctx is never in **flags
    """Run the Notary-compatible trust server (SQLite built in, PostgreSQL for several processes).

    `trustkit server import` takes over a notary-server deployment (see its --help)."""
    from trustkit.server.config import ServerConfig, describe, run

    if ctx.invoked_subcommand is not None:
        return

    config = ServerConfig.load(config_file, flags)
    click.echo(describe(config), err=True)  # one JSON line, the log's first
    run(config)


server.add_command(server_import)


@click.group()
def repo() -> None:
    """Repository settings on a trustkit server."""


@repo.command("immutable")
@click.argument("repository")
@click.option("--off", is_flag=True, help="Make it mutable again.")
@pass_context
def immutable(ctx: Context, repository: str, off: bool) -> None:
    """Make REPOSITORY immutable: its signed tags can no longer change digest or disappear, and
    its trust data cannot be deleted; new tags can still be signed.  Needs the admin scope."""
    from trustkit.errors import NotSignedError
    from trustkit.reference import parse_repository

    reference = parse_repository(repository)
    session = ctx.trust_session(reference)
    if session.load() is None:
        raise NotSignedError(
            f"{reference.gun} has no trust data on the trust server: "
            f"nothing to make {'mutable' if off else 'immutable'}",
            hint=f"sign a tag first (`trustkit sign {reference.familiar}:TAG`), or check the repository name",
        )
    session.client.set_settings({"immutable": not off})
    click.echo(f"{reference.gun} is {'mutable' if off else 'immutable'} now")


repo.add_command(repo_list)
repo.add_command(repo_show)

COMMANDS = [server, repo]
