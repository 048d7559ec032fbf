"""Layer `server`: htpasswd files for the built-in token issuer.  ``user:bcrypt-hash`` lines, read
strictly: any other password scheme is refused with a message that names it, never the hash."""

from __future__ import annotations

import re
from pathlib import Path

from trustkit.errors import AuthConfigError

_BCRYPT_PREFIXES = ("$2y$", "$2b$", "$2a$")
_SCHEME_NAMES = (
    ("$apr1$", "Apache MD5 (htpasswd -m)"),
    ("{SHA}", "SHA-1 (htpasswd -s)"),
    ("$1$", "MD5-crypt"),
    ("$5$", "SHA-256-crypt"),
    ("$6$", "SHA-512-crypt"),
    ("$2x$", "bcrypt $2x$ (the buggy crypt_blowfish variant)"),
    ("$argon2", "argon2"),
)


def load_htpasswd(path: Path) -> dict[str, bytes]:
    """``user:bcrypt-hash`` per line; blank lines and ``#`` comments skipped.

    Raises:
        AuthConfigError: unreadable file, a malformed line, a duplicate user, or a password hash
            that is not bcrypt (the message names the line and the scheme, never the hash).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AuthConfigError(
            f"htpasswd file {path} does not exist", hint="create it with `htpasswd -B -c FILE USER`"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AuthConfigError(f"cannot read htpasswd file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    fix = "recreate the entry with bcrypt: `htpasswd -B FILE USER`"
    entries: dict[str, bytes] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not user or not hashed:
            raise AuthConfigError(f"{path} line {number} is not user:password-hash", hint=fix)
        if user in entries:
            raise AuthConfigError(f"{path} line {number}: user {user!r} appears twice", hint="keep one entry per user")
        if not hashed.startswith(_BCRYPT_PREFIXES):
            scheme = next((label for prefix, label in _SCHEME_NAMES if hashed.startswith(prefix)), None)
            what = f"a {scheme} hash" if scheme else "not a bcrypt hash (crypt, plain text or unknown)"
            raise AuthConfigError(
                f"{path} line {number}: the password of {user!r} is {what}; "
                "only bcrypt ($2y$, $2b$ or $2a$) is accepted",
                hint=fix,
            )
        if not re.fullmatch(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}", hashed):
            raise AuthConfigError(f"{path} line {number}: the bcrypt hash of {user!r} is malformed", hint=fix)
        entries[user] = hashed.encode("ascii")
    return entries


def bcrypt_cost(hashed: bytes) -> int:
    """The cost factor of a hash :func:`load_htpasswd` accepted."""
    return int(hashed[4:6])  # "$2y$12$...": checked by load_htpasswd
