"""Layer `server`: who may do what on the trust server (wire spec §7.7, issue 5 item 6), one
module per job:

* :mod:`.access`: what is asked for and what is decided (:class:`Access`, :class:`Decision`, the
  :class:`Authorizer` protocol, :class:`Principal`, the scope grammar), :class:`NoAuth` (``auth``
  switched off on purpose) and :class:`PublicRead` (``--public-read``: a request without
  credentials may pull every repository; the rest stays with the wrapped authorizer);
* :mod:`.tokens`: :class:`TokenAuthorizer`, the docker registry token access controller that
  notary-server uses (``Authorization: Bearer <JWT>`` checked against a root certificate bundle);
* :mod:`.issuer`: :class:`HtpasswdTokenIssuer`, a small token server for a standalone deployment
  (HTTP Basic against an htpasswd file read by :mod:`.htpasswd`, failed logins slowed down by
  :class:`LoginThrottle` from :mod:`.throttle`);
* :mod:`.keys`: the token signing keypair (:func:`generate_token_keypair`) and docker's libtrust
  key IDs (:func:`libtrust_key_id`);
* :mod:`.page`: :class:`PageAccess`, the same rules for the web page.

The names below are the package's public API; import them from here.
"""

from trustkit.errors import AuthConfigError, InvalidScopeError
from trustkit.server.auth.access import (
    EVERYONE,
    PUBLIC_READER,
    Access,
    Authorizer,
    Decision,
    NoAuth,
    Principal,
    PublicRead,
    parse_scope,
)
from trustkit.server.auth.issuer import HtpasswdTokenIssuer
from trustkit.server.auth.keys import generate_token_keypair, libtrust_key_id
from trustkit.server.auth.page import PageAccess
from trustkit.server.auth.throttle import LoginThrottle, client_address
from trustkit.server.auth.tokens import TokenAuthorizer

__all__ = [
    "Access",
    "AuthConfigError",
    "Authorizer",
    "Decision",
    "EVERYONE",
    "HtpasswdTokenIssuer",
    "InvalidScopeError",
    "LoginThrottle",
    "NoAuth",
    "PageAccess",
    "Principal",
    "PUBLIC_READER",
    "PublicRead",
    "TokenAuthorizer",
    "client_address",
    "generate_token_keypair",
    "libtrust_key_id",
    "parse_scope",
]
