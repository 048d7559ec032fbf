"""Layer `keys`: where passphrases come from.

Library code never prompts.  It asks a ``PassphraseSource`` (a callable taking a
``PassphraseRequest``).  ``EnvPassphrases`` answers from the environment variables docker and
notary use, and otherwise defers to an optional fallback (the CLI passes a TTY prompt); with
neither it fails at once naming the variable to set, so CI never hangs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from trustkit.errors import PassphraseError, PassphraseUnavailableError

ROOT_ENV = ("DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE", "NOTARY_ROOT_PASSPHRASE")
TARGETS_ENV = ("DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE", "NOTARY_TARGETS_PASSPHRASE")
SNAPSHOT_ENV = ("DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE", "NOTARY_SNAPSHOT_PASSPHRASE")
DELEGATION_ENV = ("DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE", "NOTARY_DELEGATION_PASSPHRASE")
PIN_ENV = "TRUSTKIT_PKCS11_PIN"  # the user PIN of a PKCS#11 token (a key loaded by URI)


def env_names(role: str) -> tuple[str, ...]:
    """The variables consulted for a key of ``role``, docker's first (§6.3).

    Docker uses the REPOSITORY passphrase for every non-root key; notary has one per kind.
    """
    if role == "root":
        return ROOT_ENV
    if role == "targets":
        return TARGETS_ENV
    if role in ("snapshot", "timestamp"):
        return SNAPSHOT_ENV
    return DELEGATION_ENV


@dataclass(frozen=True)
class PassphraseRequest:
    role: str
    gun: str | None
    keyid: str
    creating: bool  # a new key: prompts should ask twice
    attempt: int = 1  # 1 for the first ask; >1 after a wrong passphrase
    token: str | None = None  # set when the PIN of this PKCS#11 token is asked for, not a passphrase

    @property
    def secret(self) -> str:
        """What is asked for: "passphrase" or "PIN"."""
        return "passphrase" if self.token is None else "PIN"

    @property
    def description(self) -> str:
        kind = (
            "root"
            if self.role == "root"
            else "repository"
            if self.role in ("targets", "snapshot")
            else (f'signer "{self.role}"')
        )
        where = f" for {self.gun}" if self.gun else ""
        short = f" {self.keyid[:12]}" if self.keyid else ""
        key = f"{kind} key{short}{where}"
        return key if self.token is None else f'token "{self.token}" ({key})'


PassphraseSource = Callable[[PassphraseRequest], str]


class EnvPassphrases:
    """Passphrases from docker's and notary's environment variables, then ``fallback``."""

    def __init__(self, environ: Mapping[str, str] | None = None, fallback: PassphraseSource | None = None) -> None:
        self.environ = os.environ if environ is None else environ
        self.fallback = fallback

    def variable_for(self, role: str) -> str | None:
        return next((name for name in env_names(role) if self.environ.get(name)), None)

    def __call__(self, request: PassphraseRequest) -> str:
        if request.token is not None:
            return self._pin(request)
        name = self.variable_for(request.role)
        if name and request.attempt == 1:
            return self.environ[name]
        if name is None and self.fallback is not None:
            return self.fallback(request)
        if name is not None:
            # Asked again after the variable's value failed: a retry would fail the same way.
            raise PassphraseError(
                f"the passphrase in {name} does not decrypt the {request.description}",
                hint=f"set {name} to the passphrase of that key",
            )
        raise PassphraseUnavailableError(
            f"no passphrase for the {request.description} and no terminal to ask on",
            hint=f"set {env_names(request.role)[0]}",
        )

    def _pin(self, request: PassphraseRequest) -> str:
        """A token's PIN: from TRUSTKIT_PKCS11_PIN, else ``fallback``; never a key passphrase."""
        value = self.environ.get(PIN_ENV)
        if value and request.attempt == 1:
            return value
        if value:
            raise PassphraseError(
                f"the PIN in {PIN_ENV} does not log in to {request.description}", hint=f"set {PIN_ENV} to its user PIN"
            )
        if self.fallback is not None:
            return self.fallback(request)
        raise PassphraseUnavailableError(
            f"no PIN for {request.description} and no terminal to ask on",
            hint=f"set {PIN_ENV}, or add pin-source=FILE to the key's pkcs11 URI",
        )
