"""Layer `keys`: the ``pkcs11:`` (RFC 7512) securesystemslib signer.

securesystemslib's ``HSMSigner`` (``hsm:`` URIs) finds its module in ``$PYKCS11LIB``, its key by a
numeric CKA_ID and signs ECDSA only; keys made with ``pkcs11-tool``/``softhsm2-util``, or written
down by openssl and cosign, are named by URI: module path, token label, key label or id, PIN
source.  This signer reads those URIs and signs through the same library securesystemslib uses
(python-pkcs11): ECDSA P-256 over SHA-256 (returned as DER, as securesystemslib's signers do)
and RSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt (notary's ``rsapss``).

Every call into the PKCS#11 module runs on one worker thread of its own: modules built on
OpenSSL (SoftHSM2 among them) leave errors of their own set-up (an engine they looked for) on the
calling thread's OpenSSL error queue, which Python's ``ssl`` then reports as the failure of the
next TLS handshake to the trust server.  The PIN is still asked for on the caller's thread.

Imported only when a pkcs11 key is used (it loads securesystemslib and python-pkcs11).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pkcs11
import pkcs11.util.ec
import pkcs11.util.rsa
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.exceptions import (
    MultipleObjectsReturned,
    MultipleTokensReturned,
    NoSuchKey,
    NoSuchToken,
    PinIncorrect,
    PinLenRange,
    PKCS11Error,
)
from securesystemslib.signer import Key, SecretsHandler, Signature, Signer, SSlibKey

from trustkit.errors import KeyFormatError, KeyNotFoundError, PassphraseError
from trustkit.keys.passphrase import PIN_ENV
from trustkit.keys.uri import Pkcs11URI

MAX_PIN_ATTEMPTS = 3  # as for passphrases; a token may lock itself after a few more

_T = TypeVar("_T")
_WORKER: list[ThreadPoolExecutor] = []


def _on_token_thread(call: Callable[..., _T], *args: Any) -> _T:
    """Run ``call(*args)`` on the one thread that talks to PKCS#11 modules (see the module doc)."""
    if not _WORKER:
        _WORKER.append(ThreadPoolExecutor(max_workers=1, thread_name_prefix="trustkit-pkcs11"))
    return _WORKER[0].submit(call, *args).result()


