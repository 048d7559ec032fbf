"""Layer `cli`: what every command shares: global options, the key store, passphrase prompts."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from pathlib import Path

    import httpx

    from trustkit.keys import KeyStore, PassphraseRequest
    from trustkit.ops import TrustSession
    from trustkit.reference import ImageReference
    from trustkit.trust.trusted_set import TrustPinning


class Context:
    """The global options.  (A plain class: pathlib and dataclasses are not imported until a
    command needs them, which keeps ``trustkit --help`` short.)"""

    def __init__(
        self,
        trust_dir: str | None,
        server_url: str | None,
        tls_ca: str | None,
        debug: bool,
        config_file: str | None = None,
        no_tofu: bool = False,
        staging_dir: str | None = None,
    ) -> None:
        self.trust_dir = trust_dir
        self.server_url = server_url
        self.tls_ca = tls_ca
        self.debug = debug
        self.config_file = config_file
        self.no_tofu = no_tofu
        self.staging_dir = staging_dir

    @property
    def trust_path(self) -> Path:
        from pathlib import Path

        from trustkit.keys.store import default_trust_dir

        return Path(self.trust_dir) if self.trust_dir else default_trust_dir()

    def key_store(self) -> KeyStore:
        from trustkit.keys import EnvPassphrases, KeyStore

        return KeyStore(self.trust_path, EnvPassphrases(fallback=tty_passphrase if can_prompt() else None))

    def trust_session(self, reference: ImageReference, *, offline: bool = False) -> TrustSession:
        """Server URL, TLS and credentials for the reference's registry, as docker resolves them."""
        from pathlib import Path

        from trustkit.client.notary import NotaryClient, resolve_server_url
        from trustkit.ops import TrustSession

        url = resolve_server_url(reference.registry, self.server_url)
        client = None
        if not offline:
            client = NotaryClient(url, reference.gun, self.server_http(url, reference.registry))
        return TrustSession(
            reference,
            client,
            self.key_store(),
            self.trust_path,
            pinning=self.trust_pinning(),
            staging_dir=Path(self.staging_dir) if self.staging_dir else None,
        )

    def server_http(self, url: str, registry: str | None) -> httpx.Client:
        """An HTTP client for the trust server at ``url``.  A login for the server's own host wins;
        else the registry's, which is what docker sends to a trust server.  Messages name the
        trust server, not the registry."""
        from trustkit.client.auth import TokenAuth
        from trustkit.client.docker_config import load_credentials
        from trustkit.client.http import host_port
        from trustkit.client.notary import make_http_client

        server_host = host_port(url)
        credentials = load_credentials(server_host)
        login_host = server_host
        if credentials is None and registry is not None:
            credentials, login_host = load_credentials(registry), registry
        auth = TokenAuth(credentials, registry=server_host, kind="trust server", login_host=login_host)
        return make_http_client(url, tls_ca=self.tls_ca, auth=auth)

    def trust_pinning(self) -> TrustPinning:
        from pathlib import Path

        from trustkit.client.config import default_config_path, load_trust_pinning

        path = Path(self.config_file) if self.config_file else default_config_path()
        return load_trust_pinning(path, disable_tofu=self.no_tofu)


def can_prompt() -> bool:
    return sys.stdin.isatty() and os.environ.get("CI", "").lower() not in ("1", "true")


def tty_passphrase(request: PassphraseRequest) -> str:
    """Ask on the terminal; a new key's passphrase is asked twice and must be 8+ characters."""
    if request.attempt > 1:
        click.echo(f"Wrong {request.secret}, please try again.", err=True)
    if not request.creating:
        return click.prompt(f"Enter {request.secret} for {request.description}", hide_input=True, err=True)
    while True:
        value = click.prompt(
            f"Enter a new passphrase for {request.description}",
            hide_input=True,
            confirmation_prompt="Repeat passphrase",
            err=True,
        )
        if len(value) >= 8:
            return value
        click.echo("Passphrase must be at least 8 characters.", err=True)


pass_context = click.make_pass_decorator(Context)
