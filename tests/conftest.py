"""Shared fixtures: thin wrappers around tests/peers.py (the real notary/docker peers).

A missing peer binary fails the test with the install command; it never skips.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# tests/ is not a package; make `import peers` work however pytest was started.
_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

import peers  # noqa: E402


def _start(factory: Callable[..., object], *args: object, **kwargs: object):
    """Call ``factory``; a missing peer binary fails the test (pytest.fail), never skips."""
    try:
        return factory(*args, **kwargs)
    except peers.PeerMissing as e:
        message = str(e)
    pytest.fail(message, pytrace=False)


@pytest.fixture
def notary_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[peers.NotaryServer]:
    """A fresh notary-server (memory storage, TLS) per test; starting one takes ~0.1 s.

    Its workdir (config, TLS files, notary-server.log) stays under pytest's basetemp.
    """
    server = _start(peers.NotaryServer, tmp_path_factory.mktemp("notary-server"))
    with server:
        yield server


@pytest.fixture
def notary_cli(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., peers.NotaryCLI]:
    """Factory: ``notary_cli(trust_dir=None, server=None, **kwargs) -> peers.NotaryCLI``.

    Defaults: a new trust dir under tmp, and this test's ``notary_server``.
    """

    def make(trust_dir=None, server=None, **kwargs) -> peers.NotaryCLI:
        if server is None and "url" not in kwargs:
            server = request.getfixturevalue("notary_server")
        if trust_dir is None:
            trust_dir = tmp_path_factory.mktemp("notary-client") / "trust"
        return _start(peers.NotaryCLI, trust_dir, server, **kwargs)

    return make


@pytest.fixture
def docker_cli(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., peers.DockerCLI]:
    """Factory: ``docker_cli(config_dir=None, server=None, **kwargs) -> peers.DockerCLI``.

    Defaults: a new ``DOCKER_CONFIG`` dir under tmp, and this test's ``notary_server``.
    """

    def make(config_dir=None, server=None, **kwargs) -> peers.DockerCLI:
        if server is None and "url" not in kwargs:
            server = request.getfixturevalue("notary_server")
        if config_dir is None:
            config_dir = tmp_path_factory.mktemp("docker-config")
        return _start(peers.DockerCLI, config_dir, server, **kwargs)

    return make


@pytest.fixture
def trustkit_cli(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., peers.TrustkitCLI]:
    """Factory: ``trustkit_cli(config_dir=None, server=None, **kwargs) -> peers.TrustkitCLI``
    (defaults: a new ``DOCKER_CONFIG`` and this test's ``notary_server``)."""

    def make(config_dir=None, server=None, **kwargs) -> peers.TrustkitCLI:
        if server is None:
            server = request.getfixturevalue("notary_server")
        if config_dir is None:
            config_dir = tmp_path_factory.mktemp("trustkit-config")
        return peers.TrustkitCLI(config_dir, server, **kwargs)

    return make


@pytest.fixture
def trustkit_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[peers.TrustkitServer]:
    """trustkit's own server (SQLite, TLS) as a real process."""
    with peers.TrustkitServer(tmp_path_factory.mktemp("trustkit-server")) as server:
        yield server


@pytest.fixture
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[peers.Registry]:
    """A fresh docker-registry (filesystem storage, plain HTTP on loopback) per test."""
    server = _start(peers.Registry, tmp_path_factory.mktemp("registry"))
    with server:
        yield server


@pytest.fixture
def pg_database() -> Iterator[tuple[str, str]]:
    """A fresh PostgreSQL database of this test's own: ``(URL, name)``, dropped afterwards."""
    with peers.postgres_database() as database:
        yield database


@pytest.fixture
def pg_url(pg_database: tuple[str, str]) -> str:
    """The URL of :func:`pg_database`."""
    return pg_database[0]
