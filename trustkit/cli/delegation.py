"""Layer `cli`: ``trustkit signer ...``, ``bundle import``, ``key rotate`` and ``refresh``."""

from __future__ import annotations

from datetime import UTC, timedelta
from pathlib import Path

import click

from trustkit.cli.context import Context, pass_context
from trustkit.cli.output import FORMAT_OPTION, emit_json, warn
from trustkit.cli.publish import OFFLINE_OPTION, offline_session, suggesting_offline, tell_offline


@click.group()
def signer() -> None:
    """Delegate signing to team keys (docker trust signer)."""


@signer.command("add")
@click.argument("name")
@click.argument("repos", nargs=-1, required=True)
@click.option(
    "--key",
    "key_files",
    multiple=True,
    required=True,
    type=click.Path(dir_okay=False, exists=True),
    help="PEM public key or X.509 certificate (a client bundle's cert.pem); repeat for several.",
)
@click.option(
    "--ca",
    "ca_file",
    type=click.Path(dir_okay=False, exists=True),
    help="CA certificate(s) every --key must be a client certificate issued by (a cluster's ca.pem).",
)
@click.option(
    "--threshold", type=int, help="Signatures needed from NAME's keys (m of n); also the minimum for targets/releases."
)
@click.option("--paths", "paths", multiple=True, help="Restrict NAME to tags starting with these prefixes.")
@OFFLINE_OPTION
@FORMAT_OPTION
@pass_context
def signer_add(
    ctx: Context,
    name: str,
    repos: tuple[str, ...],
    key_files: tuple[str, ...],
    ca_file: str | None,
    threshold: int | None,
    paths: tuple[str, ...],
    offline: bool,
    output_format: str,
) -> None:
    """Add signer NAME with its keys to targets/NAME and targets/releases of each REPO (a new
    repository is initialised first), as `docker trust signer add` does.  With --ca, each key
    must be a client certificate issued by that CA (checked before anything is published)."""
    from datetime import datetime

    from trustkit.errors import KeyFormatError
    from trustkit.keys.certs import certificate_problem, check_client_certificate, load_ca_certificates
    from trustkit.keys.public import load_public_pem
    from trustkit.ops import add_signer
    from trustkit.reference import parse_repository
    from trustkit.trust.repository import refuse_same_key_twice, validate_signer_name

    validate_signer_name(name)
    now = datetime.now(UTC)
    # (the CA file's name, its certificates) with --ca
    ca = (ca_file, load_ca_certificates(Path(ca_file).read_bytes(), what=ca_file)) if ca_file else None
    keys = []
    for file in key_files:
        key = load_public_pem(Path(file).read_bytes(), what=file)
        if ca is not None:
            if not key.is_certificate:
                raise KeyFormatError(f"{file} is a bare public key; --ca needs the certificate (a bundle's cert.pem)")
            check_client_certificate(key.certificates, ca[1], now=now, what=file, ca_what=ca[0])
        elif key.is_certificate and (problem := certificate_problem(key.certificates[0], now)):
            raise KeyFormatError(f"{file}: {problem}")
        keys.append(key)
    refuse_same_key_twice(f"targets/{name}", keys, [])  # before any network work
    if threshold is not None and not 1 <= threshold <= len(keys):
        raise click.BadParameter(f"must be between 1 and the number of keys ({len(keys)})", param_hint="--threshold")
    results = []
    for repo in repos:
        reference = parse_repository(repo)
        with suggesting_offline(reference.gun, offline):
            published, warnings = add_signer(
                offline_session(ctx, reference, offline), name, keys, threshold=threshold, paths=list(paths) or None
            )
        warn(warnings)
        results.append(
            {
                "repository": reference.gun,
                "signer": name,
                "keys": [k.canonical_id for k in keys],
                "published": [] if offline else published,
                "offline_pending": published if offline else [],
            }
        )
        if output_format != "json":
            click.echo(
                f"Added signer {name} to {reference.gun} with key(s) {', '.join(k.canonical_id[:12] for k in keys)}"
            )
        if offline:
            tell_offline(reference.gun)
    if output_format == "json":
        emit_json(results)


@signer.command("remove")
@click.argument("name")
@click.argument("repos", nargs=-1, required=True)
@click.option("--force", is_flag=True, help="Remove the last signer of targets/releases too.")
@OFFLINE_OPTION
@pass_context
def signer_remove(ctx: Context, name: str, repos: tuple[str, ...], force: bool, offline: bool) -> None:
    """Remove signer NAME from each REPO."""
    from trustkit.ops import remove_signer
    from trustkit.reference import parse_repository

    for repo in repos:
        reference = parse_repository(repo)
        with suggesting_offline(reference.gun, offline):
            _, warnings = remove_signer(offline_session(ctx, reference, offline), name, force=force)
        warn(warnings)
        click.echo(f"Removed signer {name} from {reference.gun}")
        if offline:
            tell_offline(reference.gun)


