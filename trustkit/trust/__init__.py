"""Layer `trust`: what a client may believe, decided without I/O.

- ``trusted_set``: the trusted set (update order, root chain, rollback, freeze, thresholds, pinning);
- ``resolution``: the one tag -> digest resolution (verify, inspect, the web page, immutability);
- ``repository``: editing a GUN's trust data and signing what changed.
"""

from trustkit.errors import NoSigningKeyError
from trustkit.trust.repository import Repository
from trustkit.trust.resolution import DelegationTree, ReleasedTag, Resolved, released_tags, verified_tree
from trustkit.trust.trusted_set import TrustedSet, TrustPinning

__all__ = [
    "DelegationTree",
    "NoSigningKeyError",
    "ReleasedTag",
    "Repository",
    "Resolved",
    "TrustPinning",
    "TrustedSet",
    "released_tags",
    "verified_tree",
]
