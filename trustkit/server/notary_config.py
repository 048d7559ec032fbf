"""Layer `server`: notary's configuration, read for trustkit: the database addresses
notary-server and notary-signer use (their DSN forms turned into SQLAlchemy URLs), and
notary-server's JSON configuration file as a drop-in for ``trustkit server --config``.

Only what trustkit can honour is taken; every other setting is named in the error, so an
operator never believes a setting applies when it does not.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from trustkit.errors import TrustkitError

# Go's MySQL driver: [user[:password]@][net[(addr)]]/dbname[?param=value&...]
_GO_MYSQL = re.compile(
    r"^(?:(?P<user>[^:@/]*)(?::(?P<password>.*))?@)?"
    r"(?:(?P<net>tcp|unix)\((?P<addr>[^)]*)\))?/(?P<db>[^?/]*)(?:\?(?P<query>.*))?$"
)
# Parameters of Go's driver that mean nothing to PyMySQL (their effect is the default here).
_GO_MYSQL_ONLY = {
    "parsetime",
    "loc",
    "timeout",
    "readtimeout",
    "writetimeout",
    "allownativepasswords",
    "interpolateparams",
    "collation",
    "maxallowedpacket",
    "clientfoundrows",
}


def sqlalchemy_url(dsn: str, backend: str | None = None) -> str:
    """An SQLAlchemy URL for a database address as notary takes it (``postgres://...``,
    ``user:pass@tcp(host:3306)/db?parseTime=True``, an SQLite file path) or as an ordinary URL.

    ``backend`` is notary's ``storage.backend`` (``postgres``, ``mysql``, ``sqlite3``) when known.
    """
    dsn = dsn.strip()
    if not dsn:
        raise TrustkitError("the database address is empty")
    scheme, sep, rest = dsn.partition("://")
    if sep:
        scheme = scheme.lower()
        if scheme in ("postgres", "postgresql"):
            return f"postgresql+psycopg://{rest}"
        if scheme in ("mysql", "mariadb"):
            return f"mysql+pymysql://{rest}"
        if scheme in ("sqlite", "sqlite3"):
            return f"sqlite://{rest}" if rest.startswith("/") else f"sqlite:///{rest}"
        return dsn  # already an SQLAlchemy URL (postgresql+psycopg://, mysql+pymysql://, ...)
    if backend in ("sqlite3", "sqlite"):
        return f"sqlite:///{Path(dsn).resolve()}"
    match = _GO_MYSQL.match(dsn)
    if match is None or backend not in (None, "mysql"):
        raise TrustkitError(
            f"cannot read the database address {_redacted(dsn)!r}",
            hint="give postgres://..., mysql://..., sqlite:///PATH or notary's "
            "user:password@tcp(host:3306)/database form",
        )
    return _go_mysql_url(match)


def _go_mysql_url(match: re.Match[str]) -> str:
    user = quote(match["user"] or "", safe="")
    password = match["password"]
    credentials = f"{user}:{quote(password, safe='')}@" if password is not None else (f"{user}@" if user else "")
    params = [(k, v) for k, v in parse_qsl(match["query"] or "") if k.lower() not in _GO_MYSQL_ONLY]
    addr = match["addr"] or "127.0.0.1:3306"
    if match["net"] == "unix":
        params.append(("unix_socket", addr))
        addr = "localhost"
    query = f"?{urlencode(params)}" if params else ""
    return f"mysql+pymysql://{credentials}{addr}/{match['db']}{query}"


def same_database(first: str, second: str) -> bool:
    """Whether two SQLAlchemy URLs name the same database (driver, host, port, name or file)."""
    from sqlalchemy.engine import make_url

    def identity(url: str) -> tuple[object, ...]:
        parsed = make_url(url)
        backend = parsed.get_backend_name()
        if backend == "sqlite":
            return backend, str(Path(parsed.database or "").resolve())
        return backend, (parsed.host or "localhost").lower(), parsed.port, parsed.database

    return identity(first) == identity(second)


def _redacted(dsn: str) -> str:
    """``dsn`` without its password, for messages."""
    return re.sub(r"(:)[^:@/]*(@)", r"\1***\2", dsn, count=1)


# --------------------------------------------------------------------------------------------
# notary-server's and notary-signer's configuration files


@dataclass(frozen=True)
class NotaryDatabases:
    server_url: str
    signer_url: str
    default_alias: str | None


def _read_json(path: str, what: str) -> dict[str, Any]:
    try:
        loaded = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise TrustkitError(f"cannot read {what} {path}: {exc}") from None
    if not isinstance(loaded, dict):
        raise TrustkitError(f"{what} {path} must be a JSON object")
    return loaded


def _storage_url(config: dict[str, Any], path: str, what: str) -> str:
    storage = config.get("storage")
    if not isinstance(storage, dict):
        raise TrustkitError(f"{what} {path} has no storage section")
    backend, db_url = storage.get("backend"), storage.get("db_url")
    if backend not in ("postgres", "mysql", "sqlite3"):
        raise TrustkitError(
            f"{what} {path}: storage.backend {backend!r} cannot be imported",
            hint="trustkit imports from postgres, mysql and sqlite3",
        )
    if not isinstance(db_url, str):
        raise TrustkitError(f"{what} {path}: storage.db_url is missing")
    if backend == "sqlite3" and not Path(db_url).is_absolute():
        db_url = str(Path(path).resolve().parent / db_url)  # notary resolves it beside the config
    return sqlalchemy_url(db_url, backend)


def import_databases(server_config: str, signer_config: str) -> NotaryDatabases:
    """The databases (and notary-signer's default passphrase alias) named by the two files."""
    server = _read_json(server_config, "notary-server config")
    signer = _read_json(signer_config, "notary-signer config")
    alias = signer.get("storage", {}).get("default_alias") if isinstance(signer.get("storage"), dict) else None
    return NotaryDatabases(
        _storage_url(server, server_config, "notary-server config"),
        _storage_url(signer, signer_config, "notary-signer config"),
        alias if isinstance(alias, str) else None,
    )


# --------------------------------------------------------------------------------------------
# notary-server's configuration file as `trustkit server --config`

# Settings of notary-server that have no meaning for trustkit's behaviour beyond logging.
_IGNORABLE = {
    "trust_service.type",
    "trust_service.hostname",
    "trust_service.port",
    "trust_service.tls_ca_file",
    "trust_service.tls_client_cert",
    "trust_service.tls_client_key",
}


def is_notary_server_config(document: dict[str, Any]) -> bool:
    """notary-server's file has sections (``server``, ``storage``...); trustkit's is flat."""
    return isinstance(document.get("server"), dict) or isinstance(document.get("storage"), dict)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): value}


