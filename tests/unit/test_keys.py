"""keys: notary key files, key IDs, certificates, signers, the store and passphrase sources."""

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from trustkit.errors import KeyFormatError, KeyNotFoundError, PassphraseError, PassphraseUnavailableError
from trustkit.keys import CryptoSigner, EnvPassphrases, KeyStore, PublicKey, SSLibSigner, der, generate, load_public_pem
from trustkit.keys.certs import cn_matches_gun, root_certificate, root_key_for
from trustkit.keys.passphrase import PassphraseRequest
from trustkit.keys.pkcs8 import (
    OID_ED25519_NOTARY,
    decrypt,
    encode_key_file,
    load_private_key_block,
    private_key_info,
)
from trustkit.keys.store import generate_key, import_key, validate_key_name

PASS = "test-passphrase"
ALGORITHMS = ["ecdsa", "ed25519", "rsa"]


@pytest.fixture(scope="module")
def keys():
    return {alg: generate(alg, rsa_bits=2048) for alg in ALGORITHMS}


def fixed(passphrase=PASS):
    return lambda request: passphrase


# ---- key files


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_key_file_round_trip(keys, alg):
    text = encode_key_file(keys[alg], role="targets", gun="docker.io/library/app", passphrase=PASS)
    block = der.parse_pem(text)[0]
    assert block.type == "ENCRYPTED PRIVATE KEY"
    assert text.splitlines()[1:4] == ["gun: docker.io/library/app", "role: targets", ""]  # sorted headers
    assert all(len(line) <= 64 for line in text.splitlines()[4:-1])
    loaded = load_private_key_block(block, PASS)
    assert CryptoSigner(loaded).public_key == CryptoSigner(keys[alg]).public_key


def test_notary_pbes2_parameters(keys):
    block = der.parse_pem(encode_key_file(keys["ecdsa"], role="root", gun=None, passphrase=PASS))[0]
    assert "gun" not in block.headers
    _, outer, _ = der.read_tlv(block.der)
    alg = der.read_children(der.read_children(outer)[0][1])
    kdf, cipher = der.read_children(alg[1][1])
    kdf_params = der.read_children(der.read_children(kdf[1])[1][1])
    assert len(kdf_params[0][1]) == 8  # 8-byte salt
    assert int.from_bytes(kdf_params[1][1], "big") == 2048
    assert len(kdf_params) == 2  # PRF omitted: HMAC-SHA1; key length omitted
    assert der.decode_oid(der.read_children(cipher[1])[0][1]) == "2.16.840.1.101.3.4.1.42"


def test_notary_inner_encodings(keys):
    ec_info = der.read_children(der.read_tlv(private_key_info(keys["ecdsa"]))[1])
    assert ec_info[0][1] == b"\x01"  # EC PrivateKeyInfo version 1, as notary writes
    rsa_alg = der.read_children(der.read_children(der.read_tlv(private_key_info(keys["rsa"]))[1])[1][1])
    assert len(rsa_alg) == 1  # no NULL parameter
    ed_info = der.read_children(der.read_tlv(private_key_info(keys["ed25519"]))[1])
    assert der.decode_oid(der.read_children(ed_info[1][1])[0][1]) == OID_ED25519_NOTARY
    assert len(ed_info[2][1]) == 96


def test_pyca_cannot_read_notary_ec_but_we_can(keys):
    info = private_key_info(keys["ecdsa"])
    with pytest.raises(ValueError):
        serialization.load_der_private_key(info, None)
    assert load_private_key_block(der.PemBlock("PRIVATE KEY", info), None)


def test_openssl_style_encrypted_pkcs8_is_read(keys):
    pem = keys["ecdsa"].private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(PASS.encode()),
    )
    key = load_private_key_block(der.parse_pem(pem)[0], PASS)
    assert CryptoSigner(key).public_key == CryptoSigner(keys["ecdsa"]).public_key


