"""Layer `keys`: root certificates (§3.5), the rules notary applies to certificate keys, the one
X.509 chain walk (:func:`verified_chain`: registry-token ``x5c`` chains, trust pinning to a CA,
client bundles), and the check that a client certificate (a UCP/MKE bundle's ``cert.pem``) was
issued by a given CA."""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import Criticality, ExtensionPolicy, PolicyBuilder, Store
from cryptography.x509.verification import VerificationError as ChainError

from trustkit.errors import KeyFormatError
from trustkit.keys.pkcs8 import PrivateKey
from trustkit.keys.public import PublicKey
from trustkit.keys.signer import Signer

ROOT_CERT_VALIDITY = timedelta(days=10 * 365)

_Extension = TypeVar("_Extension", bound=x509.ExtensionType)


def root_certificate(
    key: PrivateKey | Signer, gun: str, *, now: datetime | None = None, validity: timedelta = ROOT_CERT_VALIDITY
) -> x509.Certificate:
    """Self-signed certificate with CN=GUN, as notary makes for root keys.  A ``Signer`` (a key
    in a token or a KMS, or a key file's) signs it itself: see :func:`sign_certificate`."""
    public = key.public_key.crypto_key if isinstance(key, Signer) else key.public_key()
    if isinstance(public, ed25519.Ed25519PublicKey):
        raise KeyFormatError("root keys must be ECDSA or RSA: notary requires an X.509 certificate")
    now = now or datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, gun)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(secrets.randbits(127) + 1)
        .not_valid_before(now)
        .not_valid_after(now + validity)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=True,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if isinstance(key, Signer):
        return sign_certificate(builder, key)
    return builder.sign(key, hashes.SHA256())


def sign_certificate(builder: x509.CertificateBuilder, signer: Signer) -> x509.Certificate:
    """``builder``'s certificate signed by ``signer``, which holds no key cryptography can use.

    cryptography signs certificates with its own key objects only.  A throwaway key of the same
    kind lays out the to-be-signed part (its signature algorithm field is the same:
    ecdsa-with-SHA256, or RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt, the
    signatures notary's keys make); the signer signs those bytes and the certificate is
    assembled from them, then checked against the signer's public key.

    Raises:
        KeyFormatError: an Ed25519 signer, or a signature that does not verify.
    """
    from cryptography.hazmat.primitives.asymmetric import padding

    from trustkit.encoding import raw_to_der_ecdsa
    from trustkit.keys.der import read_children, read_tlv, seq, tlv

    public = signer.public_key.crypto_key
    if isinstance(public, ec.EllipticCurvePublicKey):
        template = builder.sign(ec.generate_private_key(public.curve), hashes.SHA256())
    elif isinstance(public, rsa.RSAPublicKey):
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        stand_in = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        template = builder.sign(stand_in, hashes.SHA256(), rsa_padding=pss)
    else:
        raise KeyFormatError("certificates are signed by ECDSA or RSA keys")
    tbs = template.tbs_certificate_bytes
    signature = signer.sign(tbs)
    if isinstance(public, ec.EllipticCurvePublicKey):
        signature = raw_to_der_ecdsa(signature)  # notary's r||s -> X.509's DER
    _, outer, _ = read_tlv(template.public_bytes(serialization.Encoding.DER))
    algorithm = read_children(outer)[1]
    der = seq(tbs, tlv(algorithm[0], algorithm[1]), tlv(0x03, b"\x00" + signature))
    cert = x509.load_der_x509_certificate(der)
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        raise KeyFormatError("the certificate signed by the key does not verify with its public key") from None
    return cert


