"""Layer `client`: where partly signed threshold roles wait for their co-signers.

A role that needs m signatures is signed by m people one after the other; until the last one
has signed, the partly signed version is *staged*.  Two places can hold it:

* :class:`ServerStaging`: a trustkit server's staging area (``/v2/<gun>/_trust/staged/``, see
  trustkit.server.staging), shared by everyone who may push to the repository.  A server
  offers it when ``GET .../_trust/staged/`` answers 200; a notary-server answers 404.
* :class:`FolderStaging`: a folder (``--staging-dir``), which co-signers must share themselves;
  the only way against a notary-server, and what an explicit ``--staging-dir`` asks for.

:func:`choose_staging` picks one.  Nothing here trusts what is staged: :func:`staged_problem` is
the check a co-signer runs before building on it (the trust layers decide the rest).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from trustkit.client.http import ERROR_BODY_LIMIT
from trustkit.client.notary import NotaryClient
from trustkit.encoding import loads_strict
from trustkit.errors import EncodingError, NotFoundError, ServerError
from trustkit.keys.store import atomic_write
from trustkit.metadata import Metadata, SigningRule, Targets
from trustkit.notary_api import gun_path, role_path, staged_path
from trustkit.roles import role_name_problem

__all__ = [
    "FolderStaging",
    "ServerStaging",
    "Staging",
    "choose_staging",
    "staged_problem",
]

MAX_STAGED_SIZE = 64 << 20  # the server's default body cap: a 100,000-tag targets file is ~10 MB
_MAX_LIST_SIZE = 1 << 20  # the list names roles and key IDs, never files
_MAX_LISTED = 10_000


class Staging(Protocol):
    """A place for partly signed role versions of one GUN."""

    shared: bool  # whether co-signers reach it without being told where (the trust server)

    def get(self, role: str) -> bytes | None: ...

    def put(self, role: str, data: bytes) -> None: ...

    def clear(self, role: str, version: int) -> None: ...

    def roles(self) -> list[str]: ...

    def location(self, role: str) -> str: ...


@dataclass
class FolderStaging:
    """``<folder>/<gun>/<role>.json``, written atomically.  ``chosen``: the user named the
    folder (``--staging-dir``); otherwise it is the trust dir's own, which nobody else sees."""

    folder: Path
    gun: str
    chosen: bool = True
    server_offers: bool = False  # for the message: the trust server had a staging area too

    shared = False

    def _path(self, role: str) -> Path:
        return self.folder / self.gun / f"{role}.json"

    def get(self, role: str) -> bytes | None:
        path = self._path(role)
        return path.read_bytes() if path.is_file() else None

    def put(self, role: str, data: bytes) -> None:
        atomic_write(self._path(role), data, 0o644)

    def clear(self, role: str, version: int) -> None:
        self._path(role).unlink(missing_ok=True)

    def roles(self) -> list[str]:
        base = self.folder / self.gun
        if not base.is_dir():
            return []
        found = (p.relative_to(base).with_suffix("").as_posix() for p in base.rglob("*.json"))
        return sorted(role for role in found if role_name_problem(role) is None)

    def location(self, role: str) -> str:
        return str(self._path(role))


class ServerStaging:
    """The trust server's staging area for the client's GUN (a trustkit server)."""

    shared = True

    def __init__(self, notary: NotaryClient) -> None:
        self.notary = notary
        self._base = f"{notary.base_url}/v2/"
        self._listing: list[dict[str, Any]] | None = None

    def offered(self) -> bool:
        """Whether the server has a staging area (a notary-server answers 404).

        Raises:
            NetworkError, NotAuthorizedError, ServerError: as any request to the server.
        """
        try:
            self._listing = self._list()
        except NotFoundError:
            return False
        return True

    def _list(self) -> list[dict[str, Any]]:
        body = self.notary._call(  # noqa: SLF001 - the client's one request path (retries, auth, errors)
            "GET",
            self._base + staged_path(self.notary.gun),
            what=f"the staged versions of {self.notary.gun}",
            max_size=_MAX_LIST_SIZE,
            push=False,
        )
        try:
            data = loads_strict(body, what="staged list")
        except EncodingError as exc:
            raise ServerError(f"the trust server sent an invalid staging list for {self.notary.gun}: {exc}") from None
        entries = data.get("staged") if isinstance(data, dict) else None
        if not isinstance(entries, list) or len(entries) > _MAX_LISTED:
            raise ServerError(f"the trust server sent an invalid staging list for {self.notary.gun}")
        return [e for e in entries if isinstance(e, dict) and isinstance(e.get("role"), str)]

    def get(self, role: str) -> bytes | None:
        return self.notary._call(  # noqa: SLF001 - see _list
            "GET",
            self._url(role),
            what=f"the staged {role} of {self.notary.gun}",
            max_size=MAX_STAGED_SIZE,
            push=False,
            missing_ok=True,
        )

    def put(self, role: str, data: bytes) -> None:
        self.notary._call(  # noqa: SLF001 - see _list
            "PUT",
            self._url(role),
            what=f"staging {role} of {self.notary.gun}",
            max_size=ERROR_BODY_LIMIT,
            push=True,
            content=data,
            headers={"Content-Type": "application/json"},
        )
        self._listing = None

    def clear(self, role: str, version: int) -> None:
        """Drop the staged ``version`` of ``role`` (a later one someone staged meanwhile stays)."""
        self.notary._call(  # noqa: SLF001 - see _list
            "DELETE",
            self._url(role),
            what=f"clearing the staged {role} of {self.notary.gun}",
            max_size=ERROR_BODY_LIMIT,
            push=True,
            missing_ok=True,
            params={"version": str(version)},
        )
        self._listing = None

    def roles(self) -> list[str]:
        if self._listing is None:
            self._listing = self._list()
        return sorted({e["role"] for e in self._listing if role_name_problem(e["role"]) is None})

    def location(self, role: str) -> str:
        return f"on the trust server {self.notary.base_url}"

    def _url(self, role: str) -> str:
        role_path(role)  # validates
        return self._base + staged_path(self.notary.gun, role)


def choose_staging(notary: NotaryClient | None, gun: str, staging_dir: Path | None, trust_dir: Path) -> Staging:
    """An explicit ``staging_dir`` wins; else the trust server's staging area when it offers one;
    else the trust dir's own folder (which co-signers do not see: the CLI says so)."""
    if staging_dir is not None:
        return FolderStaging(staging_dir, gun)
    if notary is not None:
        server = ServerStaging(notary)
        if server.offered():
            return server
    gun_path(gun)  # validates: the GUN becomes a folder path
    return FolderStaging(trust_dir / "staged", gun, chosen=False)


def staged_problem(meta: Metadata[Targets], rule: SigningRule) -> str | None:
    """Why a co-signer must not build on ``meta`` (None when it may): every signature it carries
    must be a valid one by a distinct key of the role, and there must be at least one."""
    result = meta.verify_by(rule)
    stray = [s.keyid for s in meta.signatures if s.keyid not in result.signed]
    if stray:
        return f"it carries a signature ({stray[0][:12]}) that is not a valid one by a key of {rule.role}"
    if not result.signed:
        return f"it has no signature by a key of {rule.role}"
    return None
