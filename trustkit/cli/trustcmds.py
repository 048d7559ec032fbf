"""Layer `cli`: ``trustkit init | sign | inspect | verify | revoke``."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import IO, TYPE_CHECKING, Any

import click

from trustkit.cli.context import Context, can_prompt, pass_context
from trustkit.cli.output import FORMAT_OPTION, emit_error_json, emit_json, emit_table, warn
from trustkit.cli.publish import OFFLINE_OPTION, offline_session, suggesting_offline, tell_offline

if TYPE_CHECKING:
    from trustkit.ops import CreatedKey, PendingChange, TagTarget, TrustSession, VerifiedTag
    from trustkit.reference import ImageReference
    from trustkit.trust.trusted_set import TrustedSet

VERIFY_HELP = """Verify that IMAGE:TAG is signed and print its trusted digest and size.

\b
Exit status says why a tag is not trusted:
  0  trusted (and matches --digest when given)
  1  any other error (bad arguments, local problems)
  3  not signed: no trust data for the repository or the tag
  4  digest mismatch: signed, but for another digest than --digest, or (without
     --digest) the registry serves another manifest for the tag (drift)
  5  expired trust data
  6  signature or threshold failure (tampered, rolled back, or too few signers)
  7  trust server (or registry) unreachable
  8  not authorised by the trust server
  9  signed, but the registry no longer has the signed manifest

