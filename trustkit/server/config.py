"""Layer `server`: configuration (flags, ``TRUSTKIT_SERVER_*`` variables or a JSON file), and
building and running the app with uvicorn.

The built-in default is one process on SQLite in the user's data folder, listening on
loopback.  A server that listens beyond loopback must be told how to authenticate (``--auth
htpasswd|token``) or explicitly ``--auth none``: it is never open by accident.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import ssl
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from trustkit.errors import TrustkitError
from trustkit.reference import is_loopback_host
from trustkit.server.keys import KEY_ALGORITHMS

LOG = logging.getLogger("trustkit.server")
CONFIG_ENV = "TRUSTKIT_SERVER_CONFIG_JSON"  # how worker processes receive the configuration


def _cores() -> int:
    """The cores this process may run on (its CPU affinity, where the system has one)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else os.cpu_count() or 1


def data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "trustkit"


@dataclass
class ServerConfig:
    listen: str = "127.0.0.1:4443"
    database: str = ""  # default: sqlite in data_dir()
    tls_cert: str | None = None
    tls_key: str | None = None
    workers: int = field(default_factory=_cores)  # one process per core: reads are CPU-bound
    passphrase_file: str | None = None
    auth: str = "default"  # default | none | htpasswd | token
    htpasswd: str | None = None
    admins: list[str] = field(default_factory=list)
    token_realm: str | None = None
    token_service: str = "trustkit"  # noqa: S105 - the token audience's name, not a secret
    token_issuer: str = "trustkit"  # noqa: S105 - the issuer's name, not a secret
    token_root_certs: str | None = None
    public_read: bool = False  # anonymous clients may pull every repository (htpasswd or token auth)
    login_burst: int = 10  # failed logins per client address before it is slowed down; 0: no limit
    login_interval: int = 6  # then one more attempt per this many seconds
    gun_prefixes: list[str] = field(default_factory=list)
    max_body: int = 64 << 20
    current_max_age: int = 300
    consistent_max_age: int = 2592000
    log_level: str = "info"
    header_timeout: float = 30.0  # seconds for a request head to arrive
    key_algorithm: str = "ecdsa"  # new server-held keys (notary's trust_service.key_algorithm)
    body_timeout: float = 30.0  # seconds a request body may make no progress
    registry: str | None = None  # the registry whose tags the web page compares with the signed ones
    registry_ca: str | None = None  # CA file for the registry and its token service (default: the system's)
    registry_user: str | None = None  # login for that registry (basic or its token service)
    registry_password: str | None = None  # TRUSTKIT_SERVER_REGISTRY_PASSWORD or the config file, not a flag

    @classmethod
    def load(cls, file: str | None, overrides: dict[str, Any]) -> ServerConfig:
        """File values, then ``TRUSTKIT_SERVER_<NAME>`` variables, then flags (``overrides``)."""
        values: dict[str, Any] = {}
        if file:
            try:
                loaded = json.loads(Path(file).read_text())
            except (OSError, ValueError) as exc:
                raise TrustkitError(f"cannot read server config {file}: {exc}") from None
            if not isinstance(loaded, dict):
                raise TrustkitError(f"server config {file} must be a JSON object")
            from trustkit.server.notary_config import is_notary_server_config, server_settings

            values.update(server_settings(loaded, file) if is_notary_server_config(loaded) else loaded)
        known = {f.name: str(f.type) for f in fields(cls)}
        unknown = set(values) - set(known)
        if unknown:
            raise TrustkitError(f"unknown server setting {sorted(unknown)[0]!r}")
        typed: dict[str, Any] = {
            name: _setting(name, known[name], value, f"config file {file}") for name, value in values.items()
        }
        for name, kind in known.items():
            env = os.environ.get(f"TRUSTKIT_SERVER_{name.upper()}")
            if env is not None:
                typed[name] = _from_environment(name, kind, env)
        for name, value in overrides.items():
            if value not in (None, (), []):
                if name not in known:
                    raise TrustkitError(f"unknown server setting {name!r}")
                typed[name] = _setting(
                    name, known[name], list(value) if isinstance(value, tuple) else value, "the command line"
                )
        config = cls(**typed)
        config.check()
        return config

    def check(self) -> None:
        host, _, port = self.listen.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise TrustkitError(f"--listen {self.listen!r} must be HOST:PORT")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise TrustkitError("give both --tls-cert and --tls-key, or neither")
        if self.auth not in ("default", "none", "htpasswd", "token"):
            raise TrustkitError(f"--auth must be none, htpasswd or token, not {self.auth!r}")
        if self.auth == "default" and not is_loopback_host(host):
            raise TrustkitError(
                f"refusing to serve {self.listen} without authentication",
                hint="choose --auth htpasswd (with --htpasswd FILE) or --auth token, "
                "or --auth none to run open on purpose",
            )
        if self.auth == "htpasswd" and not self.htpasswd:
            raise TrustkitError("--auth htpasswd needs --htpasswd FILE")
        if self.auth == "htpasswd" and not self.token_realm and host.strip("[]") in ("0.0.0.0", "::"):  # noqa: S104 - detects it
            raise TrustkitError(
                "clients cannot reach a token service at a wildcard address",
                hint="give --token-realm https://<name clients use>:<port>/auth/token",
            )
        if self.auth == "token" and not (self.token_realm and self.token_root_certs):
            raise TrustkitError("--auth token needs --token-realm URL and --token-root-certs FILE")
        if self.workers < 1:
            raise TrustkitError("--workers must be at least 1")
        if self.key_algorithm not in KEY_ALGORITHMS:
            raise TrustkitError(
                f"--key-algorithm must be one of {', '.join(KEY_ALGORITHMS)}, not {self.key_algorithm!r}"
            )
        # (types are checked where the settings are read: _setting)
        for name, least in (("login_burst", 0), ("login_interval", 1)):
            if getattr(self, name) < least:
                raise TrustkitError(f"--{name.replace('_', '-')} must be a whole number of at least {least}")
        for name in ("header_timeout", "body_timeout"):
            if not getattr(self, name) > 0:
                raise TrustkitError(f"--{name.replace('_', '-')} must be a number of seconds above 0")
        if self.registry is not None:
            self.registry_reader()  # the URL and CA file are checked now, not on the first page view

    @property
    def database_url(self) -> str:
        if self.database:
            return self.database
        return f"sqlite:///{data_dir() / 'trustkit-server.db'}"

    @property
    def state_dir(self) -> Path:
        """Where the server keeps its files (generated passphrase, token signing key): beside a
        SQLite database, else the user's data folder."""
        url = self.database_url
        return Path(url[len("sqlite:///") :]).parent if url.startswith("sqlite:///") else data_dir()

    def passphrase(self) -> str:
        """``TRUSTKIT_SERVER_PASSPHRASE``, else ``--passphrase-file``; for the built-in SQLite
        default, one generated into a 0600 file beside the database (and the log says so)."""
        if os.environ.get("TRUSTKIT_SERVER_PASSPHRASE"):
            return os.environ["TRUSTKIT_SERVER_PASSPHRASE"]
        if self.passphrase_file:
            try:
                return Path(self.passphrase_file).read_text().strip()
            except OSError as exc:
                raise TrustkitError(f"cannot read --passphrase-file {self.passphrase_file}: {exc.strerror}") from None
        if not self.database_url.startswith("sqlite:///"):
            raise TrustkitError(
                "servers sharing a database need one passphrase for their keys",
                hint="set TRUSTKIT_SERVER_PASSPHRASE or --passphrase-file",
            )
        path = Path(self.database_url[len("sqlite:///") :]).with_name("server-passphrase")
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(32))
            LOG.warning(
                json.dumps(
                    {
                        "event": "generated server passphrase",
                        "file": str(path),
                        "note": "back it up with the database: the server's keys are encrypted with it",
                    }
                )
            )
        return path.read_text().strip()

    def registry_reader(self) -> Any:
        """The web page's :class:`RegistryReader` (None without ``--registry``)."""
        if self.registry is None:
            return None
        from trustkit.server.registry_check import RegistryReader

        if self.registry_ca and not Path(self.registry_ca).is_file():
            raise TrustkitError(f"--registry-ca {self.registry_ca} is not a file")
        try:
            return RegistryReader(
                self.registry, ca_file=self.registry_ca, username=self.registry_user, password=self.registry_password
            )
        except ssl.SSLError as exc:
            raise TrustkitError(f"--registry-ca {self.registry_ca}: {exc}") from None

    def to_env(self) -> str:
        return json.dumps(asdict(self))


