"""Layer `cli`: ``trustkit metadata check`` — read a trust metadata file the way notary would."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from trustkit.cli.output import FORMAT_OPTION, emit_json


@click.group()
def metadata() -> None:
    """Inspect trust metadata files (root.json, targets.json, ...)."""


@metadata.command("check")
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@click.option("--role", help="Role the file is for (default: from its _type; needed for delegations).")
@click.option(
    "--root",
    "root_file",
    type=click.Path(dir_okay=False, exists=True),
    help="root.json whose keys must sign FILE (a root file is checked against itself).",
)
@FORMAT_OPTION
def check(file: str, role: str | None, root_file: str | None, output_format: str) -> None:
    """Parse FILE strictly, confirm notary would re-serialise it to the same bytes, and verify
    its signatures when the keys are known.  Exits 1 when anything is wrong."""
    from trustkit.errors import MetadataError, VerificationError
    from trustkit.metadata import Metadata, Root, validate_role_name

    if role:
        validate_role_name(role)
    data = Path(file).read_bytes()
    meta = Metadata.from_bytes(data, role=role)
    role = role or type(meta.signed).__name__.lower()
    report: dict[str, object] = {
        "file": file,
        "role": role,
        "type": type(meta.signed).__name__,
        "version": meta.signed.version,
        "expires": meta.signed.expires,
        "expired": meta.signed.is_expired(datetime.now(UTC)),
        "canonical": meta.to_bytes() == data,
        "signatures": len(meta.signatures),
    }
    root = meta.signed if isinstance(meta.signed, Root) else None
    if root_file:
        root = Metadata.from_bytes(Path(root_file).read_bytes(), role="root").signed
    if root is not None and role in root.roles:
        result = meta.verify_by(root.signing_rule(role))
        report["verified"] = bool(result)
        report["signed_by"] = sorted(result.signed)
    if output_format == "json":
        emit_json(report)
    else:
        for name, value in report.items():
            click.echo(f"{name + ':':<12} {value}")
    if not report["canonical"]:
        raise MetadataError("file bytes differ from notary's serialisation; readers will see hash mismatches")
    if report.get("verified") is False:
        raise VerificationError(f"signatures on {file} do not meet the {role} threshold")
