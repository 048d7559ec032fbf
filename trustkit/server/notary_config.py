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
_GO_MYSQL = re.compile(r"^(?:(?P<user>[^:@/]*)(?::(?P<password>.*))?@)?"
                       r"(?:(?P<net>tcp|unix)\((?P<addr>[^)]*)\))?/(?P<db>[^?/]*)(?:\?(?P<query>.*))?$")
# Parameters of Go's driver that mean nothing to PyMySQL (their effect is the default here).
_GO_MYSQL_ONLY = {"parsetime", "loc", "timeout", "readtimeout", "writetimeout", "allownativepasswords",
                  "interpolateparams", "collation", "maxallowedpacket", "clientfoundrows"}


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
        raise TrustkitError(f"cannot read the database address {_redacted(dsn)!r}",
                            hint="give postgres://..., mysql://..., sqlite:///PATH or notary's "
                                 "user:password@tcp(host:3306)/database form")
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
        raise TrustkitError(f"{what} {path}: storage.backend {backend!r} cannot be imported",
                            hint="trustkit imports from postgres, mysql and sqlite3")
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
    return NotaryDatabases(_storage_url(server, server_config, "notary-server config"),
                           _storage_url(signer, signer_config, "notary-signer config"),
                           alias if isinstance(alias, str) else None)


# --------------------------------------------------------------------------------------------
# notary-server's configuration file as `trustkit server --config`

# Settings of notary-server that have no meaning for trustkit's behaviour beyond logging.
_IGNORABLE = {"logging.level", "trust_service.type", "trust_service.hostname", "trust_service.port",
              "trust_service.tls_ca_file", "trust_service.tls_client_cert", "trust_service.tls_client_key",
              "trust_service.key_algorithm"}


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
    settings: dict[str, Any] = {}
    unsupported = []
    for key, value in flat.items():
        taken = _setting(key, value, path)
        if taken is None:
            if key not in _IGNORABLE:
                unsupported.append(key)
        else:
            settings.update(taken)
    if unsupported:
        raise TrustkitError(f"notary-server config {path} has settings trustkit does not support: "
                            f"{', '.join(sorted(unsupported))}",
                            hint="remove them (trustkit keeps its server keys in its database and signs itself)")
    if settings.get("auth") == "token" and "token_realm" not in settings:
        raise TrustkitError(f"notary-server config {path}: auth.type token needs auth.options.realm")
    return settings


def _setting(key: str, value: Any, path: str) -> dict[str, Any] | None:
    """trustkit's settings for one of notary-server's (None: not supported)."""
    base = Path(path).resolve().parent

    def file(name: Any) -> str:
        return str(base / name) if isinstance(name, str) and not Path(name).is_absolute() else str(name)

    simple: dict[str, Callable[[Any], dict[str, Any]]] = {
        "server.tls_cert_file": lambda v: {"tls_cert": file(v)},
        "server.tls_key_file": lambda v: {"tls_key": file(v)},
        "auth.options.realm": lambda v: {"token_realm": v},
        "auth.options.service": lambda v: {"token_service": v},
        "auth.options.issuer": lambda v: {"token_issuer": v},
        "auth.options.rootcertbundle": lambda v: {"token_root_certs": file(v)},
        "repositories.gun_prefixes": lambda v: {"gun_prefixes": list(v) if isinstance(v, list) else [v]},
        "caching.max_age.current_metadata": lambda v: {"current_max_age": _seconds(v, key)},
        "caching.max_age.consistent_metadata": lambda v: {"consistent_max_age": _seconds(v, key)},
    }
    if key in simple:
        return simple[key](value)
    if key == "server.http_addr":
        host, _, port = str(value).rpartition(":")
        return {"listen": f"{host or '0.0.0.0'}:{port}"}  # noqa: S104 - notary's ":4443" means every address
    if key == "auth.type":
        if value != "token":
            return None
        return {"auth": "token"}
    if key == "storage.backend":
        return {} if value in ("postgres", "mysql", "sqlite3", "memory") else None
    if key == "storage.db_url":
        backend = None
        return {"database": _database(value, backend, base)}
    if key == "logging.level":
        return {"log_level": str(value).lower()} if str(value).lower() in ("debug", "info", "warning", "error") else {}
    return None


def _database(value: Any, backend: str | None, base: Path) -> str:
    if not isinstance(value, str):
        raise TrustkitError("storage.db_url must be a string")
    if "://" not in value and "@" not in value and "(" not in value:
        return sqlalchemy_url(str(base / value), "sqlite3")
    return sqlalchemy_url(value, backend)


def _seconds(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TrustkitError(f"{key} must be a whole number of seconds")
    return value
