"""Layer `notary` (clients): the client configuration file.

It uses the notary client's ``trust_pinning`` section (§6.4), so an existing
``~/.notary/config.json`` works as it is::

    {
        "trust_pinning": {
            "certs": {"docker.io/library/alpine": ["<cert key ID>"], "docker.io/myorg/*": ["<cert key ID>"]},
            "ca": {"docker.io/myorg/": "/path/ca-bundle.pem"},
            "disable_tofu": false,
        }
    }

CA paths are relative to the file.  GUN keys are matched in lowercase, as notary's config
loader lower-cases them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from trustkit.encoding import loads_strict
from trustkit.errors import EncodingError, TrustkitError
from trustkit.trust.trusted_set import TrustPinning

MAX_CONFIG_SIZE = 1 << 20


def default_config_path(environ: Mapping[str, str] | None = None) -> Path | None:
    """``$TRUSTKIT_CONFIG``, else ``~/.config/trustkit/config.json`` when it exists."""
    env = os.environ if environ is None else environ
    if env.get("TRUSTKIT_CONFIG"):
        return Path(env["TRUSTKIT_CONFIG"])
    candidate = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "trustkit" / "config.json"
    return candidate if candidate.is_file() else None


def load_trust_pinning(path: Path | None, *, disable_tofu: bool = False) -> TrustPinning:
    """The pinning rules in ``path`` (none when ``path`` is None), with ``--no-tofu`` applied.

    Raises:
        TrustkitError: unreadable file, bad JSON, or entries of the wrong shape.
    """
    pinning = TrustPinning(disable_tofu=disable_tofu)
    if path is None:
        return pinning
    try:
        data = loads_strict(Path(path).read_bytes(), max_size=MAX_CONFIG_SIZE, what=f"config file {path}")
    except OSError as exc:
        raise TrustkitError(f"cannot read config file {path}: {exc.strerror}") from None
    except EncodingError as exc:
        raise TrustkitError(exc.message) from None
    section = data.get("trust_pinning", {}) if isinstance(data, dict) else None
    if not isinstance(section, dict):
        raise TrustkitError(f"{path}: trust_pinning must be an object")
    certs = section.get("certs", {})
    if not isinstance(certs, dict) or not all(
        isinstance(ids, list) and all(isinstance(i, str) for i in ids) for ids in certs.values()
    ):
        raise TrustkitError(f"{path}: trust_pinning.certs must map repository names to lists of key IDs")
    pinning.certs = {gun.lower(): ids for gun, ids in certs.items()}
    cas = section.get("ca", {})
    if not isinstance(cas, dict) or not all(isinstance(v, str) for v in cas.values()):
        raise TrustkitError(f"{path}: trust_pinning.ca must map repository prefixes to CA file paths")
    for prefix, ca_file in cas.items():
        ca_path = (Path(path).parent / ca_file).expanduser()
        try:
            pinning.ca[prefix.lower()] = ca_path.read_bytes()
        except OSError as exc:
            raise TrustkitError(f"{path}: cannot read the CA for {prefix}: {ca_path}: {exc.strerror}") from None
    tofu_off = section.get("disable_tofu", False)
    if not isinstance(tofu_off, bool):
        raise TrustkitError(f"{path}: trust_pinning.disable_tofu must be true or false")
    pinning.disable_tofu = disable_tofu or tofu_off
    return pinning
