"""The one error tree.  Every failure a user can cause or meet is a TrustkitError whose message
says what failed and what to do; the CLI turns it into one line on stderr and an exit status.

TrustkitError
├── EncodingError          bytes or JSON that cannot be decoded/encoded as the wire needs
├── InvalidReferenceError  an image reference that breaks a naming rule
├── KeyMaterialError       key material problems
│   ├── KeyFormatError     PEM / DER that is not a usable key
│   ├── PassphraseError    wrong passphrase
│   ├── PassphraseUnavailableError  no passphrase and no terminal to ask on
│   └── KeyNotFoundError   no such key in the store
├── MetadataError          trust metadata that is malformed (carries the JSON path)
├── VerificationError      metadata that is well-formed but not trusted   (verify exit 6)
│   ├── ThresholdError
│   ├── ExpiredError                                                    (verify exit 5)
│   ├── RollbackError
│   ├── HashMismatchError
│   ├── OversizedError     larger than its signed length or cap (endless data)
│   ├── NotSignedError     the tag has no trust data                    (verify exit 3)
│   ├── DigestMismatchError  signed, but for another digest (or the registry serves another) (verify exit 4)
│   └── ManifestMissingError  signed, but the registry lost the signed manifest (verify exit 9)
├── NetworkError           the server could not be reached             (verify exit 7)
│   └── ServerError        it answered with a 5xx or nonsense
├── NotAuthorizedError     401/403 after trying the credentials we have (verify exit 8)
├── ServerRejectedError    a 4xx with notary's error envelope (code, detail)
├── NotFoundError          404: no such metadata/repository
├── NoSigningKeyError      none of the keys that could sign a role is in the store
├── SourceError            an image source that is missing, malformed or inconsistent
├── ImmutableTagError      a push that would move a signed tag of an immutable repository
├── PushedNotSignedError   the image is in the registry, but signing it failed
├── AuthConfigError        the server's auth configuration cannot be used
└── InvalidScopeError      a token scope that is not <type>:<name>:<actions>

Exit statuses: 1 for every error; `trustkit verify` uses ``verify_status`` (the numbers above)
and documents them in its --help.
"""

from __future__ import annotations


class TrustkitError(Exception):
    """Root of every error trustkit raises on purpose."""

    exit_code = 1  # every command but `verify`
    verify_status = 1  # `trustkit verify` says why a tag is not trusted with distinct codes

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class EncodingError(TrustkitError):
    """Input that is not valid for the wire encoding (JSON, base64, DER, time)."""


class InvalidReferenceError(TrustkitError):
    """An image reference, repository name, tag or digest that breaks a naming rule."""


class KeyMaterialError(TrustkitError):
    """Key material could not be used."""


class KeyFormatError(KeyMaterialError):
    """PEM or DER that is not a usable key or certificate."""


class PassphraseError(KeyMaterialError):
    """The passphrase does not decrypt the key."""


class PassphraseUnavailableError(KeyMaterialError):
    """No passphrase in the environment and no terminal to ask on."""


class KeyNotFoundError(KeyMaterialError):
    """The key store has no key with that ID or role."""


class MetadataError(TrustkitError):
    """Trust metadata that is malformed; ``path`` names where in the document."""

    def __init__(self, message: str, *, path: str = "", hint: str | None = None) -> None:
        full = f"{path}: {message}" if path else message
        super().__init__(full, hint=hint)
        self.path = path


class VerificationError(TrustkitError):
    """Well-formed metadata that cannot be trusted."""

    verify_status = 6


class ThresholdError(VerificationError):
    """Too few valid signatures for a role's threshold."""


class ExpiredError(VerificationError):
    """Metadata past its ``expires`` time."""

    verify_status = 5


class RollbackError(VerificationError):
    """A version lower than one already trusted."""


class HashMismatchError(VerificationError):
    """Bytes whose hash or length differ from what the parent metadata says."""


class OversizedError(VerificationError):
    """A file larger than its signed length or its cap: endless-data attack or corruption."""


class NotSignedError(VerificationError):
    """No trust data for the tag (or the repository)."""

    verify_status = 3


class DigestMismatchError(VerificationError):
    """The tag is signed, but for a different digest."""

    verify_status = 4


class ManifestMissingError(VerificationError):
    """Signed, but the registry no longer serves the signed manifest: a content-trust pull fails."""

    verify_status = 9


class NetworkError(TrustkitError):
    """The server could not be reached (connection, TLS, timeout)."""

    verify_status = 7


class ServerError(NetworkError):
    """The server answered with a 5xx or a response that makes no sense."""


class NotAuthorizedError(TrustkitError):
    """The server refused our credentials (401/403)."""

    verify_status = 8


class ServerRejectedError(TrustkitError):
    """A 4xx answer with notary's error envelope."""

    def __init__(
        self, message: str, *, status: int, code: str = "", detail: object = None, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.code = code
        self.detail = detail


class NotFoundError(TrustkitError):
    """404: the server has no such metadata or repository."""


class NoSigningKeyError(TrustkitError):
    """None of the keys that could sign a role are in the key store."""


class SourceError(TrustkitError):
    """The image source is missing, malformed or inconsistent."""


class ImmutableTagError(TrustkitError):
    """The repository is immutable and the tag is already signed for another digest."""


class PushedNotSignedError(TrustkitError):
    """The image is in the registry, but signing it failed; ``summary`` (a push summary) says what
    was pushed."""

    summary: object = None


class AuthConfigError(TrustkitError):
    """The server's auth configuration cannot be used: a root bundle, key, certificate or htpasswd file."""


class InvalidScopeError(TrustkitError, ValueError):
    """A scope string that is not ``<type>:<name>:<action>[,<action>...]``."""