@pytest.mark.parametrize("fmt", [serialization.PrivateFormat.TraditionalOpenSSL, serialization.PrivateFormat.PKCS8])
@pytest.mark.parametrize("alg", ["ecdsa", "rsa"])
@pytest.mark.parametrize("encrypted", [False, True])
def test_any_pem_private_key_loads(keys, fmt, alg, encrypted):
    encryption = serialization.BestAvailableEncryption(PASS.encode()) if encrypted else serialization.NoEncryption()
    pem = keys[alg].private_bytes(serialization.Encoding.PEM, fmt, encryption)
    key = load_private_key_block(der.parse_pem(pem)[0], PASS if encrypted else None)
    assert CryptoSigner(key).public_key == CryptoSigner(keys[alg]).public_key


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_wrong_passphrase_is_its_own_error(keys, alg):
    block = der.parse_pem(encode_key_file(keys[alg], role="targets", gun="g", passphrase=PASS))[0]
    for wrong in ("wrong", "", PASS + "x"):
        with pytest.raises(PassphraseError):
            load_private_key_block(block, wrong)


@settings(max_examples=30, deadline=None)
@given(st.text(min_size=1, max_size=30))
def test_any_passphrase_round_trips(passphrase):
    key = ec.generate_private_key(ec.SECP256R1())
    block = der.parse_pem(encode_key_file(key, role="r", gun=None, passphrase=passphrase))[0]
    assert decrypt(block.der, passphrase)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"garbage", "no PEM block"),
        (b"\xff\xfe", "not a PEM text file"),
        (b"-----BEGIN PRIVATE KEY-----\nMIIB\n", "truncated"),
        (b"-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n", "not valid base64"),
        (b"-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n", "not a PKCS#8"),
    ],
)
def test_bad_pem_is_refused(tmp_path, text, message):
    store = KeyStore(tmp_path, fixed())
    with pytest.raises(KeyFormatError, match=message):
        import_key(store, text)
    assert not (tmp_path / "private").exists() or not list((tmp_path / "private").iterdir())


def test_wrong_type_pem_names_what_it_found(tmp_path, keys):
    cert = root_certificate(keys["ecdsa"], "docker.io/a/b").public_bytes(serialization.Encoding.PEM)
    with pytest.raises(KeyFormatError, match="no private key .found CERTIFICATE"):
        import_key(KeyStore(tmp_path, fixed()), cert)


def test_small_rsa_and_odd_curves_are_refused(tmp_path):
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - must be refused
    pem = small.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(KeyFormatError, match="at least 2048"):
        import_key(KeyStore(tmp_path, fixed()), pem)
    k1 = ec.generate_private_key(ec.SECP256K1())
    pem = k1.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with pytest.raises(KeyFormatError):
        import_key(KeyStore(tmp_path, fixed()), pem)


# ---- public keys and IDs


def test_key_id_of_server_key_from_the_wire_spec():
    key = PublicKey("ed25519", "bKoipugbiegvy0EO1tkpDZvefeF8wkEWGq5ZglC/ptU=")
    assert key.keyid == "cf4b4af33e222832ea62205be6f2ff3cd3b73b55f436d98f0207e1c875ef6db3"


def test_certificate_and_canonical_ids(keys):
    cert_key = root_key_for(keys["ecdsa"], "docker.io/library/app")
    bare = CryptoSigner(keys["ecdsa"]).public_key
    assert cert_key.keytype == "ecdsa-x509"
    assert cert_key.keyid != bare.keyid
    assert cert_key.canonical_id == bare.keyid
    assert cert_key.bare == bare
    assert PublicKey.from_dict(cert_key.to_dict()) == cert_key


def test_root_certificate_follows_notary(keys):
    now = datetime(2026, 11, 26, tzinfo=UTC)
    cert = root_certificate(keys["ecdsa"], "docker.io/library/app", now=now)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(days=3650)
    assert cn_matches_gun(cert, "docker.io/library/app")
    assert not cn_matches_gun(cert, "docker.io/library/other")
    with pytest.raises(KeyFormatError):
        root_certificate(keys["ed25519"], "docker.io/a/b")


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_sign_and_verify_each_method(keys, alg):
    signer = CryptoSigner(keys[alg])
    sig = signer.sign(b"message")
    assert signer.method == {"ecdsa": "ecdsa", "ed25519": "eddsa", "rsa": "rsapss"}[alg]
    assert signer.public_key.verify(signer.method, b"message", sig)
    assert not signer.public_key.verify(signer.method, b"other", sig)
    # A method that does not belong to the key type never verifies (CVE-2015-9258).
    for method in {"ecdsa", "eddsa", "rsapss", "rsapkcs1v15"} - {signer.method, "rsapkcs1v15"}:
        assert not signer.public_key.verify(method, b"message", sig)


