"""trustkit.keys.certs.verified_chain: the one strict X.509 chain walk (issue 14 item 7).

Registry-token x5c chains, trust pinning to a CA and client bundles all go through it, so each
rule is held here once; test_server_auth, test_trust_pinning and test_bundle_openssl hold that
each caller uses it.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from trustkit.errors import KeyFormatError
from trustkit.keys.certs import MAX_CHAIN_LENGTH, verified_chain

NOW = datetime(2026, 11, 26, tzinfo=UTC)


def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def cert(
    subject: str,
    subject_key,
    issuer: x509.Certificate | None = None,
    issuer_key=None,
    *,
    ca: bool = False,
    path_length: int | None = None,
    constraints: bool = True,
    critical: bool = True,
    days: tuple[int, int] = (-1, 30),
    extensions: tuple[tuple[x509.ExtensionType, bool], ...] = (),
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(subject_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW + timedelta(days=days[0]))
        .not_valid_after(NOW + timedelta(days=days[1]))
    )
    if constraints:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=critical
        )
    for extension, is_critical in extensions:
        builder = builder.add_extension(extension, critical=is_critical)
    signer = issuer_key or subject_key
    return builder.sign(signer, None if isinstance(signer, ed25519.Ed25519PrivateKey) else hashes.SHA256())


def refused(
    leaf: x509.Certificate, intermediates: list[x509.Certificate], anchors: list[x509.Certificate], now: datetime = NOW
) -> str:
    with pytest.raises(KeyFormatError) as caught:
        verified_chain(leaf, intermediates, anchors, now=now)
    return caught.value.message


def usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


@pytest.fixture(scope="module")
def pki():
    root_key, inter_key, leaf_key = key(), key(), key()
    root = cert("Root CA", root_key, ca=True, path_length=1)
    inter = cert("Intermediate CA", inter_key, root, root_key, ca=True, path_length=0)
    leaf = cert("signer", leaf_key, inter, inter_key)
    return {
        "root": root,
        "root_key": root_key,
        "inter": inter,
        "inter_key": inter_key,
        "leaf": leaf,
        "leaf_key": leaf_key,
    }


def test_a_chain_through_an_intermediate_is_returned_leaf_first(pki) -> None:
    chain = verified_chain(pki["leaf"], [pki["inter"]], [pki["root"]], now=NOW)
    assert chain == [pki["leaf"], pki["inter"], pki["root"]]
    assert "another CA, or an intermediate CA is missing" in refused(pki["leaf"], [], [pki["root"]])
    other_root = cert("Root CA", key(), ca=True)  # same name, another key
    assert "signature does not match" in refused(pki["leaf"], [pki["inter"]], [other_root])


def test_a_leaf_that_is_an_anchor_is_its_own_chain() -> None:
    signer_key = key()
    signer = cert("token signer", signer_key)  # not a CA: it may stand for itself, never issue
    assert verified_chain(signer, [], [signer], now=NOW) == [signer]
    assert refused(cert("other", key(), signer, signer_key), [], [signer])


def test_every_issuer_must_be_a_ca_within_its_path_length(pki) -> None:
    root_key = pki["root_key"]
    not_a_ca = cert("Not a CA", root_key)
    assert "cA must be asserted" in refused(cert("signer", key(), not_a_ca, root_key), [], [not_a_ca])
    no_constraints = cert("No constraints", root_key, constraints=False)
    assert refused(cert("signer", key(), no_constraints, root_key), [], [no_constraints])
    # an intermediate that is not a CA, under a good root
    fake_inter_key = key()
    fake_inter = cert("Fake Intermediate", fake_inter_key, pki["root"], root_key)
    assert refused(cert("signer", key(), fake_inter, fake_inter_key), [fake_inter], [pki["root"]])
    # path length 0 on the root: no intermediate below it
    strict_root = cert("Strict Root", root_key, ca=True, path_length=0)
    inter_key = key()
    inter = cert("Intermediate", inter_key, strict_root, root_key, ca=True)
    assert "path length" in refused(cert("signer", key(), inter, inter_key), [inter], [strict_root])
    # path length 0 on the intermediate: it may issue leaves, not CAs
    sub_key = key()
    sub = cert("Sub CA", sub_key, pki["inter"], pki["inter_key"], ca=True)
    assert "path length" in refused(cert("signer", key(), sub, sub_key), [sub, pki["inter"]], [pki["root"]])


def test_a_ca_with_a_key_usage_must_allow_certificate_signing() -> None:
    root_key = key()
    no_cert_sign = cert("Root", root_key, ca=True, extensions=((usage(cert_sign=False), True),))
    assert "keyCertSign" in refused(cert("signer", key(), no_cert_sign, root_key), [], [no_cert_sign])
    cert_sign = cert("Root", root_key, ca=True, extensions=((usage(cert_sign=True), True),))
    verified_chain(cert("signer", key(), cert_sign, root_key), [], [cert_sign], now=NOW)


def test_basic_constraints_need_not_be_marked_critical_as_go_reads_them() -> None:
    root_key = key()
    root = cert("Root", root_key, ca=True, critical=False)
    leaf = cert("signer", key(), root, root_key)
    assert verified_chain(leaf, [], [root], now=NOW)[-1] == root
    not_a_ca = cert("Root", root_key, critical=False)
    assert refused(cert("signer", key(), not_a_ca, root_key), [], [not_a_ca])


def test_every_certificate_is_valid_at_the_given_time(pki) -> None:
    chain = ([pki["inter"]], [pki["root"]])
    assert "not valid" in refused(pki["leaf"], *chain, now=NOW + timedelta(days=31))
    assert "not valid" in refused(pki["leaf"], *chain, now=NOW - timedelta(days=2))
    root_key = pki["root_key"]
    expired_root = cert("Old Root", root_key, ca=True, days=(-30, -1))
    assert "not valid" in refused(cert("signer", key(), expired_root, root_key), [], [expired_root])
    inter_key = key()
    expired_inter = cert("Old Intermediate", inter_key, pki["root"], root_key, ca=True, days=(-30, -1))
    assert "not valid" in refused(cert("signer", key(), expired_inter, inter_key), [expired_inter], [pki["root"]])


def test_an_unknown_critical_extension_is_refused_anywhere(pki) -> None:
    unknown = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00")
    root_key = pki["root_key"]
    leaf = cert("signer", key(), pki["root"], root_key, extensions=((unknown, True),))
    assert "critical" in refused(leaf, [], [pki["root"]])
    root = cert("Root", root_key, ca=True, extensions=((unknown, True),))
    assert "critical" in refused(cert("signer", key(), root, root_key), [], [root])
    harmless = cert("signer", key(), pki["root"], root_key, extensions=((unknown, False),))
    verified_chain(harmless, [], [pki["root"]], now=NOW)


def test_a_certificate_with_a_duplicate_extension_is_refused_not_an_internal_error(pki) -> None:
    # the same OID twice: cryptography parses it, and refuses it when the extensions are read
    placeholder = x509.UnrecognizedExtension(
        x509.ObjectIdentifier("2.5.29.99"), x509.BasicConstraints(ca=False, path_length=None).public_bytes()
    )
    good = cert("signer", key(), pki["root"], pki["root_key"], extensions=((placeholder, False),))
    der = good.public_bytes(serialization.Encoding.DER)
    duplicated = x509.load_der_x509_certificate(der.replace(b"\x06\x03\x55\x1d\x63", b"\x06\x03\x55\x1d\x13"))
    assert "duplicate" in refused(duplicated, [], [pki["root"]])
    assert "duplicate" in refused(duplicated, [], [duplicated])


def test_ed25519_issuers_are_not_walked() -> None:
    # WebPKI signature algorithms only: notary's root keys and libtrust's token keys are ECDSA or RSA
    ca_key = ed25519.Ed25519PrivateKey.generate()
    ca = cert("Ed25519 CA", ca_key, ca=True)
    assert refused(cert("signer", key(), ca, ca_key), [], [ca])


def test_chains_longer_than_the_limit_are_not_walked() -> None:
    issuer_key = key()
    issuer = cert("CA 0", issuer_key, ca=True)
    anchor, intermediates = issuer, []
    for n in range(1, MAX_CHAIN_LENGTH + 1):
        next_key = key()
        issuer = cert(f"CA {n}", next_key, issuer, issuer_key, ca=True)
        intermediates.insert(0, issuer)
        issuer_key = next_key
    leaf = cert("signer", key(), issuer, issuer_key)
    assert len(intermediates) == MAX_CHAIN_LENGTH
    assert f"more than {MAX_CHAIN_LENGTH}" in refused(leaf, intermediates, [anchor])
    # the same chain one intermediate shorter is walked
    verified_chain(intermediates[0], intermediates[1:], [anchor], now=NOW)


def test_a_pool_of_look_alike_intermediates_costs_little() -> None:
    """Seven CAs with one name and one key all sign each other: without a budget on signature
    checks, the search would try their thousands of orders before giving up."""
    shared_key = key()
    look_alikes = [cert("Look-alike CA", shared_key, ca=True) for _ in range(MAX_CHAIN_LENGTH - 1)]
    leaf = cert("signer", key(), look_alikes[0], shared_key)
    anchor = cert("Real Root", key(), ca=True)
    started = time.perf_counter()
    assert refused(leaf, look_alikes, [anchor])
    assert time.perf_counter() - started < 2.0


def test_no_anchor_is_a_clear_refusal(pki) -> None:
    assert "no CA certificate" in refused(pki["leaf"], [pki["inter"]], [])


def test_the_chain_walk_has_one_home() -> None:
    """No second, weaker walk may grow back beside this one (trust pinning had one: no CA or path
    length check), and the server's auth uses this one too."""
    package = Path(__file__).parents[2] / "trustkit"
    walkers = sorted(
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if re.search(r"verify_directly_issued_by|PolicyBuilder|x509\.verification", path.read_text())
    )
    assert walkers == ["keys/certs.py"]
    for user in ("server/auth/tokens.py", "trust/trusted_set.py"):
        assert "verified_chain(" in (package / user).read_text(), user