class Pkcs11Signer(Signer):
    """Signs with a private key on a PKCS#11 token named by an RFC 7512 URI."""

    SCHEME = "pkcs11"

    def __init__(self, uri: Pkcs11URI, public_key: SSlibKey, secrets_handler: SecretsHandler | None) -> None:
        if public_key.scheme not in ("ecdsa-sha2-nistp256", "rsassa-pss-sha256"):
            raise ValueError(f"the pkcs11 signer makes ECDSA P-256 and RSA-PSS signatures, not {public_key.scheme}")
        self._uri = uri
        self._public_key = public_key
        self._token = _on_token_thread(_find_token, uri)
        # Log in now, so a wrong or missing PIN stops the command before anything is signed.
        self._pin = _login_pin(self._token, uri, secrets_handler)
        _on_token_thread(_private_key_is_there, self._token, self._pin, uri)

    @property
    def public_key(self) -> SSlibKey:
        return self._public_key

    @classmethod
    def from_priv_key_uri(
        cls, priv_key_uri: str, public_key: Key, secrets_handler: SecretsHandler | None = None
    ) -> Pkcs11Signer:
        if not isinstance(public_key, SSlibKey):
            raise ValueError(f"expected an SSlibKey for {priv_key_uri}")
        return cls(Pkcs11URI.parse(priv_key_uri), public_key, secrets_handler)

    @classmethod
    def import_(cls, priv_key_uri: str, secrets_handler: SecretsHandler | None = None) -> tuple[str, SSlibKey]:
        """(URI, public key) of the key ``priv_key_uri`` names.  Its public key object (or the
        certificate stored next to it) is read without logging in when the token allows; the
        private key is looked up too, so a URI naming no signing key is refused now."""
        uri = Pkcs11URI.parse(priv_key_uri)
        token = _on_token_thread(_find_token, uri)
        crypto = _on_token_thread(_read_public_key, token, None, uri)
        pin = _login_pin(token, uri, secrets_handler)
        if crypto is None:  # CKA_PRIVATE public objects are only seen once logged in
            crypto = _on_token_thread(_read_public_key, token, pin, uri)
        _on_token_thread(_private_key_is_there, token, pin, uri)
        if crypto is None:
            raise KeyNotFoundError(
                f"no public key or certificate for {uri.describe_key()}",
                hint="store the public key on the token with the same label and id as the private key",
            )
        scheme = "rsassa-pss-sha256" if _is_rsa(crypto) else "ecdsa-sha2-nistp256"
        return priv_key_uri, SSlibKey.from_crypto(crypto, scheme=scheme)

    def sign(self, payload: bytes) -> Signature:
        return Signature(self._public_key.keyid, _on_token_thread(self._sign, payload).hex())

    def _sign(self, payload: bytes) -> bytes:
        with self._token.open(user_pin=self._pin) as session:
            key = _find_key(session, self._uri, ObjectClass.PRIVATE_KEY)
            try:
                if key.key_type == KeyType.EC:
                    raw = key.sign(hashlib.sha256(payload).digest(), mechanism=Mechanism.ECDSA)
                    signature = pkcs11.util.ec.encode_ecdsa_signature(raw)
                else:
                    signature = key.sign(
                        payload,
                        mechanism=Mechanism.SHA256_RSA_PKCS_PSS,
                        mechanism_param=(Mechanism.SHA256, pkcs11.MGF.SHA256, 32),
                    )
            except PKCS11Error as exc:
                raise KeyFormatError(
                    f"the token refused to sign with {self._uri.describe_key()}: {_why(exc)}"
                ) from None
        return bytes(signature)


def _private_key_is_there(token: Any, pin: str, uri: Pkcs11URI) -> None:
    with token.open(user_pin=pin) as session:
        _find_key(session, uri, ObjectClass.PRIVATE_KEY)


def _read_public_key(token: Any, pin: str | None, uri: Pkcs11URI) -> Any:
    with token.open(user_pin=pin) as session:
        return _public_key(session, uri)


def _try_login(token: Any, pin: str) -> None:
    with token.open(user_pin=pin):
        pass


def _is_rsa(crypto: Any) -> bool:
    return isinstance(crypto, rsa.RSAPublicKey)


