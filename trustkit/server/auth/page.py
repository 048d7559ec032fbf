"""Layer `server`: who is asking for a web page and what they may see, by the API's own rules
(a bearer token, an htpasswd login that a browser answers, or nobody)."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import Response

from trustkit.server.auth.access import EVERYONE, PUBLIC_READER, Access, Principal, basic_credentials, bearer_token
from trustkit.server.auth.issuer import BASIC_CHALLENGE, HtpasswdTokenIssuer, error_response
from trustkit.server.auth.tokens import TokenAuthorizer


class PageAccess:
    """Who is asking for a web page and what they may see, by the API's own rules.

    Without ``tokens`` and ``logins`` (``--auth none``) everyone sees everything.  Otherwise a
    bearer token is verified by ``tokens`` (the API's :class:`TokenAuthorizer`) and HTTP Basic
    (which a browser answers) is checked by ``logins`` against the htpasswd file, rate limited
    like the token endpoint; the user then holds what a token from the issuer would grant.
    Nobody logged in holds :data:`PUBLIC_READER` with ``public_read``, else is asked to log in:
    ``Basic realm="trustkit"`` with an htpasswd file, the API's Bearer challenge with ``tokens``
    alone.
    """

    def __init__(
        self,
        *,
        tokens: TokenAuthorizer | None = None,
        logins: HtpasswdTokenIssuer | None = None,
        public_read: bool = False,
    ) -> None:
        self.tokens = tokens
        self.logins = logins
        self.public_read = public_read

    async def principal(self, request: Request, wanted: Sequence[Access] = ()) -> Principal | Response:
        """The principal, or the response to send instead (401 with a challenge naming
        ``wanted``, 429, 503)."""
        if self.tokens is None and self.logins is None:
            return EVERYONE
        authorization = request.headers.get("authorization")
        if self.tokens is not None and bearer_token(authorization) is not None:
            found = self.tokens.principal(authorization)
            return found if found is not None else self._challenge(wanted, "invalid_token")
        if self.logins is not None and basic_credentials(authorization) is not None:
            user = await self.logins.login(request)
            if isinstance(user, Response):
                return user
            if user is not None:
                return self.logins.principal(user)
        if not authorization and self.public_read:
            return PUBLIC_READER
        return self._challenge(wanted, None)

    def _challenge(self, wanted: Sequence[Access], error: str | None) -> Response:
        if self.tokens is not None and self.logins is None:
            challenge = self.tokens.refuse(wanted, error).challenge or ""
        else:  # an htpasswd file: ask the way a browser answers
            challenge = BASIC_CHALLENGE
        return error_response(401, "UNAUTHORIZED", "authentication required", {"WWW-Authenticate": challenge})
