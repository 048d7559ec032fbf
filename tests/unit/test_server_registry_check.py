"""The server page's registry reader: which registry repository a GUN names, and the token
challenge it answers (the HTTP side is tested against docker-registry in
tests/interop/test_server_registry_badges.py)."""

from __future__ import annotations

import pytest

from trustkit.errors import TrustkitError
from trustkit.server.registry_check import RegistryReader, _challenge_params


def test_a_gun_maps_to_a_repository_of_the_configured_registry_only():
    reader = RegistryReader("https://registry.example:5000/")
    assert reader.repository_for("registry.example:5000/team/app") == "team/app"
    assert reader.repository_for("registry.example/team/app") is None  # another port is another registry
    assert reader.repository_for("other.example:5000/team/app") is None
    assert reader.repository_for("registry.example:5000") is None
    hub = RegistryReader("https://registry-1.docker.io")
    assert hub.repository_for("docker.io/library/alpine") == "library/alpine"


def test_a_gun_of_another_registry_is_reported_not_checked():
    report = RegistryReader("http://127.0.0.1:9").check("other:5000/team/app", [("v1", "ab" * 32)])
    assert report.checks == {} and report.unchecked == 1
    assert report.problem is not None and "not a repository of 127.0.0.1:9" in report.problem


@pytest.mark.parametrize("url", ["ftp://registry.example", "registry.example:5000", "https://"])
def test_only_http_urls_are_registries(url):
    with pytest.raises(TrustkitError, match="must be an http"):
        RegistryReader(url)


def test_bearer_challenges_are_parsed_with_quoted_commas():
    params = _challenge_params(
        'realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"'
    )
    assert params == {
        "realm": "https://auth.example/token",
        "service": "registry.example",
        "scope": "repository:a/b:pull,push",
    }
    assert _challenge_params("realm=https://auth.example/token, service=reg") == {
        "realm": "https://auth.example/token",
        "service": "reg",
    }
