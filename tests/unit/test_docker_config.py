"""trustkit.client.docker_config: docker's config.json, read (credentials, credential helpers)
and written (``docker login``'s entries), with real helper programs on PATH."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from trustkit.client.docker_config import (
    DOCKER_HUB_AUTH_KEY,
    Credentials,
    decode_basic_auth,
    docker_config_dir,
    load_credentials,
    save_login,
)
from trustkit.errors import TrustkitError


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# --------------------------------------------------------------------------------------------
# Credentials from the docker config


def write_config(directory: Path, config: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def test_docker_config_dir(tmp_path: Path) -> None:
    assert docker_config_dir({"DOCKER_CONFIG": str(tmp_path)}) == tmp_path
    assert docker_config_dir({"HOME": "/home/u"}) == Path("/home/u/.docker")


def test_credentials_repr_hides_secrets() -> None:
    text = repr(Credentials("alice", "hunter2", identity_token="tok-secret"))
    assert "alice" in text and "hunter2" not in text and "tok-secret" not in text


def test_no_config_means_no_credentials(tmp_path: Path) -> None:
    assert load_credentials("registry.example.com", tmp_path, environ={}) is None


def test_auths_entry_is_decoded(tmp_path: Path) -> None:
    write_config(tmp_path, {"auths": {"registry.example.com": {"auth": b64("alice:pa:ss")}}})
    assert load_credentials("registry.example.com", tmp_path, environ={}) == Credentials("alice", "pa:ss")
    assert load_credentials("other.example.com", tmp_path, environ={}) is None


@pytest.mark.parametrize(
    "key", ["https://registry.example.com:5000", "https://registry.example.com:5000/v2/", "registry.example.com:5000"]
)
def test_auths_keys_with_scheme_and_path(tmp_path: Path, key: str) -> None:
    write_config(tmp_path, {"auths": {key: {"auth": b64("bob:pw")}}})
    assert load_credentials("registry.example.com:5000", tmp_path, environ={}) == Credentials("bob", "pw")


def test_docker_hub_credentials_live_under_the_index_url(tmp_path: Path) -> None:
    write_config(tmp_path, {"auths": {DOCKER_HUB_AUTH_KEY: {"auth": b64("hubuser:pw")}}})
    assert load_credentials("docker.io", tmp_path, environ={}) == Credentials("hubuser", "pw")
    assert load_credentials("index.docker.io", tmp_path, environ={}) == Credentials("hubuser", "pw")


def test_identity_token_in_auths(tmp_path: Path) -> None:
    write_config(tmp_path, {"auths": {"r.example.com": {"auth": b64("alice:"), "identitytoken": "refresh-xyz"}}})
    assert load_credentials("r.example.com", tmp_path, environ={}) == Credentials("alice", "", "refresh-xyz")


def test_bad_auth_value_is_a_clear_error(tmp_path: Path) -> None:
    write_config(tmp_path, {"auths": {"r.example.com": {"auth": "!!not base64"}}})
    with pytest.raises(TrustkitError, match=r'auths\["r.example.com"\].*base64'):
        load_credentials("r.example.com", tmp_path, environ={})


def test_malformed_config_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{nope")
    with pytest.raises(TrustkitError, match="config.json is not valid JSON"):
        load_credentials("r.example.com", tmp_path, environ={})


def test_notary_auth_overrides_the_config(tmp_path: Path) -> None:
    write_config(tmp_path, {"auths": {"r.example.com": {"auth": b64("alice:pw")}}})
    env = {"NOTARY_AUTH": b64("notaryuser:npw")}
    assert load_credentials("r.example.com", tmp_path, environ=env, notary_auth=True) == Credentials(
        "notaryuser", "npw"
    )
    assert load_credentials("r.example.com", tmp_path, environ=env) == Credentials("alice", "pw")
    with pytest.raises(TrustkitError, match="NOTARY_AUTH"):
        load_credentials("r.example.com", tmp_path, environ={"NOTARY_AUTH": b64("no-colon")}, notary_auth=True)


def test_decode_basic_auth() -> None:
    assert decode_basic_auth(b64("u:p:q"), what="x") == Credentials("u", "p:q")
    with pytest.raises(TrustkitError, match="what-it-was"):
        decode_basic_auth("%%%", what="what-it-was")


# ---- credential helpers


def install_helper(bin_dir: Path, name: str, script: str) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / f"docker-credential-{name}"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def helper_env(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    return bin_dir, {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}


FAKE_HELPER = """\
read server
echo "$1 $server" >> "$(dirname "$0")/calls.log"
case "$server" in
  registry.example.com) echo '{"ServerURL":"registry.example.com","Username":"alice","Secret":"s3cret"}' ;;
  https://index.docker.io/v1/) echo '{"ServerURL":"'"$server"'","Username":"<token>","Secret":"refresh-xyz"}' ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac
