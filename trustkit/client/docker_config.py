"""Layer `client`: docker's ``config.json``, the one module that reads and writes it.

* :func:`docker_config_dir`: ``$DOCKER_CONFIG``, else ``~/.docker`` (also the home of ``tls/`` and ``trust/``).
* :func:`load_credentials` finds a registry's credentials the way the docker CLI does:
  ``credHelpers[<host>]``, else ``credsStore`` (both run ``docker-credential-<name> get``), else
  the ``auths`` entry (``auth`` = base64 ``user:pass``, or ``identitytoken``).  ``NOTARY_AUTH``
  (base64 ``user:pass``, as the notary CLI reads it) can override all of that.
* :func:`save_login` stores them as ``docker login`` does: through the same helper lookup, else
  in ``auths``; the file is replaced atomically and stays mode 0600.
* Docker Hub's names: :data:`DOCKER_HUB_HOSTS` and :data:`DOCKER_HUB_AUTH_KEY`, the key its
  credentials live under.

Nothing here speaks HTTP.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trustkit.errors import TrustkitError

if TYPE_CHECKING:
    import subprocess

__all__ = [
    "DOCKER_HUB_AUTH_KEY",
    "DOCKER_HUB_HOSTS",
    "Credentials",
    "auth_key",
    "decode_basic_auth",
    "docker_config_dir",
    "load_credentials",
    "registry_hostname",
    "save_login",
]

#: Every name Docker Hub's registry answers to; docker treats them as one registry.
DOCKER_HUB_HOSTS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
#: The key docker stores Docker Hub credentials under (and passes to credential helpers).
DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"

_HELPER_TIMEOUT = 60.0  # seconds; a helper may unlock a keychain, but must not hang us forever
# What credential helpers return as the user name for an identity token: a marker, not a secret.
_IDENTITY_TOKEN_USERNAME = "<token>"  # noqa: S105


@dataclass(frozen=True)
class Credentials:
    """What we can present to a registry or trust server.  Secrets stay out of ``repr``."""

    username: str
    password: str = field(default="", repr=False)
    identity_token: str | None = field(default=None, repr=False)

    @property
    def has_basic(self) -> bool:
        return bool(self.username) and bool(self.password)


def docker_config_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$DOCKER_CONFIG``, else ``~/.docker``."""
    env = os.environ if environ is None else environ
    configured = env.get("DOCKER_CONFIG")
    if configured:
        return Path(configured)
    home = env.get("HOME")
    return (Path(home) if home else Path.home()) / ".docker"


def decode_basic_auth(value: str, *, what: str) -> Credentials:
    """Credentials from base64 ``user:pass`` (docker's ``auths.*.auth``, ``NOTARY_AUTH``).

    Raises:
        TrustkitError: not base64, or no ``:``.
    """
    try:
        text = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise TrustkitError(f"{what} is not valid base64 of user:password") from None
    username, sep, password = text.partition(":")
    if not sep or not username:
        raise TrustkitError(f"{what} must be base64 of user:password")
    return Credentials(username, password)


def registry_hostname(key: str) -> str:
    """docker's ConvertToHostname: an ``auths`` or ``credHelpers`` key without scheme and path,
    lower case; every Docker Hub name becomes ``docker.io``."""
    text = key.strip()
    if "://" in text:
        text = text.split("://", 1)[1]
    host = text.split("/", 1)[0].lower()
    return "docker.io" if host in DOCKER_HUB_HOSTS else host


def auth_key(registry: str) -> str:
    """Where docker keeps a registry's credentials: its ``auths`` key, and the server address it
    gives a credential helper (Docker Hub's is its v1 index URL, every other registry its host)."""
    return DOCKER_HUB_AUTH_KEY if registry_hostname(registry) == "docker.io" else registry


# --------------------------------------------------------------------------------------------
# Reading


def _config_path(config_dir: Path | None, env: Mapping[str, str]) -> Path:
    return (config_dir if config_dir is not None else docker_config_dir(env)) / "config.json"