def build_app(config: ServerConfig) -> Any:
    """The configured ASGI app (storage, keys, auth, web page, access log)."""
    from trustkit.server.app import AccessLog, ServerSettings, create_app
    from trustkit.server.keys import ServerKeys
    from trustkit.server.storage import Storage

    storage = Storage(config.database_url)
    keys = ServerKeys(storage, config.passphrase(), config.key_algorithm)
    authorizer, extra_routes, page_access = _auth(config)
    settings = ServerSettings(
        max_body=config.max_body,
        current_max_age=config.current_max_age,
        consistent_max_age=config.consistent_max_age,
        gun_prefixes=tuple(config.gun_prefixes),
        authorizer=authorizer,
    )
    from trustkit.server.web import web_routes

    page = web_routes(storage, access=page_access, registry=config.registry_reader())
    app = create_app(storage, keys, settings, extra_routes=extra_routes + page)
    return AccessLog(app)


def _auth(config: ServerConfig) -> tuple[Any, list[Any], Any]:
    """The API's authorizer, the token endpoint's route (htpasswd) and the web page's access rules."""
    from starlette.routing import Route

    from trustkit.server import auth

    if config.auth in ("default", "none"):
        return auth.NoAuth(), [], auth.PageAccess()

    def api(tokens: auth.TokenAuthorizer) -> auth.Authorizer:
        return auth.PublicRead(tokens) if config.public_read else tokens

    if config.auth == "token":
        if config.token_realm is None or config.token_root_certs is None:  # check() refused this already
            raise TrustkitError("--auth token needs --token-realm URL and --token-root-certs FILE")
        tokens = auth.TokenAuthorizer(
            realm=config.token_realm,
            service=config.token_service,
            issuer=config.token_issuer,
            root_certs_pem=Path(config.token_root_certs).read_bytes(),
        )
        return api(tokens), [], auth.PageAccess(tokens=tokens, public_read=config.public_read)
    # htpasswd: the built-in token issuer, its key made by prepare() before the workers start
    key_path, cert_path = _token_keypair_paths(config)
    scheme = "https" if config.tls_cert else "http"
    realm = config.token_realm or f"{scheme}://{config.listen}/auth/token"
    if config.htpasswd is None:  # check() refused this already
        raise TrustkitError("--auth htpasswd needs --htpasswd FILE")
    issuer = auth.HtpasswdTokenIssuer(
        htpasswd_path=Path(config.htpasswd),
        issuer=config.token_issuer,
        service=config.token_service,
        signing_key_pem=key_path.read_bytes(),
        cert_pem=cert_path.read_bytes(),
        admins=frozenset(config.admins),
        public_read=config.public_read,
        throttle=auth.LoginThrottle(config.login_burst, config.login_interval),
    )
    tokens = auth.TokenAuthorizer(
        realm=realm, service=config.token_service, issuer=config.token_issuer, root_certs_pem=cert_path.read_bytes()
    )
    page_access = auth.PageAccess(tokens=tokens, logins=issuer, public_read=config.public_read)
    return api(tokens), [Route("/auth/token", issuer.endpoint, methods=["GET"])], page_access