"""


def test_cred_helpers_entry_runs_the_helper(tmp_path: Path, helper_env) -> None:
    bin_dir, env = helper_env
    install_helper(bin_dir, "fake", FAKE_HELPER)
    config = write_config(
        tmp_path / "cfg",
        {
            "credHelpers": {"registry.example.com": "fake"},
            "auths": {"registry.example.com": {"auth": b64("ignored:ignored")}},
        },
    )
    assert load_credentials("registry.example.com", config, environ=env) == Credentials("alice", "s3cret")
    assert (bin_dir / "calls.log").read_text() == "get registry.example.com\n"


def test_creds_store_identity_token_and_docker_hub_server_url(tmp_path: Path, helper_env) -> None:
    bin_dir, env = helper_env
    install_helper(bin_dir, "fake", FAKE_HELPER)
    config = write_config(tmp_path / "cfg", {"credsStore": "fake"})
    assert load_credentials("docker.io", config, environ=env) == Credentials("", "", "refresh-xyz")
    assert (bin_dir / "calls.log").read_text() == f"get {DOCKER_HUB_AUTH_KEY}\n"


def test_helper_not_found_answer_means_no_credentials(tmp_path: Path, helper_env) -> None:
    bin_dir, env = helper_env
    install_helper(bin_dir, "fake", FAKE_HELPER)
    config = write_config(tmp_path / "cfg", {"credsStore": "fake"})
    assert load_credentials("unknown.example.com", config, environ=env) is None


def test_missing_helper_is_a_clear_error(tmp_path: Path, helper_env) -> None:
    _, env = helper_env
    config = write_config(tmp_path / "cfg", {"credHelpers": {"registry.example.com": "nosuch"}})
    with pytest.raises(TrustkitError, match="docker-credential-nosuch.*credHelpers.*not installed"):
        load_credentials("registry.example.com", config, environ=env)


def test_failing_helper_is_a_clear_error(tmp_path: Path, helper_env) -> None:
    bin_dir, env = helper_env
    install_helper(bin_dir, "broken", 'echo "keychain locked: user interaction required" >&2; exit 3\n')
    config = write_config(tmp_path / "cfg", {"credsStore": "broken"})
    with pytest.raises(TrustkitError, match="docker-credential-broken failed.*keychain locked"):
        load_credentials("registry.example.com", config, environ=env)


def test_helper_printing_garbage_is_a_clear_error(tmp_path: Path, helper_env) -> None:
    bin_dir, env = helper_env
    install_helper(bin_dir, "garbage", "echo hello\n")
    config = write_config(tmp_path / "cfg", {"credsStore": "garbage"})
    with pytest.raises(TrustkitError, match="docker-credential-garbage printed something that is not JSON"):
        load_credentials("registry.example.com", config, environ=env)


# --------------------------------------------------------------------------------------------
# Writing: docker login's entries


def test_save_login_writes_docker_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"auths": {"other.io": {"auth": "eDp5"}}, "psFormat": "x"}))
    save_login("reg.example.com:5000", "alice", "pw:with:colons", tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["psFormat"] == "x" and config["auths"]["other.io"] == {"auth": "eDp5"}
    assert config["auths"]["reg.example.com:5000"] == {"auth": "YWxpY2U6cHc6d2l0aDpjb2xvbnM="}
    assert (tmp_path / "config.json").stat().st_mode & 0o777 == 0o600
    save_login("docker.io", "bob", "pw", tmp_path)
    assert "https://index.docker.io/v1/" in json.loads((tmp_path / "config.json").read_text())["auths"]


STORING_HELPER = """\
entry="$(dirname "$0")/entry.json"
case "$1" in
  store) cat > "$entry" ;;
  get) read server
       if grep -qF "\\"ServerURL\\": \\"$server\\"" "$entry" 2>/dev/null; then cat "$entry"
       else echo "credentials not found in native keychain"; exit 1; fi ;;
esac
"""


@pytest.mark.parametrize(
    "helper_key",
    ["registry.example.com:5000", "https://registry.example.com:5000", "https://registry.example.com:5000/v2/"],
)
def test_login_and_credentials_use_the_same_helper(tmp_path: Path, helper_env, helper_key: str) -> None:
    """docker matches credHelpers keys as host names when it stores and when it reads; a key
    spelled with a scheme used to be missed by the write, which then put the password in the file."""
    bin_dir, env = helper_env
    install_helper(bin_dir, "vault", STORING_HELPER)
    config = write_config(tmp_path / "cfg", {"credHelpers": {helper_key: "vault"}})
    assert save_login("registry.example.com:5000", "alice", "s3cret", config, environ=env) == "docker-credential-vault"
    written = json.loads((config / "config.json").read_text())
    assert written["auths"] == {"registry.example.com:5000": {}}  # listed, with no secret in the file
    assert load_credentials("registry.example.com:5000", config, environ=env) == Credentials("alice", "s3cret")


def test_docker_hub_login_goes_under_the_index_url_for_every_hub_name(tmp_path: Path) -> None:
    for name in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        save_login(name, "bob", name, tmp_path)
        assert load_credentials("docker.io", tmp_path, environ={}) == Credentials("bob", name)
    assert list(json.loads((tmp_path / "config.json").read_text())["auths"]) == [DOCKER_HUB_AUTH_KEY]


def test_save_login_refuses_a_config_it_cannot_read(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(TrustkitError, match="must hold a JSON object"):
        save_login("r.example.com", "u", "p", tmp_path)
    assert (tmp_path / "config.json").read_text() == "[1, 2]"  # left as it was
