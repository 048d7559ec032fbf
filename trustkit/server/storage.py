"""Layer `server`: storage of trust data, server keys, repository settings and the changefeed.

One SQLAlchemy Core schema serves SQLite (the built-in default, in WAL mode) and PostgreSQL
(several server processes on one database).  Every publish is one transaction: all of its
files, the new snapshot and timestamp, and the changefeed record, or nothing.  Two publishers
racing for the same version are told apart by the unique index on (gun, role, version): the
loser's transaction fails and becomes a ``VersionConflict``, never a 5xx.
"""

from __future__ import annotations

import contextlib
import hashlib
import queue
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError

METADATA = sa.MetaData()

TUF_FILES = sa.Table(
    "tuf_files",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("gun", sa.String(255), nullable=False),
    sa.Column("role", sa.String(255), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("gun", "role", "version", name="tuf_files_version"),
    sa.Index("tuf_files_checksum", "gun", "role", "sha256"),
)
CHANGES = sa.Table(
    "changefeed",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("gun", sa.String(255), nullable=False, index=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("category", sa.String(20), nullable=False),
)
SERVER_KEYS = sa.Table(
    "server_keys",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("gun", sa.String(255), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("keyid", sa.String(64), nullable=False),
    sa.Column("public", sa.Text, nullable=False),  # the key object's JSON
    sa.Column("private", sa.Text, nullable=False),  # encrypted PKCS#8 PEM
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("gun", "role", "keyid", name="server_keys_unique"),
)
REPOSITORIES = sa.Table(
    "repositories",
    METADATA,
    sa.Column("gun", sa.String(255), primary_key=True),
    sa.Column("immutable", sa.Boolean, nullable=False, default=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
# One counter per GUN, bumped in every transaction that changes its trust data (publish, timestamp
# re-sign, delete, import): a reader that holds a GUN's metadata in memory compares it on each hit,
# so a change through any worker or server on the same database is seen at once.
GUN_CHANGES = sa.Table(
    "gun_changes",
    METADATA,
    sa.Column("gun", sa.String(255), primary_key=True),
    sa.Column("counter", sa.BigInteger, nullable=False),
)

# Partly signed role versions waiting for co-signers (trustkit's staging extension, server/staging.py):
# one per GUN and role, never served as trust data.
STAGED_FILES = sa.Table(
    "staged_files",
    METADATA,
    sa.Column("gun", sa.String(255), primary_key=True),
    sa.Column("role", sa.String(255), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),  # of data: replaced only if unchanged since read
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)


# The hot reads, built once with bind parameters (each GET only binds and runs them).
_COLUMNS = (TUF_FILES.c.role, TUF_FILES.c.version, TUF_FILES.c.data, TUF_FILES.c.created_at)
_CURRENT = (
    sa.select(*_COLUMNS)
    .where(TUF_FILES.c.gun == sa.bindparam("gun"), TUF_FILES.c.role == sa.bindparam("role"))
    .order_by(TUF_FILES.c.version.desc())
    .limit(1)
)
_BY_VERSION = sa.select(*_COLUMNS).where(
    TUF_FILES.c.gun == sa.bindparam("gun"),
    TUF_FILES.c.role == sa.bindparam("role"),
    TUF_FILES.c.version == sa.bindparam("version"),
)
_BY_CHECKSUM = (
    sa.select(*_COLUMNS)
    .where(
        TUF_FILES.c.gun == sa.bindparam("gun"),
        TUF_FILES.c.role == sa.bindparam("role"),
        TUF_FILES.c.sha256 == sa.bindparam("sha256"),
    )
    .limit(1)
)


_NEWEST = (
    sa.select(TUF_FILES.c.role, sa.func.max(TUF_FILES.c.version).label("version"))
    .where(TUF_FILES.c.gun == sa.bindparam("gun"))
    .group_by(TUF_FILES.c.role)
    .subquery()
)
_LATEST_ALL = (
    sa.select(*_COLUMNS)
    .join(_NEWEST, sa.and_(TUF_FILES.c.role == _NEWEST.c.role, TUF_FILES.c.version == _NEWEST.c.version))
    .where(TUF_FILES.c.gun == sa.bindparam("gun"))
)
# A publish's statements, built once too (building them cost more than running them on SQLite).
_MAX_VERSION = sa.select(sa.func.max(TUF_FILES.c.version)).where(
    TUF_FILES.c.gun == sa.bindparam("gun"), TUF_FILES.c.role == sa.bindparam("role")
)
_INSERT_FILE = TUF_FILES.insert()
_SERVER_KEYS = (
    sa.select(SERVER_KEYS.c.keyid, SERVER_KEYS.c.public, SERVER_KEYS.c.private)
    .where(SERVER_KEYS.c.gun == sa.bindparam("gun"), SERVER_KEYS.c.role == sa.bindparam("role"))
    .order_by(SERVER_KEYS.c.id.desc())
)
_IMMUTABLE = sa.select(REPOSITORIES.c.immutable).where(REPOSITORIES.c.gun == sa.bindparam("gun"))
_INSERT_CHANGE = CHANGES.insert()
_COUNT_CHANGE = {
    dialect.__name__.rsplit(".", 1)[-1]: dialect.insert(GUN_CHANGES)
    .values(gun=sa.bindparam("gun"), counter=1)
    .on_conflict_do_update(index_elements=[GUN_CHANGES.c.gun], set_={"counter": GUN_CHANGES.c.counter + 1})
    for dialect in (sqlite, postgresql)
}

# The change counter's read, in each driver's parameter style (DB-API, below the ORM: it runs per GET).
_COUNTER_SQLITE = "SELECT counter FROM gun_changes WHERE gun = ?"
_COUNTER_PSYCOPG = "SELECT counter FROM gun_changes WHERE gun = %s"


class VersionConflict(Exception):
    """A version at or below one already stored, or a concurrent publish that got there first."""


@dataclass(frozen=True)
class StoredFile:
    role: str
    version: int
    data: bytes
    created_at: datetime


@dataclass(frozen=True)
class Change:
    id: int
    created_at: datetime
    gun: str
    version: int
    sha256: str
    category: str


@dataclass(frozen=True)
class ImportedFile:
    role: str
    version: int
    data: bytes
    created_at: datetime


@dataclass(frozen=True)
class ImportedKey:
    role: str
    keyid: str
    public: str  # the key object's JSON
    private: str  # encrypted PKCS#8 PEM
    created_at: datetime


@dataclass(frozen=True)
class ImportedChange:
    created_at: datetime
    gun: str
    version: int
    sha256: str
    category: str


def _utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything stored is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class Storage:
    """All state of the trust server, behind one SQLAlchemy engine."""

    def __init__(self, url: str) -> None:
        self.url = url
        # The pool matches the web server's thread pool (40 threads), so busy readers reuse
        # connections instead of opening and closing them.
        if url.startswith("sqlite"):
            self.engine = sa.create_engine(
                url,
                connect_args={"timeout": 30, "check_same_thread": False},
                poolclass=sa.pool.QueuePool,
                pool_size=40,
                max_overflow=10,
            )
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            if url.startswith("postgresql://"):
                url = "postgresql+psycopg://" + url[len("postgresql://") :]
            self.engine = sa.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=30)
        METADATA.create_all(self.engine)

        self.local = self.engine.dialect.name == "sqlite"  # a file on this machine: reads take microseconds
        self._counter_sql = _COUNTER_SQLITE if self.local else _COUNTER_PSYCOPG
        # DB-API connections for the counter: taken and put back per read (the event loop reuses
        # one; threads reading PostgreSQL's take as many as read at once), all closed by close().
        self._counter_idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._counter_all: list[Any] = []
        self._counter_lock = threading.Lock()

    def close(self) -> None:
        with self._counter_lock:
            opened, self._counter_all = self._counter_all, []
            self._counter_idle = queue.SimpleQueue()
        for connection in opened:
            with contextlib.suppress(Exception):  # already broken: nothing more to release
                connection.close()
        self.engine.dispose()

    # ---- the change counter (cheap: one indexed row on a connection of its own, no ORM)

    def change_counter(self, gun: str) -> int:
        """How many times ``gun``'s trust data has changed (0: never since counting began).

        Read on a DB-API connection kept for it, in autocommit mode, so each call sees every
        transaction committed before it, in any process.  A kept connection that fails (the
        database restarted) is dropped and the read tried once more on a new one."""
        idle = self._counter_idle
        try:
            connection, fresh = idle.get_nowait(), False
        except queue.Empty:
            connection, fresh = self._counter_connection(), True
        try:
            cursor = connection.cursor()
            cursor.execute(self._counter_sql, (gun,))
            row = cursor.fetchone()
            cursor.close()
        except Exception:
            self._discard_counter_connection(connection)
            if fresh:
                raise
            return self.change_counter(gun)
        idle.put(connection)
        return int(row[0]) if row else 0

    def _counter_connection(self) -> Any:  # a DB-API connection: untyped by design
        pooled = self.engine.raw_connection()
        pooled.detach()  # kept for the counter, outside the pool
        connection: Any = pooled.dbapi_connection  # sqlite3's or psycopg's: each has its autocommit switch
        if self.local:
            connection.isolation_level = None  # autocommit: no read transaction left open
        else:
            connection.autocommit = True  # no "idle in transaction" connection holding old rows
        with self._counter_lock:
            self._counter_all.append(connection)
        return connection

    def _discard_counter_connection(self, connection: Any) -> None:
        with self._counter_lock:
            if connection in self._counter_all:
                self._counter_all.remove(connection)
        with contextlib.suppress(Exception):
            connection.close()

    # ---- reading

    def current(self, gun: str, role: str) -> StoredFile | None:
        return self._one(_CURRENT, {"gun": gun, "role": role})

    def by_version(self, gun: str, role: str, version: int) -> StoredFile | None:
        return self._one(_BY_VERSION, {"gun": gun, "role": role, "version": version})

    def by_checksum(self, gun: str, role: str, sha256: str) -> StoredFile | None:
        return self._one(_BY_CHECKSUM, {"gun": gun, "role": role, "sha256": sha256})

    def latest_all(self, gun: str) -> dict[str, StoredFile]:
        """The newest version of every role of ``gun``."""
        with self.engine.connect() as conn:
            return {
                row.role: StoredFile(row.role, row.version, row.data, _utc(row.created_at))
                for row in conn.execute(_LATEST_ALL, {"gun": gun})
            }

    def guns(self) -> list[tuple[str, datetime]]:
        """Every repository with trust data, and when it last changed."""
        query = (
            sa.select(TUF_FILES.c.gun, sa.func.max(TUF_FILES.c.created_at).label("changed"))
            .group_by(TUF_FILES.c.gun)
            .order_by(TUF_FILES.c.gun)
        )
        with self.engine.connect() as conn:
            return [(row.gun, _utc(row.changed)) for row in conn.execute(query)]

    def _one(self, query: sa.Select[Any], params: dict[str, Any]) -> StoredFile | None:
        with self.engine.connect() as conn:
            row = conn.execute(query, params).first()
        return StoredFile(row.role, row.version, row.data, _utc(row.created_at)) if row else None

    # ---- writing

    def update_many(
        self,
        gun: str,
        files: Iterable[tuple[str, int, bytes]],
        *,
        now: datetime,
        change: tuple[int, bytes] | None = None,
    ) -> None:
        """Store every ``(role, version, data)`` atomically, each version above all stored ones;
        ``change`` is the new timestamp's (version, bytes) for the changefeed.

        Raises:
            VersionConflict: a version not above the stored one, or a concurrent publish.
        """
        try:
            with self.engine.begin() as conn:
                for role, version, data in files:
                    stored = conn.execute(_MAX_VERSION, {"gun": gun, "role": role}).scalar()
                    if stored is not None and version <= stored:
                        raise VersionConflict(f"{role} version {version} is not above the stored {stored}")
                    conn.execute(
                        _INSERT_FILE,
                        {
                            "gun": gun,
                            "role": role,
                            "version": version,
                            "sha256": hashlib.sha256(data).hexdigest(),
                            "data": data,
                            "created_at": now,
                        },
                    )
                _count_change(conn, gun)
                if change is not None:
                    conn.execute(
                        _INSERT_CHANGE,
                        {
                            "created_at": now,
                            "gun": gun,
                            "version": change[0],
                            "sha256": hashlib.sha256(change[1]).hexdigest(),
                            "category": "update",
                        },
                    )
        except IntegrityError:
            raise VersionConflict("a concurrent publish stored that version first") from None
        except OperationalError as exc:
            if "locked" in str(exc) or "could not serialize" in str(exc):
                raise VersionConflict("a concurrent publish holds the repository; try again") from None
            raise

    def delete(self, gun: str, *, now: datetime) -> bool:
        """Delete every version of every role of ``gun`` (exact name, never a prefix)."""
        with self.engine.begin() as conn:
            deleted = conn.execute(TUF_FILES.delete().where(TUF_FILES.c.gun == gun)).rowcount
            if deleted:
                _count_change(conn, gun)
                conn.execute(
                    CHANGES.insert().values(created_at=now, gun=gun, version=0, sha256="", category="deletion")
                )
        return bool(deleted)

    # ---- changefeed

    def changes(self, gun: str | None, change_id: int, records: int) -> list[Change]:
        """notary's changefeed: ``records`` after ``change_id`` (or before it when negative);
        ``change_id`` -1 means the newest."""
        query = sa.select(CHANGES)
        if gun is not None:
            query = query.where(CHANGES.c.gun == gun)
        if records < 0:
            if change_id >= 0:
                query = query.where(CHANGES.c.id < change_id) if change_id else query.where(sa.false())
            query = query.order_by(CHANGES.c.id.desc()).limit(-records)
        elif change_id == -1:
            query = query.order_by(CHANGES.c.id.desc()).limit(records)
        else:
            query = query.where(CHANGES.c.id > change_id).order_by(CHANGES.c.id).limit(records)
        with self.engine.connect() as conn:
            rows = [
                Change(r.id, _utc(r.created_at), r.gun, r.version, r.sha256, r.category) for r in conn.execute(query)
            ]
        return sorted(rows, key=lambda change: change.id)

    # ---- server keys

    def server_keys(self, gun: str, role: str) -> list[tuple[str, str, str]]:
        """``(keyid, public JSON, encrypted private PEM)``, newest first."""
        with self.engine.connect() as conn:
            return [(r.keyid, r.public, r.private) for r in conn.execute(_SERVER_KEYS, {"gun": gun, "role": role})]

    def add_server_key(self, gun: str, role: str, keyid: str, public: str, private: str, *, now: datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                SERVER_KEYS.insert().values(
                    gun=gun, role=role, keyid=keyid, public=public, private=private, created_at=now
                )
            )

    # ---- import (notary-server's history, with its versions and dates)

    def stored_checksums(self, gun: str) -> dict[tuple[str, int], str]:
        """``(role, version) -> sha256`` of every file stored for ``gun``."""
        query = sa.select(TUF_FILES.c.role, TUF_FILES.c.version, TUF_FILES.c.sha256).where(TUF_FILES.c.gun == gun)
        with self.engine.connect() as conn:
            return {(r.role, r.version): r.sha256 for r in conn.execute(query)}

    def server_key_ids(self, gun: str) -> set[str]:
        with self.engine.connect() as conn:
            return set(conn.execute(sa.select(SERVER_KEYS.c.keyid).where(SERVER_KEYS.c.gun == gun)).scalars())

    def import_repository(self, gun: str, files: Iterable[ImportedFile], keys: Iterable[ImportedKey]) -> None:
        """Store historical ``files`` and server ``keys`` of ``gun`` as they were, in one
        transaction: a repository is imported whole or not at all.  Rows already there are left
        alone; a different file under a stored version raises ``VersionConflict``."""
        with self.engine.begin() as conn:
            for item in files:
                sha256 = hashlib.sha256(item.data).hexdigest()
                stored = conn.execute(
                    sa.select(TUF_FILES.c.sha256).where(
                        TUF_FILES.c.gun == gun,
                        TUF_FILES.c.role == item.role,
                        TUF_FILES.c.version == item.version,
                    )
                ).scalar()
                if stored == sha256:
                    continue
                if stored is not None:
                    raise VersionConflict(f"{item.role} version {item.version} differs from the one already stored")
                _count_change(conn, gun)
                conn.execute(
                    TUF_FILES.insert().values(
                        gun=gun,
                        role=item.role,
                        version=item.version,
                        sha256=sha256,
                        data=item.data,
                        created_at=item.created_at,
                    )
                )
            for key in keys:
                held = conn.execute(
                    sa.select(SERVER_KEYS.c.id).where(
                        SERVER_KEYS.c.gun == gun, SERVER_KEYS.c.role == key.role, SERVER_KEYS.c.keyid == key.keyid
                    )
                ).first()
                if held is None:
                    conn.execute(
                        SERVER_KEYS.insert().values(
                            gun=gun,
                            role=key.role,
                            keyid=key.keyid,
                            public=key.public,
                            private=key.private,
                            created_at=key.created_at,
                        )
                    )

    def import_changes(self, changes: Iterable[ImportedChange]) -> int:
        """Append the ``changes`` not yet stored, in the order given (one transaction); how many.

        A change counts as stored when as many identical records (date, GUN, version, checksum,
        category) are there as the source holds up to it, so a re-run adds nothing twice."""

        def identity(when: datetime, gun: str, version: int, sha256: str, category: str) -> tuple[Any, ...]:
            return _utc(when), gun, version, sha256, category

        new: list[dict[str, Any]] = []
        with self.engine.begin() as conn:
            stored: dict[tuple[Any, ...], int] = {}
            for row in conn.execute(
                sa.select(CHANGES.c.created_at, CHANGES.c.gun, CHANGES.c.version, CHANGES.c.sha256, CHANGES.c.category)
            ):
                key = identity(*row)
                stored[key] = stored.get(key, 0) + 1
            for change in changes:
                key = identity(change.created_at, change.gun, change.version, change.sha256, change.category)
                if stored.get(key, 0) > 0:
                    stored[key] -= 1  # this one is already there
                    continue
                new.append(
                    {
                        "created_at": change.created_at,
                        "gun": change.gun,
                        "version": change.version,
                        "sha256": change.sha256,
                        "category": change.category,
                    }
                )
            if new:
                conn.execute(CHANGES.insert(), new)  # one statement, rows in order: ids keep the feed's order
        return len(new)

    # ---- repository settings

    def is_immutable(self, gun: str) -> bool:
        with self.engine.connect() as conn:
            return bool(conn.execute(_IMMUTABLE, {"gun": gun}).scalar())

    def set_immutable(self, gun: str, immutable: bool, *, now: datetime) -> None:
        with self.engine.begin() as conn:
            updated = conn.execute(
                REPOSITORIES.update().where(REPOSITORIES.c.gun == gun).values(immutable=immutable, updated_at=now)
            ).rowcount
            if not updated:
                conn.execute(REPOSITORIES.insert().values(gun=gun, immutable=immutable, updated_at=now))

    def immutable_guns(self) -> set[str]:
        with self.engine.connect() as conn:
            return {r.gun for r in conn.execute(sa.select(REPOSITORIES.c.gun).where(REPOSITORIES.c.immutable))}


def _count_change(conn: sa.Connection, gun: str) -> None:
    """Bump ``gun``'s change counter inside the transaction that changes it (insert or update in
    one statement, so two first publishes cannot race to insert the row)."""
    conn.execute(_COUNT_CHANGE["sqlite" if conn.dialect.name == "sqlite" else "postgresql"], {"gun": gun})


def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:  # a DB-API connection: untyped by design
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never wait for a publish
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; WAL keeps commits atomic
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
