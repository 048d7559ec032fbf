"""metadata: strict parsing, exact re-serialisation, threshold verification over original bytes."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trustkit.encoding import format_expires
from trustkit.errors import MetadataError, ThresholdError
from trustkit.keys import CryptoSigner, PublicKey, generate
from trustkit.keys.certs import root_key_for
from trustkit.metadata import (
    BASE_ROLES,
    DelegationRole,
    Delegations,
    FileMeta,
    Metadata,
    RoleKeys,
    Root,
    Snapshot,
    Targets,
    Timestamp,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
# A timestamp served by the real notary-server (wire spec, Appendix A), kept verbatim.
APPENDIX_A_TIMESTAMP = (
    b'{"signed":{"_type":"Timestamp","expires":"2026-12-10T16:53:13.95509821Z","meta":{"snapshot'
    b'":{"hashes":{"sha256":"opyrRuRYmdZKiBAJvPIDrYPZP4FuIehSqvksza6+ipc=","sha512":"v+EdE3/Efuq'
    b'SgoT4DUbK2jHKbiJbRLiYtQQogFR9rueh7y9CVXhkrGnLx4s7e0CHi0tkcGCnYyn6LCVIPipA7Q=="},"length":6'
    b'83}},"version":1},"signatures":[{"keyid":"cf4b4af33e222832ea62205be6f2ff3cd3b73b55f436d98f'
    b'0207e1c875ef6db3","method":"eddsa","sig":"lWEsDFa5qfjCp2XmhoUzIO1Ij1foANzp58BSYBqfhEWrA29S'
    b'bmO5xKwqA3yVE1tEVZyW8sm+69AWeE41e3IMBA=="}]}'
)
GUN = "example.com/org/app"


@pytest.fixture(scope="module")
def signers():
    return {name: CryptoSigner(generate("ecdsa")) for name in ("root", "targets", "a", "b", "c")}


def make_root(signers, version=1):
    root_key = root_key_for(signers["root"].private_key, GUN, now=NOW)
    tkey = signers["targets"].public_key
    root = Root(
        expires=format_expires(NOW + timedelta(days=3650)),
        version=version,
        keys={root_key.keyid: root_key, tkey.keyid: tkey},
        roles={r: RoleKeys([root_key.keyid if r == "root" else tkey.keyid]) for r in BASE_ROLES},
    )
    meta = Metadata(root)
    meta.sign([(signers["root"], root_key.keyid)])
    return meta, root_key


def test_appendix_a_timestamp_round_trips_and_verifies():
    data = APPENDIX_A_TIMESTAMP
    meta = Metadata.from_bytes(data, role="timestamp")
    assert meta.to_bytes() == data
    key = PublicKey("ed25519", "bKoipugbiegvy0EO1tkpDZvefeF8wkEWGq5ZglC/ptU=")
    assert meta.verify({key.keyid: key}, [key.keyid], 1, "timestamp")
    assert meta.signed.snapshot_meta.length == 683
    assert meta.signed.expires == "2026-12-10T16:53:13.95509821Z"  # nanoseconds kept as written


def test_root_sign_parse_verify(signers):
    meta, root_key = make_root(signers)
    again = Metadata.from_bytes(meta.raw, role="root")
    assert again.to_bytes() == meta.raw
    assert again.verify(again.signed.keys, again.signed.roles["root"].keyids, 1, "root")
    assert again.signatures[0].keyid == root_key.keyid  # the certificate ID, not the canonical one


def test_targets_wire_shape(signers):
    targets = Targets(
        expires="2029-11-25T16:53:55.619240011Z", version=2, targets={"v1": FileMeta.for_digest("ab" * 32, 1234)}
    )
    meta = Metadata(targets)
    data = meta.sign([(signers["targets"], signers["targets"].public_key.keyid)])
    assert data.startswith(
        b'{"signed":{"_type":"Targets","delegations":{"keys":{},"roles":[]},'
        b'"expires":"2029-11-25T16:53:55.619240011Z","targets":{"v1":{"hashes":'
        b'{"sha256":"q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s="},"length":1234}},'
        b'"version":2},"signatures":[{"keyid":"'
    )


def test_delegation_paths_omitted_when_empty():
    role = DelegationRole("targets/releases", ["k"], 1, [])
    assert "paths" not in role.to_dict()
    assert DelegationRole("targets/x", ["k"], 1, [""]).to_dict()["paths"] == [""]


def test_threshold_counts_each_key_once(signers):
    a, b = signers["a"], signers["b"]
    targets = Metadata(Targets(expires=format_expires(NOW), version=1))
    targets.sign([(a, a.public_key.keyid), (a, a.public_key.keyid)])
    keys = {a.public_key.keyid: a.public_key, b.public_key.keyid: b.public_key}
    result = targets.verify(keys, [a.public_key.keyid, a.public_key.keyid, b.public_key.keyid], 2, "targets/x")
    assert not result
    with pytest.raises(ThresholdError, match="1 of 2"):
        result.raise_for_threshold()


def test_bare_key_and_certificate_of_one_key_count_once(signers):
    root_signer = signers["root"]
    cert_key = root_key_for(root_signer.private_key, GUN, now=NOW)
    bare = root_signer.public_key
    meta = Metadata(Targets(expires=format_expires(NOW), version=1))
    meta.sign([(root_signer, cert_key.keyid), (root_signer, bare.keyid)])
    keys = {cert_key.keyid: cert_key, bare.keyid: bare}
    assert not meta.verify(keys, list(keys), 2, "root")
    assert meta.verify(keys, list(keys), 1, "root")


def test_threshold_two_of_three_and_garbage_signatures(signers):
    a, b, c = signers["a"], signers["b"], signers["c"]
    keys = {s.public_key.keyid: s.public_key for s in (a, b, c)}
    meta = Metadata(Targets(expires=format_expires(NOW), version=1))
    meta.sign([(a, a.public_key.keyid)])
    assert not meta.verify(keys, list(keys), 2, "targets/team")
    meta.sign([(b, b.public_key.keyid)], replace=False)  # a second signer adds theirs
    assert len(meta.signatures) == 2
    # A valid threshold plus junk still passes; junk alone never counts.
    from trustkit.metadata import Signature

    meta.signatures.append(Signature(c.public_key.keyid, "ecdsa", "AAAA"))
    meta.signatures.append(Signature("ff" * 32, "ecdsa", "AAAA"))
    assert meta.verify(keys, list(keys), 2, "targets/team")


def test_tampered_payload_fails(signers):
    meta, root_key = make_root(signers)
    tampered = meta.raw.replace(b'"version":1', b'"version":2')
    again = Metadata.from_bytes(tampered, role="root")
    assert not again.verify(again.signed.keys, [root_key.keyid], 1, "root")


def test_verification_uses_received_bytes_not_reserialisation(signers):
    """Extra whitespace changes the file (and its hash) but not the canonical message."""
    meta, root_key = make_root(signers)
    spaced = meta.raw.replace(b'"signed":{', b'"signed": {')
    again = Metadata.from_bytes(spaced, role="root")
    assert again.raw == spaced
    assert again.verify(again.signed.keys, [root_key.keyid], 1, "root")
    assert FileMeta.for_bytes(meta.raw).matches(spaced) is not None


BAD_DOCUMENTS = [
    (b'{"signed":{},"signatures":[],"signed":{}}', "duplicate key"),
    (b'{"signed":{"_type":"Targets","version":NaN},"signatures":[]}', "NaN"),
    (b'{"signed":{"_type":"Targets","version":' + b"1" * 5000 + b'},"signatures":[]}', "too large"),
    (b'{"signed":' + b'{"a":' * 100 + b"1" + b"}" * 100 + b',"signatures":[]}', "nested"),
    (b'{"signed":{},"signatures":[]}', "missing field"),
    (b"[1]", "exactly"),
    (b'{"signed":{},"signatures":{}}', "must be a list"),
    (b'{"signed":{},"signatures":[{"keyid":"a","sig":"b"}]}', "keyid"),
]


@pytest.mark.parametrize(("data", "message"), BAD_DOCUMENTS)
def test_malformed_documents(data, message):
    with pytest.raises(MetadataError, match=message):
        Metadata.from_bytes(data, role="targets")


def _targets_doc(**changes):
    signed = {
        "_type": "Targets",
        "delegations": {"keys": {}, "roles": []},
        "expires": "2030-01-01T00:00:00Z",
        "targets": {},
        "version": 1,
    }
    signed.update(changes)
    return signed


_ONE_KEY = PublicKey.from_crypto(generate("ecdsa").public_key())


@pytest.mark.parametrize(
    ("signed", "message"),
    [
        (_targets_doc(version=True), "must be an integer, not bool"),
        (_targets_doc(version=0), "at least 1"),
        (_targets_doc(version="1"), "must be an integer"),
        (_targets_doc(_type="Root"), "_type"),
        (_targets_doc(_type="targets"), "_type"),
        (_targets_doc(expires="tomorrow"), "RFC 3339"),
        (_targets_doc(extra=1), "unknown field"),
        (_targets_doc(targets={"t": {"hashes": {}, "length": 1}}), "non-empty"),
        (_targets_doc(targets={"t": {"hashes": {"sha256": "AAAA"}, "length": 1}}), "32 bytes"),
        (
            _targets_doc(
                targets={"t": {"hashes": {"sha256": "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s="}, "length": -1}}
            ),
            "at least 0",
        ),
        (
            _targets_doc(delegations={"keys": {}, "roles": [{"keyids": [], "name": "targets/../x", "threshold": 1}]}),
            "may contain only",
        ),
        (
            _targets_doc(delegations={"keys": {}, "roles": [{"keyids": [], "name": "targets//x", "threshold": 1}]}),
            "clean path",
        ),
        (
            _targets_doc(delegations={"keys": {}, "roles": [{"keyids": [], "name": "targets/a/b", "threshold": 1}]}),
            "direct child",
        ),
        (
            _targets_doc(delegations={"keys": {}, "roles": [{"keyids": ["k"], "name": "targets/a", "threshold": 1}]}),
            "not in delegations.keys",
        ),
        (
            _targets_doc(delegations={"keys": {}, "roles": [{"keyids": [], "name": "targets/a", "threshold": 0}]}),
            "at least 1",
        ),
        (
            _targets_doc(
                delegations={
                    "keys": {_ONE_KEY.keyid: _ONE_KEY.to_dict()},
                    "roles": [{"keyids": [_ONE_KEY.keyid], "name": "targets/a", "threshold": 2}],
                }
            ),
            "threshold 2 is more than",
        ),
        (
            _targets_doc(delegations={"keys": {}, "roles": [{"keyids": [], "name": "Targets/A", "threshold": 1}]}),
            "base role nor a delegation",
        ),
    ],
)
def test_strict_targets_rules(signed, message):
    with pytest.raises(MetadataError, match=message):
        Targets.from_dict(signed)


def test_mislabeled_key_is_refused(signers):
    key = signers["a"].public_key
    doc = _targets_doc(delegations={"keys": {"00" * 32: key.to_dict()}, "roles": []})
    with pytest.raises(MetadataError, match="listed as"):
        Targets.from_dict(doc)


def test_root_rules(signers):
    meta, _ = make_root(signers)
    signed = meta.signed.to_dict()
    del signed["roles"]["timestamp"]
    with pytest.raises(MetadataError, match="missing field 'timestamp'"):
        Root.from_dict(signed)
    signed = meta.signed.to_dict()
    signed["roles"]["targets"]["threshold"] = 2
    with pytest.raises(MetadataError, match="threshold 2"):
        Root.from_dict(signed)
    signed = meta.signed.to_dict()
    signed["consistent_snapshot"] = 0
    with pytest.raises(MetadataError, match="true or false"):
        Root.from_dict(signed)


def test_snapshot_and_timestamp_rules():
    meta = {"hashes": {"sha256": "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s="}, "length": 1}
    base = {"_type": "Snapshot", "expires": "2030-01-01T00:00:00Z", "version": 1}
    with pytest.raises(MetadataError, match="must list targets"):
        Snapshot.from_dict({**base, "meta": {"root": meta}})
    with pytest.raises(MetadataError, match="neither a base role"):
        Snapshot.from_dict({**base, "meta": {"root": meta, "targets": meta, "../x": meta}})
    with pytest.raises(MetadataError, match="must list snapshot"):
        Timestamp.from_dict({**base, "_type": "Timestamp", "meta": {}})


def test_expiry(signers):
    meta, _ = make_root(signers)
    assert not meta.signed.is_expired(NOW)
    assert meta.signed.is_expired(NOW + timedelta(days=3651))


target_names = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30)


@settings(max_examples=40, deadline=None)
@given(
    st.dictionaries(target_names, st.tuples(st.binary(min_size=32, max_size=32), st.integers(0, 2**40)), max_size=5),
    st.integers(1, 2**31),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(9000, 1, 1), timezones=st.just(UTC)),
)
def test_targets_round_trip(signers, entries, version, expires):
    targets = Targets(
        expires=format_expires(expires),
        version=version,
        targets={name: FileMeta.for_digest(digest.hex(), size) for name, (digest, size) in entries.items()},
        delegations=Delegations(),
    )
    meta = Metadata(targets)
    data = meta.sign([(signers["targets"], signers["targets"].public_key.keyid)])
    again = Metadata.from_bytes(data, role="targets")
    assert again.to_bytes() == data
    assert again.signed.to_dict() == targets.to_dict()
    assert again.verify(
        {signers["targets"].public_key.keyid: signers["targets"].public_key},
        [signers["targets"].public_key.keyid],
        1,
        "targets",
    )


def test_a_delegation_with_null_keyids_reads_and_re_serialises_as_notary_wrote_it():
    """`notary delegation remove GUN ROLE KEYID` of a role's last key writes "keyids": null."""
    from trustkit.encoding import canonical_json, envelope_bytes

    key = PublicKey.from_crypto(generate("ecdsa").public_key())
    signed = {
        "_type": "Targets",
        "delegations": {
            "keys": {key.keyid: key.to_dict()},
            "roles": [{"keyids": None, "name": "targets/qa", "paths": [""], "threshold": 1}],
        },
        "expires": "2030-01-01T00:00:00Z",
        "targets": {},
        "version": 3,
    }
    data = envelope_bytes(canonical_json(signed), [])
    meta = Metadata.from_bytes(data, role="targets")
    role = meta.signed.delegations.role("targets/qa")
    assert role.keyids == [] and meta.to_bytes() == data
    assert not Metadata.from_bytes(data, role="targets").verify({}, role.keyids, role.threshold, "targets/qa")
