"""Reading and signing through delegations as docker does: targets/releases first, then
targets; paths restrict a delegation; thresholds count; signing errors say who could sign."""

import pytest

from simulator import GUN, NOW, Simulator
from trustkit.errors import NotSignedError, ThresholdError
from trustkit.keys import KeyStore
from trustkit.metadata import FileMeta
from trustkit.ops import TagTarget, TrustSession, sign_tags, verify_tag
from trustkit.reference import parse_repository
from trustkit.roles import RELEASES
from trustkit.trust.repository import NoSigningKeyError


def session(sim, trust_dir, keys=()):
    store = KeyStore(trust_dir, lambda request: "test-passphrase")
    for role, key in keys:
        store.add(key.signer.private_key, role=role)
    return TrustSession(parse_repository(GUN), sim.client(), store, trust_dir, now=NOW)


def test_releases_wins_over_targets(tmp_path):
    sim = Simulator()
    sim.add_delegation(RELEASES)
    sim.add_target("v1", b"released manifest", role=RELEASES)
    sim.add_target("v1", b"top-level manifest")
    sim.publish()
    result = verify_tag(session(sim, tmp_path), "v1")
    assert result.role == RELEASES
    assert result.digest == FileMeta.for_bytes(b"released manifest", ("sha256",)).sha256_hex


def test_a_delegation_signs_only_within_its_paths(tmp_path):
    sim = Simulator()
    sim.add_delegation(RELEASES, paths=["release-"])
    sim.add_target("dev-1", role=RELEASES)  # outside its paths: readers ignore it
    sim.add_target("release-1", role=RELEASES)
    sim.publish()
    reader = session(sim, tmp_path)
    assert verify_tag(reader, "release-1").role == RELEASES
    with pytest.raises(NotSignedError):
        verify_tag(reader, "dev-1")


def test_inspect_the_web_page_and_verify_resolve_alike(tmp_path):
    """A tag a delegation lists outside its paths is shown by neither inspect nor the web page,
    since verify (and docker pull) would not accept it."""
    from trustkit.ops import inspect
    from trustkit.server.storage import StoredFile
    from trustkit.server.web import repository_view

    sim = Simulator()
    sim.add_delegation(RELEASES, paths=["release-"])
    sim.add_delegation("targets/dev", paths=["release-"])
    for role in (RELEASES, "targets/dev"):
        sim.add_target("dev-1", b"dev build", role=role)
        sim.add_target("release-1", b"release build", role=role)
    sim.publish()
    trusted = session(sim, tmp_path).load()
    shown = inspect(trusted, GUN)["SignedTags"]
    assert [(row["SignedTag"], row["Signers"]) for row in shown] == [("release-1", ["dev"])]
    files = {role: StoredFile(role, 1, sim.current(role), NOW) for role in ("root", "targets", RELEASES, "targets/dev")}
    view = repository_view(GUN, files, immutable=False)
    assert [(row.tag, row.signers) for row in view.tags] == [("release-1", ["dev"])]
    assert any("outside its delegated paths" in note for note in view.notes)


def test_delegate_signing_error_names_roles_and_keys(tmp_path):
    sim = Simulator()
    keys = sim.add_delegation(RELEASES)
    sim.publish()
    stranger = session(sim, tmp_path)  # holds no key at all
    with pytest.raises(NoSigningKeyError) as error:
        sign_tags(stranger, [TagTarget("v1", "ab" * 32, 1)])
    assert RELEASES in str(error.value) and keys[0].keyid[:12] in str(error.value)


def test_delegate_with_only_its_key_signs_into_its_roles(tmp_path):
    sim = Simulator()
    (alice,) = sim.add_delegation("targets/alice")
    sim.targets["targets"].delegations.keys[alice.keyid] = alice.public
    from trustkit.metadata import DelegationRole

    sim.targets["targets"].delegations.roles.append(DelegationRole(RELEASES, [alice.keyid], 1, [""]))
    sim.targets[RELEASES] = type(sim.targets["targets"])(expires=sim.targets["targets"].expires, version=0)
    sim.keys[RELEASES] = [alice]
    sim.dirty |= {"targets", RELEASES}
    sim.publish()
    result = sign_tags(session(sim, tmp_path, [("alice", alice)]), [TagTarget("v1", "ab" * 32, 9)])
    assert sorted(result.signed["v1"]) == ["targets/alice", RELEASES]
    assert verify_tag(session(sim, tmp_path / "reader"), "v1").role == RELEASES


def test_threshold_on_a_delegation_is_enforced(tmp_path):
    sim = Simulator()
    sim.add_delegation(RELEASES, keys=3, threshold=2)
    sim.add_target("v1", role=RELEASES)
    sim.publish(sign_with={RELEASES: sim.keys[RELEASES][:1]})
    with pytest.raises(ThresholdError, match="1 of 2"):
        verify_tag(session(sim, tmp_path), "v1")
