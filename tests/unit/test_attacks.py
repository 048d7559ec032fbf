"""Attack tests: a hostile Notary server (tests/simulator.py) serves tampered metadata to the
real client stack (NotaryClient -> Updater -> TrustedSet).

Every attack is rejected with its own error class and a message naming what failed, the cache
under ``<trust dir>/tuf/<gun>/metadata`` is left byte-for-byte as it was, and a later honest
update still goes through (reliability-scenarios.md §7 items 1-8, 10, 11, 23; §4.4; §4.6).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from simulator import (
    GUN,
    NOW,
    Endless,
    Key,
    Simulator,
    cache_state,
    new_key,
    new_root_key,
    reordered,
    with_whitespace,
)
from trustkit.errors import (
    ExpiredError,
    HashMismatchError,
    MetadataError,
    OversizedError,
    RollbackError,
    ThresholdError,
    VerificationError,
)
from trustkit.keys.certs import root_key_for
from trustkit.metadata import Metadata
from trustkit.ops import TrustSession, verify_tag
from trustkit.reference import parse_repository
from trustkit.roles import RELEASES, ROOT, SNAPSHOT, TARGETS, TIMESTAMP
from trustkit.trust.trusted_set import MAX_ROOT_ROTATIONS, MAX_ROOT_SIZE, MAX_TIMESTAMP_SIZE, TrustedSet

PAST = NOW - timedelta(seconds=1)
HEX = r"[0-9a-f]{64}"


@pytest.fixture
def sim():
    """Everything published twice (v1, then v2), tags v1 and v2 in ``targets/releases``."""
    sim = Simulator()
    sim.add_delegation(RELEASES)
    sim.add_target("v1", role=RELEASES)
    sim.publish()
    sim.add_target("v2", role=RELEASES)
    sim.publish(roles=[TARGETS])
    yield sim
    sim.close()


@pytest.fixture
def trust_dir(tmp_path):
    return tmp_path / "trust"


def refresh(sim, trust_dir, **kwargs):
    return sim.updater(trust_dir, **kwargs).refresh()


def cached(trust_dir, role):
    return cache_state(trust_dir).get(f"{GUN}/metadata/{role}.json")


def rejected(sim, trust_dir, error, match, **kwargs):
    """Refresh, expect exactly ``error``, and check the cache did not change."""
    before = cache_state(trust_dir)
    with pytest.raises(error, match=match) as info:
        refresh(sim, trust_dir, **kwargs)
    assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"
    assert cache_state(trust_dir) == before, "a rejected update changed the cache"
    return info.value


def verify(sim, trust_dir, tag):
    session = TrustSession(parse_repository(sim.gun), sim.client(), store=None, trust_dir=trust_dir, now=sim.now)
    return verify_tag(session, tag)


# --------------------------------------------------------------------------------------------
# The table: tamper with what the server serves after a good update


def _vouched_root(sim, data):
    """Serve ``data`` as root.json and a new snapshot that lists it: what makes a client with a
    cached root read root.json at all (notary's order)."""
    sim.replace(ROOT, data)
    sim.publish(listed={ROOT: data})


def _mix_same_length_targets(sim):
    sim.publish(roles=[TARGETS])  # targets v3 is as long as v2: only the hash tells them apart
    sim.replace(TARGETS, sim.old(TARGETS, 2))


def _mix_shorter_targets(sim):
    sim.add_target("extra")
    sim.publish()
    sim.replace(TARGETS, sim.old(TARGETS, 2))


def _mix_snapshot(sim):
    sim.publish()
    sim.replace(SNAPSHOT, sim.old(SNAPSHOT, 2))


def _resigned(role, transform):
    def tamper(sim):
        sim.publish(roles=[TARGETS])
        sim.replace(role, transform(sim.current(role)))

    return tamper


ATTACKS = [
    # rollback (§7.5)
    (
        "timestamp-rollback",
        lambda s: s.replace(TIMESTAMP, s.old(TIMESTAMP, 1)),
        RollbackError,
        r"timestamp version 1 is older than the trusted version 2",
    ),
    (
        "snapshot-rollback",
        lambda s: s.publish_timestamp(s.old(SNAPSHOT, 1)),
        RollbackError,
        r"snapshot version 1 is older than the trusted version 2",
    ),
    (
        "targets-rollback",
        lambda s: s.publish(listed={TARGETS: s.old(TARGETS, 1)}),
        RollbackError,
        r"targets version 1 is older than the trusted version 2",
    ),
    (
        "delegation-rollback",
        lambda s: s.publish(listed={RELEASES: s.old(RELEASES, 1)}),
        RollbackError,
        r"targets/releases version 1 is older than the trusted version 2",
    ),
    (
        "delegation-dropped-from-snapshot",
        lambda s: s.publish(listed={RELEASES: None}),
        RollbackError,
        r"no longer lists targets/releases",
    ),
    # freeze (§7.7)
    (
        "timestamp-expired",
        lambda s: s.publish(expires={TIMESTAMP: PAST}),
        ExpiredError,
        r"the timestamp metadata of .* expired",
    ),
    (
        "snapshot-expired",
        lambda s: s.publish(expires={SNAPSHOT: PAST}),
        ExpiredError,
        r"the snapshot metadata of .* expired",
    ),
    (
        "targets-expired",
        lambda s: s.publish(roles=[TARGETS], expires={TARGETS: PAST}),
        ExpiredError,
        r"the targets metadata of .* expired",
    ),
    (
        "delegation-expired",
        lambda s: s.publish(roles=[RELEASES], expires={RELEASES: PAST}),
        ExpiredError,
        r"the targets/releases metadata of .* expired",
    ),
    # mix-and-match (§7.8): the parent's hash or length does not match the bytes served
    (
        "snapshot-lists-other-targets",
        _mix_same_length_targets,
        HashMismatchError,
        r"targets does not match what its parent lists: sha256 hash does not match",
    ),
    (
        "snapshot-lists-longer-targets",
        _mix_shorter_targets,
        HashMismatchError,
        r"targets does not match what its parent lists: length is \d+, expected \d+",
    ),
    (
        "timestamp-lists-other-snapshot",
        _mix_snapshot,
        HashMismatchError,
        r"snapshot does not match what its parent lists: sha256 hash",
    ),
    (
        "targets-keys-reordered",
        _resigned(TARGETS, reordered),  # signatures still valid
        HashMismatchError,
        r"targets does not match what its parent lists: sha256 hash",
    ),
    (
        "snapshot-keys-reordered",
        _resigned(SNAPSHOT, reordered),
        HashMismatchError,
        r"snapshot does not match what its parent lists: sha256 hash",
    ),
    # arbitrary installation / key compromise: signatures
    (
        "timestamp-wrong-key",
        lambda s: s.publish(sign_with={TIMESTAMP: [new_key()]}),
        ThresholdError,
        r"threshold for timestamp: 0 of 1 required",
    ),
    (
        "snapshot-wrong-key",
        lambda s: s.publish(sign_with={SNAPSHOT: [new_key()]}),
        ThresholdError,
        r"threshold for snapshot: 0 of 1 required",
    ),
    (
        "targets-wrong-key",
        lambda s: s.publish(roles=[TARGETS], sign_with={TARGETS: [new_key()]}),
        ThresholdError,
        r"threshold for targets: 0 of 1 required",
    ),
    (
        "targets-unsigned",
        lambda s: s.publish(roles=[TARGETS], sign_with={TARGETS: []}),
        ThresholdError,
        r"threshold for targets: 0 of 1 required",
    ),
    # endless data (§7.10): the client's size caps
    (
        "timestamp-over-1MiB",
        lambda s: s.replace(TIMESTAMP, s.current(TIMESTAMP) + b" " * MAX_TIMESTAMP_SIZE),
        OversizedError,
        rf"timestamp.json of {GUN} is larger than {MAX_TIMESTAMP_SIZE} bytes",
    ),
    (
        "timestamp-endless",
        lambda s: s.replace(TIMESTAMP, Endless()),
        OversizedError,
        rf"timestamp.json of {GUN} is larger than {MAX_TIMESTAMP_SIZE} bytes",
    ),
    (
        "root-oversized",  # (a client reads root.json once the snapshot no longer vouches for its root)
        lambda s: _vouched_root(s, s.current(ROOT) + b" " * MAX_ROOT_SIZE),
        OversizedError,
        rf"root.json of {GUN} is larger than {MAX_ROOT_SIZE} bytes",
    ),
    (
        "targets-whitespace-longer-than-listed",
        _resigned(TARGETS, with_whitespace),
        OversizedError,
        r"targets.json of .* is larger than \d+ bytes",
    ),
    (
        "snapshot-longer-than-listed",
        _resigned(SNAPSHOT, lambda data: data + b"\n"),
        OversizedError,
        r"snapshot.json of .* is larger than \d+ bytes",
    ),
]


@pytest.mark.parametrize(("tamper", "error", "match"), [a[1:] for a in ATTACKS], ids=[a[0] for a in ATTACKS])
def test_attack_is_rejected_and_leaves_the_cache(sim, trust_dir, tamper, error, match):
    refresh(sim, trust_dir)
    tamper(sim)
    rejected(sim, trust_dir, error, match)
    # The server turns honest again: the next update goes through and is cached.
    sim.restore()
    sim.publish(roles=list(sim.targets))
    trusted = refresh(sim, trust_dir)
    assert trusted.versions[TIMESTAMP] == sim.timestamp.version
    assert all(cached(trust_dir, role) == sim.current(role) for role in (ROOT, TIMESTAMP, SNAPSHOT, TARGETS, RELEASES))


def test_endless_body_is_cut_off_at_the_cap(sim, trust_dir):
    body = Endless()
    sim.serve("timestamp.json", body)
    rejected(sim, trust_dir, OversizedError, "larger than")
    assert body.sent <= MAX_TIMESTAMP_SIZE + 2 * len(body.chunk)


# --------------------------------------------------------------------------------------------
# Freeze: the server keeps serving what it has while the clock moves on


def test_frozen_timestamp_expires_at_the_clients_start_time(sim, trust_dir):
    refresh(sim, trust_dir)
    expires = sim.timestamp.expires_at
    refresh(sim, trust_dir, now=expires - timedelta(seconds=1))
    rejected(sim, trust_dir, ExpiredError, r"the timestamp metadata of .* expired", now=expires)
    rejected(sim, trust_dir, ExpiredError, r"the timestamp metadata of .* expired", now=expires + timedelta(days=1))


def test_rollback_is_caught_after_the_cached_timestamp_expired(sim, trust_dir):
    refresh(sim, trust_dir)
    sim.now = NOW + timedelta(days=20)  # the cached timestamp expired on day 14
    sim.publish_timestamp(sim.old(SNAPSHOT, 1))
    rejected(sim, trust_dir, RollbackError, r"snapshot version 1 is older than the trusted version 2")


def test_fast_forward_recovery_after_a_timestamp_key_rotation(sim, trust_dir):
    sim.timestamp.version = 99998
    sim.publish()  # a compromised timestamp key pushed the version far ahead
    refresh(sim, trust_dir)
    sim.rotate(TIMESTAMP)  # the owner rotates the key; the server starts again from 1
    sim.timestamp = None
    sim.publish()
    assert refresh(sim, trust_dir).versions[TIMESTAMP] == 1


# --------------------------------------------------------------------------------------------
# Root rotation (§7.1-7.3, §7.23)


def test_root_rotation_to_new_keys_and_threshold_is_walked_and_cached(sim, trust_dir):
    refresh(sim, trust_dir)
    sim.rotate_root(new_keys=2, threshold=2)  # v2: signed by the old key and both new ones
    sim.publish_root()  # v3: the new keys alone, as v2 allows
    sim.publish()
    sim.requests.clear()
    trusted = refresh(sim, trust_dir)
    assert trusted.root.signed.version == 3
    assert trusted.root.signed.roles[ROOT].threshold == 2
    # The snapshot no longer vouches for the cached root: then root.json and the walk.
    assert sim.requests[sim.requests.index("root.json") :][:3] == ["root.json", "2.root.json", "timestamp.json"]
    assert cached(trust_dir, ROOT) == sim.current(ROOT)
    # Nothing new on the server: only the timestamp is fetched, the rest is the cache.
    sim.requests.clear()
    refresh(sim, trust_dir)
    assert sim.requests == ["timestamp.json"]
    # And an old root offered again (with a snapshot that vouches for it) is a rollback.
    _vouched_root(sim, sim.old(ROOT, 1))
    rejected(sim, trust_dir, RollbackError, r"root version 1, older than the trusted version 3")


@pytest.mark.parametrize(
    "new_keys",
    [
        pytest.param(lambda: [new_root_key(cn="registry.example.com/team/*")], id="wildcard-cn"),
        pytest.param(lambda: [new_root_key(), new_root_key(), new_root_key()], id="three-keys"),
    ],
)
def test_other_valid_root_rotations(sim, trust_dir, new_keys):
    refresh(sim, trust_dir)
    keys = new_keys()
    sim.rotate_root(keys, threshold=len(keys))
    assert refresh(sim, trust_dir).root.signed.roles[ROOT].keyids == [k.keyid for k in keys]


def test_expired_certificate_in_the_trusted_root_still_signs_a_rotation(trust_dir):
    old = new_root_key(issued=NOW - timedelta(days=3650 - 10))  # expires in 10 days
    sim = Simulator()
    sim.rotate_root([old])
    sim.publish()
    refresh(sim, trust_dir)
    sim.now = NOW + timedelta(days=30)
    sim.rotate_root(1)
    assert refresh(sim, trust_dir).root.signed.version == 3


def _threshold_raised_but_not_met(sim):
    new = [new_root_key(), new_root_key()]
    sim.rotate_root(new, threshold=2, sign_with=sim.keys[ROOT] + new[:1])


def _intermediate_not_cross_signed(sim):
    sim.rotate_root(sign_with="new")
    sim.publish_root()
    sim.publish()


def _reissued(sim):
    sim.root.set_expiry(NOW + timedelta(days=100))
    sim.publish_root(version_step=0)
    sim.publish()


def _url_version_mismatch(sim):
    sim.rotate_root(version_step=2)
    sim.serve("2.root.json", sim.current(ROOT))


def _too_many(sim):
    sim.publish_root(version_step=MAX_ROOT_ROTATIONS + 1)
    sim.publish()


BAD_ROOTS = [
    (
        "signed-only-by-new-keys",
        lambda s: s.rotate_root(sign_with="new"),
        ThresholdError,
        r"threshold for root \(by the previous root\): 0 of 1",
    ),
    (
        "signed-only-by-old-keys",
        lambda s: s.rotate_root(sign_with="old"),
        ThresholdError,
        r"threshold for root: 0 of 1",
    ),
    ("threshold-raised-not-met", _threshold_raised_but_not_met, ThresholdError, r"threshold for root: 1 of 2"),
    (
        "intermediate-not-cross-signed",
        _intermediate_not_cross_signed,
        ThresholdError,
        r"threshold for root \(by the previous root\): 0 of 1",
    ),
    ("version-skipped", lambda s: s.rotate_root(version_step=2), VerificationError, r"missing root version 2"),
    ("url-version-mismatch", _url_version_mismatch, RollbackError, r"root version 3 does not follow 1"),
    ("same-version-reissued", _reissued, VerificationError, r"root version 1 differs from the trusted one"),
    (
        "same-version-reformatted",
        lambda s: _vouched_root(s, with_whitespace(s.current(ROOT))),
        VerificationError,
        r"root version 1 differs from the trusted one",
    ),
    ("too-many-rotations", _too_many, VerificationError, rf"offers {MAX_ROOT_ROTATIONS + 1} root rotations at once"),
    (
        "cn-is-another-gun",
        lambda s: s.rotate_root([new_root_key(cn="registry.example.com/other")]),
        VerificationError,
        r"another repository \(CN does not match",
    ),
    (
        "certificate-expired",
        lambda s: s.rotate_root([new_root_key(issued=NOW - timedelta(days=3651))]),
        VerificationError,
        r"certificate expired on",
    ),
    (
        "certificate-not-yet-valid",
        lambda s: s.rotate_root([new_root_key(issued=NOW + timedelta(days=2))]),
        VerificationError,
        r"certificate is not valid until",
    ),
    (
        "bare-key-not-certificate",
        lambda s: s.rotate_root([new_key()]),
        VerificationError,
        r"is a bare key, not a certificate",
    ),
]


@pytest.mark.parametrize(("tamper", "error", "match"), [a[1:] for a in BAD_ROOTS], ids=[a[0] for a in BAD_ROOTS])
def test_bad_root_is_rejected_and_the_trusted_root_kept(sim, trust_dir, tamper, error, match):
    refresh(sim, trust_dir)
    tamper(sim)
    rejected(sim, trust_dir, error, match)
    assert Metadata.from_bytes(cached(trust_dir, ROOT), role=ROOT).signed.version == 1


def test_too_many_rotations_fetches_no_intermediate_root(sim, trust_dir):
    refresh(sim, trust_dir)
    _too_many(sim)
    sim.requests.clear()
    rejected(sim, trust_dir, VerificationError, "root rotations at once")
    assert sim.fetched(r"\d+\.root\.json") == []


def test_exactly_max_root_rotations_are_walked(sim, trust_dir):
    refresh(sim, trust_dir)
    for _ in range(MAX_ROOT_ROTATIONS):
        sim.publish_root()
    sim.publish()
    assert refresh(sim, trust_dir).root.signed.version == 1 + MAX_ROOT_ROTATIONS
    assert len(sim.fetched(r"\d+\.root\.json")) == MAX_ROOT_ROTATIONS - 1


def test_threshold_lowered_needs_the_old_threshold(trust_dir):
    sim = Simulator()
    old = [new_root_key(), new_root_key()]
    sim.rotate_root(old, threshold=2)
    refresh(sim, trust_dir)
    new = [new_root_key()]
    sim.rotate_root(new, threshold=1, sign_with=old[:1] + new)  # one of the two old keys only
    rejected(sim, trust_dir, ThresholdError, r"threshold for root \(by the previous root\): 1 of 2")


def test_reformatted_root_on_first_contact_verifies_but_does_not_match_snapshot(sim, trust_dir):
    sim.replace(ROOT, with_whitespace(sim.current(ROOT)))
    rejected(sim, trust_dir, HashMismatchError, r"lists a different root than the trusted one")
    assert cache_state(trust_dir) == {}


# --------------------------------------------------------------------------------------------
# Thresholds (§7.4)


@pytest.mark.parametrize(
    ("signers", "error"),
    [
        pytest.param(lambda k: k[:1], r"1 of 2 required", id="one-of-two"),
        pytest.param(lambda k: [k[0], k[0]], r"1 of 2 required", id="same-key-twice"),
        pytest.param(lambda k: [k[0], new_key()], r"1 of 2 required", id="one-plus-stranger"),
        pytest.param(lambda k: [*k, new_key()], None, id="two-plus-stranger-passes"),
    ],
)
def test_targets_threshold_counts_distinct_valid_keys(trust_dir, signers, error):
    sim = Simulator(targets_keys=2, targets_threshold=2)
    sim.publish()
    refresh(sim, trust_dir)
    sim.publish(roles=[TARGETS], sign_with={TARGETS: signers(sim.keys[TARGETS])})
    if error is None:
        assert refresh(sim, trust_dir).versions[TARGETS] == 2
    else:
        rejected(sim, trust_dir, ThresholdError, rf"threshold for targets: {error}")


def test_delegation_short_of_its_threshold_is_marked_failed(trust_dir):
    sim = Simulator()
    keys = sim.add_delegation(RELEASES, keys=3, threshold=2)
    sim.add_target("v1", role=RELEASES)
    sim.publish(sign_with={RELEASES: keys[:2] + [new_key()]})  # 2 of 3 plus junk: trusted
    assert verify(sim, trust_dir, "v1").role == RELEASES
    good = cached(trust_dir, RELEASES)

    sim.add_target("v2", role=RELEASES)
    sim.publish(sign_with={RELEASES: keys[:1]})
    trusted = refresh(sim, trust_dir)
    assert RELEASES not in trusted.targets
    assert isinstance(trusted.failed[RELEASES], ThresholdError)
    assert cached(trust_dir, RELEASES) == good  # the failed delegation is not cached
    with pytest.raises(ThresholdError, match=r"threshold for targets/releases: 1 of 2 required"):
        verify(sim, trust_dir, "v2")


def test_offline_load_after_a_failed_delegation_still_reads_targets(trust_dir):
    sim = Simulator()
    keys = sim.add_delegation(RELEASES, keys=3, threshold=2)
    sim.add_target("v1", role=RELEASES)
    sim.add_target("base")
    sim.publish(sign_with={RELEASES: keys[:2]})
    refresh(sim, trust_dir)
    sim.add_target("v2", role=RELEASES)
    sim.publish(sign_with={RELEASES: keys[:1]})
    refresh(sim, trust_dir)
    assert "base" in sim.updater(trust_dir).load_offline().targets[TARGETS].signed.targets


def test_one_key_listed_bare_and_as_certificate_counts_once(trust_dir):
    sim = Simulator()
    key = new_key()
    as_cert = Key(key.signer, root_key_for(key.signer.private_key, "any name"))
    assert as_cert.keyid != key.keyid
    sim.add_delegation("targets/qa", keys=[key, as_cert], threshold=2)
    sim.add_target("v1", role="targets/qa")
    sim.publish()
    trusted = refresh(sim, trust_dir)
    assert "threshold for targets/qa: 1 of 2 required" in str(trusted.failed["targets/qa"])
    assert cached(trust_dir, "targets/qa") is None


# --------------------------------------------------------------------------------------------
# A damaged cache (§4.7)


def test_corrupt_cached_root_fails_closed(sim, trust_dir):
    refresh(sim, trust_dir)
    (trust_dir / "tuf" / GUN / "metadata" / "root.json").write_bytes(b'{"signed": tru')
    sim.requests.clear()
    rejected(sim, trust_dir, MetadataError, r"root.json")
    assert not sim.fetched(r"timestamp.*")  # nothing past the root was even asked for


@pytest.mark.parametrize("role", [TIMESTAMP, SNAPSHOT, TARGETS, RELEASES])
def test_corrupt_cached_role_is_replaced_from_the_server(sim, trust_dir, role):
    refresh(sim, trust_dir)
    (trust_dir / "tuf" / GUN / "metadata" / f"{role}.json").write_bytes(b"garbage")
    sim.requests.clear()
    refresh(sim, trust_dir)
    assert cached(trust_dir, role) == sim.current(role)
    assert sim.fetched(rf"{role}(\.{HEX})?\.json")


def test_whitespace_keeps_signatures_valid_but_breaks_the_hash(sim, trust_dir):
    trusted = refresh(sim, trust_dir)
    padded = with_whitespace(sim.current(TARGETS))
    assert Metadata.from_bytes(padded, role=TARGETS).verify_by(trusted.root.signed.signing_rule(TARGETS))
    fresh = TrustedSet(sim.current(ROOT), gun=GUN, now=NOW)
    fresh.update_timestamp(sim.current(TIMESTAMP))
    fresh.update_snapshot(sim.current(SNAPSHOT))
    with pytest.raises(HashMismatchError, match=r"targets does not match what its parent lists: length is"):
        fresh.update_targets(padded)


def test_delegation_never_published_is_not_a_rollback(sim, trust_dir):
    refresh(sim, trust_dir)
    sim.add_delegation("targets/qa")
    sim.dirty.discard("targets/qa")  # targets delegates to it; nobody has signed it yet
    sim.publish()
    trusted = refresh(sim, trust_dir)
    assert "targets/qa" not in trusted.targets and "targets/qa" not in trusted.failed
