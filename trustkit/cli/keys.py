"""Layer `cli`: ``trustkit key ...`` — generate, load, list, export, passwd, remove."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING

import click

from trustkit.cli.context import Context, can_prompt, pass_context
from trustkit.cli.output import FORMAT_OPTION, emit_json, emit_table

if TYPE_CHECKING:
    from trustkit.keys import StoredKey


@click.group()
def key() -> None:
    """Manage signing keys in the trust directory (notary/docker compatible)."""


@key.command("generate")
@click.argument("name")
@click.option(
    "--dir",
    "pub_dir",
    type=click.Path(file_okay=False),
    default=".",
    show_default=True,
    help="Where to write NAME.pub.",
)
@click.option("--algorithm", type=click.Choice(["ecdsa", "ed25519", "rsa"]), default="ecdsa", show_default=True)
@FORMAT_OPTION
@pass_context
def generate(ctx: Context, name: str, pub_dir: str, algorithm: str, output_format: str) -> None:
    """Generate a key pair: NAME.pub in --dir, the private key (role NAME) in the store.

    Like `docker trust key generate`.  The passphrase comes from
    DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE (or NOTARY_DELEGATION_PASSPHRASE), else a prompt.
    """
    from trustkit.keys.store import generate_key

    stored, pub_path = generate_key(ctx.key_store(), name, algorithm=algorithm, pub_dir=Path(pub_dir))
    if output_format == "json":
        emit_json(
            {
                "keyid": stored.keyid,
                "role": stored.role,
                "algorithm": algorithm,
                "public_key": str(pub_path),
                "private_key": str(stored.path),
            }
        )
    else:
        click.echo(f"Generated {algorithm} key {stored.keyid} (role {stored.role})")
        click.echo(f"Public key written to {pub_path}")


@key.command("load")
@click.argument("file", metavar="FILE|URI")
@click.option("--name", help="Role name for the key (default: its role header, else 'signer'; needed for a URI).")
@click.option(
    "--dir",
    "pub_dir",
    type=click.Path(file_okay=False),
    help="For a URI: also write NAME.pub here (for `signer add --key`), as `key generate` does.",
)
@click.option("--gun", help="For a URI: the repository a targets or snapshot key belongs to.")
@FORMAT_OPTION
@pass_context
def load(ctx: Context, file: str, name: str | None, pub_dir: str | None, gun: str | None, output_format: str) -> None:
    """Import a PEM private key (PKCS#8, EC or RSA; encrypted or not) into the store, or register
    a key that stays in a PKCS#11 token or a KMS, given by URI:

    \b
      pkcs11:token=LABEL;object=KEY?module-path=/path/module.so[&pin-source=FILE]
      awskms:KEY-ID   gcpkms:projects/...   azurekms://VAULT.vault.azure.net/keys/NAME   hv:NAME

    For a URI the store keeps a reference (the URI without any pin-value, the public key, role,
    GUN), never private material.  A token's PIN comes from the URI's pin-source or pin-value,
    TRUSTKIT_PKCS11_PIN, else a prompt.
    """
    from trustkit.keys.uri import is_key_uri

    if is_key_uri(file):
        _load_uri(ctx, file, name, pub_dir, gun, output_format)
        return
    if pub_dir is not None or gun is not None:
        raise click.UsageError("--dir and --gun are for a key URI; a key file's headers say its role and GUN")
    from trustkit.keys.store import import_key

    path = Path(file)
    if not path.is_file():
        raise click.BadParameter(f"{file} is neither a file nor a key URI (pkcs11:, awskms:, ...)", param_hint="FILE")
    if path.stat().st_mode & 0o077:
        click.echo(f"warning: {file} can be read by other users; consider chmod 600", err=True)
    stored = import_key(ctx.key_store(), path.read_bytes(), name=name, source=file)
    if output_format == "json":
        emit_json(_key_json(stored))
    else:
        click.echo(f"Loaded key {stored.keyid} as role {stored.role}")


def _load_uri(
    ctx: Context, uri: str, name: str | None, pub_dir: str | None, gun: str | None, output_format: str
) -> None:
    from trustkit.keys.store import load_reference

    if not name:
        raise click.UsageError("give the key a role name with --name (e.g. root, targets, or a signer name)")
    stored, pub_path = load_reference(ctx.key_store(), uri, name, pub_dir=Path(pub_dir) if pub_dir else None, gun=gun)
    if output_format == "json":
        emit_json({**_key_json(stored), "public_key": str(pub_path) if pub_path else None})
        return
    click.echo(f"Registered key {stored.keyid} (role {stored.role}) in {stored.where}")
    if pub_path is not None:
        click.echo(f"Public key written to {pub_path}")


@key.command("list")
@FORMAT_OPTION
@pass_context
def list_keys(ctx: Context, output_format: str) -> None:
    """List the keys in the store (no passphrase needed)."""
    keys = ctx.key_store().list()
    if output_format == "json":
        emit_json([_key_json(k) for k in keys])
        return
    if not keys:
        click.echo(f"No keys in {ctx.trust_path / 'private'}")
        return
    emit_table(
        ["ROLE", "GUN", "KEY ID", "ALGORITHM", "LOCATION"],
        [[k.role, k.gun or "", k.keyid, k.algorithm, str(k.path.parent) if k.uri is None else k.where] for k in keys],
    )


@key.command("export")
@click.argument("keyid")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to a file (0600) instead of stdout.")
@pass_context
def export(ctx: Context, keyid: str, output: str | None) -> None:
    """Export a key file as stored: still encrypted, with its role and gun headers."""
    from trustkit.keys.store import atomic_write

    text = ctx.key_store().export(keyid)
    if output:
        atomic_write(Path(output), text.encode())
        click.echo(f"Exported key {keyid} to {output}", err=True)
    else:
        click.echo(text, nl=False)


@key.command("passwd")
@click.argument("keyid")
@click.option(
    "--new-passphrase-file",
    type=click.File("r"),
    help="Read the new passphrase from this file ('-' for stdin) instead of prompting.",
)
@pass_context
def passwd(ctx: Context, keyid: str, new_passphrase_file: IO[str] | None) -> None:
    """Change a key's passphrase.  The current one comes from the usual variables or a prompt."""
    from trustkit.errors import PassphraseUnavailableError

    if new_passphrase_file is not None:
        new = new_passphrase_file.read().rstrip("\r\n")
    elif can_prompt():
        new = click.prompt("New passphrase", hide_input=True, confirmation_prompt="Repeat passphrase", err=True)
    else:
        raise PassphraseUnavailableError(
            "no new passphrase and no terminal to ask on", hint="pass --new-passphrase-file FILE (or - for stdin)"
        )
    if len(new) < 8:
        raise click.BadParameter("the new passphrase must be at least 8 characters", param_hint="passphrase")
    stored = ctx.key_store().change_passphrase(keyid, new)
    click.echo(f"Changed the passphrase of key {stored.keyid}")


@key.command("remove")
@click.argument("keyid")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--force", is_flag=True, help="Remove it even if it is your only key for some role.")
@pass_context
def remove(ctx: Context, keyid: str, yes: bool, force: bool) -> None:
    """Delete a private key from the store.  Refuses (without --force) when it is the only key
    you hold for a role of a repository you have worked with, naming those roles."""
    from trustkit.errors import TrustkitError
    from trustkit.ops import roles_left_unsignable

    store = ctx.key_store()
    info = store.find(keyid)
    orphaned = roles_left_unsignable(store, info.keyid)
    if orphaned and not force:
        raise TrustkitError(
            f"key {info.keyid[:12]} is your only key for: {'; '.join(orphaned)}; without it you cannot sign there",
            hint="pass --force to remove it anyway, or export it first",
        )
    if not yes:
        if not can_prompt():
            raise click.UsageError("refusing to delete a key without confirmation; pass --yes")
        click.confirm(f"Delete key {info.keyid} (role {info.role})? This cannot be undone", abort=True, err=True)
    store.remove(info.keyid)
    click.echo(f"Removed key {info.keyid} (role {info.role})", file=sys.stdout)


def _key_json(k: StoredKey) -> dict[str, object]:
    return {
        "keyid": k.keyid,
        "role": k.role,
        "gun": k.gun,
        "algorithm": k.algorithm,
        "path": str(k.path),
        "encrypted": k.encrypted,
        "location": k.where,  # "file", 'pkcs11 token "t"', "AWS KMS", ...
        "uri": k.uri,
    }