Without --digest, --trust-only or --offline the registry is asked what it serves
for the tag, as a content-trust pull would resolve it.
"""


@click.command("init")
@click.argument("repo")
@click.option("--local-snapshot", is_flag=True, help="Keep the snapshot key locally instead of on the server.")
@click.option(
    "--root-key",
    "root_keyid",
    metavar="KEYID|URI",
    help="Root key: a key ID or a key URI (pkcs11:, awskms:, gcpkms:, azurekms:, hv:); default: the store's first.",
)
@click.option("--targets-key", "targets_keyid", metavar="KEYID|URI", help="Targets key (default: a new one).")
@FORMAT_OPTION
@pass_context
def init(
    ctx: Context, repo: str, local_snapshot: bool, root_keyid: str | None, targets_keyid: str | None, output_format: str
) -> None:
    """Initialise trust for REPO and publish it: root and targets keys (the root key is reused
    if the store has one), snapshot and timestamp keys held by the server."""
    from trustkit.ops import init_repository
    from trustkit.reference import parse_repository

    reference = parse_repository(repo)
    session = ctx.trust_session(reference)
    published = init_repository(
        session, local_snapshot=local_snapshot, root_keyid=root_keyid, targets_keyid=targets_keyid
    )
    if output_format == "json":
        emit_json(
            {"repository": reference.gun, "published": published, "created_keys": _created_json(session.created_keys)}
        )
    else:
        click.echo(f"Initialised trust for {reference.gun} ({', '.join(published)} published)")
    _tell_created(session.created_keys)


@click.command("sign")
@click.argument("images", nargs=-1, required=True)
@click.option("--digest", help="Manifest digest (sha256:HEX) the tags point at.")
@click.option("--size", type=click.IntRange(min=0), help="Manifest size in bytes.")
@click.option(
    "--from-file", type=click.File("r"), help="Bulk: one 'TAG sha256:HEX SIZE' per line; IMAGES is the repository."
)
@click.option(
    "--insecure-registry",
    "insecure_registries",
    multiple=True,
    help="Registry that may be reached over plain HTTP (when reading manifests).",
)
@OFFLINE_OPTION
@FORMAT_OPTION
@pass_context
def sign(
    ctx: Context,
    images: tuple[str, ...],
    digest: str | None,
    size: int | None,
    from_file: IO[str] | None,
    insecure_registries: tuple[str, ...],
    offline: bool,
    output_format: str,
) -> None:
    """Sign IMAGE:TAG (several tags of one repository in one publish) and publish.

    Without --digest/--size, each tag's manifest digest and size are read from the registry.
    An uninitialised repository is initialised first, as `docker trust sign` does.  With
    delegation keys only, the tag is signed into every role those keys can sign."""
    from trustkit.ops import sign_tags

    if digest is None and size is None and from_file is None:
        reference, targets = _targets_from_registry(images, insecure_registries)
    else:
        reference, targets = _parse_sign_args(images, digest, size, from_file)
    session = offline_session(ctx, reference, offline)
    with suggesting_offline(reference.gun, offline):
        result = sign_tags(session, targets)
    if output_format == "json":
        emit_json(
            {
                "repository": reference.gun,
                "created_keys": _created_json(session.created_keys),
                "published": [] if offline else result.published,
                "offline_pending": result.published if offline else [],
                "warnings": result.warnings,
                "pending": dict(result.pending),
                "signed": [
                    {"tag": t.tag, "digest": f"sha256:{t.digest}", "size": t.size, "roles": result.signed[t.tag]}
                    for t in targets
                ],
            }
        )
    else:
        for target in targets:
            click.echo(
                f"Signed {reference.familiar}:{target.tag} sha256:{target.digest} ({target.size} bytes) "
                f"into {', '.join(result.signed[target.tag])}"
            )
        for role, where in result.pending.items():
            click.echo(f"{role} needs more signatures before it can be published: {_staged_how(session, where)}")
    warn(result.warnings)
    _tell_created(session.created_keys)
    if offline:
        tell_offline(reference.gun)


def _staged_how(session: TrustSession, where: str) -> str:
    """Where a partly signed role waits, and what the next signer does."""
    from trustkit.client.staging import FolderStaging

    staging = session.staging()
    if not isinstance(staging, FolderStaging):
        return f"staged {where}; each co-signer completes it by running the same command"
    if staging.chosen:
        return (
            f"staged at {where}; the next signer completes it by running the same command with the same --staging-dir"
        )
    return (
        f"staged at {where}, on this machine only: the trust server has no staging area (a notary-server), so "
        "co-signers need a folder they share: run it again with --staging-dir FOLDER, and so does the next signer"
    )


def _created_json(keys: list[CreatedKey]) -> list[dict[str, str]]:
    return [{"id": k.keyid, "role": k.role, "path": str(k.path)} for k in keys]


def _tell_created(keys: list[CreatedKey]) -> None:
    from trustkit.ops import created_keys_notice

    for line in created_keys_notice(keys):
        click.echo(line, err=True)


def _tags_of(refs: list[ImageReference], problem: str) -> list[str]:
    """Each reference's tag; a UsageError saying ``problem`` when one has none."""
    tags = [ref.tag for ref in refs if ref.tag is not None]
    if len(tags) != len(refs):
        raise click.UsageError(problem)
    return tags


def _targets_from_registry(
    images: tuple[str, ...], insecure: tuple[str, ...]
) -> tuple[ImageReference, list[TagTarget]]:
    """Each IMAGE:TAG's manifest digest and size, as the registry serves them now."""
    from trustkit.oci.registry import connect
    from trustkit.ops import TagTarget
    from trustkit.reference import parse

    problem = "give IMAGE:TAG arguments of one repository"
    refs = [parse(image) for image in images]
    if len({r.gun for r in refs}) != 1:
        raise click.UsageError(problem)
    tags = _tags_of(refs, problem)
    targets = []
    with connect(refs[0].registry, insecure_registries=insecure) as registry:
        for ref, tag in zip(refs, tags, strict=True):
            manifest = registry.get_manifest(ref.repository, tag)
            targets.append(TagTarget(tag, manifest.digest.removeprefix("sha256:"), manifest.size))
    return refs[0], targets


