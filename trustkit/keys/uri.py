"""Layer `keys`: keys that live elsewhere, named by URI (a PKCS#11 token, a cloud KMS).

The key store keeps a reference to such a key (:class:`KeyReference`: the URI without any PIN,
the public key, role and GUN), never private material.  Signing goes through securesystemslib's
signers (``Signer.from_priv_key_uri`` and its ``SIGNER_FOR_URI_SCHEME`` table) behind trustkit's
:class:`~trustkit.keys.signer.SSLibSigner`; the ``pkcs11:`` scheme (RFC 7512, as openssl, p11-kit
and cosign write it) is added to that table by :mod:`trustkit.keys.hsm`, because securesystemslib's
own ``hsm:`` scheme names neither the module, the token's label nor the key's label, and signs
ECDSA only.

This module parses and describes URIs; it imports securesystemslib, python-pkcs11 and the cloud
SDKs only in the functions that talk to a key.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, unquote_to_bytes

from trustkit.errors import KeyFormatError, KeyNotFoundError, PassphraseError
from trustkit.keys.passphrase import PIN_ENV
from trustkit.keys.public import PublicKey

# scheme -> what `key list` calls the place, and the securesystemslib extra that brings its SDK
SCHEMES: dict[str, tuple[str, str | None]] = {
    "pkcs11": ("PKCS#11 token", None),
    "awskms": ("AWS KMS", "awskms"),
    "gcpkms": ("Google Cloud KMS", "gcpkms"),
    "azurekms": ("Azure Key Vault", "azurekms"),
    "hv": ("HashiCorp Vault", "vault"),
}
MODULE_ENV = "PYKCS11LIB"  # securesystemslib's HSMSigner reads the module path from it too
MAX_PIN_SOURCE = 4096  # a PIN file is a line, not a document

# Asks for a PIN: (token label, attempt) -> PIN.  The key store turns it into a PassphraseRequest.
PinPrompt = Callable[[str, int], str]


def scheme_of(text: str) -> str | None:
    """The key URI scheme ``text`` starts with, or None (a key ID, a file name)."""
    head, sep, _ = text.partition(":")
    return head.lower() if sep and head.lower() in SCHEMES else None


def is_key_uri(text: str) -> bool:
    return scheme_of(text) is not None


# --------------------------------------------------------------------------------------------
# RFC 7512 pkcs11: URIs


_PATH_ATTRS = ("token", "manufacturer", "model", "serial", "object", "id", "type", "slot-id", "library-description")
_QUERY_ATTRS = ("module-path", "module-name", "pin-value", "pin-source")


@dataclass(frozen=True)
class Pkcs11URI:
    """The parts of a ``pkcs11:`` URI trustkit uses; anything else is kept as written."""

    path: dict[str, str]  # percent-decoded path attributes (token, object, serial, ...)
    query: dict[str, str]  # percent-decoded query attributes (module-path, pin-source, ...)
    key_id: bytes | None = field(default=None)  # CKA_ID, from ``id=`` (percent-encoded bytes)

    @classmethod
    def parse(cls, uri: str) -> Pkcs11URI:
        """Raises KeyFormatError: not a pkcs11 URI, a repeated or unknown attribute, no object."""
        if scheme_of(uri) != "pkcs11":
            raise KeyFormatError(f'"{_short(uri)}" is not a pkcs11: URI')
        body = uri.split(":", 1)[1]
        path_text, _, query_text = body.partition("?")
        path: dict[str, str] = {}
        key_id = None
        for part in filter(None, path_text.split(";")):
            name, eq, value = part.partition("=")
            if not eq or name in path:
                raise KeyFormatError(f'pkcs11 URI path attribute "{_short(part)}" is malformed or repeated')
            if name not in _PATH_ATTRS:
                raise KeyFormatError(f'pkcs11 URI has unknown path attribute "{_short(name)}"')
            if name == "id":
                key_id = unquote_to_bytes(value)
            path[name] = unquote(value)
        query: dict[str, str] = {}
        for part in filter(None, query_text.split("&")):
            name, eq, value = part.partition("=")
            if not eq or name in query:
                raise KeyFormatError(f'pkcs11 URI query attribute "{_short(part)}" is malformed or repeated')
            if name not in _QUERY_ATTRS:
                raise KeyFormatError(f'pkcs11 URI has unknown query attribute "{_short(name)}"')
            query[name] = unquote(value)
        if "object" not in path and key_id is None:
            raise KeyFormatError(
                "a pkcs11 URI must name the key: object=LABEL or id=%XX (its CKA_LABEL or CKA_ID)",
                hint="e.g. pkcs11:token=mytoken;object=root?module-path=/usr/lib/softhsm/libsofthsm2.so",
            )
        if "pin-value" in query and "pin-source" in query:
            raise KeyFormatError("a pkcs11 URI gives either pin-value or pin-source, not both")
        return cls(path, query, key_id)

    @property
    def token(self) -> str | None:
        return self.path.get("token")

    @property
    def object(self) -> str | None:
        return self.path.get("object")

    @property
    def module_path(self) -> str:
        """The PKCS#11 library: ``module-path``, else ``$PYKCS11LIB``.

        Raises:
            KeyFormatError: neither is given.
        """
        module = self.query.get("module-path") or os.environ.get(MODULE_ENV)
        if not module:
            raise KeyFormatError(
                f"the pkcs11 URI names no PKCS#11 module for {self.describe_key()}",
                hint=f"add ?module-path=/path/to/module.so to the URI, or set {MODULE_ENV}",
            )
        return module

    def describe_key(self) -> str:
        what = f'object "{self.object}"' if self.object else f"id {self.path['id']}"
        return f'{what} on token "{self.token}"' if self.token else what

    def without_pin(self) -> str:
        """The URI as the key store keeps it: every attribute but ``pin-value``."""
        path = ";".join(f"{k}={_quote(v)}" for k, v in self.path.items() if k != "id")
        if self.key_id is not None:
            path = ";".join(filter(None, [path, "id=" + "".join(f"%{b:02x}" for b in self.key_id)]))
        query = "&".join(f"{k}={_quote(v)}" for k, v in self.query.items() if k != "pin-value")
        return f"pkcs11:{path}" + (f"?{query}" if query else "")

    def pin_from_uri(self) -> tuple[str, str] | None:
        """(PIN, where it came from) when the URI gives it; None when it must be asked for.

        Raises:
            PassphraseError: the pin-source file cannot be read.
        """
        if "pin-value" in self.query:
            return self.query["pin-value"], "the URI's pin-value"
        source = self.query.get("pin-source")
        if source is None:
            return None
        path = Path(source.removeprefix("file://").removeprefix("file:"))
        try:
            with path.open("rb") as handle:
                data = handle.read(MAX_PIN_SOURCE + 1)
        except OSError as exc:
            raise PassphraseError(
                f"cannot read the PIN of {self.describe_key()} from pin-source {path}: {exc.strerror}"
            ) from None
        if len(data) > MAX_PIN_SOURCE:
            raise PassphraseError(f"pin-source {path} is larger than {MAX_PIN_SOURCE} bytes; it should hold the PIN")
        return data.decode("utf-8", "replace").rstrip("\r\n"), f"pin-source {path}"


def _quote(value: str) -> str:
    return quote(value, safe="/-_.~:@!$'()*+,")


def _short(text: str) -> str:
    return text if len(text) <= 80 else text[:77] + "..."


def redact(uri: str) -> str:
    """``uri`` without secrets (a pkcs11 URI's pin-value), fit to store and to show."""
    return Pkcs11URI.parse(uri).without_pin() if scheme_of(uri) == "pkcs11" else uri


# --------------------------------------------------------------------------------------------
# References in the key store


@dataclass(frozen=True)
class KeyReference:
    """A key the store knows by URI: enough to list it, show it and reach it; no secret."""

    uri: str  # without pin-value
    public: PublicKey  # the bare key (its keyid names the reference)
    role: str
    gun: str | None

    @property
    def keyid(self) -> str:
        return self.public.keyid

    @property
    def location(self) -> str:
        """Where the key lives, for ``key list``: ``pkcs11 token "t"``, ``AWS KMS`` ..."""
        scheme = scheme_of(self.uri) or "?"
        if scheme == "pkcs11":
            token = Pkcs11URI.parse(self.uri).token
            return f'pkcs11 token "{token}"' if token else "pkcs11 token"
        return SCHEMES[scheme][0]

    def to_json(self) -> dict[str, Any]:
        from trustkit.keys.store import public_pem

        return {
            "uri": self.uri,
            "public_key": public_pem(self.public, self.role),
            "role": self.role,
            "gun": self.gun,
        }

    @classmethod
    def from_json(cls, data: Any, *, what: str) -> KeyReference:
        """Raises KeyFormatError: not a reference this version wrote."""
        from trustkit.keys.public import load_public_pem

        if not isinstance(data, dict) or not {"uri", "public_key", "role"} <= set(data):
            raise KeyFormatError(f"{what} is not a key reference")
        uri, role, gun = data["uri"], data["role"], data.get("gun")
        if not (isinstance(uri, str) and is_key_uri(uri) and isinstance(role, str)):
            raise KeyFormatError(f"{what} is not a key reference")
        if gun is not None and not isinstance(gun, str):
            raise KeyFormatError(f"{what} has a malformed gun")
        return cls(redact(uri), load_public_pem(data["public_key"], what=what).bare, role, gun)


# --------------------------------------------------------------------------------------------
# Reaching the key (securesystemslib)


def _sslib_scheme(public: PublicKey) -> str:
    """The securesystemslib scheme that makes notary's signature for ``public``'s algorithm."""
    algorithm = public.algorithm
    if algorithm == "ecdsa":
        from cryptography.hazmat.primitives.asymmetric import ec

        curve = public.crypto_key.curve if isinstance(public.crypto_key, ec.EllipticCurvePublicKey) else None
        if curve is None or curve.name != "secp256r1":
            # notary's "ecdsa" signatures hash with SHA-256, securesystemslib's P-384 scheme with SHA-384
            raise KeyFormatError("keys in a token or KMS must be ECDSA P-256, RSA or Ed25519 (notary's algorithms)")
        return "ecdsa-sha2-nistp256"
    if algorithm == "rsa":
        return "rsassa-pss-sha256"
    return "ed25519"


def sslib_key(public: PublicKey) -> Any:
    """``public`` as a securesystemslib ``SSlibKey`` with the scheme notary's signatures use."""
    from securesystemslib.signer import SSlibKey

    return SSlibKey.from_crypto(public.crypto_key, scheme=_sslib_scheme(public))


def _registered_schemes() -> dict[str, Any]:
    """securesystemslib's URI table with trustkit's ``pkcs11`` signer added."""
    from securesystemslib.signer import SIGNER_FOR_URI_SCHEME

    from trustkit.keys.hsm import Pkcs11Signer

    SIGNER_FOR_URI_SCHEME.setdefault(Pkcs11Signer.SCHEME, Pkcs11Signer)
    return SIGNER_FOR_URI_SCHEME


def _missing_sdk(scheme: str, exc: Exception) -> KeyFormatError:
    extra = SCHEMES[scheme][1]
    return KeyFormatError(
        f"{SCHEMES[scheme][0]} keys need a library that is not installed ({exc})",
        hint=f"pip install 'trustkit[{extra}]'" if extra else "pip install python-pkcs11",
    )


def open_signer(reference: KeyReference, uri: str | None = None, pin: PinPrompt | None = None) -> Any:
    """A trustkit ``Signer`` for ``reference`` through securesystemslib (``uri`` may be the
    reference's URI with a pin-value, as given on the command line).

    Raises:
        KeyFormatError (no such library, a URI it refuses), KeyNotFoundError (no such module,
        token or key), PassphraseError/PassphraseUnavailableError (the PIN).
    """
    from securesystemslib.exceptions import UnsupportedLibraryError

    from trustkit.keys.signer import SSLibSigner

    scheme = scheme_of(reference.uri) or ""
    table = _registered_schemes()
    if scheme not in table:
        raise KeyFormatError(f'securesystemslib has no signer for "{scheme}:" URIs')
    handler = _secrets_handler(pin)
    try:
        inner = table[scheme].from_priv_key_uri(uri or reference.uri, sslib_key(reference.public), handler)
    except UnsupportedLibraryError as exc:
        raise _missing_sdk(scheme, exc) from None
    except ValueError as exc:
        raise KeyFormatError(f"{SCHEMES[scheme][0]} key {_short(reference.uri)}: {exc}") from None
    return SSLibSigner(inner, where=f"{reference.location} key {reference.keyid[:12]}")


def _secrets_handler(pin: PinPrompt | None) -> Callable[[str], str]:
    attempts = {"n": 0}

    def ask(what: str) -> str:
        # securesystemslib asks by secret name ("pin"); the token label comes through trustkit's
        # own pkcs11 signer as "pin:<label>".
        attempts["n"] += 1
        label = what.partition(":")[2]
        if pin is None:
            from trustkit.errors import PassphraseUnavailableError

            raise PassphraseUnavailableError(
                f"no PIN for token {label!r} and nothing to ask it with", hint=f"set {PIN_ENV}"
            )
        return pin(label, attempts["n"])

    return ask


def import_key(uri: str, pin: PinPrompt | None = None) -> tuple[str, PublicKey]:
    """(the URI to keep, the bare public key) of the key ``uri`` names, read from the token or
    the KMS.  The URI kept has no pin-value; anything securesystemslib normalises (a KMS key's
    version) is as it returns it.

    Raises:
        KeyFormatError, KeyNotFoundError, PassphraseError, PassphraseUnavailableError.
    """
    from securesystemslib.exceptions import UnsupportedLibraryError

    scheme = scheme_of(uri)
    if scheme is None:
        raise KeyFormatError(f'"{_short(uri)}" is not a key URI; use one of {", ".join(s + ":" for s in SCHEMES)}')
    try:
        kept, key = _IMPORTERS[scheme](uri, pin)
    except UnsupportedLibraryError as exc:
        raise _missing_sdk(scheme, exc) from None
    except (KeyFormatError, KeyNotFoundError, PassphraseError):
        raise
    except ValueError as exc:
        raise KeyNotFoundError(f"{SCHEMES[scheme][0]}: {exc}") from None
    return redact(kept), _public_from_sslib_key(key)


def _public_from_sslib_key(key: Any) -> PublicKey:
    from trustkit.keys.signer import public_from_sslib

    public = public_from_sslib(key)
    _sslib_scheme(public)  # refuses what notary cannot verify
    return public


def _after(uri: str) -> str:
    return uri.split(":", 1)[1]


def _import_pkcs11(uri: str, pin: PinPrompt | None) -> tuple[str, Any]:
    from trustkit.keys.hsm import Pkcs11Signer

    return Pkcs11Signer.import_(uri, _secrets_handler(pin))


def _import_aws(uri: str, pin: PinPrompt | None) -> tuple[str, Any]:
    from securesystemslib.signer import AWSSigner

    return AWSSigner.import_(_after(uri))


def _import_gcp(uri: str, pin: PinPrompt | None) -> tuple[str, Any]:
    from securesystemslib.signer import GCPSigner

    return GCPSigner.import_(_after(uri))


def _import_azure(uri: str, pin: PinPrompt | None) -> tuple[str, Any]:
    from securesystemslib.signer import AzureSigner

    # azurekms://<vault>.vault.azure.net/keys/<name>[/<version>]
    rest = _after(uri).removeprefix("//")
    host, _, path = rest.partition("/")
    parts = path.split("/")
    if not host.endswith(".vault.azure.net") or len(parts) < 2 or parts[0] != "keys":
        raise KeyFormatError("an azurekms URI is azurekms://<vault>.vault.azure.net/keys/<key name>[/<version>]")
    return AzureSigner.import_(host.removesuffix(".vault.azure.net"), parts[1])


def _import_vault(uri: str, pin: PinPrompt | None) -> tuple[str, Any]:
    from securesystemslib.signer import VaultSigner

    # hv:<key name>[/<version>]: the newest version is what Vault reports
    return VaultSigner.import_(_after(uri).split("/")[0])


_IMPORTERS: dict[str, Callable[[str, PinPrompt | None], tuple[str, Any]]] = {
    "pkcs11": _import_pkcs11,
    "awskms": _import_aws,
    "gcpkms": _import_gcp,
    "azurekms": _import_azure,
    "hv": _import_vault,
}
