"""trustkit server's settings are type-checked where they are read: a JSON config file, a
TRUSTKIT_SERVER_* variable or a flag with the wrong type is refused with the setting's name and
where it came from, never a crash later on."""

from __future__ import annotations

import json

import pytest

from trustkit.errors import TrustkitError
from trustkit.server.config import ServerConfig


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        ("workers", "4", "must be a whole number"),
        ("workers", True, "must be a whole number"),
        ("workers", 1.5, "must be a whole number"),
        ("header_timeout", "30", "must be a number"),
        ("gun_prefixes", "registry.example.com/", "must be a list of strings"),
        ("gun_prefixes", [1], "must be a list of strings"),
        ("listen", 4443, "must be a string"),
        ("tls_cert", ["a"], "must be a string"),
        ("public_read", "yes", "must be true or false"),
    ],
)
def test_a_config_file_value_of_the_wrong_type_is_refused_by_name(tmp_path, monkeypatch, setting, value, expected):
    monkeypatch.delenv(f"TRUSTKIT_SERVER_{setting.upper()}", raising=False)
    file = tmp_path / "server.json"
    file.write_text(json.dumps({setting: value}))
    with pytest.raises(TrustkitError, match=f"'{setting}' from config file {file}.* {expected}"):
        ServerConfig.load(str(file), {})


def test_right_types_load_and_an_integer_is_a_number(tmp_path, monkeypatch):
    monkeypatch.delenv("TRUSTKIT_SERVER_WORKERS", raising=False)
    file = tmp_path / "server.json"
    file.write_text(json.dumps({"workers": 4, "header_timeout": 5, "gun_prefixes": ["r.example/"], "tls_cert": None}))
    config = ServerConfig.load(str(file), {})
    assert config.workers == 4 and config.header_timeout == 5.0 and isinstance(config.header_timeout, float)
    assert config.gun_prefixes == ["r.example/"] and config.tls_cert is None


def test_an_environment_variable_that_is_not_a_number_is_refused_by_name(monkeypatch):
    monkeypatch.setenv("TRUSTKIT_SERVER_WORKERS", "four")
    with pytest.raises(TrustkitError, match="TRUSTKIT_SERVER_WORKERS='four' must be a whole number"):
        ServerConfig.load(None, {})
