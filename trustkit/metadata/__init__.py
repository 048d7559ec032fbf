"""Layer `metadata`: Root / Targets / Snapshot / Timestamp and delegations in notary's exact
wire shape: parse strictly, serialise byte-for-byte as notary does, verify thresholds over the
original bytes.  No I/O."""

from trustkit.metadata.envelope import Metadata, Signature, VerifyResult, verify_signatures
from trustkit.metadata.payload import (
    DelegationRole,
    Delegations,
    FileMeta,
    Root,
    RoleKeys,
    Snapshot,
    Targets,
    Timestamp,
    validate_role_name,
)
from trustkit.roles import BASE_ROLES, ROOT, SNAPSHOT, TARGETS, TIMESTAMP, is_delegation

__all__ = [
    "BASE_ROLES",
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
    "Snapshot",
    "Targets",
    "Timestamp",
    "VerifyResult",
    "is_delegation",
    "validate_role_name",
    "verify_signatures",
]
