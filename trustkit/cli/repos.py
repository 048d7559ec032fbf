"""Layer `cli`: ``trustkit repo list`` and ``trustkit repo show``: what a trust server holds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from trustkit.cli.context import Context, pass_context
from trustkit.cli.output import FORMAT_OPTION, emit_json, emit_table

if TYPE_CHECKING:
    from trustkit.ops import TrustSession
    from trustkit.trust.trusted_set import TrustedSet


@click.command("list")
@FORMAT_OPTION
@pass_context
def repo_list(ctx: Context, output_format: str) -> None:
    """Repositories with trust data on the trust server (from its catalog changefeed, which
    needs catalog access: an admin's login), with their signed tag counts.  The server is
    --server, else $DOCKER_CONTENT_TRUST_SERVER."""
    import os

    from trustkit.mirror import CatalogClient
    from trustkit.reference import parse_repository

    url = ctx.server_url or os.environ.get("DOCKER_CONTENT_TRUST_SERVER")
    if not url:
        raise click.UsageError("name the trust server with --server URL (or DOCKER_CONTENT_TRUST_SERVER)")
    rows: list[dict[str, Any]] = []
    for gun in CatalogClient(url, ctx.server_http(url, None)).repositories():
        trusted = ctx.trust_session(parse_repository(gun)).load()
        rows.append({"repository": gun, "tags": _tag_count(trusted)})
    if output_format == "json":
        emit_json(rows)
    else:
        emit_table(["REPOSITORY", "SIGNED TAGS"], [[r["repository"], str(r["tags"])] for r in rows])


def _tag_count(trusted: TrustedSet | None) -> int:
    from trustkit.trust.resolution import DelegationTree, released_tags

    return 0 if trusted is None else len(released_tags(DelegationTree.of(trusted.targets)))


@click.command("show")
@click.argument("repository")
@FORMAT_OPTION
@pass_context
def repo_show(ctx: Context, repository: str, output_format: str) -> None:
    """REPOSITORY's state on the trust server: immutable or not, signed tags, signers and their
    keys, and when each role's trust data expires."""
    from trustkit.errors import NotSignedError
    from trustkit.reference import parse_repository

    reference = parse_repository(repository)
    session = ctx.trust_session(reference)
    trusted = session.load()
    if trusted is None:
        raise NotSignedError(f"{reference.gun} has no trust data on the trust server")
    shown = _describe(session, trusted)
    if output_format == "json":
        emit_json(shown)
        return
    click.echo(f"Repository:  {shown['repository']}")
    click.echo(f"Immutable:   {'yes' if shown['immutable'] else 'no'}")
    click.echo(f"Signed tags: {shown['signed_tags']}")
    click.echo("\nSigners")
    emit_table(["SIGNER", "KEYS"], [[s["name"], ", ".join(k[:12] for k in s["keys"])] for s in shown["signers"]])
    click.echo("\nExpiry")
    emit_table(["ROLE", "EXPIRES"], [[role, expires] for role, expires in shown["expires"].items()])


def _describe(session: TrustSession, trusted: TrustedSet) -> dict[str, Any]:
    from trustkit.ops import inspect

    entry = inspect(trusted, session.gun) or {}
    expires = {"root": trusted.root.signed.expires}
    for role, meta in sorted(trusted.targets.items()):
        expires[role] = meta.signed.expires
    if trusted.snapshot is not None:
        expires["snapshot"] = trusted.snapshot.signed.expires
    if trusted.timestamp is not None:
        expires["timestamp"] = trusted.timestamp.signed.expires
    return {
        "repository": session.gun,
        "immutable": bool(session.client.settings().get("immutable", False)),
        "signed_tags": len(entry.get("SignedTags", [])),
        "signers": [{"name": s["Name"], "keys": [k["ID"] for k in s["Keys"]]} for s in entry.get("Signers", [])],
        "expires": expires,
    }