def test_ecdsa_signature_must_be_raw_64_bytes(keys):
    from cryptography.hazmat.primitives import hashes

    signer = CryptoSigner(keys["ecdsa"])
    der_sig = keys["ecdsa"].sign(b"m", ec.ECDSA(hashes.SHA256()))
    assert not signer.public_key.verify("ecdsa", b"m", der_sig)
    assert len(signer.sign(b"m")) == 64


def test_root_certificate_key_verifies_the_root_keys_signature(keys):
    cert_key = root_key_for(keys["ecdsa"], "g/x")
    assert cert_key.verify("ecdsa", b"m", CryptoSigner(keys["ecdsa"]).sign(b"m"))


def test_sslib_signer_adapter_makes_notary_signatures():
    from securesystemslib.signer import CryptoSigner as SSLibCryptoSigner

    private = ec.generate_private_key(ec.SECP256R1())
    adapter = SSLibSigner(SSLibCryptoSigner(private))
    assert adapter.public_key == CryptoSigner(private).public_key
    sig = adapter.sign(b"payload")
    assert len(sig) == 64 and adapter.method == "ecdsa"
    assert adapter.public_key.verify("ecdsa", b"payload", sig)


def test_sslib_signer_refuses_a_signature_that_does_not_verify():
    """A token or KMS that signs with another key (or another hash) fails, naming the key."""
    from securesystemslib.signer import CryptoSigner as SSLibCryptoSigner
    from securesystemslib.signer import Signer as SSLibBase

    class WrongKey(SSLibBase):  # names one key, signs with another (a misconfigured KMS alias)
        public_key = SSLibCryptoSigner(ec.generate_private_key(ec.SECP256R1())).public_key
        _inner = SSLibCryptoSigner(ec.generate_private_key(ec.SECP256R1()))

        def sign(self, payload):
            return self._inner.sign(payload)

        @classmethod
        def from_priv_key_uri(cls, priv_key_uri, public_key, secrets_handler=None):
            raise NotImplementedError

    adapter = SSLibSigner(WrongKey(), where="test KMS key")
    with pytest.raises(KeyFormatError, match="made by test KMS key does not verify"):
        adapter.sign(b"payload")


def test_sslib_signer_refuses_schemes_notary_cannot_verify():
    from securesystemslib.signer import CryptoSigner as SSLibCryptoSigner

    with pytest.raises(KeyFormatError, match="nistp384"):  # notary's ecdsa hashes with SHA-256
        SSLibSigner(SSLibCryptoSigner(ec.generate_private_key(ec.SECP384R1())))


@pytest.mark.parametrize("alg", ["ecdsa", "rsa"])
def test_root_certificate_signed_through_a_signer_without_a_private_key_object(keys, alg):
    """A key in a token or KMS signs its root certificate through the Signer interface: the
    certificate carries its public key, verifies, and keeps notary's fields."""
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.x509.oid import SignatureAlgorithmOID
    from securesystemslib.signer import CryptoSigner as SSLibCryptoSigner

    adapter = SSLibSigner(SSLibCryptoSigner(keys[alg]))  # no .private_key to reach into
    assert not hasattr(adapter, "private_key")
    now = datetime(2026, 11, 26, tzinfo=UTC)
    cert = root_certificate(adapter, "docker.io/library/app", now=now)
    cert.verify_directly_issued_by(cert)
    assert PublicKey.from_crypto(cert.public_key()) == adapter.public_key
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(days=3650)
    assert cn_matches_gun(cert, "docker.io/library/app")
    if alg == "ecdsa":
        assert cert.signature_algorithm_oid == SignatureAlgorithmOID.ECDSA_WITH_SHA256
    else:  # RSA keys sign RSA-PSS (SHA-256, 32-byte salt), the only RSA signature they make
        assert cert.signature_algorithm_oid == SignatureAlgorithmOID.RSASSA_PSS
        assert isinstance(cert.signature_algorithm_parameters, padding.PSS)
    cert_key = root_key_for(adapter, "docker.io/library/app", now=now)
    assert cert_key.canonical_id == adapter.public_key.keyid
    assert cert_key.verify(adapter.method, b"m", adapter.sign(b"m"))


