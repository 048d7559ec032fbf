"""Layer `cli`: ``trustkit mirror``: copy repositories' trust data from one Notary server to another."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from trustkit.cli.context import Context, pass_context
from trustkit.cli.output import FORMAT_OPTION, emit_json, emit_table

if TYPE_CHECKING:
    from trustkit.client.notary import NotaryClient
    from trustkit.mirror import MirrorResult


@click.command("mirror")
@click.argument("guns", nargs=-1)
@click.option("--from", "source_url", required=True, metavar="URL", help="The Notary server to copy from.")
@click.option("--to", "destination_url", required=True, metavar="URL", help="The Notary server to copy to.")
@click.option(
    "--all",
    "mirror_all",
    is_flag=True,
    help="Every repository the source's catalog changefeed lists (needs catalog access there).",
)
@click.option("--dry-run", is_flag=True, help="Verify the source and show what would be published; change nothing.")
@FORMAT_OPTION
@pass_context
def mirror(
    ctx: Context,
    guns: tuple[str, ...],
    source_url: str,
    destination_url: str,
    mirror_all: bool,
    dry_run: bool,
    output_format: str,
) -> None:
    """Copy the trust data of each GUN from the server --from to the server --to.

    The source is verified as `trustkit verify` does (every root version, every delegation).
    Targets and delegations are uploaded unchanged; each root version gets the destination's
    timestamp key and is signed with the repository's root key, which must be in the key store
    (its passphrase as usual).  Clients that already trust the repository then read it from the
    destination without a warning.  A repository already mirrored is left alone ("up to date"),
    an interrupted one is resumed, and one whose tags moved on at the source is updated.
    Exit status 1 when any repository failed."""
    from trustkit.errors import TrustkitError
    from trustkit.mirror import CatalogClient, mirror_repository

    if not guns and not mirror_all:
        raise click.UsageError("name repositories (GUNs) to mirror, or pass --all")
    run = _Run(ctx, source_url, destination_url)
    names = list(dict.fromkeys(guns))
    if mirror_all:
        try:
            catalog = CatalogClient(run.source_url, run.http(run.source_url)).repositories()
        except TrustkitError as exc:
            raise TrustkitError(
                f"reading the catalog of {run.source_url} for --all: {exc}",
                hint="it needs a login there with catalog access (an admin's)",
            ) from None
        names += [gun for gun in catalog if gun not in names]
    results: list[MirrorResult] = []
    failures: list[tuple[str, str]] = []
    for gun in names:
        try:
            with _progress_bar(gun, enabled=output_format == "table" and not dry_run) as progress:
                results.append(mirror_repository(run.mirror, gun, dry_run=dry_run, progress=progress))
        except TrustkitError as exc:  # one repository's failure does not stop the others
            failures.append((gun, str(exc)))
            click.echo(f"trustkit: error: {gun}: {exc}", err=True)
    _report(results, failures, output_format)
    if failures:
        sys.exit(1)


class _Run:
    """The two servers' clients and the mirror settings for one command."""

    def __init__(self, ctx: Context, source_url: str, destination_url: str) -> None:
        from trustkit.client.notary import resolve_server_url
        from trustkit.mirror import Mirror

        self.ctx = ctx
        self.source_url = resolve_server_url("", source_url)
        self.destination_url = resolve_server_url("", destination_url)
        if self.source_url == self.destination_url:
            raise click.UsageError("--from and --to name the same server")
        self._http: dict[tuple[str, str], Any] = {}
        self.mirror = Mirror(
            source=self._clients(self.source_url),
            destination=self._clients(self.destination_url),
            store=ctx.key_store(),
            cache_dir=ctx.trust_path / "mirror" / _folder(self.source_url),
            now=datetime.now(UTC),
            pinning=ctx.trust_pinning(),
        )

    def _clients(self, url: str) -> Callable[[str], NotaryClient]:
        from trustkit.client.notary import NotaryClient

        return lambda gun: NotaryClient(url, gun, self.http(url, gun))

    def http(self, url: str, gun: str | None = None) -> Any:
        """One HTTP client per server and login: docker's credentials for the server's own host
        (`trustkit login notary.example.com`), else for the repository's registry, which is what
        docker itself sends to a trust server (Docker Hub's Notary takes docker.io's login)."""
        from trustkit.client.auth import TokenAuth
        from trustkit.client.docker_config import load_credentials
        from trustkit.client.http import host_port
        from trustkit.client.notary import make_http_client

        server_host = host_port(url)
        login_host = server_host
        if load_credentials(server_host) is None and gun is not None:
            login_host = _registry_of(gun) or server_host
        key = (url, login_host)
        if key not in self._http:
            auth = TokenAuth(load_credentials(login_host), registry=server_host)
            self._http[key] = make_http_client(url, tls_ca=self.ctx.tls_ca, auth=auth)
        return self._http[key]


def _registry_of(gun: str) -> str | None:
    """The registry a GUN names (``docker.io`` for ``docker.io/library/alpine``), when it reads as one."""
    from trustkit.errors import TrustkitError
    from trustkit.reference import parse_repository

    try:
        return parse_repository(gun).registry
    except TrustkitError:
        return None


def _folder(url: str) -> str:
    """The source's cache folder name: ``host_port`` with the one character a file name cannot have."""
    from trustkit.client.http import host_port

    return host_port(url).replace("/", "_")


@contextmanager
def _progress_bar(gun: str, *, enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A bar per repository on a terminal (one step per publish); nothing otherwise."""
    if not (enabled and sys.stderr.isatty()):
        yield None
        return
    with click.progressbar(length=1, label=gun, file=sys.stderr, show_pos=True, show_eta=False) as bar:

        def advance(done: int, total: int) -> None:
            bar.length = max(total, 1)
            bar.update(done - bar.pos)

        yield advance


def _report(results: list[MirrorResult], failures: list[tuple[str, str]], output_format: str) -> None:
    if output_format == "json":
        emit_json(
            {
                "repositories": [_as_json(r) for r in results],
                "failed": [{"repository": gun, "error": error} for gun, error in failures],
            }
        )
        return
    rows = [
        [r.gun, _status(r), str(r.source_root_version), str(r.destination_root_version), "; ".join(r.publishes) or "-"]
        for r in results
    ]
    rows += [[gun, "failed", "-", "-", error] for gun, error in failures]
    emit_table(["REPOSITORY", "STATUS", "SOURCE ROOT", "DESTINATION ROOT (BEFORE)", "PUBLISHES"], rows)


def _status(result: MirrorResult) -> str:
    from trustkit.mirror import UP_TO_DATE

    if result.dry_run and result.status != UP_TO_DATE:
        return f"would be {result.status}"
    return result.status


def _as_json(result: MirrorResult) -> dict[str, Any]:
    return {
        "repository": result.gun,
        "status": _status(result),
        "source_root_version": result.source_root_version,
        "destination_root_version_before": result.destination_root_version,
        "publishes": result.publishes,
        "dry_run": result.dry_run,
    }


COMMANDS = [mirror]
