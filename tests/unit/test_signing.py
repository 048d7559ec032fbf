"""signing: the content-trust switch, expiry warnings and docker's tag lookup rules."""

import pytest

from trustkit.ops import content_trust_enabled


@pytest.mark.parametrize(
    ("env", "flag", "expected"),
    [
        ({}, None, False),
        ({"DOCKER_CONTENT_TRUST": "1"}, None, True),
        ({"DOCKER_CONTENT_TRUST": "true"}, None, True),
        ({"DOCKER_CONTENT_TRUST": "yes-please"}, None, True),  # docker: anything that is not false
        ({"DOCKER_CONTENT_TRUST": "0"}, None, False),
        ({"DOCKER_CONTENT_TRUST": "false"}, None, False),
        ({"DOCKER_CONTENT_TRUST": "False"}, None, False),
        ({"DOCKER_CONTENT_TRUST": ""}, None, False),
        ({"DOCKER_CONTENT_TRUST": "1"}, False, False),  # --disable-content-trust wins
        ({}, True, True),  # --sign wins
    ],
)
def test_content_trust_switch(env, flag, expected):
    assert content_trust_enabled(flag, env) is expected


def test_expiry_warnings_name_roles_expiring_within_30_days(tmp_path):
    from datetime import timedelta

    from simulator import NOW, Simulator
    from trustkit.ops import expiry_warnings

    sim = Simulator()
    sim.add_target("v1")
    sim.publish(expires={"targets": NOW + timedelta(days=10)})
    trusted = sim.updater(tmp_path).refresh()
    warnings = dict(expiry_warnings(trusted, NOW))
    assert set(warnings) == {"targets"}
    assert "expires in 10 days" in warnings["targets"] and "re-sign" in warnings["targets"]
    assert expiry_warnings(trusted, NOW - timedelta(days=30)) == []
