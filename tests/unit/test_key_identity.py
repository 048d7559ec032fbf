"""One key, however it is spelled, counts once towards a threshold: in the client's signature
count, in ``signer add`` and in the server's update validation (trust rule: distinct keys).

Key IDs hash a key's encoded text, so one ECDSA key has several: its point compressed or not,
unused base64 bits set, bare or inside a certificate.  Before this rule one private key met a
threshold of 2 when listed under two of them.
"""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from test_server_badinput import CONTENT_TYPE, build_repo, multipart, sign, targets_doc

from simulator import GUN, NOW, Key, Simulator, new_key, new_root_key
from trustkit.encoding import b64encode, format_expires
from trustkit.errors import TrustkitError
from trustkit.keys import KeyStore
from trustkit.keys.certs import root_key_for
from trustkit.keys.public import ECDSA, PublicKey, distinct_keys
from trustkit.metadata import Metadata, Targets
from trustkit.ops import TrustSession, add_signer
from trustkit.reference import parse_repository
from trustkit.roles import TARGETS

# SubjectPublicKeyInfo header for an EC P-256 key with a 33-byte (compressed) point.
_COMPRESSED_P256_SPKI = bytes.fromhex("3039301306072a8648ce3d020106082a8648ce3d030107032200")


def spellings(key: Key) -> dict[str, PublicKey]:
    """The same public key written four ways, each with its own key ID."""
    crypto = key.signer.public_key.crypto_key
    compressed = crypto.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
    plain = key.public.public
    raw = base64.b64decode(plain)
    padded = plain.rstrip("=")
    # 91 bytes of DER: the last base64 character carries 4 bits that decoding ignores.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    flipped = alphabet[alphabet.index(padded[-1]) ^ 1]  # the lowest, unused bit
    unused_bits = padded[:-1] + flipped + "=" * (len(plain) - len(padded))
    assert base64.b64decode(unused_bits) == raw and unused_bits != plain
    private = key.signer.private_key
    return {
        "uncompressed": key.public,
        "compressed": PublicKey(ECDSA, b64encode(_COMPRESSED_P256_SPKI + compressed)),
        "unused-bits": PublicKey(ECDSA, unused_bits),
        "certificate": root_key_for(private, GUN, now=NOW),
    }


def test_every_spelling_has_its_own_id_and_one_identity():
    forms = spellings(new_key())
    assert len({k.keyid for k in forms.values()}) == 4
    assert len({k.identity for k in forms.values()}) == 1
    assert distinct_keys({k.keyid: k for k in forms.values()}, [k.keyid for k in forms.values()]) == 1


@pytest.mark.parametrize("other", ["compressed", "unused-bits", "certificate"])
def test_one_private_key_cannot_meet_a_threshold_of_two(other):
    key = new_key()
    forms = spellings(key)
    listed = {k.keyid: k for k in (forms["uncompressed"], forms[other])}
    meta = Metadata(Targets(expires=format_expires(NOW + timedelta(days=1)), version=1))
    meta.sign([(key.signer, keyid) for keyid in listed])  # one signature under each ID
    assert len(meta.signatures) == 2
    result = meta.verify(listed, list(listed), 2, "targets/team")
    assert not result and len(result.signed) == 1
    with pytest.raises(TrustkitError, match="1 of 2 required"):
        result.raise_for_threshold()
    assert meta.verify(listed, list(listed), 1, "targets/team")  # the one real signature still counts


def test_signer_add_refuses_the_same_key_twice(tmp_path):
    sim = Simulator()
    sim.publish()
    store = KeyStore(tmp_path, lambda request: "test-passphrase")
    store.add(sim.keys[TARGETS][0].signer.private_key, role=TARGETS)
    session = TrustSession(parse_repository(GUN), sim.client(), store, tmp_path, now=NOW)
    forms = spellings(new_key())
    for first, second in (
        ("uncompressed", "compressed"),
        ("compressed", "compressed"),
        ("uncompressed", "certificate"),
        ("unused-bits", "uncompressed"),
    ):
        with pytest.raises(TrustkitError, match="same key is given"):
            add_signer(session, "team", [forms[first], forms[second]], threshold=2)
    add_signer(session, "team", [forms["uncompressed"]])
    with pytest.raises(TrustkitError, match="same key is given as"):  # already a key of the signer
        add_signer(session, "team", [forms["compressed"]], threshold=2)
    add_signer(session, "team", [forms["uncompressed"], new_key().public], threshold=2)  # re-adding one: fine


def test_the_server_refuses_a_delegation_whose_threshold_only_one_key_meets(tmp_path):
    repo = build_repo(tmp_path / "server.db")
    with repo.client:
        key = new_key()
        forms = spellings(key)
        doc = targets_doc(3, ["v1", "v2"])
        twins = [forms["uncompressed"], forms["compressed"]]
        doc["delegations"] = {
            "keys": {k.keyid: k.to_dict() for k in twins},
            "roles": [{"keyids": [k.keyid for k in twins], "name": "targets/team", "paths": [""], "threshold": 2}],
        }
        response = repo.client.post(
            repo.tuf(),
            content=multipart([("targets", sign(doc, repo.targets_key))]),
            headers={"Content-Type": CONTENT_TYPE},
        )
        assert response.status_code == 400, response.text
        assert "targets/team needs 2 signatures but lists only 1 different key" in response.text
        assert repo.client.get(f"{repo.tuf()}targets.json").content == repo.targets_bytes  # nothing stored

        other = new_key()  # two different keys: accepted
        doc["delegations"]["keys"] = {k.keyid: k.public.to_dict() for k in (key, other)}
        doc["delegations"]["roles"][0]["keyids"] = [key.keyid, other.keyid]
        response = repo.client.post(
            repo.tuf(),
            content=multipart([("targets", sign(doc, repo.targets_key))]),
            headers={"Content-Type": CONTENT_TYPE},
        )
        assert response.status_code == 200, response.text


def test_the_server_refuses_a_root_whose_threshold_one_key_meets(tmp_path):
    repo = build_repo(tmp_path / "server.db")
    with repo.client:
        root = dict(repo.root)
        gun = "registry.example.com/badinput/app"
        first = new_root_key(gun, issued=NOW)
        second = Key(first.signer, root_key_for(first.signer.private_key, gun, now=NOW + timedelta(seconds=5)))
        assert first.keyid != second.keyid and first.public.identity == second.public.identity
        root["keys"] = {**root["keys"], first.keyid: first.public.to_dict(), second.keyid: second.public.to_dict()}
        root["roles"] = {**root["roles"], "root": {"keyids": [first.keyid, second.keyid], "threshold": 2}}
        root["version"] = 2
        data = sign(root, repo.root_key, first, second)
        response = repo.client.post(
            repo.tuf(), content=multipart([("root", data)]), headers={"Content-Type": CONTENT_TYPE}
        )
        assert response.status_code == 400, response.text
        assert "root needs 2 signatures but lists only 1 different key" in response.text