def test_a_signer_whose_certificate_signature_does_not_verify_is_refused(keys):
    from trustkit.keys.signer import Signer

    class Liar(Signer):  # signs with another key than the one it names
        public_key = CryptoSigner(keys["ecdsa"]).public_key

        def sign(self, message: bytes) -> bytes:
            return CryptoSigner(generate("ecdsa")).sign(message)

    with pytest.raises(KeyFormatError, match="does not verify"):
        root_certificate(Liar(), "g/x")


@pytest.mark.parametrize(
    "data",
    [
        {"keytype": "ecdsa"},
        {"keytype": "ecdsa", "keyval": {"public": "AA=="}},
        {"keytype": "ecdsa", "keyval": {"private": "x", "public": "AA=="}},
        {"keytype": 1, "keyval": {"private": None, "public": "AA=="}},
        {"keytype": "ecdsa", "keyval": {"private": None, "public": "AA=="}, "scheme": "x"},
    ],
)
def test_malformed_key_objects(data):
    from trustkit.errors import MetadataError

    with pytest.raises(MetadataError):
        PublicKey.from_dict(data)


def test_unusable_public_keys_never_verify():
    assert not PublicKey("ed25519", "AAAA").verify("eddsa", b"m", b"\0" * 64)  # wrong length
    assert not PublicKey("unknown", "AAAA").verify("ecdsa", b"m", b"\0" * 64)
    assert not PublicKey("ecdsa", "not base64!").verify("ecdsa", b"m", b"\0" * 64)


def test_load_public_pem_accepts_docker_pub_and_certificates(tmp_path, keys):
    store = KeyStore(tmp_path, fixed())
    stored, pub = generate_key(store, "alice", pub_dir=tmp_path)
    public = load_public_pem(pub.read_bytes())
    assert public.keyid == stored.keyid
    cert = root_certificate(keys["ecdsa"], "x").public_bytes(serialization.Encoding.PEM)
    assert load_public_pem(cert).keytype == "ecdsa-x509"
    with pytest.raises(KeyFormatError):
        load_public_pem(encode_key_file(keys["ecdsa"], role="r", gun=None, passphrase=PASS))


# ---- the store


def test_store_layout_modes_and_headers(tmp_path, keys):
    store = KeyStore(tmp_path / "trust", fixed())
    stored = store.add(keys["ecdsa"], role="targets", gun="docker.io/a/b")
    assert stored.path == tmp_path / "trust" / "private" / f"{stored.keyid}.key"
    assert stat.S_IMODE(stored.path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "trust" / "private").stat().st_mode) == 0o700
    assert stored.gun == "docker.io/a/b" and stored.role == "targets" and stored.algorithm == "ecdsa"
    # gun only for repository keys
    assert store.add(keys["rsa"], role="root", gun="docker.io/a/b").gun is None
    assert store.add(keys["ed25519"], role="alice", gun="docker.io/a/b").gun is None
    listed = {k.keyid: k.algorithm for k in store.list()}
    assert sorted(listed.values()) == ["ecdsa", "ed25519", "rsa"]


def test_store_load_retries_then_fails(tmp_path, keys):
    store = KeyStore(tmp_path, fixed())
    stored = store.add(keys["ecdsa"], role="targets", gun="g")
    asked = []

    def wrong(request):
        asked.append(request.attempt)
        return "nope"

    with pytest.raises(PassphraseError, match="wrong passphrase"):
        KeyStore(tmp_path, wrong).load(stored.keyid)
    assert asked == [1, 2, 3]
    signer, info = store.load(stored.keyid[:10])  # unique prefixes work
    assert info.keyid == stored.keyid