def _why(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def _find_token(uri: Pkcs11URI) -> Any:
    """The token the URI names (by label and/or serial), or the only initialised one.

    Raises:
        KeyNotFoundError: no module at the path, no such token, or several that match.
    """
    module = uri.module_path
    try:
        lib = pkcs11.lib(module)
    except PKCS11Error as exc:
        raise KeyNotFoundError(
            f"cannot load the PKCS#11 module {module}: {_why(exc)}",
            hint="check module-path in the key's URI (e.g. /usr/lib/softhsm/libsofthsm2.so)",
        ) from None
    wanted = {k: v for k, v in (("token_label", uri.token), ("token_serial", uri.path.get("serial"))) if v}
    try:
        return lib.get_token(token_flags=pkcs11.TokenFlag.TOKEN_INITIALIZED, **wanted)
    except NoSuchToken:
        names = ", ".join(sorted(f'"{t.label}"' for t in lib.get_tokens() if t.label)) or "none"
        what = f'token "{uri.token}"' if uri.token else "an initialised token"
        raise KeyNotFoundError(f"the PKCS#11 module {module} has no {what}", hint=f"tokens it has: {names}") from None
    except MultipleTokensReturned:
        raise KeyNotFoundError(
            f"several tokens of {module} match {uri.without_pin()}", hint="name one with token=LABEL in the URI"
        ) from None


def _find_key(session: Any, uri: Pkcs11URI, object_class: ObjectClass) -> Any:
    attrs: dict[str, Any] = {}
    if uri.object is not None:
        attrs["label"] = uri.object
    if uri.key_id is not None:
        attrs["id"] = uri.key_id
    try:
        return session.get_key(object_class, **attrs)
    except NoSuchKey:
        kind = "private key" if object_class == ObjectClass.PRIVATE_KEY else "public key"
        raise KeyNotFoundError(
            f"no {kind} {uri.describe_key()}",
            hint="list the token's objects with `pkcs11-tool --module MODULE --list-objects --login`",
        ) from None
    except MultipleObjectsReturned:
        raise KeyNotFoundError(
            f"several keys match {uri.describe_key()}", hint="add id=%XX (the key's CKA_ID) to the URI"
        ) from None


def _public_key(session: Any, uri: Pkcs11URI) -> Any:
    """The cryptography public key of the URI's public key object, else of a certificate with
    the same label/id; None when the session sees neither."""
    try:
        key = _find_key(session, uri, ObjectClass.PUBLIC_KEY)
    except KeyNotFoundError:
        return _certificate_key(session, uri)
    if key.key_type == KeyType.EC:
        return load_der_public_key(pkcs11.util.ec.encode_ec_public_key(key))
    if key.key_type == KeyType.RSA:
        return load_der_public_key(_rsa_spki(pkcs11.util.rsa.encode_rsa_public_key(key)))
    raise KeyFormatError(f"{uri.describe_key()} is neither an EC nor an RSA key")


def _rsa_spki(pkcs1: bytes) -> bytes:
    """PKCS#1 RSAPublicKey -> SubjectPublicKeyInfo DER (what cryptography loads)."""
    from trustkit.keys.der import oid, seq, tlv

    algorithm = seq(oid("1.2.840.113549.1.1.1"), b"\x05\x00")
    return seq(algorithm, tlv(0x03, b"\x00" + pkcs1))


def _certificate_key(session: Any, uri: Pkcs11URI) -> Any:
    attrs: dict[Attribute, Any] = {Attribute.CLASS: ObjectClass.CERTIFICATE}
    if uri.object is not None:
        attrs[Attribute.LABEL] = uri.object
    if uri.key_id is not None:
        attrs[Attribute.ID] = uri.key_id
    for cert in session.get_objects(attrs):
        return x509.load_der_x509_certificate(cert[Attribute.VALUE]).public_key()
    return None


def _login_pin(token: Any, uri: Pkcs11URI, secrets_handler: SecretsHandler | None) -> str:
    """A PIN that logs in: from the URI (pin-value, pin-source), else asked for, up to three
    times.  A PIN from the URI or the environment is not retried: it would fail the same way.

    Raises:
        PassphraseError: wrong PIN.  PassphraseUnavailableError: none given and none can be asked.
    """
    given = uri.pin_from_uri()
    label = token.label or ""
    for attempt in range(1, MAX_PIN_ATTEMPTS + 1):
        if given is not None:
            pin, source = given
        elif secrets_handler is not None:
            pin, source = secrets_handler(f"pin:{label}"), None
        else:
            raise PassphraseError(
                f'no PIN for token "{label}"', hint=f"set {PIN_ENV} or add pin-source=FILE to the URI"
            )
        try:
            _on_token_thread(_try_login, token, pin)
            return pin
        except (PinIncorrect, PinLenRange):
            if source is not None:
                raise PassphraseError(
                    f'the PIN in {source} does not log in to token "{label}"',
                    hint="check the PIN; nothing was signed or changed",
                ) from None
            if attempt == MAX_PIN_ATTEMPTS:
                break
        except PKCS11Error as exc:
            raise PassphraseError(f'cannot log in to token "{label}": {_why(exc)}') from None
    raise PassphraseError(f'wrong PIN for token "{label}" ({MAX_PIN_ATTEMPTS} attempts)', hint="nothing was signed")