def _read_config(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; None when there is no such file."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise TrustkitError(f"cannot read {path}: {exc.strerror}") from None
    try:
        config = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise TrustkitError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise TrustkitError(f"{path} must hold a JSON object")
    return config


def _helper_for(config: Mapping[str, Any], registry: str) -> tuple[str, str] | None:
    """The credential helper docker would use for ``registry`` and which setting named it:
    ``credHelpers`` (keys compared as host names), else ``credsStore``."""
    host = registry_hostname(registry)
    helpers = config.get("credHelpers")
    if isinstance(helpers, dict):
        for key, helper in helpers.items():
            if registry_hostname(key) == host and isinstance(helper, str) and helper:
                return helper, "credHelpers"
    store = config.get("credsStore")
    if isinstance(store, str) and store:
        return store, "credsStore"
    return None


def load_credentials(
    registry_host: str,
    config_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    notary_auth: bool = False,
) -> Credentials | None:
    """The credentials docker would use for ``registry_host`` (``host[:port]``), or None.

    With ``notary_auth``, a ``NOTARY_AUTH`` variable (base64 ``user:pass``, the notary CLI's
    convention) wins over ``config.json``.

    Raises:
        TrustkitError: an unreadable ``config.json``, or a credential helper that is missing or
            fails (the message names the helper).
    """
    env = os.environ if environ is None else environ
    if notary_auth and env.get("NOTARY_AUTH"):
        return decode_basic_auth(env["NOTARY_AUTH"], what="NOTARY_AUTH")

    path = _config_path(config_dir, env)
    config = _read_config(path)
    if config is None:
        return None
    helper = _helper_for(config, registry_host)
    if helper is not None:
        name, setting = helper
        return _get_from_helper(name, registry_host, env, source=f"{setting} in {path}")

    auths = config.get("auths")
    if not isinstance(auths, dict):
        return None
    entry = auths.get(registry_host) or auths.get(auth_key(registry_host))
    if entry is None:
        host = registry_hostname(registry_host)
        entry = next((v for k, v in auths.items() if registry_hostname(k) == host), None)
    if not isinstance(entry, dict):
        return None
    return _credentials_from_entry(entry, what=f'auths["{registry_host}"] in {path}')


def _text(mapping: Mapping[str, object], key: str) -> str:
    """``mapping[key]`` when it is a string, else ``""`` (docker ignores fields of another type)."""
    value = mapping.get(key)
    return value if isinstance(value, str) else ""


def _object(mapping: Mapping[str, object], key: str) -> dict[str, Any]:
    """``mapping[key]`` when it is a JSON object, else a new empty one."""
    value = mapping.get(key)
    return value if isinstance(value, dict) else {}


def _credentials_from_entry(entry: Mapping[str, object], *, what: str) -> Credentials | None:
    username, password = _text(entry, "username"), _text(entry, "password")
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        decoded = decode_basic_auth(auth, what=f"{what}.auth")
        username, password = decoded.username, decoded.password
    token = entry.get("identitytoken")
    if isinstance(token, str) and token:
        return Credentials(username, "", token)
    if username or password:
        return Credentials(username, password)
    return None


# --------------------------------------------------------------------------------------------
# Credential helpers


def _run_helper(
    name: str, action: str, payload: str, env: Mapping[str, str], *, source: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``docker-credential-<name> <action>`` with ``payload`` on its standard input."""
    import shutil  # here: most commands never run a helper (start-up cost)
    import subprocess

    program = f"docker-credential-{name}"
    found = shutil.which(program, path=env.get("PATH"))
    if found is None:
        origin = f" (from {source})" if source else ""
        raise TrustkitError(
            f"credential helper {program}{origin} is not installed or not on PATH",
            hint=f"install {program}, or remove it from the docker config",
        )
    try:
        return subprocess.run(
            [found, action],
            check=False,
            input=payload,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=_HELPER_TIMEOUT,
            env=dict(env),
        )
    except subprocess.TimeoutExpired:
        raise TrustkitError(f"credential helper {program} did not answer within {_HELPER_TIMEOUT:.0f} s") from None
    except OSError as exc:
        raise TrustkitError(f"cannot run credential helper {program}: {exc.strerror}") from None


def _get_from_helper(name: str, registry_host: str, env: Mapping[str, str], *, source: str) -> Credentials | None:
    program = f"docker-credential-{name}"
    result = _run_helper(name, "get", auth_key(registry_host), env, source=source)
    output = (result.stdout or "").strip()
    if result.returncode != 0:
        message = output or (result.stderr or "").strip()
        if "credentials not found" in message.lower():
            return None
        first = message.splitlines()[0][:200] if message else f"exit status {result.returncode}"
        raise TrustkitError(f"credential helper {program} failed for {registry_host}: {first}")
    try:
        answer = json.loads(output)
    except ValueError:
        raise TrustkitError(f"credential helper {program} printed something that is not JSON") from None
    if not isinstance(answer, dict):
        raise TrustkitError(f"credential helper {program} printed JSON that is not an object")
    username, secret = _text(answer, "Username"), _text(answer, "Secret")
    if not secret and not username:
        return None
    if username == _IDENTITY_TOKEN_USERNAME:
        return Credentials("", "", secret)
    return Credentials(username, secret)


def _store_with_helper(name: str, server: str, username: str, password: str, env: Mapping[str, str]) -> None:
    payload = json.dumps({"ServerURL": server, "Username": username, "Secret": password})
    result = _run_helper(name, "store", payload, env)
    if result.returncode != 0:
        first = (result.stdout or result.stderr or f"exit status {result.returncode}").strip().splitlines()[0][:200]
        raise TrustkitError(f"credential helper docker-credential-{name} could not store the credentials: {first}")


# --------------------------------------------------------------------------------------------
# Writing


def save_login(
    registry: str,
    username: str,
    password: str,
    config_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """Store credentials as ``docker login`` does: through the credential helper that
    ``credHelpers``/``credsStore`` names, else ``auths[<registry>].auth = base64(user:pass)``
    in ``config.json`` (written atomically, mode 0600).  Returns where they went.

    Raises:
        TrustkitError: an unreadable config.json or a failing credential helper.
    """
    env = os.environ if environ is None else environ
    path = _config_path(config_dir, env)
    config = _read_config(path) or {}
    key = auth_key(registry)
    auths = _object(config, "auths")
    helper = _helper_for(config, registry)
    if helper is not None:
        _store_with_helper(helper[0], key, username, password, env)
        auths[key] = {}  # docker keeps an empty entry so `docker login` lists the registry
        where = f"docker-credential-{helper[0]}"
    else:
        replaced = ("auth", "username", "password", "identitytoken")
        entry = {k: v for k, v in _object(auths, key).items() if k not in replaced}
        entry["auth"] = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        auths[key] = entry
        where = str(path)
    config["auths"] = auths
    from trustkit.keys.store import atomic_write  # here: the keys package loads cryptography

    atomic_write(path, (json.dumps(config, indent="\t") + "\n").encode(), mode=0o600)
    return where


def remove_login(registry: str, config_dir: Path | None = None, environ: Mapping[str, str] | None = None) -> list[str]:
    """Forget ``registry``'s credentials as ``docker logout`` does: erase them from the credential
    helper that holds them and drop its ``auths`` entry from ``config.json``.  Returns where they
    were removed from (empty when there were none).

    Raises:
        TrustkitError: an unreadable config.json or a failing credential helper.
    """
    env = os.environ if environ is None else environ
    path = _config_path(config_dir, env)
    config = _read_config(path)
    if config is None:
        return []
    removed = []
    helper = _helper_for(config, registry)
    if helper is not None and _erase_with_helper(helper[0], auth_key(registry), env):
        removed.append(f"docker-credential-{helper[0]}")
    auths = _object(config, "auths")
    host = registry_hostname(registry)
    keys = [key for key in auths if key in (registry, auth_key(registry)) or registry_hostname(key) == host]
    for key in keys:
        del auths[key]
    if keys:
        config["auths"] = auths
        from trustkit.keys.store import atomic_write  # here: the keys package loads cryptography

        atomic_write(path, (json.dumps(config, indent="\t") + "\n").encode(), mode=0o600)
        removed.append(str(path))
    return removed


def _erase_with_helper(name: str, server: str, env: Mapping[str, str]) -> bool:
    """``docker-credential-<name> erase``; False when it held nothing for ``server``."""
    result = _run_helper(name, "erase", server, env)
    if result.returncode == 0:
        return True
    message = (result.stdout or result.stderr or f"exit status {result.returncode}").strip()
    if "credentials not found" in message.lower():
        return False
    first = message.splitlines()[0][:200] if message else f"exit status {result.returncode}"
    raise TrustkitError(f"credential helper docker-credential-{name} could not erase the credentials: {first}")
