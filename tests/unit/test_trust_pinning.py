"""Trust pinning on first contact: certificate IDs, a CA per GUN prefix, TOFU on or off."""

import json
from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from trustkit.client.config import load_trust_pinning
from trustkit.encoding import format_expires
from trustkit.errors import TrustkitError, VerificationError
from trustkit.keys import CryptoSigner, PublicKey, generate
from trustkit.keys.certs import root_key_for
from trustkit.metadata import BASE_ROLES, Metadata, RoleKeys, Root
from trustkit.trust.trusted_set import TrustedSet, TrustPinning

NOW = datetime(2026, 11, 26, tzinfo=timezone.utc)
GUN = "example.com/org/app"


def signed_root(private, root_key: PublicKey) -> bytes:
    other = CryptoSigner(generate()).public_key
    root = Root(expires=format_expires(NOW + timedelta(days=365)), version=1,
                keys={root_key.keyid: root_key, other.keyid: other},
                roles={r: RoleKeys([root_key.keyid if r == "root" else other.keyid]) for r in BASE_ROLES})
    return Metadata(root).sign([(CryptoSigner(private), root_key.keyid)])


def ca_issued_root():
    ca_private = generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
    ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(ca_private.public_key())
          .serial_number(1).not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=365))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_private, hashes.SHA256()))
    leaf_private = generate()
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, GUN)]))
            .issuer_name(name).public_key(leaf_private.public_key()).serial_number(2)
            .not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_private, hashes.SHA256()))
    key = PublicKey.from_certificates([leaf])
    return signed_root(leaf_private, key), ca.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def self_signed():
    private = generate()
    key = root_key_for(private, GUN, now=NOW - timedelta(hours=1))
    return signed_root(private, key), key


def test_tofu_accepts_any_valid_root(self_signed):
    data, _ = self_signed
    assert TrustedSet(data, gun=GUN, now=NOW, first_contact=True, pinning=TrustPinning())


def test_pinned_certificate_id(self_signed):
    data, key = self_signed
    for pattern in (GUN, "example.com/org/*"):
        TrustedSet(data, gun=GUN, now=NOW, first_contact=True, pinning=TrustPinning(certs={pattern: [key.keyid]}))
    with pytest.raises(VerificationError, match="not signed by a pinned certificate"):
        TrustedSet(data, gun=GUN, now=NOW, first_contact=True, pinning=TrustPinning(certs={GUN: ["ab" * 32]}))


def test_pinned_ca():
    data, ca_pem = ca_issued_root()
    TrustedSet(data, gun=GUN, now=NOW, first_contact=True, pinning=TrustPinning(ca={"example.com/": ca_pem}))
    _, other_ca = ca_issued_root()
    with pytest.raises(VerificationError, match="do not chain to the pinned CA"):
        TrustedSet(data, gun=GUN, now=NOW, first_contact=True, pinning=TrustPinning(ca={"example.com/": other_ca}))


def test_disable_tofu(self_signed):
    data, key = self_signed
    with pytest.raises(VerificationError, match="trust on first use is disabled"):
        TrustedSet(data, gun=GUN, now=NOW, first_contact=True, pinning=TrustPinning(disable_tofu=True))
    TrustedSet(data, gun=GUN, now=NOW, first_contact=True,
               pinning=TrustPinning(certs={GUN: [key.keyid]}, disable_tofu=True))


def test_pinning_only_applies_on_first_contact(self_signed):
    data, _ = self_signed
    TrustedSet(data, gun=GUN, now=NOW, pinning=TrustPinning(disable_tofu=True))  # cached root is the anchor


def test_config_file(tmp_path):
    _, ca_pem = ca_issued_root()
    (tmp_path / "ca.pem").write_bytes(ca_pem)
    (tmp_path / "config.json").write_text(json.dumps({"trust_pinning": {
        "certs": {"Example.com/Org/App": ["ab" * 32]}, "ca": {"example.com/": "ca.pem"}, "disable_tofu": True}}))
    pinning = load_trust_pinning(tmp_path / "config.json")
    assert pinning.pinned_ids(GUN) == ["ab" * 32] and pinning.ca_for(GUN) == ca_pem and pinning.disable_tofu
    assert load_trust_pinning(None, disable_tofu=True).disable_tofu


@pytest.mark.parametrize("content", [
    "{", '{"trust_pinning": []}', '{"trust_pinning": {"certs": {"a": "id"}}}',
    '{"trust_pinning": {"ca": {"a/": "missing.pem"}}}', '{"trust_pinning": {"disable_tofu": "yes"}}',
])
def test_bad_config_files(tmp_path, content):
    (tmp_path / "config.json").write_text(content)
    with pytest.raises(TrustkitError):
        load_trust_pinning(tmp_path / "config.json")
