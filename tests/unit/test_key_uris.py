"""keys by URI: RFC 7512 pkcs11: URIs, references in the key store, the securesystemslib dispatch
for each scheme, PINs, and signing with a real SoftHSM2 token in this process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from trustkit.errors import (
    KeyFormatError,
    KeyNotFoundError,
    PassphraseError,
    PassphraseUnavailableError,
)
from trustkit.keys import EnvPassphrases, KeyStore, load_public_pem
from trustkit.keys.passphrase import PIN_ENV, PassphraseRequest
from trustkit.keys.store import REF_SUFFIX, load_reference
from trustkit.keys.uri import KeyReference, Pkcs11URI, is_key_uri, redact, scheme_of

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "135790"

# ---- URIs


def test_rfc7512_uri_as_openssl_and_cosign_write_it():
    uri = Pkcs11URI.parse(
        "pkcs11:token=My%20Token;object=root%20key;id=%01%a2;slot-id=0"
        "?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=1234"
    )
    assert uri.token == "My Token" and uri.object == "root key" and uri.key_id == b"\x01\xa2"
    assert uri.module_path == MODULE
    assert uri.pin_from_uri() == ("1234", "the URI's pin-value")
    kept = uri.without_pin()
    assert "pin" not in kept and Pkcs11URI.parse(kept).key_id == b"\x01\xa2"
    assert Pkcs11URI.parse(kept).without_pin() == kept  # stable
    assert redact("pkcs11:object=a?pin-value=9&module-path=/m.so") == "pkcs11:object=a?module-path=/m.so"
    assert redact("awskms:arn:aws:kms:us-east-1:1:key/abc") == "awskms:arn:aws:kms:us-east-1:1:key/abc"


@pytest.mark.parametrize(
    ("text", "scheme"),
    [
        ("pkcs11:object=a", "pkcs11"),
        ("PKCS11:object=a", "pkcs11"),
        ("awskms:1234abcd-12ab", "awskms"),
        ("gcpkms:projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1", "gcpkms"),
        ("azurekms://v.vault.azure.net/keys/k/1", "azurekms"),
        ("hv:mykey/1", "hv"),
        ("0123abcd", None),
        ("./alice.key", None),
        ("file:alice.key", None),
        ("hsm:2", None),  # securesystemslib's own scheme: trustkit's pkcs11: names module and labels
    ],
)
def test_key_uri_schemes(text, scheme):
    assert scheme_of(text) == scheme and is_key_uri(text) == (scheme is not None)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("pkcs11:token=t", "must name the key"),
        ("pkcs11:object=a;object=b", "repeated"),
        ("pkcs11:object=a;colour=red", 'unknown path attribute "colour"'),
        ("pkcs11:object=a?module-path=/m.so&pin-value=1&pin-source=/p", "either pin-value or pin-source"),
        ("pkcs11:object=a?evil=1", 'unknown query attribute "evil"'),
        ("pkcs11:object", "malformed"),
        ("awskms:x", "not a pkcs11: URI"),
    ],
)
def test_malformed_pkcs11_uris_are_refused(uri, message):
    with pytest.raises(KeyFormatError, match=message):
        Pkcs11URI.parse(uri)


def test_module_path_from_the_uri_else_the_environment(monkeypatch):
    monkeypatch.delenv("PYKCS11LIB", raising=False)
    with pytest.raises(KeyFormatError, match="names no PKCS#11 module") as err:
        _ = Pkcs11URI.parse("pkcs11:token=t;object=k").module_path
    assert "module-path" in (err.value.hint or "") and "PYKCS11LIB" in (err.value.hint or "")
    monkeypatch.setenv("PYKCS11LIB", "/opt/p11.so")
    assert Pkcs11URI.parse("pkcs11:token=t;object=k").module_path == "/opt/p11.so"


def test_pin_source_is_read_bounded(tmp_path):
    pin_file = tmp_path / "pin"
    pin_file.write_text("4321\n")
    assert Pkcs11URI.parse(f"pkcs11:object=k?pin-source={pin_file}").pin_from_uri() == (
        "4321",
        f"pin-source {pin_file}",
    )
    assert Pkcs11URI.parse(f"pkcs11:object=k?pin-source=file:{pin_file}").pin_from_uri()[0] == "4321"
    with pytest.raises(PassphraseError, match="cannot read the PIN"):
        Pkcs11URI.parse(f"pkcs11:object=k?pin-source={tmp_path / 'none'}").pin_from_uri()
    pin_file.write_bytes(b"1" * 10_000)
    with pytest.raises(PassphraseError, match="larger than"):
        Pkcs11URI.parse(f"pkcs11:object=k?pin-source={pin_file}").pin_from_uri()
    assert Pkcs11URI.parse("pkcs11:object=k").pin_from_uri() is None


# ---- PINs through the passphrase machinery


def test_pin_comes_from_its_own_variable_never_a_passphrase():
    request = PassphraseRequest("root", None, "ab" * 32, False, token="admin")
    assert request.secret == "PIN" and 'token "admin"' in request.description
    env = {"DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE": "not-a-pin", PIN_ENV: "9876"}
    assert EnvPassphrases(env)(request) == "9876"
    with pytest.raises(PassphraseError, match=f"the PIN in {PIN_ENV} does not log in"):
        EnvPassphrases(env)(PassphraseRequest("root", None, "", False, 2, token="admin"))
    asked = []
    assert EnvPassphrases({}, fallback=lambda r: asked.append(r) or "1111")(request) == "1111"
    assert asked == [request]
    with pytest.raises(PassphraseUnavailableError) as err:
        EnvPassphrases({"DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE": "x"})(request)
    assert PIN_ENV in (err.value.hint or "") and "pin-source" in (err.value.hint or "")


# ---- securesystemslib dispatch


def test_every_scheme_reaches_its_securesystemslib_signer():
    from securesystemslib.signer import AWSSigner, AzureSigner, GCPSigner, VaultSigner

    from trustkit.keys.hsm import Pkcs11Signer
    from trustkit.keys.uri import _registered_schemes

    table = _registered_schemes()
    assert table["pkcs11"] is Pkcs11Signer
    assert (table["awskms"], table["gcpkms"], table["azurekms"], table["hv"]) == (
        AWSSigner,
        GCPSigner,
        AzureSigner,
        VaultSigner,
    )


def _reference(scheme_uri: str, tmp_path: Path) -> KeyReference:
    from trustkit.keys.signer import CryptoSigner, generate

    return KeyReference(scheme_uri, CryptoSigner(generate("ecdsa")).public_key, "alice", None)


@pytest.mark.parametrize(
    ("uri", "extra"),
    [
        ("gcpkms:projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1", "gcpkms"),
        ("azurekms://v.vault.azure.net/keys/k/1", "azurekms"),
        ("hv:mykey/1", "vault"),
    ],
)
def test_kms_without_its_sdk_names_the_extra_to_install(uri, extra, tmp_path):
    """The URI goes through securesystemslib's signer for its scheme, which needs the cloud SDK
    (not installed here): the error names the trustkit extra that brings it."""
    from trustkit.keys.uri import import_key, open_signer

    with pytest.raises(KeyFormatError) as err:
        open_signer(_reference(uri, tmp_path))
    assert err.value.hint == f"pip install 'trustkit[{extra}]'"
    with pytest.raises(KeyFormatError) as err:
        import_key(uri)
    assert err.value.hint == f"pip install 'trustkit[{extra}]'"


def test_azure_uri_shape_is_checked_before_the_sdk():
    from trustkit.keys.uri import import_key

    with pytest.raises(KeyFormatError, match="azurekms://<vault>"):
        import_key("azurekms://example.com/secrets/x")


# ---- SoftHSM2 in this process


@pytest.fixture(scope="module")
def softhsm(tmp_path_factory):
    """One SoftHSM2 for the module (a PKCS#11 module reads its config once per initialisation):
    token "unit" with an EC P-256 key "ec" and an RSA-2048 key "rsa", made by the token."""
    import pkcs11

    for tool in ("softhsm2-util", "pkcs11-tool"):
        assert shutil.which(tool), f"{tool} is missing: apt-get install -y softhsm2 opensc (./dev test does)"
    folder = tmp_path_factory.mktemp("softhsm")
    (folder / "tokens").mkdir()
    conf = folder / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {folder / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}

    def run(*argv):
        subprocess.run(argv, env=env, check=True, capture_output=True, timeout=60)

    run("softhsm2-util", "--init-token", "--free", "--label", "unit", "--so-pin", "24681357", "--pin", PIN)
    for label, key_id, key_type in (("ec", "01", "EC:prime256v1"), ("rsa", "02", "rsa:2048")):
        run(
            "pkcs11-tool", "--module", MODULE, "--token-label", "unit", "--login", "--pin", PIN,
            "--keypairgen", "--key-type", key_type, "--label", label, "--id", key_id,
        )  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOFTHSM2_CONF", str(conf))
        from trustkit.keys.hsm import _on_token_thread

        _on_token_thread(lambda: pkcs11.lib(MODULE).reinitialize())  # read this config
        yield f"pkcs11:token=unit;object={{}}?module-path={MODULE}"


def _store(tmp_path, pin=PIN, env=None):
    return KeyStore(tmp_path / "trust", EnvPassphrases({PIN_ENV: pin} if env is None else env))


@pytest.mark.parametrize(("label", "method"), [("ec", "ecdsa"), ("rsa", "rsapss")])
def test_token_keys_make_notary_signatures(softhsm, tmp_path, label, method):
    store = _store(tmp_path)
    stored = store.add_reference(softhsm.format(label), role="alice")
    assert stored.is_reference and stored.where == 'pkcs11 token "unit"' and stored.path.suffix == REF_SUFFIX
    signer, info = store.signer(stored.keyid[:10])  # unique prefixes work as for files
    assert info == stored and signer.public_key.keyid == stored.keyid and signer.method == method
    sig = signer.sign(b"signed metadata")
    if method == "ecdsa":
        assert len(sig) == 64  # r||s, not DER
    assert signer.public_key.verify(method, b"signed metadata", sig)
    assert not signer.public_key.verify(method, b"other", sig)


def test_reference_keeps_no_secret_and_the_store_lists_it(softhsm, tmp_path):
    store = _store(tmp_path)
    stored, pub = load_reference(
        store, softhsm.format("ec") + f"&pin-value={PIN}", "root", pub_dir=tmp_path, gun="docker.io/a/b"
    )
    text = stored.path.read_text()
    assert PIN not in text and "pin-value" not in text and "PRIVATE" not in text
    data = json.loads(text)
    assert data["role"] == "root" and data["gun"] is None  # notary keeps no GUN on root keys
    assert pub is not None and load_public_pem(pub.read_text()) == store.read_reference(stored.path).public
    assert [k.keyid for k in store.list()] == [stored.keyid]
    assert oct(stored.path.stat().st_mode & 0o777) == "0o600"
    with pytest.raises(KeyFormatError, match="no key file to open"):
        store.load(stored.keyid)
    with pytest.raises(KeyFormatError, match="never leaves it"):
        store.export(stored.keyid)
    # the pin-value given this run is used by this process, never asked again
    assert _store_with_no_pin(store).signer(stored.keyid)[0].sign(b"x")
    # A later process has only the stored URI: no PIN in the environment, no terminal.
    with pytest.raises(PassphraseUnavailableError, match='no PIN for token "unit"'):
        _store(tmp_path, env={}).signer(stored.keyid)


def _store_with_no_pin(store):
    store.passphrases = EnvPassphrases({})
    return store


def test_resolve_registers_a_uri_once_and_finds_it_again(softhsm, tmp_path):
    store = _store(tmp_path)
    first = store.resolve(softhsm.format("ec"), role="targets", gun="docker.io/a/b")
    again = store.resolve(softhsm.format("ec") + f"&pin-value={PIN}", role="targets", gun="docker.io/a/b")
    assert first == again and len(store.list()) == 1
    assert store.list()[0].gun == "docker.io/a/b"
    assert store.resolve(first[:12], role="targets") == first


def test_wrong_pin_missing_key_and_token_are_named(softhsm, tmp_path):
    with pytest.raises(PassphraseError, match=f"the PIN in {PIN_ENV} does not log in"):
        _store(tmp_path, pin="000000").add_reference(softhsm.format("ec"), role="x")
    with pytest.raises(KeyNotFoundError, match='object "nope" on token "unit"'):
        _store(tmp_path).add_reference(softhsm.format("nope"), role="x")
    with pytest.raises(KeyNotFoundError, match='no token "gone"') as err:
        _store(tmp_path).add_reference(softhsm.format("ec").replace("token=unit", "token=gone"), role="x")
    assert '"unit"' in (err.value.hint or "")
    with pytest.raises(KeyNotFoundError, match="cannot load the PKCS#11 module /no/such.so"):
        _store(tmp_path).add_reference(softhsm.format("ec").replace(MODULE, "/no/such.so"), role="x")
    assert not (tmp_path / "trust" / "private").exists() or not list((tmp_path / "trust" / "private").iterdir())


def test_prompted_pin_gets_three_attempts(softhsm, tmp_path):
    answers = iter(["1", "2", PIN])
    asked = []

    def prompt(request):
        asked.append((request.secret, request.attempt))
        return next(answers)

    store = KeyStore(tmp_path / "trust", EnvPassphrases({}, fallback=prompt))
    store.add_reference(softhsm.format("ec"), role="alice")
    assert asked == [("PIN", 1), ("PIN", 2), ("PIN", 3)]
    answers = iter(["1", "2", "3"])
    asked.clear()
    with pytest.raises(PassphraseError, match="wrong PIN"):
        KeyStore(tmp_path / "t2", EnvPassphrases({}, fallback=prompt)).add_reference(softhsm.format("rsa"), role="x")
    assert len(asked) == 3


def test_tampered_reference_is_skipped_and_refused(softhsm, tmp_path):
    store = _store(tmp_path)
    stored = store.add_reference(softhsm.format("ec"), role="alice")
    other = store.add_reference(softhsm.format("rsa"), role="bob")
    data = json.loads(other.path.read_text())
    stored.path.write_text(json.dumps(data))  # bob's key under alice's key ID
    assert [k.keyid for k in store.list()] == [other.keyid]
    with pytest.raises(KeyFormatError, match="not its file name's"):
        store.signer(stored.keyid)
    stored.path.write_text('{"uri": "file:/etc/passwd", "public_key": "x", "role": "alice"}')
    assert [k.keyid for k in store.list()] == [other.keyid]


def test_a_token_key_file_and_reference_of_one_key_are_not_both_kept(softhsm, tmp_path):
    store = _store(tmp_path)
    stored = store.add_reference(softhsm.format("ec"), role="alice")
    stored.path.rename(stored.path.with_suffix(".key"))  # as if a key file of that key were there
    with pytest.raises(KeyFormatError, match="already holds key"):
        store.add_reference(softhsm.format("ec"), role="alice")
