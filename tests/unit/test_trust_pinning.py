"""Trust pinning on first contact: certificate IDs, a CA per GUN prefix, TOFU on or off."""

import json
from datetime import UTC, datetime, timedelta

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

NOW = datetime(2026, 11, 26, tzinfo=UTC)
GUN = "example.com/org/app"


def signed_root(private, root_key: PublicKey) -> bytes:
    other = CryptoSigner(generate()).public_key
    root = Root(
        expires=format_expires(NOW + timedelta(days=365)),
        version=1,
        keys={root_key.keyid: root_key, other.keyid: other},
        roles={r: RoleKeys([root_key.keyid if r == "root" else other.keyid]) for r in BASE_ROLES},
    )
    return Metadata(root).sign([(CryptoSigner(private), root_key.keyid)])


def ca_issued_root():
    ca_private = generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(ca_private.public_key())
        .serial_number(1)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_private, hashes.SHA256())
    )
    leaf_private = generate()
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, GUN)]))
        .issuer_name(name)
        .public_key(leaf_private.public_key())
        .serial_number(2)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_private, hashes.SHA256())
    )
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
    TrustedSet(
        data, gun=GUN, now=NOW, first_contact=True, pinning=TrustPinning(certs={GUN: [key.keyid]}, disable_tofu=True)
    )


def test_pinning_only_applies_on_first_contact(self_signed):
    data, _ = self_signed
    TrustedSet(data, gun=GUN, now=NOW, pinning=TrustPinning(disable_tofu=True))  # cached root is the anchor


def test_config_file(tmp_path):
    _, ca_pem = ca_issued_root()
    (tmp_path / "ca.pem").write_bytes(ca_pem)
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "trust_pinning": {
                    "certs": {"Example.com/Org/App": ["ab" * 32]},
                    "ca": {"example.com/": "ca.pem"},
                    "disable_tofu": True,
                }
            }
        )
    )
    pinning = load_trust_pinning(tmp_path / "config.json")
    assert pinning.pinned_ids(GUN) == ["ab" * 32] and pinning.ca_for(GUN) == ca_pem and pinning.disable_tofu
    assert load_trust_pinning(None, disable_tofu=True).disable_tofu


@pytest.mark.parametrize(
    "content",
    [
        "{",
        '{"trust_pinning": []}',
        '{"trust_pinning": {"certs": {"a": "id"}}}',
        '{"trust_pinning": {"ca": {"a/": "missing.pem"}}}',
        '{"trust_pinning": {"disable_tofu": "yes"}}',
    ],
)
def test_bad_config_files(tmp_path, content):
    (tmp_path / "config.json").write_text(content)
    with pytest.raises(TrustkitError):
        load_trust_pinning(tmp_path / "config.json")


# ---- the pinned CA is checked by the one strict chain walk (trustkit.keys.certs.verified_chain)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue(
    cn: str,
    subject_private,
    issuer_name: x509.Name,
    issuer_private,
    *,
    ca: bool,
    path_length: int | None = None,
    days: tuple[int, int] = (-1, 365),
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer_name)
        .public_key(subject_private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW + timedelta(days=days[0]))
        .not_valid_after(NOW + timedelta(days=days[1]))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
        .sign(issuer_private, hashes.SHA256())
    )


_CA_KEYS: dict[x509.Name, object] = {}


def _pinned(ca: x509.Certificate, *intermediates: tuple[x509.Certificate, object]) -> bool:
    """Whether a root whose certificate is issued under ``ca`` (through ``intermediates``, each a
    certificate and its key, the last one issuing the leaf) is accepted with ``ca`` pinned."""
    issuer_name, issuer_private = ca.subject, _CA_KEYS[ca.subject]
    if intermediates:
        issuer_name, issuer_private = intermediates[-1][0].subject, intermediates[-1][1]
    leaf_private = generate()
    leaf = _issue(GUN, leaf_private, issuer_name, issuer_private, ca=False)
    key = PublicKey.from_certificates([leaf, *(cert for cert, _ in reversed(intermediates))])
    pinning = TrustPinning(ca={"example.com/": ca.public_bytes(serialization.Encoding.PEM)})
    try:
        TrustedSet(signed_root(leaf_private, key), gun=GUN, now=NOW, first_contact=True, pinning=pinning)
    except VerificationError as exc:
        assert "do not chain to the pinned CA" in exc.message
        return False
    return True


def _ca(cn: str, *, ca: bool = True, path_length: int | None = None, days: tuple[int, int] = (-1, 365)):
    private = generate()
    _CA_KEYS[_name(cn)] = private
    return _issue(cn, private, _name(cn), private, ca=ca, path_length=path_length, days=days), private


def test_pinned_ca_must_be_a_ca():
    good, _ = _ca("Pinned CA")
    assert _pinned(good)
    not_a_ca, _ = _ca("Pinned non-CA", ca=False)
    assert not _pinned(not_a_ca)  # the old walk only compared signatures


def test_pinned_ca_must_be_valid_at_now():
    expired, _ = _ca("Expired CA", days=(-400, -1))
    assert not _pinned(expired)
    not_yet, _ = _ca("Future CA", days=(1, 365))
    assert not _pinned(not_yet)


def test_intermediates_in_the_root_certificate_bundle_are_walked_with_ca_and_path_length_checks():
    root, root_private = _ca("Pinned Root", path_length=0)
    inter_private = generate()
    inter = _issue("Intermediate", inter_private, root.subject, root_private, ca=True)
    assert not _pinned(root, (inter, inter_private))  # path length 0: no intermediate allowed
    open_root, open_private = _ca("Open Root")
    open_inter = _issue("Open Intermediate", inter_private, open_root.subject, open_private, ca=True)
    assert _pinned(open_root, (open_inter, inter_private))
    expired_inter = _issue("Old Intermediate", inter_private, open_root.subject, open_private, ca=True, days=(-400, -1))
    assert not _pinned(open_root, (expired_inter, inter_private))