def root_key_for(key: PrivateKey | Signer, gun: str, *, now: datetime | None = None) -> PublicKey:
    """The ``ecdsa-x509``/``rsa-x509`` key that root.json lists for ``key``."""
    return PublicKey.from_certificates([root_certificate(key, gun, now=now)])


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def cn_matches_gun(cert: x509.Certificate, gun: str) -> bool:
    """Notary's rule: CN equals the GUN, or ends in ``*`` and is a prefix of it."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        return False
    cn = str(names[0].value)
    return cn == gun or (cn.endswith("*") and gun.startswith(cn[:-1]))


def certificate_problem(cert: x509.Certificate, now: datetime) -> str | None:
    """Why notary would refuse ``cert`` in a new root or delegation (None when it would not)."""
    if cert.not_valid_after_utc <= now:
        return f"certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}"
    if cert.not_valid_before_utc > now + timedelta(days=1):
        return f"certificate is not valid until {cert.not_valid_before_utc:%Y-%m-%d}"
    if isinstance(cert.signature_hash_algorithm, hashes.SHA1):
        return "certificate is signed with SHA-1"
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < 2048:
        return f"certificate RSA key is {key.key_size} bits; at least 2048 are required"
    if not isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        return "certificate key must be ECDSA or RSA"
    return None


# --------------------------------------------------------------------------------------------
# Client certificates and the CA that issued them


def load_ca_certificates(pem: bytes, *, what: str) -> list[x509.Certificate]:
    """Every certificate of a CA file (a bundle's ``ca.pem`` may hold several CAs).

    Raises:
        KeyFormatError: no certificate, or one that does not parse.
    """
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise KeyFormatError(f"{what} must hold PEM certificates (the CA that issued the client certificate)") from None
    return certs


_CLIENT_PURPOSES = frozenset({ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE})
_PURPOSE_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
}


def client_certificate_problem(cert: x509.Certificate) -> str | None:
    """Why ``cert`` is not a client certificate that may sign (None when it is): a CA, a
    KeyUsage without digitalSignature, an ExtendedKeyUsage without clientAuth.  An absent
    KeyUsage or ExtendedKeyUsage restricts nothing (RFC 5280 §4.2.1.3, §4.2.1.12)."""
    constraints = _extension(cert, x509.BasicConstraints)
    if constraints is not None and constraints.ca:
        return "it is a CA certificate, not a client certificate"
    usage = _extension(cert, x509.KeyUsage)
    if usage is not None and not usage.digital_signature:
        return "its KeyUsage does not allow digitalSignature, so its key may not sign"
    purposes = _extension(cert, x509.ExtendedKeyUsage)
    if purposes is not None and not _CLIENT_PURPOSES & set(purposes):
        names = ", ".join(_PURPOSE_NAMES.get(oid, oid.dotted_string) for oid in purposes)
        return f"its ExtendedKeyUsage ({names}) does not include clientAuth: it is not a client certificate"
    return None


def check_client_certificate(
    chain: Sequence[x509.Certificate],
    cas: Sequence[x509.Certificate],
    *,
    now: datetime,
    what: str,
    ca_what: str,
    hint: str | None = None,
) -> None:
    """Refuse ``chain[0]`` unless it is a client certificate valid at ``now`` that chains (through
    ``chain[1:]`` or ``cas`` when there are intermediates) to a certificate in ``cas``.  The
    message says which check failed.

    Raises:
        KeyFormatError: expired or weak, not a client certificate for signing, or not issued by ``cas``.
    """
    leaf = chain[0]
    problem = certificate_problem(leaf, now) or client_certificate_problem(leaf)
    if problem:
        raise KeyFormatError(f"{what} cannot be used: {problem}", hint=hint)
    if not cas:
        raise KeyFormatError(f"{ca_what} holds no certificate")
    try:
        verified_chain(leaf, chain[1:], cas, now=now, leaf_policy=_CLIENT_POLICY)
    except KeyFormatError as exc:
        raise KeyFormatError(
            f"{what} was not issued by a CA in {ca_what} ({exc.message})",
            hint=hint or "use the certificate and the CA of the same cluster",
        ) from None


# --------------------------------------------------------------------------------------------
# The one chain walk


MAX_CHAIN_LENGTH = 8  # certificates a chain may hold below its anchor: the leaf and up to 7 intermediates


def verified_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    *,
    now: datetime,
    leaf_policy: ExtensionPolicy | None = None,
) -> list[x509.Certificate]:
    """The chain from ``leaf`` through some of ``intermediates`` to one of ``anchors``, leaf first.

    This is the one X.509 path check of trustkit (registry-token ``x5c`` chains, trust pinning to a
    CA, client bundles), done by cryptography's RFC 5280 path builder rather than by hand:

    * every certificate, the anchor included, is valid at ``now``;
    * every issuer is a CA (``basicConstraints`` cA, critical or not, as Go's x509 reads it) with
      room under its path length, and has ``keyCertSign`` when it carries a KeyUsage;
    * no certificate has a critical extension that is not checked; name constraints hold;
    * signatures use RSA of at least 2048 bits or ECDSA P-256/P-384/P-521 with SHA-2 (Ed25519 and
      SHA-1 issuers are refused; notary's root and libtrust token keys are ECDSA or RSA);
    * at most :data:`MAX_CHAIN_LENGTH` certificates below the anchor, and a bounded number of
      signature checks, so a crafted pool of look-alike intermediates cannot make the search explode;
    * a leaf that is itself one of ``anchors`` is its own chain.

    ``leaf_policy`` adds rules for the leaf's extensions (the default checks none but critical ones).

    Raises:
        KeyFormatError: no such chain; the message is the reason, e.g. "it comes from another CA,
            or an intermediate CA is missing".
    """
    if not anchors:
        raise KeyFormatError("there is no CA certificate to chain to")
    if 1 + len(intermediates) > MAX_CHAIN_LENGTH:
        raise KeyFormatError(f"a chain of more than {MAX_CHAIN_LENGTH} certificates is not walked")
    verifier = (
        PolicyBuilder()
        .store(Store(list(anchors)))
        .time(now)
        .max_chain_depth(MAX_CHAIN_LENGTH - 1)
        .extension_policies(ca_policy=_CA_POLICY, ee_policy=leaf_policy or _ANY_LEAF_POLICY)
        .build_client_verifier()
    )
    try:
        return verifier.verify(leaf, list(intermediates)).chain
    except ChainError as exc:
        raise KeyFormatError(_chain_reason(exc)) from None
    except (ValueError, TypeError, UnsupportedAlgorithm):  # a certificate cryptography parses lazily
        raise KeyFormatError("a certificate of the chain cannot be read") from None


def _extension(cert: x509.Certificate, kind: type[_Extension]) -> _Extension | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None
    except (x509.DuplicateExtension, ValueError) as exc:  # a crafted certificate: refuse it, do not crash
        raise KeyFormatError(
            f"certificate {cert.subject.rfc4514_string()[:80]} has malformed extensions: {exc}"
        ) from None


def _chain_reason(exc: ChainError) -> str:
    """The verifier's reason, without its object dumps."""
    text = re.sub(r"\s*\(encountered processing <Certificate\(.*\)>\)", "", str(exc))
    text = text.removeprefix("validation failed: ").removeprefix("candidates exhausted: ")
    if "no interior errors" in text:  # no certificate there signed it
        return "it comes from another CA, or an intermediate CA is missing"
    return text[:300]


def _ca_may_sign_certificates(policy: object, cert: x509.Certificate, usage: x509.KeyUsage | None) -> None:
    if usage is not None and not usage.key_cert_sign:
        raise ValueError(f"CA {cert.subject.rfc4514_string()} has a KeyUsage without keyCertSign")


def _is_client_certificate(policy: object, cert: x509.Certificate, _: object) -> None:
    problem = client_certificate_problem(cert)
    if problem:
        raise ValueError(problem)


def _is_ca(policy: object, cert: x509.Certificate, constraints: x509.BasicConstraints) -> None:
    if not constraints.ca:  # cryptography checks this too; said here so no policy change can drop it
        raise ValueError(f"{cert.subject.rfc4514_string()} is not a CA certificate")


# cryptography's CA/Browser Forum defaults, except what RFC 5280 leaves optional and cluster and
# token CAs (cfssl, openssl, Go programs) often omit: KeyUsage on a CA (absent: unrestricted), its
# AuthorityKeyIdentifier, and the critical mark on basicConstraints (Go's x509, which notary and
# the registry's token check use, does not ask for it either).
_CA_POLICY = (
    ExtensionPolicy.webpki_defaults_ca()
    .require_present(x509.BasicConstraints, Criticality.AGNOSTIC, _is_ca)
    .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _ca_may_sign_certificates)
    .may_be_present(x509.AuthorityKeyIdentifier, Criticality.AGNOSTIC, None)
)
# Any leaf, as long as no critical extension of it goes unchecked (a token signer, a root.json
# certificate: their own rules are checked by their callers).
_ANY_LEAF_POLICY = ExtensionPolicy.permit_all()
# A client certificate need not name a host or carry key identifiers; it must be a signing client
# certificate (checked again here so the verifier alone is never more lenient than the message).
_CLIENT_POLICY = (
    ExtensionPolicy.permit_all()
    .may_be_present(x509.BasicConstraints, Criticality.AGNOSTIC, _is_client_certificate)
    .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _is_client_certificate)
    .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _is_client_certificate)
)
