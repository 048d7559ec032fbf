"""Layer `client`: talking to a Notary server over HTTP.

- ``http``: the HTTP plumbing both API clients share (TLS the docker way, proxies, retries, capped reads);
- ``docker_config``: docker's config.json (credentials, credential helpers, ``docker login``'s writes);
- ``auth``: the registry token flow;
- ``notary``: the Notary API client and server URLs;
- ``updater``: the update walk and its cache in the trust dir;
- ``config``: notary's client configuration (trust pinning).
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trustkit.client.notary import NotaryClient, make_http_client, resolve_server_url

__all__ = ["NotaryClient", "make_http_client", "resolve_server_url"]


def __getattr__(name: str) -> Any:
    """The Notary client's names, imported on first use (PEP 562): the registry code imports
    this package's ``auth`` and ``http`` and must not pay for the Notary client and the keys."""
    if name in __all__:
        from trustkit.client import notary

        return getattr(notary, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