_KINDS = {
    "str": "a string",
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "list[str]": "a list of strings",
}


def _setting(name: str, kind: str, value: Any, source: str) -> Any:
    """``value`` as the field ``name`` declares it (``kind``: its annotation), or an error that
    names the setting and where it came from: a JSON config's ``"workers": "4"`` is refused here,
    not as a crash when a worker count is compared."""
    base = kind.removesuffix(" | None")
    if value is None and base != kind:
        return None
    fits = {
        "str": isinstance(value, str),
        "int": type(value) is int,
        "float": type(value) in (int, float),
        "bool": type(value) is bool,
        "list[str]": isinstance(value, list) and all(isinstance(v, str) for v in value),
    }.get(base)
    if fits is None:
        raise RuntimeError(f"server setting {name} has a type this loader does not know: {kind}")
    if not fits:
        raise TrustkitError(
            f"server setting {name!r} from {source} must be {_KINDS[base]}, not {json.dumps(value)[:40]}"
        )
    return float(value) if base == "float" else value


def _from_environment(name: str, kind: str, text: str) -> Any:
    """A ``TRUSTKIT_SERVER_<NAME>`` variable, converted to the field's type."""
    base = kind.removesuffix(" | None")
    if base == "list[str]":
        return text.split(",")
    if base == "bool":
        return _flag(name, text)
    if base in ("int", "float"):
        try:
            return int(text) if base == "int" else float(text)
        except ValueError:
            raise TrustkitError(f"TRUSTKIT_SERVER_{name.upper()}={text[:20]!r} must be {_KINDS[base]}") from None
    return text


