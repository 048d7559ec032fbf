"""Layer `cli`: ``trustkit server`` and ``trustkit repo immutable``."""

from __future__ import annotations

import click

from trustkit.cli.context import Context, pass_context


@click.command("server")
@click.option("--listen", help="HOST:PORT (default 127.0.0.1:4443).")
@click.option("--database", help="sqlite:///PATH or postgresql://... (default: SQLite in the user's data folder).")
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True))
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True))
@click.option("--workers", type=int, help="Worker processes (use PostgreSQL for more than one machine).")
@click.option("--passphrase-file", type=click.Path(dir_okay=False), help="Passphrase for the server's keys "
              "(or TRUSTKIT_SERVER_PASSPHRASE).")
@click.option("--auth", type=click.Choice(["none", "htpasswd", "token"]), help="How clients authenticate.")
@click.option("--htpasswd", type=click.Path(dir_okay=False, exists=True), help="bcrypt htpasswd file (--auth htpasswd).")
@click.option("--admin", "admins", multiple=True, help="htpasswd user allowed to delete, rotate and change settings.")
@click.option("--token-realm", help="Token service URL (--auth token).")
@click.option("--token-service", help="Expected token audience.")
@click.option("--token-issuer", help="Expected token issuer.")
@click.option("--token-root-certs", type=click.Path(dir_okay=False, exists=True), help="CA bundle that signs tokens.")
@click.option("--gun-prefix", "gun_prefixes", multiple=True, help="Accept publishes only under these prefixes.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True),
              help="JSON file with the same settings (flags and TRUSTKIT_SERVER_* variables override it).")
def server(config_file: str | None, **flags: object) -> None:
    """Run the Notary-compatible trust server (SQLite built in, PostgreSQL for several processes)."""
    from trustkit.server.config import ServerConfig, run

    run(ServerConfig.load(config_file, flags))


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
    from trustkit.reference import parse_repository

    reference = parse_repository(repository)
    session = ctx.trust_session(reference)
    session.client.set_settings({"immutable": not off})
    click.echo(f"{reference.gun} is {'mutable' if off else 'immutable'} now")


COMMANDS = [server, repo]