def server_settings(document: dict[str, Any], path: str) -> dict[str, Any]:
    """trustkit server settings for notary-server's configuration ``document``.

    Raises:
        TrustkitError: naming every setting trustkit does not support.
    """
    flat = _flatten(document)
    base = Path(path).resolve().parent
    settings, unsupported = _storage(flat, base)
    for key, value in flat.items():
        if key.startswith("storage.") or key in _IGNORABLE:
            continue
        convert = _SETTINGS.get(key)
        taken = convert(value, base) if convert is not None else None
        if taken is None:
            unsupported.append(key)
        else:
            settings.update(taken)
    if unsupported:
        raise TrustkitError(
            f"notary-server config {path} has settings trustkit does not support: {', '.join(sorted(unsupported))}",
            hint="remove them (trustkit keeps its server keys in its database and signs itself)",
        )
    if settings.get("auth") == "token" and "token_realm" not in settings:
        raise TrustkitError(f"notary-server config {path}: auth.type token needs auth.options.realm")
    return settings


def _storage(flat: dict[str, Any], base: Path) -> tuple[dict[str, Any], list[str]]:
    """``storage.*``: the database trustkit serves from (notary's memory backend: trustkit's default)."""
    backend, db_url = flat.get("storage.backend"), flat.get("storage.db_url")
    others = [key for key in flat if key.startswith("storage.") and key not in ("storage.backend", "storage.db_url")]
    if backend is None or backend == "memory":
        return {}, others
    if backend not in ("postgres", "mysql", "sqlite3") or not isinstance(db_url, str):
        return {}, [*others, "storage.backend" if backend not in ("postgres", "mysql", "sqlite3") else "storage.db_url"]
    if backend == "sqlite3" and not Path(db_url).is_absolute():
        db_url = str(base / db_url)
    return {"database": sqlalchemy_url(db_url, backend)}, others


def _file(name: Any, base: Path) -> str:
    return str(base / name) if isinstance(name, str) and not Path(name).is_absolute() else str(name)


def _listen(value: Any) -> dict[str, Any]:
    host, _, port = str(value).rpartition(":")
    return {"listen": f"{host or '0.0.0.0'}:{port}"}  # noqa: S104 - notary's ":4443" means every address


def _seconds(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TrustkitError(f"{key} must be a whole number of seconds")
    return value


_Converter = Callable[[Any, Path], "dict[str, Any] | None"]
# notary-server's settings trustkit honours, each turned into trustkit's (None: that value is not supported).
_SETTINGS: dict[str, _Converter] = {
    "server.http_addr": lambda v, _: _listen(v),
    "server.tls_cert_file": lambda v, base: {"tls_cert": _file(v, base)},
    "server.tls_key_file": lambda v, base: {"tls_key": _file(v, base)},
    "auth.type": lambda v, _: {"auth": "token"} if v == "token" else None,
    "auth.options.realm": lambda v, _: {"token_realm": v},
    "auth.options.service": lambda v, _: {"token_service": v},
    "auth.options.issuer": lambda v, _: {"token_issuer": v},
    "auth.options.rootcertbundle": lambda v, base: {"token_root_certs": _file(v, base)},
    "trust_service.key_algorithm": lambda v, _: {"key_algorithm": v} if v in ("ecdsa", "ed25519", "rsa") else None,
    "repositories.gun_prefixes": lambda v, _: {"gun_prefixes": list(v) if isinstance(v, list) else [v]},
    "caching.max_age.current_metadata": lambda v, _: {"current_max_age": _seconds(v, "caching.max_age")},
    "caching.max_age.consistent_metadata": lambda v, _: {"consistent_max_age": _seconds(v, "caching.max_age")},
    "logging.level": lambda v, _: (
        {"log_level": str(v).lower()} if str(v).lower() in ("debug", "info", "warning", "error") else {}
    ),
}
