"""Layer `client`: talking to a Notary server over HTTP.

- ``http``: the HTTP plumbing both API clients share (TLS the docker way, proxies, retries, capped reads);
- ``docker_config``: docker's config.json (credentials, credential helpers, ``docker login``'s writes);
- ``auth``: the registry token flow;
- ``notary``: the Notary API client and server URLs;
- ``updater``: the update walk and its cache in the trust dir;
- ``config``: notary's client configuration (trust pinning).
"""

from trustkit.client.notary import NotaryClient, make_http_client, resolve_server_url

__all__ = ["NotaryClient", "make_http_client", "resolve_server_url"]
