"""Recovery when trust data has already expired (notary #1662), and refreshing before it does:
the library's refresh path, driven through the real client stack against the simulator."""

from datetime import timedelta

import pytest

from simulator import GUN, NOW, Simulator
from trustkit.errors import ExpiredError
from trustkit.keys import KeyStore
from trustkit.ops import TrustSession, refresh, verify_tag
from trustkit.reference import parse_repository


def session_for(sim, trust_dir, now, with_keys=True):
    store = KeyStore(trust_dir, lambda request: "test-passphrase")
    if with_keys:
        for role in ("targets", "root"):
            key = sim.keys[role][0]
            store.add(key.signer.private_key, role=role, gun=GUN if role == "targets" else None)
    return TrustSession(parse_repository(GUN), sim.client(), store, trust_dir, now=now)


@pytest.fixture
def sim():
    sim = Simulator()
    sim.add_target("v1")
    sim.publish()
    return sim


def test_expired_targets_are_refused_then_refresh_recovers(sim, tmp_path):
    later = NOW + timedelta(days=1096)  # targets (3 years) expired; root (10 years) still valid
    sim.now = later
    sim.publish()  # the server keeps its own snapshot and timestamp fresh (it holds their keys)
    reader = session_for(sim, tmp_path / "reader", later, with_keys=False)
    with pytest.raises(ExpiredError, match="targets"):
        verify_tag(reader, "v1")
    owner = session_for(sim, tmp_path / "owner", later)
    assert refresh(owner) == ["targets"]  # loads the expired data, re-signs it, publishes
    assert verify_tag(session_for(sim, tmp_path / "reader2", later, with_keys=False), "v1").digest


def test_refresh_resigns_only_what_expires_soon(sim, tmp_path):
    owner = session_for(sim, tmp_path / "owner", NOW + timedelta(days=1095 - 10))
    assert refresh(owner, window=timedelta(days=30)) == ["targets"]
    assert refresh(owner, window=timedelta(days=30)) == []  # fresh now
    assert refresh(owner, roles=["root"]) == ["root"]  # explicitly asked for


def test_refresh_without_keys_does_nothing(sim, tmp_path):
    reader = session_for(sim, tmp_path / "reader", NOW + timedelta(days=1090), with_keys=False)
    assert refresh(reader) == []
