"""Layer `cli`: ``trustkit server import``: take over a notary-server + notary-signer deployment."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from trustkit.server.notary_import import ImportResult, RepositoryResult


@click.command("import")
@click.option(
    "--notary-server-db",
    metavar="URL",
    help="notary-server's database (its storage.db_url: "
    "postgres://..., user:password@tcp(host:3306)/db, or an SQLAlchemy URL).",
)
@click.option("--notary-signer-db", metavar="URL", help="notary-signer's database.")
@click.option(
    "--notary-server-config",
    type=click.Path(dir_okay=False, exists=True),
    help="notary-server's JSON config (instead of --notary-server-db).",
)
@click.option(
    "--notary-signer-config",
    type=click.Path(dir_okay=False, exists=True),
    help="notary-signer's JSON config (instead of --notary-signer-db).",
)
@click.option("--database", help="trustkit's database, as `trustkit server --database` takes it.")
@click.option(
    "--passphrase-file",
    type=click.Path(dir_okay=False),
    help="trustkit server's passphrase for its keys (or TRUSTKIT_SERVER_PASSPHRASE).",
)
@click.option("--format", "output", type=click.Choice(["table", "json"]), default="table", show_default=True)
def server_import(
    notary_server_db: str | None,
    notary_signer_db: str | None,
    notary_server_config: str | None,
    notary_signer_config: str | None,
    database: str | None,
    passphrase_file: str | None,
    output: str,
) -> None:
    """Import every repository of a notary-server and its notary-signer keys into trustkit's database.

    notary-signer's keys are decrypted with the passphrases notary-signer reads
    (NOTARY_SIGNER_<ALIAS>) and re-encrypted with trustkit server's passphrase.  Each repository
    is checked and written in one transaction; one that fails is reported and skipped.  Run it
    again to import what changed since: it says "nothing new" when there is nothing.
    """
    from trustkit.errors import TrustkitError
    from trustkit.server.config import ServerConfig, prepare
    from trustkit.server.notary_config import import_databases, same_database, sqlalchemy_url
    from trustkit.server.notary_import import environment_passphrases, open_import
    from trustkit.server.storage import Storage

    if notary_server_config or notary_signer_config:
        if not (notary_server_config and notary_signer_config) or notary_server_db or notary_signer_db:
            raise click.UsageError(
                "give --notary-server-config and --notary-signer-config together, "
                "instead of the --notary-*-db addresses"
            )
        sources = import_databases(notary_server_config, notary_signer_config)
        server_url, signer_url = sources.server_url, sources.signer_url
    elif notary_server_db and notary_signer_db:
        server_url, signer_url = sqlalchemy_url(notary_server_db), sqlalchemy_url(notary_signer_db)
    else:
        raise click.UsageError("give --notary-server-db and --notary-signer-db (or the two --notary-*-config files)")
    config = ServerConfig.load(None, {"database": database, "passphrase_file": passphrase_file})
    target_url = sqlalchemy_url(config.database_url)
    if same_database(target_url, server_url) or same_database(target_url, signer_url):
        raise TrustkitError(
            "--database must be trustkit's own database, not notary-server's or notary-signer's",
            hint="the import only reads notary's databases, so going back to notary stays possible",
        )
    prepare(config)
    target = Storage(config.database_url)
    try:
        with open_import(server_url, signer_url, target, config.passphrase(), environment_passphrases()) as importer:
            result = importer.run(progress=_progress if output == "table" else None)
    finally:
        target.close()
    if output == "json":
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        _summary(result)
    if result.failed:
        raise TrustkitError(
            f"{len(result.failed)} of {len(result.repositories)} repositories were not imported",
            hint="fix what is reported above and run the import again",
        )


def _progress(repo: RepositoryResult) -> None:
    click.echo(f"{repo.gun}: {repo.status}", err=True)


def _summary(result: ImportResult) -> None:
    from trustkit.cli.output import emit_table

    rows = [
        [repo.gun, repo.status, str(repo.versions), str(repo.keys), "; ".join(repo.problems) or "-"]
        for repo in result.repositories
    ]
    emit_table(["REPOSITORY", "STATUS", "VERSIONS", "KEYS", "PROBLEMS"], rows)
    if result.nothing_new:
        click.echo("nothing new")
    else:
        versions, keys = sum(r.versions for r in result.repositories), sum(r.keys for r in result.repositories)
        click.echo(f"imported {versions} file versions, {keys} server keys, {result.changes} changefeed records")
    if result.changes_skipped:
        click.echo(f"{result.changes_skipped} changefeed records of repositories that failed were left out")