def _parse_sign_args(
    images: tuple[str, ...], digest: str | None, size: int | None, from_file: IO[str] | None
) -> tuple[ImageReference, list[TagTarget]]:
    from trustkit.ops import TagTarget
    from trustkit.reference import parse, parse_repository, validate_digest, validate_tag

    if from_file is not None:
        if len(images) != 1 or digest or size is not None:
            raise click.UsageError("with --from-file give only the repository, and no --digest/--size")
        reference = parse_repository(images[0])
        targets = []
        for number, line in enumerate(from_file, 1):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            if len(fields) != 3 or not fields[2].isdigit():
                raise click.UsageError(f"{from_file.name} line {number}: expected 'TAG sha256:HEX SIZE'")
            targets.append(
                TagTarget(validate_tag(fields[0]), validate_digest(fields[1]).removeprefix("sha256:"), int(fields[2]))
            )
        return reference, targets
    if digest is None or size is None:
        raise click.UsageError(
            "give both --digest sha256:HEX and --size N, or neither (to read them from the registry)"
        )
    refs = [parse(image) for image in images]
    if len({r.gun for r in refs}) != 1:
        raise click.UsageError("all images must be tags of one repository")
    tags = _tags_of(refs, "every image needs a tag (IMAGE:TAG)")
    hex_digest = validate_digest(digest).removeprefix("sha256:")
    return refs[0], [TagTarget(tag, hex_digest, size) for tag in tags]


@click.command("inspect")
@click.argument("images", nargs=-1, required=True)
@click.option("--pretty", is_flag=True, help="Human-readable tables instead of JSON.")
@pass_context
def inspect(ctx: Context, images: tuple[str, ...], pretty: bool) -> None:
    """Show signed tags, signers and administrative keys (the `docker trust inspect` shape)."""
    from trustkit.errors import NotSignedError
    from trustkit.ops import inspect as inspect_entry
    from trustkit.reference import parse

    entries, missing = [], []
    for image in images:
        reference = parse(image)
        trusted = _load_or_cached(ctx.trust_session(reference))
        entry = inspect_entry(trusted, image)
        if entry is None:
            missing.append(image)
            continue
        if reference.tag:
            entry["SignedTags"] = [row for row in entry["SignedTags"] if row["SignedTag"] == reference.tag]
        entries.append(entry)
    if pretty:
        for entry in entries:
            _pretty(entry)
    else:
        click.echo(json.dumps(entries, indent=4))
    if missing:
        raise NotSignedError(f"no trust data for {', '.join(missing)}")


def _load_or_cached(session: TrustSession) -> TrustedSet | None:
    """The server's trust data; when the server cannot be reached, the local cache (checked the
    same way) with a warning, as `docker trust inspect` does.  `verify` never falls back."""
    from trustkit.errors import NetworkError, TrustkitError

    try:
        return session.load()
    except NetworkError as exc:
        try:
            trusted = session.load(offline=True)
        except TrustkitError:
            raise exc from None
        warn([f"{exc}; showing the trust data cached for {session.gun} (it may be out of date)"])
        return trusted


def _pretty(entry: dict[str, Any]) -> None:
    click.echo(f"\nSignatures for {entry['Name']}\n")
    emit_table(
        ["SIGNED TAG", "DIGEST", "SIGNERS"],
        [[r["SignedTag"], r["Digest"], ", ".join(r["Signers"])] for r in entry["SignedTags"]],
    )
    if entry["Signers"]:
        click.echo(f"\nList of signers and their keys for {entry['Name']}\n")
        emit_table(
            ["SIGNER", "KEYS"], [[s["Name"], ", ".join(k["ID"][:12] for k in s["Keys"])] for s in entry["Signers"]]
        )
    click.echo(f"\nAdministrative keys for {entry['Name']}\n")
    for admin in entry["AdministrativeKeys"]:
        click.echo(f"  {admin['Name']} Key:\t{', '.join(k['ID'] for k in admin['Keys'])}")