def _flag(name: str, text: str) -> bool:
    """A yes/no ``TRUSTKIT_SERVER_*`` variable."""
    if text.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if text.strip().lower() in ("", "0", "false", "no", "off"):
        return False
    raise TrustkitError(f"TRUSTKIT_SERVER_{name.upper()}={text[:20]!r} must be true or false")


def prepare(config: ServerConfig) -> None:
    """Create everything the server writes, once, before uvicorn starts its workers (which then
    only read): the folders (0700), the generated passphrase, the database tables and the token
    signing key.  Workers that made them on their own raced (two creating the same tables, or
    the same key) and crashed."""
    from trustkit.server.storage import Storage

    for folder in {config.state_dir, *_sqlite_folder(config.database_url)}:
        _private_folder(folder)
    _fresh_metrics_folder(config)
    config.passphrase()
    Storage(config.database_url).close()
    if config.auth == "htpasswd":
        _make_token_keypair(config)


def metrics_folder(config: ServerConfig) -> Path:
    """Where the workers keep their metric files (the client's multi-process mode): one folder per
    listening address, so two servers sharing a data folder never add up each other's counts."""
    return config.state_dir / "metrics" / re.sub(r"[^A-Za-z0-9.-]", "_", config.listen)


def _fresh_metrics_folder(config: ServerConfig) -> None:
    """The metrics folder, emptied: files left by a previous run would add its counts to this one's."""
    folder = metrics_folder(config)
    _private_folder(folder)
    for stale in folder.glob("*.db"):
        stale.unlink(missing_ok=True)


def _sqlite_folder(url: str) -> list[Path]:
    return [Path(url[len("sqlite:///") :]).parent] if url.startswith("sqlite:///") else []


def _private_folder(folder: Path) -> None:
    """``folder`` and any missing parent, each created 0700 (existing ones are left as they are)."""
    missing = [path for path in (folder, *folder.parents) if not path.exists()]
    for path in reversed(missing):
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise TrustkitError(f"cannot create the server's folder {path}: {exc.strerror}") from None


def _token_keypair_paths(config: ServerConfig) -> tuple[Path, Path]:
    """The built-in token issuer's signing key and certificate, kept with the server's files."""
    return config.state_dir / "token-signing-key.pem", config.state_dir / "token-signing-cert.pem"


