"""Layer `server`: trustkit's staging area for partly signed role versions (co-signing without a
shared folder).

A role with a threshold above one (``signer add ... --threshold 2``) is signed by several people,
one after the other.  The first signer's client cannot publish (the server would refuse a role
short of its threshold), so it stages the partly signed version here; the next signer's client
fetches it, checks it, adds its signature and, once the threshold is met, publishes it through
the ordinary update route and clears the entry.

Routes (a trustkit extension under notary's ``/v2/<gun>/_trust/``; a notary-server answers 404,
which is how a client tells the two apart)::

    GET    /v2/<gun>/_trust/staged/             what is pending: JSON, one entry per role
    GET    /v2/<gun>/_trust/staged/<role>.json  the staged file (404 when none)
    PUT    /v2/<gun>/_trust/staged/<role>.json  stage a partly signed version, or add signatures
    DELETE /v2/<gun>/_trust/staged/<role>.json  clear it (``?version=N``: only that version)

Reads need pull access to the GUN, writes push access, as publishing does.  What is staged is
checked against the trust data the server stores: strict parsing, ``targets`` or a delegation
its parent delegates, version = the stored version + 1, not expired, every signature valid and
by a key of the role, and still short of the threshold.  A version staged with the same signed
content gains the new signatures (two co-signers at once both count); other content replaces it.
An entry the repository has moved past (published, re-keyed, expired) is stale: it is refused
when staged and dropped when read.  Staged files live in their own table and are never served
by the ``tuf/`` routes, the snapshot or the changefeed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from trustkit.encoding import envelope_bytes
from trustkit.errors import TrustkitError
from trustkit.metadata import Metadata, Signature, SigningRule, Targets, signing_rule_for
from trustkit.notary_api import RouteMatch, envelope
from trustkit.roles import BASE_ROLES, ROOT, TARGETS, parent_role
from trustkit.server.auth import Access
from trustkit.server.storage import STAGED_FILES, Storage, StoredFile
from trustkit.server.validation import UpdateError, invalid, parse_parts

if TYPE_CHECKING:
    from trustkit.server.app import NotaryAPI

LOG = logging.getLogger("trustkit.server")

_CAS_ATTEMPTS = 5  # concurrent co-signers of one role: each retry sees the other's write
_NO_STORE = {"Cache-Control": "no-store"}  # pending state changes with every co-signature


@dataclass(frozen=True)
class PendingRole:
    """One staged version as clients and the web page show it.  Key IDs are named as ``trustkit
    inspect`` and ``docker trust inspect`` name them: a delegation's keys by their private key's
    ID, the repository (targets) key by the ID root lists."""

    role: str
    version: int
    threshold: int
    signed_by: list[str]  # keys whose valid signature it carries
    keys: list[str]  # every key of the role
    expires: str
    updated_at: datetime
    added: list[str] = field(default_factory=list)  # tags it adds, against the stored version
    changed: list[str] = field(default_factory=list)  # tags it points elsewhere
    removed: list[str] = field(default_factory=list)  # tags it removes
    delegations_changed: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "version": self.version,
            "threshold": self.threshold,
            "signed_by": self.signed_by,
            "keys": self.keys,
            "expires": self.expires,
            "updated_at": self.updated_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "added": self.added,
            "changed": self.changed,
            "removed": self.removed,
            "delegations_changed": self.delegations_changed,
        }


@dataclass(frozen=True)
class _Row:
    version: int
    sha256: str
    data: bytes
    updated_at: datetime


def _named(role: str, rule: SigningRule, keyid: str) -> str:
    """``keyid`` (as the role lists it) the way inspect shows it."""
    if role in BASE_ROLES:
        return keyid
    key = rule.keys.get(keyid)
    try:
        return key.canonical_id if key is not None else keyid
    except TrustkitError:  # a key that does not load: its listed ID
        return keyid


class Staging:
    """The staged versions in ``storage``, checked against its trust data at ``clock()``."""

    def __init__(self, storage: Storage, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.storage = storage
        self.clock = clock

    # ---- rules

    def rule(self, gun: str, role: str, latest: Mapping[str, StoredFile]) -> SigningRule | None:
        """Who may sign ``role`` per the stored trust data (None: nobody, it is not delegated)."""
        root_file = latest.get(ROOT)
        if root_file is None:
            return None
        root = Metadata.from_bytes(root_file.data, role=ROOT).signed
        parent = None
        if role not in BASE_ROLES:
            parent_file = latest.get(parent_role(role))
            if parent_file is None:
                return None
            parent = Metadata.from_bytes(parent_file.data, role=parent_role(role)).signed
        return signing_rule_for(role, root, parent)

    def _problem(
        self,
        gun: str,
        role: str,
        meta: Metadata[Targets],
        latest: Mapping[str, StoredFile],
        now: datetime,
        *,
        incoming: bool = False,
    ) -> UpdateError | None:
        """Why ``meta`` cannot be (or stay) staged for ``role``, judged on the stored trust data.
        An ``incoming`` one must also be short of the threshold (complete: publish it); a stored
        one may have become complete when co-signatures were merged, and waits to be published."""
        rule = self.rule(gun, role, latest)
        if rule is None:
            what = "has no trust data" if ROOT not in latest else f"does not delegate {role}"
            return invalid("ErrBadTargets", f"{gun if ROOT not in latest else parent_role(role)} {what}")
        stored = latest.get(role)
        current = stored.version if stored is not None else 0
        if meta.signed.version != current + 1:
            return UpdateError(
                "VERSION",
                f"{role} is at version {current} on the server: only version {current + 1} can be staged, "
                f"not {meta.signed.version}",
            )
        if meta.signed.is_expired(now):
            return invalid("ErrBadTargets", f"{role} expired at {meta.signed.expires}")
        result = meta.verify_by(rule)
        stray = [s.keyid for s in meta.signatures if s.keyid not in result.signed]
        if stray:
            return invalid(
                "ErrBadTargets",
                f"the signature by {stray[0][:12]} is not a valid signature by a key of {role} "
                "(or repeats a key already counted)",
            )
        if not result.signed:
            return invalid("ErrBadTargets", f"no signature by a key of {role}")
        if incoming and result:
            return invalid(
                "ErrBadTargets",
                f"{role} already has the {rule.threshold} signature(s) it needs: publish it instead of staging it",
            )
        return None

    # ---- storage

    def _row(self, gun: str, role: str) -> _Row | None:
        query = sa.select(
            STAGED_FILES.c.version, STAGED_FILES.c.sha256, STAGED_FILES.c.data, STAGED_FILES.c.updated_at
        ).where(STAGED_FILES.c.gun == gun, STAGED_FILES.c.role == role)
        with self.storage.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        updated = row.updated_at if row.updated_at.tzinfo else row.updated_at.replace(tzinfo=UTC)
        return _Row(row.version, row.sha256, bytes(row.data), updated)

    def _rows(self, gun: str) -> dict[str, _Row]:
        query = sa.select(
            STAGED_FILES.c.role,
            STAGED_FILES.c.version,
            STAGED_FILES.c.sha256,
            STAGED_FILES.c.data,
            STAGED_FILES.c.updated_at,
        ).where(STAGED_FILES.c.gun == gun)
        with self.storage.engine.connect() as conn:
            rows = conn.execute(query).all()
        return {
            r.role: _Row(
                r.version,
                r.sha256,
                bytes(r.data),
                r.updated_at if r.updated_at.tzinfo else r.updated_at.replace(tzinfo=UTC),
            )
            for r in rows
        }

    def _drop(self, gun: str, role: str, sha256: str | None = None, version: int | None = None) -> bool:
        """Delete the entry (only if it still has ``sha256`` / ``version``, when given)."""
        where = [STAGED_FILES.c.gun == gun, STAGED_FILES.c.role == role]
        if sha256 is not None:
            where.append(STAGED_FILES.c.sha256 == sha256)
        if version is not None:
            where.append(STAGED_FILES.c.version == version)
        with self.storage.engine.begin() as conn:
            return bool(conn.execute(STAGED_FILES.delete().where(*where)).rowcount)

    def _live(self, gun: str, role: str, row: _Row, latest: Mapping[str, StoredFile]) -> Metadata[Targets] | None:
        """The staged file if it still fits the stored trust data; a stale one is dropped."""
        try:
            meta: Metadata[Targets] = Metadata.from_bytes(row.data, role=role)
            problem = self._problem(gun, role, meta, latest, self.clock())
        except TrustkitError:
            problem = invalid("ErrBadTargets", "unreadable")
        if problem is None:
            return meta
        self._drop(gun, role, sha256=row.sha256)  # unless a co-signer replaced it meanwhile
        return None

    # ---- operations

    def get(self, gun: str, role: str) -> bytes | None:
        row = self._row(gun, role)
        if row is None:
            return None
        return row.data if self._live(gun, role, row, self.storage.latest_all(gun)) is not None else None

    def pending(self, gun: str, *, drop_stale: bool = True) -> list[PendingRole]:
        """What waits for signatures in ``gun``, by role name.  Stale entries are left out (and
        dropped, unless ``drop_stale`` is false: the web page only reads)."""
        rows = self._rows(gun)
        if not rows:
            return []
        latest = self.storage.latest_all(gun)
        out = []
        for role, row in sorted(rows.items()):
            if drop_stale:
                meta = self._live(gun, role, row, latest)
            else:
                try:
                    meta = Metadata.from_bytes(row.data, role=role)
                    meta = None if self._problem(gun, role, meta, latest, self.clock()) else meta
                except TrustkitError:
                    meta = None
            if meta is not None:
                out.append(self._describe(gun, role, meta, row.updated_at, latest))
        return out

    def _describe(
        self, gun: str, role: str, meta: Metadata[Targets], updated: datetime, latest: Mapping[str, StoredFile]
    ) -> PendingRole:
        rule = self.rule(gun, role, latest)
        assert rule is not None  # checked by _problem  # noqa: S101
        stored = latest.get(role)
        before = (
            Metadata.from_bytes(stored.data, role=role).signed if stored is not None else Targets(expires="", version=0)
        )
        after = meta.signed
        return PendingRole(
            role=role,
            version=after.version,
            threshold=rule.threshold,
            signed_by=sorted(_named(role, rule, k) for k in meta.verify_by(rule).signed),
            keys=sorted({_named(role, rule, k) for k in rule.keyids}),
            expires=after.expires,
            updated_at=updated,
            added=sorted(t for t in after.targets if t not in before.targets),
            changed=sorted(t for t in after.targets if t in before.targets and before.targets[t] != after.targets[t]),
            removed=sorted(t for t in before.targets if t not in after.targets),
            delegations_changed=after.delegations != before.delegations,
        )

    def put(self, gun: str, role: str, data: bytes) -> PendingRole:
        """Stage ``data`` for ``role``, or add its signatures to the same content staged before.

        Raises:
            UpdateError: what is wrong with it (notary's codes), or ``VERSION`` when co-signers
                kept racing for the entry.
        """
        if role not in (TARGETS,) and not role.startswith(TARGETS + "/"):
            raise UpdateError("INVALID_ROLE", role)  # root, snapshot, timestamp: never staged
        meta: Metadata[Targets] = parse_parts({role: data})[role]
        now = self.clock()
        for _ in range(_CAS_ATTEMPTS):
            latest = self.storage.latest_all(gun)
            problem = self._problem(gun, role, meta, latest, now, incoming=True)
            if problem is not None:
                raise problem
            row = self._row(gun, role)
            merged = self._merge(gun, role, meta, row, latest)
            if self._store(gun, role, merged, row, now):
                staged: Metadata[Targets] = Metadata.from_bytes(merged, role=role)
                return self._describe(gun, role, staged, now, latest)
        raise UpdateError("VERSION", f"{role} of {gun} is being staged by others at the same time; try again")

    def _merge(
        self, gun: str, role: str, meta: Metadata[Targets], row: _Row | None, latest: Mapping[str, StoredFile]
    ) -> bytes:
        """``meta``'s file, with the valid signatures of the staged one when both sign the same
        content (one signature per key: the newer wins)."""
        if row is None:
            return meta.data
        before = self._live(gun, role, row, latest)
        if before is None or before.signed_bytes != meta.signed_bytes:
            return meta.data  # other content (or stale): replaced
        mine = {s.keyid for s in meta.signatures}
        signatures: list[Signature] = [s for s in before.signatures if s.keyid not in mine] + list(meta.signatures)
        merged = envelope_bytes(meta.signed_bytes, [s.to_dict() for s in signatures])
        # Two keys of the role may be one key spelled twice: keep only what still verifies as distinct.
        again: Metadata[Targets] = Metadata.from_bytes(merged, role=role)
        rule = self.rule(gun, role, latest)
        counted = again.verify_by(rule).signed if rule is not None else frozenset()
        return envelope_bytes(meta.signed_bytes, [s.to_dict() for s in signatures if s.keyid in counted])

    def _store(self, gun: str, role: str, data: bytes, row: _Row | None, now: datetime) -> bool:
        """Write ``data`` if the entry is still ``row`` (compare and swap); False: someone else
        wrote first, read again."""
        version = Metadata.from_bytes(data, role=role).signed.version
        values = {"version": version, "sha256": hashlib.sha256(data).hexdigest(), "data": data, "updated_at": now}
        try:
            with self.storage.engine.begin() as conn:
                if row is None:
                    conn.execute(STAGED_FILES.insert().values(gun=gun, role=role, **values))
                    return True
                changed = conn.execute(
                    STAGED_FILES.update()
                    .where(STAGED_FILES.c.gun == gun, STAGED_FILES.c.role == role, STAGED_FILES.c.sha256 == row.sha256)
                    .values(**values)
                ).rowcount
                return bool(changed)
        except IntegrityError:
            return False
        except OperationalError as exc:
            if "locked" in str(exc) or "could not serialize" in str(exc):
                return False
            raise

    def delete(self, gun: str, role: str, version: int | None = None) -> bool:
        return self._drop(gun, role, version=version)


# --------------------------------------------------------------------------------------------
# HTTP


def _error(code: str, detail: Any = None, headers: dict[str, str] | None = None) -> Response:
    status, body = envelope(code, detail)
    return Response(body, status_code=status, media_type="application/json; charset=utf-8", headers=headers)


def _json(value: Any) -> Response:
    return Response(json.dumps(value, separators=(",", ":")), media_type="application/json", headers=_NO_STORE)


class _TooLarge(Exception):
    pass


async def _read(request: Request, limit: int) -> bytes:
    """The body as it arrives; ``_TooLarge`` past ``limit`` bytes (whatever Content-Length said)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


class StagingRoutes:
    """The ``staged`` route of :mod:`trustkit.notary_api`, answered for ``api`` (its authorizer,
    body limit and clock)."""

    def __init__(self, api: NotaryAPI) -> None:
        self.api = api
        self.staging = Staging(api.storage, api.settings.clock)

    async def serve(self, request: Request, found: RouteMatch) -> Response:
        method, gun, role = request.method, found.gun or "", found.role
        if role == "" and method != "GET":
            return _error("METADATA_NOT_FOUND")  # the list is read-only
        actions = ("pull",) if method == "GET" else ("push", "pull")
        limit = self.api.settings.max_body
        if method == "PUT":
            declared = request.headers.get("content-length", "")
            if re.fullmatch(r"[0-9]+", declared) and (len(declared) > 20 or int(declared) > limit):
                return _error("TOO_LARGE", f"the body is over {limit} bytes")
        authorization = request.headers.get("authorization")
        refused = await run_in_threadpool(self.api.authorize, authorization, [Access("repository", gun, actions)])
        if refused is not None:
            return refused
        body = b""
        if method == "PUT":  # read only once allowed
            try:
                body = await _read(request, limit)
            except _TooLarge:
                return _error("TOO_LARGE", f"the body is over {limit} bytes")
            except ClientDisconnect:
                return _error("MALFORMED_UPLOAD", "the client went away")
        version = request.query_params.get("version")
        return await run_in_threadpool(self._answer, method, gun, role, body, version)

    def _answer(self, method: str, gun: str, role: str, body: bytes, version: str | None) -> Response:
        try:
            if role == "":
                return _json({"staged": [entry.to_json() for entry in self.staging.pending(gun)]})
            if method == "GET":
                data = self.staging.get(gun, role)
                if data is None:
                    return _error("METADATA_NOT_FOUND", {})
                return Response(data, media_type="text/plain; charset=utf-8", headers=_NO_STORE)
            if method == "PUT":
                return _json(self.staging.put(gun, role, body).to_json())
            number = None
            if version is not None:
                if not re.fullmatch(r"[0-9]{1,10}", version):
                    return _error("INVALID_PARAMETERS", "version must be a number")
                number = int(version)
            if not self.staging.delete(gun, role, number):
                return _error("METADATA_NOT_FOUND", {})
            return Response(b"", status_code=200, headers=_NO_STORE)
        except UpdateError as exc:
            return _error(exc.code, exc.detail)
        except Exception:  # a server fault: client input is answered with 4xx before this
            LOG.exception("request failed: %s staged %s", method, role[:256])
            return _error("UNKNOWN")


__all__ = ["PendingRole", "Staging", "StagingRoutes"]