@click.command("verify", help=VERIFY_HELP)
@click.argument("image")
@click.option("--digest", help="Require this digest (sha256:HEX) instead of asking the registry.")
@click.option("--offline", is_flag=True, help="Verify from the local cache only (implies --trust-only).")
@click.option(
    "--trust-only", is_flag=True, help="Check the trust data only, not what the registry serves (air-gapped use)."
)
@click.option(
    "--insecure-registry",
    "insecure_registries",
    multiple=True,
    help="Registry that may be reached over plain HTTP.",
)
@FORMAT_OPTION
@pass_context
def verify(
    ctx: Context,
    image: str,
    digest: str | None,
    offline: bool,
    trust_only: bool,
    insecure_registries: tuple[str, ...],
    output_format: str,
) -> None:
    from trustkit.errors import TrustkitError
    from trustkit.ops import verify_tag
    from trustkit.reference import parse, validate_digest

    try:
        reference = parse(image)
        if reference.tag is None:
            raise click.UsageError("give IMAGE:TAG")
        if digest:
            validate_digest(digest)
        session = ctx.trust_session(reference, offline=offline)
        result = verify_tag(session, reference.tag, digest=digest, offline=offline)
        warnings = list(result.warnings)
        if digest is None and not (trust_only or offline):
            warnings += _check_registry(reference, result, insecure_registries)
    except TrustkitError as exc:
        if ctx.debug:
            raise
        click.echo(f"trustkit: not trusted: {exc}", err=True)
        if output_format == "json":
            emit_error_json(exc, str(exc), exc.verify_status)
        sys.exit(exc.verify_status)
    pending = _pending(session, warnings)
    if output_format == "json":
        emit_json(
            {
                "repository": reference.gun,
                "tag": result.tag,
                "digest": f"sha256:{result.digest}",
                "size": result.size,
                "role": result.role,
                "pending": [asdict(change) for change in pending],
            }
        )
    else:
        click.echo(f"{reference.familiar}:{result.tag} sha256:{result.digest} {result.size}")
        for change in pending:  # on stderr: stdout stays the one line
            click.echo(f"pending: {change.describe()}", err=True)
    warn(warnings)


def _pending(session: TrustSession, warnings: list[str]) -> list[PendingChange]:
    """What waits for co-signatures in the repository; a failure to list it is a warning, since
    the verdict stands."""
    from trustkit.errors import TrustkitError
    from trustkit.ops import pending_changes

    if session.last_trusted is None or session.client is None:
        return []
    try:
        return pending_changes(session, session.last_trusted)
    except TrustkitError as exc:
        warnings.append(f"could not list what is pending for {session.gun}: {exc}")
        return []


def _check_registry(reference: ImageReference, result: VerifiedTag, insecure: tuple[str, ...]) -> list[str]:
    """What the registry serves for the tag, against the signed digest (as a content-trust pull resolves it)."""
    from trustkit.oci.registry import connect
    from trustkit.ops import check_registry

    with connect(reference.registry, insecure_registries=insecure) as registry:
        return check_registry(reference, result, lambda ref: registry.find_manifest(reference.repository, ref))


@click.command("revoke")
@click.argument("image")
@click.option("-y", "--yes", is_flag=True, help="Do not ask before revoking every tag.")
@OFFLINE_OPTION
@FORMAT_OPTION
@pass_context
def revoke(ctx: Context, image: str, yes: bool, offline: bool, output_format: str) -> None:
    """Remove a tag's signature (or, without a tag, every signed tag) and publish."""
    from trustkit.ops import revoke as revoke_tags
    from trustkit.reference import parse

    reference = parse(image)
    if reference.tag is None and not yes:
        if not can_prompt():
            raise click.UsageError("revoking every tag needs --yes (no terminal to ask on)")
        click.confirm(f"Revoke all signatures for {reference.familiar}?", abort=True, err=True)
    with suggesting_offline(reference.gun, offline):
        removed = revoke_tags(offline_session(ctx, reference, offline), reference.tag)
    if output_format == "json":
        emit_json({"repository": reference.gun, "revoked": [{"tag": t, "roles": r} for t, r in removed.items()]})
    else:
        for tag, roles in removed.items():
            click.echo(f"Revoked {reference.familiar}:{tag} from {', '.join(roles)}")
    if offline:
        tell_offline(reference.gun)


COMMANDS = [init, sign, inspect, verify, revoke]