def _make_token_keypair(config: ServerConfig) -> None:
    """The token signing key (0600) and its certificate, unless both are there.  The certificate
    is written first and the key last, each by rename: a key on disk always has its certificate."""
    from trustkit.server import auth

    key_path, cert_path = _token_keypair_paths(config)
    if key_path.exists() and cert_path.exists():
        return
    key_pem, cert_pem = auth.generate_token_keypair(config.token_issuer)
    for path, data, mode in ((cert_path, cert_pem, 0o644), (key_path, key_pem, 0o600)):
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)


def app_from_env() -> Any:
    """uvicorn factory for worker processes: the configuration comes in ``CONFIG_ENV``."""
    _logging(json.loads(os.environ[CONFIG_ENV]).get("log_level", "info"))
    return build_app(ServerConfig(**json.loads(os.environ[CONFIG_ENV])))


def _logging(level: str) -> None:
    import logging.config

    from trustkit.server.logs import log_config

    logging.config.dictConfig(log_config(level if level.upper() in logging.getLevelNamesMapping() else "info"))


def run(config: ServerConfig) -> None:
    """Serve until interrupted (several worker processes with ``workers`` > 1)."""
    from functools import partial

    import uvicorn

    from trustkit.server.logs import log_config
    from trustkit.server.protocol import TimedHttpToolsProtocol

    _logging(config.log_level)
    prepare(config)  # once, before workers race for it
    os.environ[CONFIG_ENV] = config.to_env()
    # Before any worker imports the Prometheus client: it picks its mode when imported.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_folder(config))
    host, _, port = config.listen.rpartition(":")
    settings: dict[str, Any] = dict(
        factory=True,
        host=host.strip("[]"),
        port=int(port),
        workers=config.workers,
        ssl_certfile=config.tls_cert,
        ssl_keyfile=config.tls_key,
        log_level="warning",
        log_config=log_config(config.log_level),
        access_log=False,
        lifespan="off",
        http=partial(TimedHttpToolsProtocol, header_timeout=config.header_timeout, body_timeout=config.body_timeout),
    )
    if config.workers == 1:
        uvicorn.run("trustkit.server.config:app_from_env", **settings)
        return
    # Several workers: each on a listening socket of its own (see server/workers.py).
    from trustkit.server.workers import BalancedWorkers, bind_listeners

    uv_config = uvicorn.Config("trustkit.server.config:app_from_env", **settings)
    BalancedWorkers(uv_config, bind_listeners(settings["host"], settings["port"], config.workers)).run()


def describe(config: ServerConfig) -> str:
    """What ``trustkit server`` says at start-up, as the first line of its JSON log: where it
    listens, TLS or not, the database (without its password) and how clients authenticate."""
    from sqlalchemy.engine import make_url

    host, _, port = config.listen.rpartition(":")
    scheme = "https" if config.tls_cert else "http"
    shown_host = "127.0.0.1" if host.strip("[]") in ("0.0.0.0", "::") else host  # noqa: S104 - detects it
    auth = "none (open)" if config.auth in ("default", "none") else config.auth
    if config.public_read and config.auth in ("htpasswd", "token"):
        auth += ", anonymous pulls allowed"
    base = f"{scheme}://{shown_host}:{port}"
    event: dict[str, Any] = {
        "event": "trustkit server listening",
        "url": base,
        "workers": config.workers,
        "tls": config.tls_cert or "none (plain HTTP)",
        "database": make_url(config.database_url).render_as_string(hide_password=True),
        "auth": auth,
        "health": f"{base}/_notary_server/health",
        "metrics": f"{base}/metrics",
    }
    if shown_host != host:
        event["listen"] = f"every address ({host})"
    if config.registry:
        event["registry"] = f"{config.registry} (the web page compares signed tags with it)"
    return json.dumps(event)
