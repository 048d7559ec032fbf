"""Layer `metadata`: Root / Targets / Snapshot / Timestamp and delegations in notary's exact
wire shape: parse strictly, serialise byte-for-byte as notary does, verify thresholds over the
original bytes.  No I/O."""

from trustkit.metadata.envelope import Metadata, Signature, VerifyResult, verify_signatures
from trustkit.metadata.payload import (
    DEFAULT_EXPIRY,
    DelegationRole,
    Delegations,
    FileMeta,
    RoleKeys,
    Root,
    SigningRule,
    Snapshot,
    Targets,
    Timestamp,
    build_snapshot,
    signing_rule_for,
    validate_role_name,
)
from trustkit.roles import BASE_ROLES, ROOT, SNAPSHOT, TARGETS, TIMESTAMP, is_delegation

__all__ = [
    "BASE_ROLES",
    "DEFAULT_EXPIRY",
    "ROOT",
    "SNAPSHOT",
    "TARGETS",
    "TIMESTAMP",
    "DelegationRole",
    "Delegations",
    "FileMeta",
    "Metadata",
    "Root",
    "RoleKeys",
    "Signature",
    "SigningRule",
    "Snapshot",
    "Targets",
    "Timestamp",
    "VerifyResult",
    "build_snapshot",
    "is_delegation",
    "signing_rule_for",
    "validate_role_name",
    "verify_signatures",
]
