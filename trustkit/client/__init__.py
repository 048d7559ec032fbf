"""Layer `client`: talking to a Notary server over HTTP.

- ``notary``: the Notary API client, server URLs and TLS settings;
- ``auth``: docker's config.json credentials, credential helpers and the registry token flow;
- ``updater``: the update walk and its cache in the trust dir;
- ``config``: notary's client configuration (trust pinning).
"""

from trustkit.client.notary import NotaryClient, make_http_client, resolve_server_url

__all__ = ["NotaryClient", "make_http_client", "resolve_server_url"]
