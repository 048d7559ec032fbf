"""Start and drive the real peers on loopback: notary-server, the notary CLI, the docker CLI.

trustkit's compatibility claims are proven against the reference tools, never against our own
reading of the spec (DESIGN.md, "Compatibility is the product"). This module is the one place
that knows how to run them:

* :func:`require` finds a peer binary or fails loudly with the command that installs it.
  It never skips: a missing peer is a broken test environment, not an optional feature.
* :func:`make_tls` makes a throwaway self-signed TLS certificate for ``localhost``/``127.0.0.1``.
* :class:`NotaryServer` runs ``notary-server`` (memory storage, in-memory Ed25519 signer, TLS)
  on a free loopback port.
* :class:`NotaryCLI` and :class:`DockerCLI` run the ``notary`` and ``docker`` clients against
  such a server with an isolated trust directory, passphrases from the environment and stdin
  closed, so a peer that wants to prompt fails instead of hanging.

It has no pytest dependency, so ``keys/regenerate.py`` can use it too; ``tests/conftest.py``
wraps it in fixtures. Every class is a context manager and cleans up what it started.

Peer quirks found while writing this (notary 0.7.0+ds1 from Debian, docker CLI 28.2.2):

* ``notary-server -logf logfmt`` still logs JSON lines; the flag is accepted but has no visible
  effect with this build. The server logs "Starting Server" before it listens, so readiness is
  judged by polling ``/_notary_server/health``, not by the log.
* ``notary key rotate GUN root`` asks "Are you sure you want to proceed? (yes/no)". With stdin
  closed it prints "Aborting action." and **exits 0** without rotating. Pass ``input="yes\\n"``.
* A failed ``notary ... -p`` leaves its change staged in ``tuf/<GUN>/changelist/``; every later
  ``-p`` tries to publish it again (and fails again) until it is removed.
* ``notary key import`` cannot import the encrypted ``<name>-key.pem`` that
  ``notary key generate -o <name>`` wrote ("key may be encrypted and does not contain path
  header"), nor an RFC 8410 Ed25519 PKCS#8 key ("invalid key pem block"; docker's
  ``trust key load`` neither). Unencrypted ECDSA PKCS#8 and RSA PKCS#1/PKCS#8 import fine
  (``docker trust key load`` also takes EC SEC1) and are re-encrypted with the role's passphrase.
* ``notary key generate`` only does ECDSA ("Algorithm not allowed, possible values are: ECDSA").
* ``docker trust key generate/load``, ``signer add/remove``, ``inspect`` and ``revoke`` need no
  Docker daemon. ``docker trust sign IMAGE:TAG`` also works daemonless *if the tag is already in
  targets or targets/releases* (it re-signs the existing hashes); for a new tag it asks the
  daemon to push the image and fails. (Seen once: a signer added *after* the tag was signed was
  skipped by the next ``trust sign``, "skipping targets/<name> because there is no checksum for
  it" under ``docker -D``.) :class:`DockerCLI` points ``DOCKER_HOST`` at a socket
  that cannot exist so a stray real daemon (or a slow remote ``DOCKER_HOST`` from the caller's
  environment) is never used and such failures are immediate.
* ``docker trust key generate NAME --dir D`` fails if ``D`` does not exist ("public key path
  does not exist"); it does not create it.
* ``docker trust inspect`` of a repository that has no trust data prints ``[]`` on stdout *and*
  exits 1 with "no signatures or cannot access ..." on stderr.
* ``docker trust key load FILE`` refuses a FILE that is group/other readable or writable.
* Docker finds the trust server's CA in ``$DOCKER_CONFIG/tls/<host:port>/ca.crt``, where
  ``host:port`` is taken from ``DOCKER_CONTENT_TRUST_SERVER`` (not from the image's registry).
  The server URL must be ``https://``.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "INSTALL_COMMAND",
    "ROOT_PASSPHRASE",
    "REPO_PASSPHRASE",
    "PeerError",
    "PeerMissing",
    "PeerCommandFailed",
    "require",
    "free_port",
    "make_tls",
    "NotaryServer",
    "NotaryCLI",
    "DockerCLI",
]

#: What to run when a peer binary is missing (Debian packages; the docker CLI ships with the
#: machine image, see :data:`_INSTALL_HINTS`).
INSTALL_COMMAND = "apt-get install -y notary docker-registry skopeo"

#: Test passphrases. The golden fixtures in keys/ were encrypted with these. Not secrets.
ROOT_PASSPHRASE = "root-test-passphrase"
REPO_PASSPHRASE = "repo-test-passphrase"

_INSTALL_HINTS = {
    "docker": (
        "the docker CLI itself is not in those packages: it ships with the python-svc machine "
        "image (/usr/local/bin/docker, client only; `docker trust` needs no daemon), elsewhere "
        "`apt-get install -y docker.io` provides one with `docker trust`"
    ),
}

# Environment variables that would leak the caller's setup into a peer run.
_NOTARY_ENV_PREFIXES = ("NOTARY_",)
_DOCKER_ENV_PREFIXES = ("DOCKER_",)

# A unix socket path that can never exist (/dev/null is not a directory): see DockerCLI.
_NO_DOCKER_DAEMON = "unix:///dev/null/trustkit-tests-no-docker-daemon.sock"


class PeerError(RuntimeError):
    """A peer could not be started or did not behave as the harness expects."""


class PeerMissing(PeerError):
    """A peer binary is not installed. The message names the install command."""


class PeerCommandFailed(AssertionError):
    """A peer command exited non-zero with ``check=True``. The message has stdout and stderr."""

    def __init__(self, message: str, result: subprocess.CompletedProcess[str]):
        super().__init__(message)
        self.result = result


# --------------------------------------------------------------------------------------------
# small helpers


def require(binary: str) -> str:
    """Return the absolute path of ``binary``; raise :class:`PeerMissing` if it is not installed.

    This never skips. The message says how to install the peer, so a CI log is enough to fix it.
    """
    found = shutil.which(binary)
    if found is None:
        hint = _INSTALL_HINTS.get(binary)
        fix = f"`{INSTALL_COMMAND}`" + (f"; {hint}" if hint else "")
        raise PeerMissing(
            f"peer binary {binary!r} not found on PATH; interop tests need the real peers "
            f"and do not skip without them. Install: {fix}"
        )
    return found


def terminate(proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """SIGTERM a peer process, then SIGKILL it if it has not exited within ``timeout``."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    There is an unavoidable race between closing this socket and the peer binding the port;
    :class:`NotaryServer` retries on "address already in use".
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def make_tls(directory: str | os.PathLike[str], *, days: int = 30) -> tuple[Path, Path]:
    """Write a self-signed P-256 certificate and key for ``localhost`` into ``directory``.

    Subject CN=localhost, SAN DNS:localhost and IP:127.0.0.1. The certificate is its own CA
    (basicConstraints CA:TRUE, like ``openssl req -x509``), so the same file serves as the
    server certificate and as the CA bundle for clients (Go, OpenSSL and Python's ssl all
    accept a self-signed trust anchor used directly as the leaf).

    Returns ``(cert_path, key_path)``: ``tls.crt`` (PEM) and ``tls.key`` (PKCS#8 PEM, mode 0600).
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # tolerate small clock skew
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path = d / "tls.crt"
    key_path = d / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    # Create the key file 0600 from the start rather than chmod-ing after writing.
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return cert_path, key_path


def _clean_env(drop_prefixes: Sequence[str], extra: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment without variables that would steer the peer, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(tuple(drop_prefixes))}
    env.update(extra)
    return env


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:  # pragma: no cover - diagnostics only
        return f"<cannot read {path}: {e}>"
    return "\n".join(text.splitlines()[-lines:])


def run_command(
    argv: list[str],
    *,
    env: Mapping[str, str],
    cwd: str | os.PathLike[str] | None,
    timeout: float,
    input: str | None,
    check: bool,
    what: str,
) -> subprocess.CompletedProcess[str]:
    """Run a peer command with stdin closed (or fed ``input``), capturing text output."""
    result = subprocess.run(
        argv,
        env=dict(env),
        cwd=cwd,
        timeout=timeout,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        input=input,
        stdin=subprocess.DEVNULL if input is None else None,  # a prompt must fail, not hang the test run
        check=False,  # `check` below raises with the command's output
    )
    if check and result.returncode != 0:
        raise PeerCommandFailed(
            f"{what} command failed with exit status {result.returncode}:\n"
            f"  argv: {argv!r}\n  cwd: {cwd}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}",
            result,
        )
    return result


# --------------------------------------------------------------------------------------------
# notary-server


class NotaryServer:
    """A real ``notary-server`` on ``127.0.0.1:<free port>`` with TLS and memory storage.

    Usage::

        with NotaryServer() as server:
            server.url  # "https://127.0.0.1:40123"
            server.host_port  # "127.0.0.1:40123" (docker's tls/<host:port>/ dir name)
            server.ca_path  # PEM to verify the server with
            server.get("/v2/example.com/a/_trust/tuf/root.json")

    The config follows wire spec section 10: ``storage.backend=memory``,
    ``trust_service.type=local`` (in-memory Ed25519 timestamp/snapshot keys: a restart loses
    every repository), ``logging.level=info``, and a cert from :func:`make_tls`.

    ``workdir`` (default: a fresh temporary directory, removed on exit) holds ``server.json``,
    ``tls.crt``, ``tls.key`` and ``notary-server.log``. A caller-supplied ``workdir`` is kept,
    so its log survives for inspection (pytest's ``tmp_path`` is a good choice).
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str] | None = None,
        *,
        startup_timeout: float = 20.0,
        stop_timeout: float = 5.0,
        config_overrides: Mapping[str, object] | None = None,
    ):
        self._binary = require("notary-server")
        self._own_workdir = workdir is None
        self._workdir_arg = workdir
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.config_overrides = dict(config_overrides or {})
        self.workdir: Path | None = None
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    # -- public attributes ------------------------------------------------------------------

    @property
    def host_port(self) -> str:
        self._require_started()
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"https://{self.host_port}"

    @property
    def ca_path(self) -> Path:
        return self._require_started() / "tls.crt"

    @property
    def log_path(self) -> Path:
        return self._require_started() / "notary-server.log"

    @property
    def config_path(self) -> Path:
        return self._require_started() / "server.json"

    def ssl_context(self) -> ssl.SSLContext:
        """An SSL context that trusts only this server's certificate."""
        return ssl.create_default_context(cafile=str(self.ca_path))

    def client(self, **kwargs: Any) -> httpx.Client:
        """An ``httpx.Client`` with ``base_url=self.url`` verifying against the server's CA.

        (httpx 0.28 deprecates ``verify=<path>``, hence the SSL context.)
        """
        return httpx.Client(base_url=self.url, verify=self.ssl_context(), **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        """One GET against the server (a new connection each time; fine for tests)."""
        with self.client() as c:
            return c.get(path, **kwargs)

    def metadata_path(self, gun: str, role_file: str) -> str:
        """URL path of a TUF file, e.g. ``metadata_path(gun, "targets/releases.json")``."""
        return f"/v2/{gun}/_trust/tuf/{role_file}"

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> NotaryServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if self._proc is not None:
            raise PeerError("notary-server already started")
        if self._workdir_arg is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="trustkit-notary-server-"))
        else:
            self.workdir = Path(self._workdir_arg)
            self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            make_tls(self.workdir)
            # free_port() races with other processes; retry a bind failure a few times.
            for attempt in range(3):
                self.port = free_port()
                self._write_config()
                if self._launch_and_wait(last_attempt=attempt == 2):
                    return
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after ``stop_timeout``)."""
        proc, self._proc = self._proc, None
        terminate(proc, self.stop_timeout)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._own_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- internals -------------------------------------------------------------------------

    def _require_started(self) -> Path:
        """The work folder of the started server."""
        if self.workdir is None or self.port is None:
            raise PeerError("notary-server is not started (use it as a context manager)")
        return self.workdir

    def _write_config(self) -> None:
        config: dict[str, object] = {
            "server": {
                "http_addr": f"127.0.0.1:{self.port}",
                # Relative paths are resolved against the config file's directory.
                "tls_cert_file": "./tls.crt",
                "tls_key_file": "./tls.key",
            },
            "trust_service": {"type": "local", "key_algorithm": "ed25519"},
            "storage": {"backend": "memory"},
            "logging": {"level": "info"},
        }
        config.update(self.config_overrides)
        self.config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")

    def _launch_and_wait(self, *, last_attempt: bool) -> bool:
        """Start the process and poll health. False means "port taken, try another one"."""
        if self._log_file is not None:
            self._log_file.close()
        # A fresh log per attempt, so a retry is judged on its own output.
        self._log_file = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            [self._binary, "-config", str(self.config_path), "-logf", "logfmt"],
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + self.startup_timeout
        ctx = self.ssl_context()
        health = f"{self.url}/_notary_server/health"
        last_error: object = None
        with httpx.Client(verify=ctx, timeout=2.0) as client:
            while time.monotonic() < deadline:
                status = self._proc.poll()
                if status is not None:
                    tail = self.log_tail()
                    self._proc = None
                    if "address already in use" in tail and not last_attempt:
                        return False
                    raise PeerError(
                        f"notary-server exited at startup with status {status}; log {self.log_path}:\n{tail}"
                    )
                try:
                    response = client.get(health)
                    if response.status_code == 200:
                        return True
                    last_error = f"HTTP {response.status_code}: {response.text[:200]}"
                except httpx.TransportError as e:
                    last_error = e
                time.sleep(0.05)
        raise PeerError(
            f"notary-server did not answer 200 on {health} within {self.startup_timeout}s "
            f"(last: {last_error!r}); log {self.log_path}:\n{self.log_tail()}"
        )


# --------------------------------------------------------------------------------------------
# notary CLI


def _server_url_and_ca(
    server: NotaryServer | None, url: str | None, ca_path: str | os.PathLike[str] | None
) -> tuple[str | None, str | os.PathLike[str] | None]:
    """Explicit ``url``/``ca_path`` win over the running ``server``'s."""
    return (
        url if url is not None else (server.url if server else None),
        ca_path if ca_path is not None else (server.ca_path if server else None),
    )