def test_store_missing_key(tmp_path):
    with pytest.raises(KeyNotFoundError):
        KeyStore(tmp_path, fixed()).load("ab" * 32)


def test_atomic_write_leaves_no_partial_file(tmp_path, keys, monkeypatch):
    store = KeyStore(tmp_path, fixed())

    def boom(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        store.add(keys["ecdsa"], role="targets", gun="g")
    assert list((tmp_path / "private").iterdir()) == []


def test_change_passphrase(tmp_path, keys):
    store = KeyStore(tmp_path, fixed())
    stored = store.add(keys["ecdsa"], role="targets", gun="g")
    store.change_passphrase(stored.keyid, "new-passphrase")
    with pytest.raises(PassphraseError):
        store.load(stored.keyid)
    assert KeyStore(tmp_path, fixed("new-passphrase")).load(stored.keyid)


def test_generate_key_writes_docker_pub_and_rolls_back(tmp_path):
    store = KeyStore(tmp_path, fixed())
    stored, pub = generate_key(store, "alice", pub_dir=tmp_path)
    assert pub.read_text().startswith("-----BEGIN PUBLIC KEY-----\nrole: alice\n\n")
    with pytest.raises(KeyFormatError, match="already exists"):
        generate_key(store, "alice", pub_dir=tmp_path)
    assert len(store.list()) == 1


@pytest.mark.parametrize("name", ["", "Alice", "-x", "a b", "targets/../x", "a" * 256, "x/y"])
def test_invalid_key_names(name):
    with pytest.raises(KeyFormatError):
        validate_key_name(name)


@pytest.mark.parametrize("name", ["alice", "ci_bot-2", "targets", "targets/releases", "root"])
def test_valid_key_names(name):
    assert validate_key_name(name) == name


# ---- passphrase sources


@pytest.mark.parametrize(
    ("role", "env", "value"),
    [
        ("root", {"DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE": "d", "NOTARY_ROOT_PASSPHRASE": "n"}, "d"),
        ("root", {"NOTARY_ROOT_PASSPHRASE": "n"}, "n"),
        ("targets", {"NOTARY_TARGETS_PASSPHRASE": "t"}, "t"),
        ("targets", {"DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE": "r"}, "r"),
        ("snapshot", {"NOTARY_SNAPSHOT_PASSPHRASE": "s"}, "s"),
        ("targets/releases", {"NOTARY_DELEGATION_PASSPHRASE": "x"}, "x"),
        ("alice", {"DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE": "r"}, "r"),
    ],
)
def test_env_passphrases(role, env, value):
    assert EnvPassphrases(env)(PassphraseRequest(role, None, "ab" * 32, False)) == value


def test_env_passphrase_missing_names_the_variable():
    with pytest.raises(PassphraseUnavailableError, match="DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE"):
        EnvPassphrases({})(PassphraseRequest("root", None, "ab" * 32, False))
    with pytest.raises(PassphraseError, match="NOTARY_TARGETS_PASSPHRASE"):
        EnvPassphrases({"NOTARY_TARGETS_PASSPHRASE": "x"})(PassphraseRequest("targets", "g", "ab" * 32, False, 2))


def test_env_passphrase_falls_back_to_prompt():
    source = EnvPassphrases({}, fallback=lambda request: "typed")
    assert source(PassphraseRequest("root", None, "ab" * 32, True)) == "typed"


def test_import_encrypted_key_keeps_its_passphrase(tmp_path, keys):
    pem = keys["ecdsa"].private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.BestAvailableEncryption(PASS.encode()),
    )
    store = KeyStore(tmp_path, fixed())
    stored = import_key(store, pem, name="ci")
    assert stored.role == "ci"
    assert store.load(stored.keyid)[0].public_key == CryptoSigner(keys["ecdsa"]).public_key
    Path(tmp_path)  # keep linters quiet about the import
