"""Layer `cli`: ``trustkit status`` and ``trustkit publish``: changes signed with ``--offline``,
listed, published, or handed to a connected machine as one file (trustkit.offline)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from trustkit.cli.context import Context, pass_context
from trustkit.cli.output import FORMAT_OPTION, emit_json

if TYPE_CHECKING:
    from trustkit.errors import NetworkError
    from trustkit.ops import TrustSession
    from trustkit.reference import ImageReference

OFFLINE_OPTION = click.option(
    "--offline",
    is_flag=True,
    help="Sign against the cached trust data without the trust server; the change stays pending "
    "until `trustkit publish REPO` (see `trustkit status REPO`).",
)


def with_offline_hint(exc: NetworkError, gun: str) -> NetworkError:
    """The same error, saying how to go on while the trust server cannot be reached."""
    hint = (
        f"to sign now against the cached trust data, add --offline; `trustkit publish {gun}` sends it "
        "once the server is reachable"
    )
    return type(exc)(exc.message, hint=f"{exc.hint}; {hint}" if exc.hint else hint)


def offline_session(ctx: Context, reference: ImageReference, offline: bool) -> TrustSession:
    """The session for an edit; with ``offline`` it reads the cache and keeps what it signs pending."""
    session = ctx.trust_session(reference, offline=offline)
    session.offline = offline
    return session


@contextmanager
def suggesting_offline(gun: str, offline: bool) -> Iterator[None]:
    """An unreachable trust server's error, with how to sign anyway (--offline)."""
    from trustkit.errors import NetworkError

    try:
        yield
    except NetworkError as exc:
        if offline:
            raise
        raise with_offline_hint(exc, gun) from exc


def tell_offline(gun: str) -> None:
    click.echo(
        f"Kept pending (not published): see `trustkit status {gun}`; `trustkit publish {gun}` sends it when "
        f"the trust server is reachable, or `trustkit publish {gun} --export FILE` carries it to a machine that is",
        err=True,
    )


@click.command("status")
@click.argument("repo")
@click.option("--reset", is_flag=True, help="Drop the pending changes (nothing is published).")
@FORMAT_OPTION
@pass_context
def status(ctx: Context, repo: str, reset: bool, output_format: str) -> None:
    """List the changes of REPO signed offline and not yet published (like `notary status`)."""
    from trustkit.offline import drop_pending, load_pending, record_path
    from trustkit.reference import parse_repository

    reference = parse_repository(repo)
    gun = reference.gun
    if reset:
        dropped = drop_pending(ctx.trust_path, gun)
        if output_format == "json":
            emit_json({"repository": gun, "reset": dropped})
        else:
            click.echo(f"Dropped the pending changes of {gun}" if dropped else f"No changes pending for {gun}")
        return
    change = load_pending(ctx.trust_path, gun)
    roles = change.summary() if change is not None else []
    if output_format == "json":
        emit_json(
            {
                "repository": gun,
                "pending": roles,
                "created": change.created if change else None,
                "updated": change.updated if change else None,
                "path": str(record_path(ctx.trust_path, gun)) if change else None,
            }
        )
        return
    if change is None:
        click.echo(f"No changes pending for {gun}")
        return
    click.echo(f"Changes of {gun} signed offline since {change.created}, not yet published:")
    for entry in roles:
        base = "no published version" if entry["base_version"] is None else f"version {entry['base_version']}"
        click.echo(f"  {entry['role']}: version {entry['version']} (signed on {base})")
        for line in _describe_edits(entry):
            click.echo(f"    {line}")
    click.echo(f"Publish with `trustkit publish {gun}`, or drop with `trustkit status {gun} --reset`.")


def _describe_edits(entry: dict[str, Any]) -> list[str]:
    tags = entry.get("tags") or {}
    lines = [f"+ {tag} {what}" for tag, what in sorted(tags.get("added", {}).items())]
    lines += [f"~ {tag} {what}" for tag, what in sorted(tags.get("changed", {}).items())]
    lines += [f"- {tag}" for tag in sorted(tags.get("removed", {}))]
    lines += [f"delegation {line}" for line in entry.get("delegations") or []]
    if not lines and "tags" in entry:
        return ["re-signed, no edits"]
    return lines


@click.command("publish")
@click.argument("repo", required=False)
@click.option(
    "--export",
    "export_file",
    type=click.Path(dir_okay=False),
    help="Write the pending signed metadata to FILE (a tar) instead of publishing it.",
)
@click.option(
    "--from",
    "from_file",
    type=click.Path(dir_okay=False, exists=True),
    help="Publish an export made with --export (no keys needed: it is checked against the server's trust data).",
)
@FORMAT_OPTION
@pass_context
def publish(ctx: Context, repo: str | None, export_file: str | None, from_file: str | None, output_format: str) -> None:
    """Publish the changes of REPO signed with --offline.

    \b
    trustkit publish REPO                 send them; if someone published meanwhile, they are
                                          signed again on top, unless both changed the same entry
    trustkit publish REPO --export FILE   write them to FILE, to carry to a connected machine
    trustkit publish --from FILE          on that machine (no keys needed): check every signature
                                          against the repository's current trust data, publish
    """
    from trustkit.reference import parse_repository

    if from_file is not None:
        if export_file is not None:
            raise click.UsageError("--from and --export exclude each other")
        _publish_from(ctx, Path(from_file), repo, output_format)
        return
    if repo is None:
        raise click.UsageError("give REPO (or --from FILE)")
    reference = parse_repository(repo)
    if export_file is not None:
        from trustkit.offline import export_pending

        change = export_pending(ctx.trust_path, reference.gun, Path(export_file))
        roles = sorted(change.files)
        if output_format == "json":
            emit_json({"repository": reference.gun, "exported": roles, "file": export_file})
        else:
            click.echo(f"Wrote the pending {', '.join(roles)} of {reference.gun} to {export_file}")
            click.echo(f"On a connected machine: trustkit publish --from {Path(export_file).name}")
        return
    from trustkit.offline import load_pending, publish_pending

    if load_pending(ctx.trust_path, reference.gun) is None:  # as `notary publish` with an empty changelist
        if output_format == "json":
            emit_json({"repository": reference.gun, "published": [], "how": "nothing pending"})
        else:
            click.echo(f"No changes pending for {reference.gun}")
        return
    result = publish_pending(ctx.trust_session(reference))
    if output_format == "json":
        emit_json({"repository": reference.gun, "published": result.roles, "how": result.how})
    elif result.how == "already published":
        click.echo(f"The pending changes of {reference.gun} were already published; dropped them")
    else:
        click.echo(f"Published {', '.join(result.roles)} of {reference.gun} ({result.how})")


def _publish_from(ctx: Context, path: Path, repo: str | None, output_format: str) -> None:
    from trustkit.errors import VerificationError
    from trustkit.offline import publish_export, read_export
    from trustkit.reference import parse_repository

    export = read_export(path)
    reference = parse_repository(export.gun)
    if repo is not None and parse_repository(repo).gun != reference.gun:
        raise VerificationError(f"{path} is for {export.gun}, not {repo}")
    roles = publish_export(ctx.trust_session(reference), export)
    if output_format == "json":
        emit_json({"repository": reference.gun, "published": roles, "from": str(path)})
    else:
        click.echo(f"Checked and published {', '.join(roles)} of {reference.gun} from {path}")


COMMANDS = [status, publish]