class NotaryCLI:
    """The real ``notary`` client with its own trust dir, pointed at a :class:`NotaryServer`.

    A client config ``{"trust_dir": ..., "remote_server": {"url": ..., "root_ca": ...}}`` is
    written to ``config_path`` (default: ``<trust_dir>.notary-config.json`` *beside* the trust
    dir, so the trust dir holds only what notary itself writes) and passed as ``-c``.

    Passphrases come from the environment (wire spec 6.3): ``NOTARY_ROOT_PASSPHRASE`` is
    ``root_passphrase``; ``NOTARY_TARGETS_PASSPHRASE``, ``NOTARY_SNAPSHOT_PASSPHRASE`` and
    ``NOTARY_DELEGATION_PASSPHRASE`` (every non-base role, including docker signer names such
    as ``alice``) are ``repo_passphrase``. Any other ``NOTARY_*`` variable of the caller is dropped.
    """

    def __init__(
        self,
        trust_dir: str | os.PathLike[str],
        server: NotaryServer | None = None,
        *,
        url: str | None = None,
        ca_path: str | os.PathLike[str] | None = None,
        config_path: str | os.PathLike[str] | None = None,
        root_passphrase: str = ROOT_PASSPHRASE,
        repo_passphrase: str = REPO_PASSPHRASE,
        cwd: str | os.PathLike[str] | None = None,
        timeout: float = 60.0,
    ):
        self.binary = require("notary")
        self.trust_dir = Path(trust_dir).absolute()
        self.url, ca = _server_url_and_ca(server, url, ca_path)
        self.ca_path = Path(ca).absolute() if ca is not None else None
        self.config_path = (
            Path(config_path).absolute()
            if config_path is not None
            else self.trust_dir.with_name(self.trust_dir.name + ".notary-config.json")
        )
        self.cwd = cwd
        self.timeout = timeout
        self.trust_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        config: dict[str, object] = {"trust_dir": str(self.trust_dir)}
        if self.url is not None:
            remote: dict[str, str] = {"url": self.url}
            if self.ca_path is not None:
                remote["root_ca"] = str(self.ca_path)
            config["remote_server"] = remote
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        self.env = _clean_env(
            _NOTARY_ENV_PREFIXES,
            {
                "NOTARY_ROOT_PASSPHRASE": root_passphrase,
                "NOTARY_TARGETS_PASSPHRASE": repo_passphrase,
                "NOTARY_SNAPSHOT_PASSPHRASE": repo_passphrase,
                "NOTARY_DELEGATION_PASSPHRASE": repo_passphrase,
            },
        )

    def argv(self, *args: str) -> list[str]:
        """The full command line that :meth:`run` executes."""
        return [self.binary, "-c", str(self.config_path), *map(str, args)]

    def run(
        self,
        *args: str | os.PathLike[str],
        check: bool = True,
        input: str | None = None,
        timeout: float | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``notary -c <config> *args``.

        stdin is closed unless ``input`` is given (``notary key rotate GUN root`` needs
        ``input="yes\\n"``, see the module docstring). With ``check`` a non-zero exit raises
        :class:`PeerCommandFailed` carrying stdout and stderr.
        """
        return run_command(
            self.argv(*map(str, args)),
            env=self.env,
            cwd=cwd if cwd is not None else self.cwd,
            timeout=timeout if timeout is not None else self.timeout,
            input=input,
            check=check,
            what="notary",
        )


# --------------------------------------------------------------------------------------------
# docker CLI


class DockerCLI:
    """The real ``docker`` client (``docker trust ...``) with its own ``DOCKER_CONFIG``.

    * ``DOCKER_CONFIG=config_dir``; trust data lives in ``config_dir/trust`` (:attr:`trust_dir`).
    * The server's CA is copied to ``config_dir/tls/<host:port>/ca.crt``, which is where docker
      looks for the trust server's CA.
    * ``DOCKER_CONTENT_TRUST_SERVER=<server url>`` (docker insists on https).
    * ``DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE`` / ``DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE``.
      Docker uses the repository passphrase for every non-root key (targets, signer keys).
    * ``DOCKER_HOST`` points at a socket that cannot exist: ``docker trust`` needs no daemon
      (see the module docstring for the one exception, ``trust sign`` of a new tag), and this
      guarantees no real daemon is touched and daemon calls fail at once.
    * ``DOCKER_CLI_HINTS=false`` keeps "What's next" hints out of the output.
    * Every other ``DOCKER_*`` variable of the caller (``DOCKER_CONTENT_TRUST``,
      ``DOCKER_CONTEXT``, ...) is dropped.
    """

    def __init__(
        self,
        config_dir: str | os.PathLike[str],
        server: NotaryServer | None = None,
        *,
        url: str | None = None,
        ca_path: str | os.PathLike[str] | None = None,
        root_passphrase: str = ROOT_PASSPHRASE,
        repo_passphrase: str = REPO_PASSPHRASE,
        cwd: str | os.PathLike[str] | None = None,
        timeout: float = 60.0,
    ):
        self.binary = require("docker")
        self.config_dir = Path(config_dir).absolute()
        self.url, ca = _server_url_and_ca(server, url, ca_path)
        self.cwd = cwd
        self.timeout = timeout
        self.config_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        extra = {
            "DOCKER_CONFIG": str(self.config_dir),
            "DOCKER_HOST": _NO_DOCKER_DAEMON,
            "DOCKER_CLI_HINTS": "false",
            "DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE": root_passphrase,
            "DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE": repo_passphrase,
        }
        if self.url is not None:
            if not self.url.startswith("https://"):
                raise PeerError(f"docker requires an https:// trust server, got {self.url!r}")
            extra["DOCKER_CONTENT_TRUST_SERVER"] = self.url
            if ca is not None:
                host_port = self.url.removeprefix("https://").split("/", 1)[0]
                tls_dir = self.config_dir / "tls" / host_port
                tls_dir.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(ca, tls_dir / "ca.crt")
        self.env = _clean_env(_DOCKER_ENV_PREFIXES, extra)

    @property
    def trust_dir(self) -> Path:
        """``$DOCKER_CONFIG/trust``: ``private/<keyid>.key`` and the ``tuf/<GUN>/`` cache."""
        return self.config_dir / "trust"

    def argv(self, *args: str) -> list[str]:
        return [self.binary, *map(str, args)]

    def run(
        self,
        *args: str | os.PathLike[str],
        check: bool = True,
        input: str | None = None,
        timeout: float | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``docker *args`` (stdin closed unless ``input``); see :meth:`NotaryCLI.run`."""
        return run_command(
            self.argv(*map(str, args)),
            env=self.env,
            cwd=cwd if cwd is not None else self.cwd,
            timeout=timeout if timeout is not None else self.timeout,
            input=input,
            check=check,
            what="docker",
        )


# --------------------------------------------------------------------------------------------
# trustkit itself, run as a user would: a subprocess with stdin closed


class TrustkitCLI:
    """``python -m trustkit`` with its own ``DOCKER_CONFIG``, the way docker users configure it.

    * ``DOCKER_CONFIG=config_dir`` (trust data in ``config_dir/trust``).
    * The server's CA goes where docker looks for it, ``config_dir/tls/<host:port>/ca.crt``
      (pass ``install_ca=False`` to leave it out), and ``DOCKER_CONTENT_TRUST_SERVER`` names it.
    * Passphrases come from the docker variables unless ``passphrases=False``.
    """

    def __init__(
        self,
        config_dir: str | os.PathLike[str],
        server: NotaryServer | None = None,
        *,
        passphrases: bool = True,
        install_ca: bool = True,
        extra_env: Mapping[str, str] | None = None,
        timeout: float = 120.0,
    ):
        import sys

        self.config_dir = Path(config_dir).absolute()
        self.config_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.timeout = timeout
        extra = {"DOCKER_CONFIG": str(self.config_dir)}
        if passphrases:
            extra["DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE"] = ROOT_PASSPHRASE
            extra["DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE"] = REPO_PASSPHRASE
        if server is not None:
            extra["DOCKER_CONTENT_TRUST_SERVER"] = server.url
            if install_ca:
                tls_dir = self.config_dir / "tls" / server.host_port
                tls_dir.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(server.ca_path, tls_dir / "ca.crt")
        extra.update(extra_env or {})
        self.env = _clean_env(_DOCKER_ENV_PREFIXES + ("NOTARY_", "TRUSTKIT_"), extra)
        self.argv0 = [sys.executable, "-m", "trustkit"]

    @property
    def trust_dir(self) -> Path:
        return self.config_dir / "trust"

    def run(
        self, *args: str | os.PathLike[str], check: bool = True, timeout: float | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``trustkit *args``; with ``check`` a non-zero exit raises with stdout/stderr."""
        return run_command(
            [*self.argv0, *map(str, args)],
            env=self.env,
            cwd=None,
            timeout=timeout if timeout is not None else self.timeout,
            input=None,
            check=check,
            what="trustkit",
        )


# --------------------------------------------------------------------------------------------
# trustkit's own server, run as users run it


POSTGRES_URL = os.environ.get("TRUSTKIT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


class TrustkitServer:
    """``python -m trustkit server`` on ``127.0.0.1:<port>`` with TLS, as a real process.

    * ``database``: a URL; default a SQLite file in ``workdir``.  Several instances may share
      one PostgreSQL database (pass the same URL and ``passphrase``).
    * ``extra_args``: more flags (``--auth htpasswd --htpasswd F --admin alice``...).
    * ``restart()`` stops and starts it on the same port and database; ``kill()`` sends SIGKILL.
    Same attributes as :class:`NotaryServer` (``url``, ``host_port``, ``ca_path``, ``get``...),
    so the notary CLI, docker CLI and trustkit fixtures work with either.
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str] | None = None,
        *,
        database: str | None = None,
        passphrase: str = "test-server-passphrase",
        extra_args: Sequence[str] = (),
        port: int | None = None,
        tls: tuple[Path, Path] | None = None,
        startup_timeout: float = 30.0,
    ):
        import sys

        self._owns_workdir = workdir is None
        self.workdir = Path(workdir if workdir is not None else tempfile.mkdtemp(prefix="trustkit-server-")).absolute()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.database = database or f"sqlite:///{self.workdir / 'trustkit-server.db'}"
        self.passphrase = passphrase
        self.extra_args = list(extra_args)
        self.port = port or free_port()
        self.cert_path, self.key_path = tls or make_tls(self.workdir)
        self.startup_timeout = startup_timeout
        self.log_path = self.workdir / f"trustkit-server-{self.port}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._python = sys.executable

    @property
    def host_port(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"https://{self.host_port}"

    @property
    def ca_path(self) -> Path:
        return self.cert_path

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_path))

    @property
    def pid(self) -> int | None:
        """The server process's ID while it runs (for a profiler or /proc)."""
        return self._proc.pid if self._proc is not None else None

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=self.ssl_context(), timeout=30.0, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        with self.client() as client:
            return client.get(path, **kwargs)

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)

    def argv(self) -> list[str]:
        return [
            self._python,
            "-m",
            "trustkit",
            "server",
            "--listen",
            self.host_port,
            "--database",
            self.database,
            "--tls-cert",
            str(self.cert_path),
            "--tls-key",
            str(self.key_path),
            *self.extra_args,
        ]

    def start(self) -> None:
        env = {**os.environ, "TRUSTKIT_SERVER_PASSPHRASE": self.passphrase, "XDG_DATA_HOME": str(self.workdir)}
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self._proc = subprocess.Popen(
            self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.workdir
        )
        log.close()
        deadline = time.monotonic() + self.startup_timeout
        last: object = None
        with httpx.Client(verify=self.ssl_context(), timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    raise PeerError(f"trustkit server exited with {self._proc.returncode}; log:\n{self.log_tail()}")
                try:
                    if client.get(f"{self.url}/_notary_server/health").status_code == 200:
                        return
                except httpx.TransportError as exc:
                    last = exc
                time.sleep(0.05)
        self.stop()
        raise PeerError(f"trustkit server did not start (last: {last!r}); log:\n{self.log_tail()}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        terminate(proc, 10)

    def kill(self) -> None:
        """SIGKILL to the server and its worker processes (one per core by default): no clean
        shutdown, as a crash.  Workers whose supervisor dies would otherwise go on serving."""
        if self._proc is not None:
            children = Path(f"/proc/{self._proc.pid}/task/{self._proc.pid}/children")
            workers = children.read_text().split() if children.exists() else []
            self._proc.kill()  # first: a live supervisor would replace the workers killed next
            for pid in workers:
                with suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            self._proc.wait(10)
            self._proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> TrustkitServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def postgres_database(prefix: str = "trustkit_test") -> Iterator[tuple[str, str]]:
    """A new, empty database on the test PostgreSQL server for one test: ``(its URL, its name)``;
    dropped afterwards (``WITH (FORCE)``: a killed server may still hold connections)."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        raise PeerMissing(f"PostgreSQL at {POSTGRES_URL} is not reachable ({exc}); `./dev test` starts it") from None
    try:
        yield POSTGRES_URL.rsplit("/", 1)[0] + "/" + name, name
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def reset_postgres(url: str = POSTGRES_URL) -> str:
    """A clean database for a test: drop trustkit's tables in ``url`` and return the URL."""
    import sqlalchemy as sa

    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        for table in ("tuf_files", "changefeed", "server_keys", "repositories", "gun_changes", "staged_files"):
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
    engine.dispose()
    return url


# --------------------------------------------------------------------------------------------
# docker-registry (the CNCF distribution registry) and a counting proxy in front of it


class Registry:
    """Debian's ``docker-registry serve`` on ``127.0.0.1:<free port>``, filesystem storage.

    Usage::

        with Registry() as registry:
            registry.host_port  # "127.0.0.1:40125" (the image reference's registry part)
            registry.manifest_status("team/app", "v1")  # 200 / 404

    Plain HTTP by default (docker and trustkit allow it for loopback registries); ``tls=True``
    serves HTTPS with a :func:`make_tls` certificate (``ca_path``). ``htpasswd`` (a path) turns
    on Basic authentication with that file; ``token_auth`` (distribution's ``auth.token``
    settings) sends clients to a token service instead. The config is written as JSON, which YAML reads.
    No blob-descriptor cache is configured, so ``reset_storage`` (delete everything under
    ``storage_dir`` while no request is in flight) leaves an empty registry.

    Peer quirks: a mount of a blob the source repository lacks answers ``202`` and opens an
    ordinary upload session; an empty upload session reports ``Range: 0-0``.
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str] | None = None,
        *,
        tls: bool = False,
        htpasswd: str | os.PathLike[str] | None = None,
        token_auth: dict[str, str] | None = None,
        startup_timeout: float = 20.0,
        stop_timeout: float = 5.0,
    ):
        self._binary = require("docker-registry")
        self._own_workdir = workdir is None
        self._workdir_arg = workdir
        self.tls = tls
        self.htpasswd = Path(htpasswd).absolute() if htpasswd is not None else None
        self.token_auth = token_auth  # distribution's auth.token settings (realm, service, issuer, rootcertbundle)
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.workdir: Path | None = None
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def host_port(self) -> str:
        if self.port is None:
            raise PeerError("docker-registry is not started (use it as a context manager)")
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host_port}"

    @property
    def storage_dir(self) -> Path:
        return self._folder() / "storage"

    @property
    def log_path(self) -> Path:
        return self._folder() / "registry.log"

    @property
    def ca_path(self) -> Path:
        return self._folder() / "tls.crt"

    def _folder(self) -> Path:
        if self.workdir is None:
            raise PeerError("docker-registry is not started (use it as a context manager)")
        return self.workdir

    def client(self, **kwargs: Any) -> httpx.Client:
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(self.ca_path)) if self.tls else True
        return httpx.Client(base_url=self.url, verify=verify, timeout=10.0, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        with self.client() as c:
            return c.get(path, **kwargs)

    def manifest_status(self, repository: str, reference: str, *, auth: tuple[str, str] | None = None) -> int:
        accept = ", ".join(
            [
                "application/vnd.oci.image.manifest.v1+json",
                "application/vnd.oci.image.index.v1+json",
                "application/vnd.docker.distribution.manifest.v2+json",
                "application/vnd.docker.distribution.manifest.list.v2+json",
            ]
        )
        return self.get(f"/v2/{repository}/manifests/{reference}", headers={"Accept": accept}, auth=auth).status_code

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)

    def reset_storage(self) -> None:
        """Empty the registry (see the class docstring)."""
        shutil.rmtree(self.storage_dir, ignore_errors=True)
        self.storage_dir.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> Registry:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if self._proc is not None:
            raise PeerError("docker-registry already started")
        if self._workdir_arg is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="trustkit-registry-"))
        else:
            self.workdir = Path(self._workdir_arg).absolute()
            self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            if self.tls:
                make_tls(self.workdir)
            self.storage_dir.mkdir(parents=True, exist_ok=True)
            for attempt in range(3):
                self.port = free_port()
                if self._launch_and_wait(last_attempt=attempt == 2):
                    return
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        terminate(proc, self.stop_timeout)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._own_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _config(self) -> dict[str, object]:
        http: dict[str, object] = {"addr": self.host_port}
        if self.tls:
            http["tls"] = {"certificate": str(self._folder() / "tls.crt"), "key": str(self._folder() / "tls.key")}
        config: dict[str, object] = {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.storage_dir)}, "delete": {"enabled": True}},
            "http": http,
        }
        if self.htpasswd is not None:
            config["auth"] = {"htpasswd": {"realm": "trustkit-tests", "path": str(self.htpasswd)}}
        if self.token_auth is not None:
            config["auth"] = {"token": self.token_auth}
        return config

    def _launch_and_wait(self, *, last_attempt: bool) -> bool:
        config_path = self._folder() / "config.yml"
        config_path.write_text(json.dumps(self._config(), indent=2) + "\n", encoding="utf-8")
        if self._log_file is not None:
            self._log_file.close()
        self._log_file = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            [self._binary, "serve", str(config_path)],
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + self.startup_timeout
        last_error: object = None
        with self.client() as client:
            while time.monotonic() < deadline:
                status = self._proc.poll()
                if status is not None:
                    tail = self.log_tail()
                    self._proc = None
                    if "address already in use" in tail and not last_attempt:
                        return False
                    raise PeerError(
                        f"docker-registry exited at startup with status {status}; log {self.log_path}:\n{tail}"
                    )
                try:
                    if client.get("/v2/").status_code in (200, 401):
                        return True
                except httpx.TransportError as e:
                    last_error = e
                time.sleep(0.05)
        raise PeerError(
            f"docker-registry did not answer on {self.url}/v2/ within {self.startup_timeout}s "
            f"(last: {last_error!r}); log {self.log_path}:\n{self.log_tail()}"
        )


def write_htpasswd(path: str | os.PathLike[str], users: Mapping[str, str]) -> Path:
    """An htpasswd file with bcrypt hashes (what docker-registry's htpasswd auth accepts)."""
    import bcrypt

    target = Path(path)
    target.write_text(
        "".join(
            f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()}\n"
            for user, password in users.items()
        ),
        encoding="utf-8",
    )
    return target


class CountingProxy:
    """A small HTTP/1.1 TCP proxy on loopback that forwards to ``upstream`` (``host:port``) and
    records, for blob-upload requests (``POST``/``PATCH``/``PUT`` under ``/blobs/uploads``),
    how many are in flight at once: from the first byte of the request to the last byte of the
    response. ``max_in_flight`` is the peak; ``requests`` lists ``(method, path)`` of every
    request seen. ``delay`` seconds are added before forwarding each upload response, so that
    concurrent uploads overlap measurably even on a fast machine.

    It parses request and response framing (Content-Length, chunked, bodiless answers) so it
    can follow keep-alive connections; it does not need to understand anything else.
    """

    def __init__(self, upstream: str, *, delay: float = 0.0):
        import threading

        self.upstream_host, port = upstream.rsplit(":", 1)
        self.upstream_port = int(port)
        self.delay = delay
        self.in_flight = 0
        self.max_in_flight = 0
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._server: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._stopped = False
        self.port: int | None = None

    @property
    def host_port(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> CountingProxy:
        import threading

        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(64)
        self.port = self._server.getsockname()[1]
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped = True
        if self._server is not None:
            self._server.close()

    def _accept(self) -> None:
        import threading

        listening = self._server
        while not self._stopped and listening is not None:
            try:
                client, _ = listening.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(client,), daemon=True)
            thread.start()

    @staticmethod
    def _read_head(stream: IO[bytes]) -> bytes | None:
        lines = []
        while True:
            line = stream.readline(65537)
            if not line:
                return None
            lines.append(line)
            if line in (b"\r\n", b"\n"):
                return b"".join(lines)

    @staticmethod
    def _copy_body(stream: IO[bytes], out: socket.socket, head: bytes, *, bodiless: bool) -> None:
        headers = {}
        for line in head.split(b"\r\n")[1:]:
            if b":" in line:
                key, value = line.split(b":", 1)
                headers[key.strip().lower()] = value.strip()
        if bodiless:
            return
        if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            while True:
                size_line = stream.readline()
                out.sendall(size_line)
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                data = stream.read(size + 2)
                out.sendall(data)
                if size == 0:
                    # trailers end with an empty line; the read above took the CRLF
                    return
            return
        length = int(headers.get(b"content-length", b"0") or 0)
        while length > 0:
            data = stream.read(min(length, 1 << 16))
            if not data:
                raise ConnectionError("short body")
            out.sendall(data)
            length -= len(data)

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection((self.upstream_host, self.upstream_port))
        from_client = client.makefile("rb")
        from_upstream = upstream.makefile("rb")
        try:
            while True:
                if not from_client.peek(1)[:1].isalpha():
                    return  # not HTTP (a TLS handshake probing for https): hang up at once
                head = self._read_head(from_client)
                if head is None:
                    return
                method, path = head.split(b" ", 2)[:2]
                is_upload = method in (b"POST", b"PATCH", b"PUT") and b"/blobs/uploads" in path
                with self._lock:
                    self.requests.append((method.decode(), path.decode()))
                    if is_upload:
                        self.in_flight += 1
                        self.max_in_flight = max(self.max_in_flight, self.in_flight)
                try:
                    upstream.sendall(head)
                    self._copy_body(from_client, upstream, head, bodiless=False)
                    response = self._read_head(from_upstream)
                    if response is None:
                        return
                    if is_upload and self.delay:
                        time.sleep(self.delay)
                    client.sendall(response)
                    status = int(response.split(b" ", 2)[1])
                    self._copy_body(
                        from_upstream,
                        client,
                        response,
                        bodiless=method == b"HEAD" or status in (204, 304) or status < 200,
                    )
                finally:
                    if is_upload:
                        with self._lock:
                            self.in_flight -= 1
        except (OSError, ValueError, ConnectionError):
            return
        finally:
            for s in (from_client, from_upstream, client, upstream):
                with suppress(OSError):
                    s.close()


# --------------------------------------------------------------------------------------------
# notary-server on SQL with a real notary-signer (the deployment `trustkit server import` takes over)

MARIADB_ROOT_URL = os.environ.get("TRUSTKIT_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306/")

# notary's schema, written from its migrations (server: tuf_files, change_category, changefeed;
# signer: private_keys), one statement per entry.
_NOTARY_SCHEMA: dict[str, dict[str, list[str]]] = {
    "postgres": {
        "server": [
            "CREATE TABLE tuf_files (id serial PRIMARY KEY, created_at timestamp NULL DEFAULT NULL,"
            " updated_at timestamp NULL DEFAULT NULL, deleted_at timestamp NULL DEFAULT NULL,"
            " gun varchar(255) NOT NULL, role varchar(255) NOT NULL, version integer NOT NULL,"
            " data bytea NOT NULL, sha256 char(64) DEFAULT NULL, UNIQUE (gun, role, version))",
            "CREATE INDEX tuf_files_sha256_idx ON tuf_files (sha256)",
            "CREATE TABLE change_category (category varchar(20) PRIMARY KEY)",
            "INSERT INTO change_category VALUES ('update'), ('deletion')",
            "CREATE TABLE changefeed (id serial PRIMARY KEY, created_at timestamp DEFAULT CURRENT_TIMESTAMP,"
            " gun varchar(255) NOT NULL, version integer NOT NULL, sha256 char(64) DEFAULT NULL,"
            " category varchar(20) NOT NULL DEFAULT 'update' REFERENCES change_category)",
            "CREATE INDEX idx_changefeed_gun ON changefeed (gun)",
        ],
        "signer": [
            "CREATE TABLE private_keys (id serial PRIMARY KEY, created_at timestamp NULL DEFAULT NULL,"
            " updated_at timestamp NULL DEFAULT NULL, deleted_at timestamp NULL DEFAULT NULL,"
            " key_id varchar(255) NOT NULL UNIQUE, encryption_alg varchar(255) NOT NULL,"
            " keywrap_alg varchar(255) NOT NULL, algorithm varchar(50) NOT NULL,"
            " passphrase_alias varchar(50) NOT NULL, public bytea NOT NULL, private bytea NOT NULL,"
            " gun varchar(255) NOT NULL, role varchar(255) NOT NULL, last_used timestamp NULL DEFAULT NULL,"
            " UNIQUE (key_id, algorithm))",
        ],
    },
    "mysql": {
        "server": [
            "CREATE TABLE tuf_files (id int(11) NOT NULL AUTO_INCREMENT, created_at timestamp NULL DEFAULT NULL,"
            " updated_at timestamp NULL DEFAULT NULL, deleted_at timestamp NULL DEFAULT NULL,"
            " gun varchar(255) NOT NULL, role varchar(255) NOT NULL, version int(11) NOT NULL,"
            " data longblob NOT NULL, sha256 char(64) DEFAULT NULL, PRIMARY KEY (id),"
            " UNIQUE KEY gun (gun, role, version), INDEX sha256 (sha256)) ENGINE=InnoDB DEFAULT CHARSET=utf8",
            "CREATE TABLE change_category (category varchar(20) NOT NULL, PRIMARY KEY (category))"
            " ENGINE=InnoDB DEFAULT CHARSET=utf8",
            "INSERT INTO change_category VALUES ('update'), ('deletion')",
            "CREATE TABLE changefeed (id int(11) NOT NULL AUTO_INCREMENT,"
            " created_at timestamp DEFAULT CURRENT_TIMESTAMP, gun varchar(255) NOT NULL, version int(11) NOT NULL,"
            " sha256 char(64) DEFAULT NULL,"
            " category varchar(20) NOT NULL DEFAULT 'update', PRIMARY KEY (id),"
            " FOREIGN KEY (category) REFERENCES change_category (category), INDEX idx_changefeed_gun (gun))"
            " ENGINE=InnoDB DEFAULT CHARSET=utf8",
        ],
        "signer": [
            "CREATE TABLE private_keys (id int(11) NOT NULL AUTO_INCREMENT, created_at timestamp NULL DEFAULT NULL,"
            " updated_at timestamp NULL DEFAULT NULL, deleted_at timestamp NULL DEFAULT NULL,"
            " key_id varchar(255) NOT NULL, encryption_alg varchar(255) NOT NULL, keywrap_alg varchar(255) NOT NULL,"
            " algorithm varchar(50) NOT NULL, passphrase_alias varchar(50) NOT NULL, public blob NOT NULL,"
            " private blob NOT NULL, gun varchar(255) NOT NULL, role varchar(255) NOT NULL,"
            " last_used datetime NULL DEFAULT NULL, PRIMARY KEY (id), UNIQUE KEY key_id (key_id),"
            " UNIQUE KEY key_id_2 (key_id, algorithm)) ENGINE=InnoDB DEFAULT CHARSET=utf8",
        ],
    },
}


class NotaryDatabase:
    """A fresh database with notary's schema for ``part`` ("server" or "signer") on PostgreSQL
    (127.0.0.1:5432) or MariaDB (127.0.0.1:3306); dropped by :meth:`drop`.

    ``dsn`` is the address in notary's own form (what its config's ``storage.db_url`` takes),
    ``url`` the same database for SQLAlchemy."""

    def __init__(self, backend: str, part: str) -> None:
        import secrets

        import sqlalchemy as sa

        self.backend, self.part = backend, part
        self.name = f"notary{part}_{secrets.token_hex(4)}"
        if backend == "postgres":
            admin_url = POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://", 1)
            base = admin_url.rsplit("/", 1)[0]
            self.url = f"{base}/{self.name}"
            self.dsn = (
                f"{POSTGRES_URL.rsplit('/', 1)[0].replace('postgresql://', 'postgres://', 1)}/{self.name}"
                "?sslmode=disable"
            )
            self._admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        elif backend == "mysql":
            self.url = f"{MARIADB_ROOT_URL.rstrip('/')}/{self.name}"
            self.dsn = f"root@tcp(127.0.0.1:3306)/{self.name}?parseTime=True"
            self._admin = sa.create_engine(MARIADB_ROOT_URL, isolation_level="AUTOCOMMIT")
        else:
            raise ValueError(backend)
        try:
            with self._admin.connect() as conn:
                conn.execute(sa.text(f"CREATE DATABASE {self.name}"))
        except sa.exc.OperationalError as exc:
            raise PeerMissing(
                f"{backend} is not running on 127.0.0.1 ({exc.__class__.__name__}); "
                "./dev test starts PostgreSQL and MariaDB"
            ) from None
        engine = sa.create_engine(self.url)
        with engine.begin() as conn:
            for statement in _NOTARY_SCHEMA[backend][part]:
                conn.execute(sa.text(statement))
        engine.dispose()

    def drop(self) -> None:
        import sqlalchemy as sa

        with self._admin.connect() as conn:
            if self.backend == "postgres":
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)"))
            else:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {self.name}"))
        self._admin.dispose()


class NotarySigner:
    """A real ``notary-signer`` (gRPC over TLS on ``127.0.0.1:<port>``) on a :class:`NotaryDatabase`.

    Keys are encrypted under ``passphrase`` for ``alias`` (``NOTARY_SIGNER_<ALIAS>``, as an
    operator sets it).  :meth:`server_config` is the ``trust_service`` section a
    :class:`NotaryServer` needs to use it."""

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        database: NotaryDatabase,
        *,
        alias: str = "timestamp_1",
        passphrase: str = "signer-test-passphrase",
        startup_timeout: float = 20.0,
    ) -> None:
        self._binary = require("notary-signer")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.database, self.alias, self.passphrase = database, alias, passphrase
        self.startup_timeout = startup_timeout
        self.port = free_port()
        self.cert_path, self.key_path = make_tls(self.workdir)
        self.config_path = self.workdir / "signer.json"
        self.log_path = self.workdir / "notary-signer.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def config(self) -> dict[str, object]:
        return {
            "server": {
                "grpc_addr": f"127.0.0.1:{self.port}",
                "tls_cert_file": str(self.cert_path),
                "tls_key_file": str(self.key_path),
            },
            "logging": {"level": "info"},
            "storage": {"backend": self.database.backend, "db_url": self.database.dsn, "default_alias": self.alias},
        }

    def server_config(self) -> dict[str, object]:
        return {
            "type": "remote",
            "hostname": "127.0.0.1",
            "port": str(self.port),
            "tls_ca_file": str(self.cert_path),
            "key_algorithm": "ecdsa",
        }

    @property
    def environment(self) -> dict[str, str]:
        return {f"NOTARY_SIGNER_{self.alias.upper()}": self.passphrase}

    def __enter__(self) -> NotarySigner:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.config_path.write_text(json.dumps(self.config(), indent=2) + "\n", encoding="utf-8")
        log = open(self.log_path, "wb")  # noqa: SIM115 - the child holds it; closed below
        try:
            self._proc = subprocess.Popen(
                [self._binary, "-config", str(self.config_path), "-logf", "logfmt"],
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.environment},
            )
        finally:
            log.close()
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise PeerError(f"notary-signer exited at startup; log {self.log_path}:\n{_tail(self.log_path)}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise PeerError(f"notary-signer did not listen within {self.startup_timeout}s:\n{_tail(self.log_path)}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        terminate(proc, 5.0)