@click.group()
def bundle() -> None:
    """Client bundles (UCP / MKE / MSR)."""


@bundle.command("import")
@click.argument("path", type=click.Path(exists=True))
@click.option("--name", help="Signer name (default: the certificate's common name).")
@click.option(
    "--dir",
    "cert_dir",
    type=click.Path(file_okay=False),
    default=".",
    show_default=True,
    help="Where to write NAME.crt for the admin when the bundle is a zip.",
)
@click.option("--force", is_flag=True, help="Rename the key when it is already stored under another signer name.")
@FORMAT_OPTION
@pass_context
def bundle_import(ctx: Context, path: str, name: str | None, cert_dir: str, force: bool, output_format: str) -> None:
    """Import a client bundle's key.pem as a signer key, after checking that cert.pem is a client
    certificate valid now, issued by the bundle's ca.pem, and that key.pem belongs to it; then
    show what the repository admin must run."""
    from datetime import datetime

    from trustkit.keys.bundle import import_bundle

    stored, signer_name, found, renamed = import_bundle(
        ctx.key_store(), path, name=name, now=datetime.now(UTC), force=force
    )
    cert_path = Path(path) / "cert.pem" if Path(path).is_dir() else Path(cert_dir) / f"{signer_name}.crt"
    if not Path(path).is_dir():
        cert_path.write_bytes(found.cert_pem)
    command = f"trustkit signer add {signer_name} REPOSITORY --key {cert_path}"
    if output_format == "json":
        emit_json(
            {
                "signer": signer_name,
                "keyid": stored.keyid,
                "certificate": str(cert_path),
                "admin_command": command,
                "renamed_from": renamed,
            }
        )
    else:
        if renamed is not None:
            click.echo(f'Renamed key {stored.keyid[:12]} from signer "{renamed}" to "{signer_name}"', err=True)
        click.echo(f"Imported key {stored.keyid} as signer {signer_name}")
        click.echo(
            "Ask a repository admin to run (adding --ca with the cluster's CA certificate checks who issued it):"
        )
        click.echo(f"  {command}")


@click.command("rotate")
@click.argument("repo")
@click.argument("role", type=click.Choice(["root", "targets", "snapshot", "timestamp"]))
@click.option("--server-managed", is_flag=True, help="Let the server hold the new snapshot key.")
@click.option(
    "--key",
    "key",
    metavar="KEYID|URI",
    help="Rotate to this key (a key ID, or a pkcs11:/KMS URI) instead of a new one.",
)
@pass_context
def key_rotate(ctx: Context, repo: str, role: str, server_managed: bool, key: str | None) -> None:
    """Give ROLE of REPO a new key and publish.  A new root is signed by the old and the new
    root keys, and is checked against the old root before anything is published."""
    from trustkit.ops import rotate_key
    from trustkit.reference import parse_repository

    reference = parse_repository(repo)
    new_key = rotate_key(ctx.trust_session(reference), role, server_managed=server_managed, key=key)
    where = "held by the server" if server_managed or role == "timestamp" else "in the key store"
    if key:
        where = f"the given key {key.split('?')[0]}"  # a pkcs11 URI's query may hold a pin-value
    click.echo(f"Rotated the {role} key of {reference.gun}: new key {new_key.keyid} ({where})")


@click.command("refresh")
@click.argument("repo")
@click.option("--role", "roles", multiple=True, help="Re-sign this role whatever its expiry (repeatable).")
@click.option(
    "--within",
    "days",
    type=click.IntRange(min=0),
    default=30,
    show_default=True,
    help="Re-sign the roles you can sign that expire within this many days (expired ones too).",
)
@pass_context
def refresh(ctx: Context, repo: str, roles: tuple[str, ...], days: int) -> None:
    """Re-sign roles before (or after) they expire, like `notary witness` + publish.

    This is also the recovery when targets metadata has already expired: editing loads
    expired roles, re-signs them with fresh expiry and publishes."""
    from trustkit.metadata import validate_role_name
    from trustkit.ops import refresh as refresh_roles
    from trustkit.reference import parse_repository

    for role in roles:
        validate_role_name(role)
    reference = parse_repository(repo)
    done = refresh_roles(ctx.trust_session(reference), roles=list(roles) or None, window=timedelta(days=days))
    click.echo(
        f"Re-signed {', '.join(done)} of {reference.gun}"
        if done
        else f"Nothing in {reference.gun} that you can sign expires within {days} days"
    )


COMMANDS = [signer, bundle, refresh]
