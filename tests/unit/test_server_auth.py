"""trustkit.server.auth: the token access controller, the scope grammar, the htpasswd token issuer.

Tokens are checked the way docker/distribution's token access controller (what notary-server
runs) checks them; the issuer's tokens are driven end to end through a tiny Starlette app with
``TestClient`` (sync, so trustkit's own ``TokenAuth`` can run the challenge/token flow) and with
``httpx.ASGITransport`` (async).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bcrypt
import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from trustkit.client.auth import Credentials, TokenAuth
from trustkit.errors import NotAuthorizedError, TrustkitError
from trustkit.server.auth import (
    Access,
    AuthConfigError,
    Authorizer,
    Decision,
    HtpasswdTokenIssuer,
    InvalidScopeError,
    NoAuth,
    TokenAuthorizer,
    generate_token_keypair,
    libtrust_key_id,
    parse_scope,
)

with warnings.catch_warnings():
    # starlette 1.x prefers httpx2 for its TestClient; plain httpx still works (and is what trustkit uses)
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

REALM = "https://testserver/auth/token"
SERVICE = "notary.example.com"
ISSUER = "trustkit-token-issuer"
GUN = "docker.io/library/alpine"
T0 = 1_800_000_000.0  # a fixed "now" for the tests that do not touch certificates' dates


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --------------------------------------------------------------------------------------------
# Helpers: keys, certificates, tokens


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def der_b64(cert: x509.Certificate) -> str:
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make_cert(
    subject: str,
    key,
    *,
    issuer_cert: x509.Certificate | None = None,
    issuer_key=None,
    ca: bool = False,
    path_length: int | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> x509.Certificate:
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_cert.subject if issuer_cert else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - timedelta(days=1))
        .not_valid_after(not_after or now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
    )
    signer = issuer_key or key
    return builder.sign(signer, None if isinstance(signer, ed25519.Ed25519PrivateKey) else hashes.SHA256())


def claims(**overrides) -> dict:
    base = {
        "iss": ISSUER,
        "sub": "alice",
        "aud": SERVICE,
        "exp": int(T0) + 300,
        "nbf": int(T0),
        "iat": int(T0),
        "jti": "test",
        "access": [{"type": "repository", "name": GUN, "actions": ["pull"]}],
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(key, payload: dict, *, alg: str = "ES256", **headers) -> str:
    return jwt.encode(payload, key, algorithm=alg, headers=headers)


def bearer(token: str) -> str:
    return f"Bearer {token}"


PULL = [Access("repository", GUN, ("pull",))]
PUSH_PULL = [Access("repository", GUN, ("push", "pull"))]


@pytest.fixture(scope="module")
def issuer_keys() -> tuple[bytes, bytes]:
    return generate_token_keypair("trustkit token issuer")


@pytest.fixture(scope="module")
def issuer_key(issuer_keys):
    return serialization.load_pem_private_key(issuer_keys[0], password=None)


@pytest.fixture(scope="module")
def kid(issuer_key) -> str:
    return libtrust_key_id(issuer_key.public_key())


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def authorizer(issuer_keys, clock) -> TokenAuthorizer:
    return TokenAuthorizer(realm=REALM, service=SERVICE, issuer=ISSUER, root_certs_pem=issuer_keys[1], clock=clock)


def challenge(scope: str | None, error: str | None = None) -> str:
    value = f'Bearer realm="{REALM}",service="{SERVICE}"'
    if scope:
        value += f',scope="{scope}"'
    if error:
        value += f',error="{error}"'
    return value


# --------------------------------------------------------------------------------------------
# Scopes


def test_parse_scope_plain_and_with_a_registry_port() -> None:
    assert parse_scope(f"repository:{GUN}:push,pull") == Access("repository", GUN, ("push", "pull"))
    assert parse_scope("repository:localhost:5000/team/app:pull") == Access(
        "repository", "localhost:5000/team/app", ("pull",)
    )
    assert parse_scope("repository:[::1]:5000/app:*") == Access("repository", "[::1]:5000/app", ("*",))
    assert parse_scope("registry:catalog:*") == Access("registry", "catalog", ("*",))
    assert parse_scope("repository(plugin):vieux/sshfs:pull").type == "repository(plugin)"


def test_parse_scope_drops_duplicate_actions_and_keeps_order() -> None:
    assert parse_scope(f"repository:{GUN}:pull,push,pull").actions == ("pull", "push")
    assert parse_scope(f"repository:{GUN}:pull,push").scope == f"repository:{GUN}:pull,push"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "repository",
        f"repository:{GUN}",
        "repository::pull",
        f":{GUN}:pull",
        f"repository:{GUN}:",
        f"repository:{GUN}:push,,pull",
        f"repository:{GUN}:Pull",
        f"repository:{GUN}:pu ll",
        "repository:a b:pull",
        'repository:a"b:pull',
        "Repository:x:pull",
        "repository:" + "a" * 2000 + ":pull",
    ],
)
def test_parse_scope_rejects(bad: str) -> None:
    with pytest.raises(InvalidScopeError):
        parse_scope(bad)
    with pytest.raises(ValueError):  # also a ValueError, for callers that expect one
        parse_scope(bad)


def test_access_accepts_a_list_of_actions_and_stays_hashable() -> None:
    access = Access("repository", GUN, ["push", "pull"])  # type: ignore[arg-type]
    assert access.actions == ("push", "pull")
    assert hash(access) == hash(Access("repository", GUN, ("push", "pull")))


# --------------------------------------------------------------------------------------------
# Key IDs and the generated key pair


# The example key of the docker registry token spec (distribution docs/spec/auth/jwt.md):
# its "kid" is the libtrust key ID of this P-256 key.
SPEC_JWK = {
    "kty": "EC",
    "crv": "P-256",
    "d": "R7OnbfMaD5J2jl7GeE8ESo7CnHSBm_1N2k9IXYFrKJA",
    "x": "m7zUpx3b-zmVE5cymSs64POG9QcyEpJaYCD82-549_Q",
    "y": "dU3biz8sZ_8GPB-odm8Wxz3lNDr1xcAQQPQaOcr1fmc",
}
SPEC_KID = "PYYO:TEWU:V7JH:26JV:AQTZ:LJC3:SXVJ:XGHA:34F2:2LAQ:ZRMK:Z7Q6"


def spec_key() -> ec.EllipticCurvePrivateKey:
    d = int.from_bytes(base64.urlsafe_b64decode(SPEC_JWK["d"] + "="), "big")
    return ec.derive_private_key(d, ec.SECP256R1())


def test_libtrust_key_id_matches_the_token_spec_example() -> None:
    key = spec_key()
    assert b64url(key.public_key().public_numbers().x.to_bytes(32, "big")) == SPEC_JWK["x"]
    assert libtrust_key_id(key.public_key()) == SPEC_KID
    assert libtrust_key_id(key) == SPEC_KID  # a private key names its public half


def test_a_token_signed_with_the_spec_key_and_its_kid_is_accepted() -> None:
    key = spec_key()
    cert = make_cert("auth.docker.com", key)
    authorizer = TokenAuthorizer(
        realm=REALM, service="registry.docker.com", issuer="auth.docker.com", root_certs_pem=pem(cert), clock=Clock(T0)
    )
    token = sign(
        key,
        claims(
            iss="auth.docker.com",
            sub="jlhawn",
            aud="registry.docker.com",
            access=[{"type": "repository", "name": "samalba/my-app", "actions": ["pull", "push"]}],
        ),
        kid=SPEC_KID,
        typ="JWT",
    )
    decision = authorizer.authorize(bearer(token), [Access("repository", "samalba/my-app", ("push", "pull"))])
    assert decision == Decision(allowed=True, subject="jlhawn")


def test_generate_token_keypair(issuer_keys) -> None:
    key_pem, cert_pem = issuer_keys
    assert key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, not encrypted
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    cert = x509.load_pem_x509_certificate(cert_pem)
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "trustkit token issuer"
    cert.verify_directly_issued_by(cert)  # self-signed
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    assert cert.not_valid_after_utc - cert.not_valid_before_utc > timedelta(days=3000)
    with pytest.raises(AuthConfigError):
        generate_token_keypair("")


# --------------------------------------------------------------------------------------------
# TokenAuthorizer: valid tokens, kid and x5c


def test_noauth_allows_everything() -> None:
    assert NoAuth().authorize(None, PUSH_PULL).allowed
    assert isinstance(NoAuth(), Authorizer)


def test_valid_token_with_kid(authorizer, issuer_key, kid) -> None:
    token = sign(issuer_key, claims(), kid=kid)
    assert authorizer.authorize(bearer(token), PULL) == Decision(allowed=True, subject="alice")
    assert authorizer.authorize(f"bearer  {token} ", PULL).allowed  # scheme is case-insensitive
    assert isinstance(authorizer, Authorizer)


def test_audience_may_be_a_list(authorizer, issuer_key, kid) -> None:
    token = sign(issuer_key, claims(aud=["other", SERVICE]), kid=kid)
    assert authorizer.authorize(bearer(token), PULL).allowed


def test_no_token_gives_the_challenge_without_error(authorizer) -> None:
    for header in (None, "", "Basic YWxpY2U6cHc=", "Bearer", "Bearer a b"):
        decision = authorizer.authorize(header, PUSH_PULL)
        assert decision.allowed is False
        assert decision.challenge == challenge(f"repository:{GUN}:push,pull")
        assert decision.detail == [
            {"Type": "repository", "Class": "", "Name": GUN, "Action": "push"},
            {"Type": "repository", "Class": "", "Name": GUN, "Action": "pull"},
        ]


def test_challenge_merges_actions_per_resource_and_joins_scopes_with_spaces(authorizer) -> None:
    required = [
        Access("repository", GUN, ("pull",)),
        Access("repository", "localhost:5000/other", ("push",)),
        Access("repository", GUN, ("push", "pull")),
        Access("registry", "catalog", ("*",)),
    ]
    decision = authorizer.authorize(None, required)
    assert decision.challenge == challenge(
        f"repository:{GUN}:pull,push repository:localhost:5000/other:push registry:catalog:*"
    )
    assert [(d["Type"], d["Name"], d["Action"]) for d in decision.detail] == [
        ("repository", GUN, "pull"),
        ("repository", "localhost:5000/other", "push"),
        ("repository", GUN, "push"),
        ("repository", GUN, "pull"),
        ("registry", "catalog", "*"),
    ]
    assert authorizer.authorize(None, []).challenge == challenge(None)


def test_valid_token_with_x5c_chain_through_an_intermediate(clock) -> None:
    clock.now = datetime.now(UTC).timestamp()
    root_key, inter_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = make_cert("Token Root CA", root_key, ca=True, path_length=1)
    inter = make_cert("Token Intermediate", inter_key, issuer_cert=root, issuer_key=root_key, ca=True, path_length=0)
    leaf = make_cert("token signer", leaf_key, issuer_cert=inter, issuer_key=inter_key)
    authorizer = TokenAuthorizer(realm=REALM, service=SERVICE, issuer=ISSUER, root_certs_pem=pem(root), clock=clock)
    now = int(clock.now)
    payload = claims(exp=now + 300, nbf=now)

    token = sign(leaf_key, payload, x5c=[der_b64(leaf), der_b64(inter)])
    assert authorizer.authorize(bearer(token), PULL).allowed

    # the same key by kid is not enough: only the bundle's own keys have trusted kids
    assert not authorizer.authorize(bearer(sign(leaf_key, payload, kid=libtrust_key_id(leaf_key))), PULL).allowed
    # the intermediate is missing from the chain
    decision = authorizer.authorize(bearer(sign(leaf_key, payload, x5c=[der_b64(leaf)])), PULL)
    assert decision.challenge.endswith(',error="invalid_token"')
    # a chain that is fine but the token was signed by another key
    other = ec.generate_private_key(ec.SECP256R1())
    assert not authorizer.authorize(bearer(sign(other, payload, x5c=[der_b64(leaf), der_b64(inter)])), PULL).allowed


def test_x5c_leaf_that_is_itself_in_the_bundle(issuer_keys, issuer_key) -> None:
    now = datetime.now(UTC).timestamp()
    authorizer = TokenAuthorizer(
        realm=REALM, service=SERVICE, issuer=ISSUER, root_certs_pem=issuer_keys[1], clock=Clock(now)
    )
    cert = x509.load_pem_x509_certificate(issuer_keys[1])
    token = sign(issuer_key, claims(exp=int(now) + 300, nbf=int(now)), x5c=[der_b64(cert)])
    assert authorizer.authorize(bearer(token), PULL).allowed


def test_x5c_chain_rules(clock) -> None:
    now_dt = datetime.now(UTC)
    clock.now = now_dt.timestamp()
    root_key, leaf_key, rogue_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = make_cert("Token Root CA", root_key, ca=True)
    not_a_ca = make_cert("Not a CA", root_key)  # same key, but may not issue certificates
    authorizer = TokenAuthorizer(
        realm=REALM, service=SERVICE, issuer=ISSUER, root_certs_pem=pem(root) + pem(not_a_ca), clock=clock
    )
    payload = claims(exp=int(clock.now) + 300, nbf=int(clock.now))

    def verdict(leaf: x509.Certificate, *extra: x509.Certificate, key=leaf_key) -> bool:
        token = sign(key, payload, x5c=[der_b64(leaf), *(der_b64(c) for c in extra)])
        return authorizer.authorize(bearer(token), PULL).allowed

    good = make_cert("signer", leaf_key, issuer_cert=root, issuer_key=root_key)
    assert verdict(good)
    expired = make_cert(
        "signer",
        leaf_key,
        issuer_cert=root,
        issuer_key=root_key,
        not_before=now_dt - timedelta(days=10),
        not_after=now_dt - timedelta(days=1),
    )
    assert not verdict(expired)
    not_yet = make_cert(
        "signer", leaf_key, issuer_cert=root, issuer_key=root_key, not_before=now_dt + timedelta(days=1)
    )
    assert not verdict(not_yet)
    by_non_ca = make_cert("signer", leaf_key, issuer_cert=not_a_ca, issuer_key=root_key)
    assert not verdict(by_non_ca)
    rogue_root = make_cert("Token Root CA", rogue_key, ca=True)  # same name, other key
    assert not verdict(make_cert("signer", leaf_key, issuer_cert=rogue_root, issuer_key=rogue_key), rogue_root)
    # path length: the root allows no intermediate below it
    strict_root = make_cert("Strict Root", root_key, ca=True, path_length=0)
    inter_key = ec.generate_private_key(ec.SECP256R1())
    inter = make_cert("Inter", inter_key, issuer_cert=strict_root, issuer_key=root_key, ca=True)
    strict = TokenAuthorizer(realm=REALM, service=SERVICE, issuer=ISSUER, root_certs_pem=pem(strict_root), clock=clock)
    deep = make_cert("signer", leaf_key, issuer_cert=inter, issuer_key=inter_key)
    token = sign(leaf_key, payload, x5c=[der_b64(deep), der_b64(inter)])
    assert not strict.authorize(bearer(token), PULL).allowed
    # garbage in x5c
    for x5c in ("not-a-list", [], ["%%%"], [base64.b64encode(b"not DER").decode()], [der_b64(good)] * 9):
        token = sign(leaf_key, payload, x5c=x5c)
        assert authorizer.authorize(bearer(token), PULL).challenge.endswith(',error="invalid_token"')


def test_x5c_chain_is_walked_by_the_one_strict_walk(clock) -> None:
    """trustkit.keys.certs.verified_chain: a CA whose basicConstraints is not marked critical still
    issues (Go's x509, which distribution uses, reads it so); an expired intermediate or an unknown
    critical extension does not."""
    now_dt = datetime.now(UTC)
    clock.now = now_dt.timestamp()
    root_key, inter_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Lenient Root")])
    root = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now_dt - timedelta(days=1))
        .not_valid_after(now_dt + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    authorizer = TokenAuthorizer(realm=REALM, service=SERVICE, issuer=ISSUER, root_certs_pem=pem(root), clock=clock)
    payload = claims(exp=int(clock.now) + 300, nbf=int(clock.now))

    def verdict(*chain: x509.Certificate) -> bool:
        token = sign(leaf_key, payload, x5c=[der_b64(c) for c in chain])
        return authorizer.authorize(bearer(token), PULL).allowed

    inter = make_cert("Intermediate", inter_key, issuer_cert=root, issuer_key=root_key, ca=True)
    assert verdict(make_cert("signer", leaf_key, issuer_cert=inter, issuer_key=inter_key), inter)
    old_inter = make_cert(
        "Intermediate",
        inter_key,
        issuer_cert=root,
        issuer_key=root_key,
        ca=True,
        not_before=now_dt - timedelta(days=10),
        not_after=now_dt - timedelta(seconds=1),
    )
    assert not verdict(make_cert("signer", leaf_key, issuer_cert=old_inter, issuer_key=inter_key), old_inter)
    unknown = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00")
    odd_leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "signer")]))
        .issuer_name(name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now_dt - timedelta(days=1))
        .not_valid_after(now_dt + timedelta(days=30))
        .add_extension(unknown, critical=True)
        .sign(root_key, hashes.SHA256())
    )
    assert not verdict(odd_leaf)


def test_a_certificate_that_expires_is_refused_even_for_a_cached_token(clock) -> None:
    now_dt = datetime.now(UTC)
    clock.now = now_dt.timestamp()
    root_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root = make_cert("Root", root_key, ca=True)
    leaf = make_cert(
        "signer", leaf_key, issuer_cert=root, issuer_key=root_key, not_after=now_dt + timedelta(seconds=60)
    )
    authorizer = TokenAuthorizer(realm=REALM, service=SERVICE, issuer=ISSUER, root_certs_pem=pem(root), clock=clock)
    token = sign(leaf_key, claims(exp=int(clock.now) + 3600, nbf=int(clock.now)), x5c=[der_b64(leaf)])
    assert authorizer.authorize(bearer(token), PULL).allowed
    clock.now += 120  # token still valid for an hour, certificate not (no leeway for certificates)
    assert not authorizer.authorize(bearer(token), PULL).allowed


def test_rsa_and_ed25519_signers(clock) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ed_key = ed25519.Ed25519PrivateKey.generate()
    bundle = pem(make_cert("rsa", rsa_key)) + pem(make_cert("ed", ed_key))
    authorizer = TokenAuthorizer(realm=REALM, service=SERVICE, issuer=ISSUER, root_certs_pem=bundle, clock=clock)
    rsa_kid, ed_kid = libtrust_key_id(rsa_key), libtrust_key_id(ed_key)
    assert authorizer.authorize(bearer(sign(rsa_key, claims(), alg="RS256", kid=rsa_kid)), PULL).allowed
    assert authorizer.authorize(bearer(sign(rsa_key, claims(), alg="PS256", kid=rsa_kid)), PULL).allowed
    assert authorizer.authorize(bearer(sign(ed_key, claims(), alg="EdDSA", kid=ed_kid)), PULL).allowed
    # alg must fit the key the kid names
    assert not authorizer.authorize(bearer(sign(ed_key, claims(), alg="EdDSA", kid=rsa_kid)), PULL).allowed


def test_embedded_jwk_must_be_a_bundle_key(authorizer, issuer_key) -> None:
    public_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(issuer_key.public_key()))
    assert authorizer.authorize(bearer(sign(issuer_key, claims(), jwk=public_jwk)), PULL).allowed
    other = ec.generate_private_key(ec.SECP256R1())
    other_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(other.public_key()))
    assert not authorizer.authorize(bearer(sign(other, claims(), jwk=other_jwk)), PULL).allowed


# --------------------------------------------------------------------------------------------
# TokenAuthorizer: bad tokens


def invalid(decision: Decision, scope: str = f"repository:{GUN}:pull") -> bool:
    return decision.allowed is False and decision.challenge == challenge(scope, "invalid_token")


def test_expired_and_not_yet_valid_with_leeway(authorizer, issuer_key, kid, clock) -> None:
    token = sign(issuer_key, claims(exp=int(T0) + 300, nbf=int(T0)), kid=kid)
    clock.now = T0 + 300 + 29  # inside the 30 s leeway
    assert authorizer.authorize(bearer(token), PULL).allowed
    clock.now = T0 + 300 + 31
    assert invalid(authorizer.authorize(bearer(token), PULL))
    clock.now = T0 - 29
    assert authorizer.authorize(bearer(token), PULL).allowed
    clock.now = T0 - 31
    assert invalid(authorizer.authorize(bearer(token), PULL))


def test_wrong_issuer_or_audience(authorizer, issuer_key, kid) -> None:
    wrong = (
        claims(iss="someone-else"),
        claims(iss=None),
        claims(aud="other"),
        claims(aud=["a", "b"]),
        claims(aud=None),
    )
    for bad in wrong:
        assert invalid(authorizer.authorize(bearer(sign(issuer_key, bad, kid=kid)), PULL))


def test_missing_or_malformed_time_claims(authorizer, issuer_key, kid) -> None:
    for bad in (claims(exp=None), claims(exp="tomorrow"), claims(exp=True), claims(nbf="now")):
        assert invalid(authorizer.authorize(bearer(sign(issuer_key, bad, kid=kid)), PULL))


def test_wrong_signing_key(authorizer, kid) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    assert invalid(authorizer.authorize(bearer(sign(other, claims(), kid=kid)), PULL))
    assert invalid(authorizer.authorize(bearer(sign(other, claims(), kid=libtrust_key_id(other))), PULL))
    assert invalid(authorizer.authorize(bearer(sign(other, claims())), PULL))  # neither kid nor x5c


def test_algorithm_confusion_is_refused(authorizer, issuer_key, issuer_keys, kid) -> None:
    header = b64url(json.dumps({"alg": "none", "kid": kid}).encode())
    body = b64url(json.dumps(claims()).encode())
    assert invalid(authorizer.authorize(bearer(f"{header}.{body}."), PULL))
    # HS256 keyed with the public certificate / key bytes
    public_pem = issuer_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for secret in (issuer_keys[1], public_pem):
        header = b64url(json.dumps({"alg": "HS256", "kid": kid}).encode())
        signature = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
        assert invalid(authorizer.authorize(bearer(f"{header}.{body}.{b64url(signature)}"), PULL))
    # ES384 claimed for a P-256 key
    good = sign(issuer_key, claims(), kid=kid)
    _, payload, signature = good.split(".")
    header = b64url(json.dumps({"alg": "ES384", "kid": kid}).encode())
    assert invalid(authorizer.authorize(bearer(f"{header}.{payload}.{signature}"), PULL))


def test_tampered_and_malformed_tokens(authorizer, issuer_key, kid) -> None:
    token = sign(issuer_key, claims(), kid=kid)
    header, payload, signature = token.split(".")
    more = b64url(json.dumps(claims(access=[{"type": "repository", "name": GUN, "actions": ["*"]}])).encode())
    duplicate = b64url(b'{"iss":"x","iss":"' + ISSUER.encode() + b'"}')
    for bad in (
        f"{header}.{more}.{signature}",
        f"{header}.{payload}",
        f"{header}.{payload}.{signature}.x",
        f"{header}.{payload}.AAAA",
        f"{header}.{duplicate}.{signature}",
        f"{header}.{payload}+.{signature}",
        f"{header}.{b64url(b'[1]')}.{signature}",
        "x" * 40_000,
        "not-a-jwt",
        f"{header}.{payload}.{signature[:-1]}\u00e9",
        f"{header}.{payload}.{signature}=",
    ):
        assert invalid(authorizer.authorize(bearer(bad), PULL)), bad[:80]
    crit = sign(issuer_key, claims(), kid=kid, crit=["exp"])
    assert invalid(authorizer.authorize(bearer(crit), PULL))


@pytest.mark.parametrize(
    "access",
    [
        "everything",
        [1],
        [{"type": "repository", "name": GUN, "actions": "pull"}],
        [{"type": 1, "name": GUN, "actions": []}],
    ],
)
def test_malformed_access_claim_is_an_invalid_token(authorizer, issuer_key, kid, access) -> None:
    assert invalid(authorizer.authorize(bearer(sign(issuer_key, claims(access=access), kid=kid)), PULL))


def signed_raw(key, kid: str, claims_json: str, **header) -> str:
    """A token over exactly ``claims_json`` (jwt.encode would re-serialise it)."""
    return jwt.PyJWS().encode(claims_json.encode(), key, algorithm="ES256", headers={"kid": kid, **header})


@pytest.mark.parametrize(
    ("exp", "why"),
    [
        ("1e400", "a float that overflows to infinity: the token never expired"),
        ("1" + "0" * 400, "an integer no float holds: the check raised OverflowError (a 500)"),
        (str(int(T0) + 300) + ".5", "a fraction: distribution reads exp as a Go int64 and refuses it"),
        (str(2**53 + 1), "an integer a float64 reader rounds: issuer and server could disagree"),
    ],
)
def test_time_claims_are_integers_within_2_to_the_53(authorizer, issuer_key, kid, exp, why) -> None:
    body = claims(exp=None)
    text = json.dumps(body)[:-1] + f', "exp": {exp}}}'
    decision = authorizer.authorize(bearer(signed_raw(issuer_key, kid, text)), PULL)
    assert invalid(decision), why
    assert authorizer.authorize(bearer(signed_raw(issuer_key, kid, json.dumps(claims()))), PULL).allowed


def test_members_that_differ_only_in_case_are_refused(authorizer, issuer_key, kid) -> None:
    """Go matches JSON members to struct fields case-insensitively, so distribution would read
    ``"Exp"`` or ``"Access"`` where this server reads ``"exp"`` and ``"access"``."""
    text = json.dumps(claims())[:-1] + ', "EXP": 4000000000}'
    assert invalid(authorizer.authorize(bearer(signed_raw(issuer_key, kid, text)), PULL))
    grant = json.dumps([{"type": "repository", "name": GUN, "actions": ["*"]}])
    text = json.dumps(claims())[:-1] + f', "Access": {grant}}}'
    assert invalid(authorizer.authorize(bearer(signed_raw(issuer_key, kid, text)), PULL))
    header = sign(issuer_key, claims(), kid=kid, KID="another").split(".")
    assert invalid(authorizer.authorize(bearer(".".join(header)), PULL))


# --------------------------------------------------------------------------------------------
# TokenAuthorizer: scopes


def decide(authorizer, key, kid, actions, required, *, name=GUN, kind="repository", **entry) -> Decision:
    access = [{"type": kind, "name": name, "actions": list(actions), **entry}]
    return authorizer.authorize(bearer(sign(key, claims(access=access), kid=kid)), required)


def test_insufficient_scope(authorizer, issuer_key, kid) -> None:
    decision = decide(authorizer, issuer_key, kid, ["pull"], PUSH_PULL)
    assert decision.allowed is False
    assert decision.subject == "alice"
    assert decision.challenge == challenge(f"repository:{GUN}:push,pull", "insufficient_scope")
    assert decision.detail == [
        {"Type": "repository", "Class": "", "Name": GUN, "Action": "push"},
        {"Type": "repository", "Class": "", "Name": GUN, "Action": "pull"},
    ]
    # another repository, a registry port in the name, an empty access claim
    assert not decide(authorizer, issuer_key, kid, ["push", "pull"], PUSH_PULL, name="docker.io/library/other").allowed
    assert decide(
        authorizer,
        issuer_key,
        kid,
        ["pull"],
        [Access("repository", "localhost:5000/app", ("pull",))],
        name="localhost:5000/app",
    ).allowed
    no_access = sign(issuer_key, claims(access=None), kid=kid)
    assert authorizer.authorize(bearer(no_access), PULL).challenge.endswith('error="insufficient_scope"')


def test_star_grants_everything_but_admin(authorizer, issuer_key, kid) -> None:
    star = [Access("repository", GUN, ("*",))]
    admin = [Access("repository", GUN, ("admin",))]
    assert decide(authorizer, issuer_key, kid, ["*"], PUSH_PULL).allowed
    assert decide(authorizer, issuer_key, kid, ["*"], star).allowed
    assert decide(authorizer, issuer_key, kid, ["*"], [Access("repository", GUN, ("delete",))]).allowed
    assert not decide(authorizer, issuer_key, kid, ["push", "pull"], star).allowed
    decision = decide(authorizer, issuer_key, kid, ["*"], admin)
    assert decision.challenge == challenge(f"repository:{GUN}:admin", "insufficient_scope")
    assert decide(authorizer, issuer_key, kid, ["admin"], admin).allowed
    assert not decide(authorizer, issuer_key, kid, ["admin"], PULL).allowed  # admin is not pull


def test_registry_catalog(authorizer, issuer_key, kid) -> None:
    catalog = [Access("registry", "catalog", ("*",))]
    assert decide(authorizer, issuer_key, kid, ["*"], catalog, kind="registry", name="catalog").allowed
    assert not decide(authorizer, issuer_key, kid, ["*"], catalog).allowed  # a repository named "catalog"? no


def test_a_resource_class_never_matches(authorizer, issuer_key, kid) -> None:
    assert not decide(authorizer, issuer_key, kid, ["pull"], PULL, **{"class": "plugin"}).allowed


# --------------------------------------------------------------------------------------------
# htpasswd


def bcrypt_line(user: str, password: str, prefix: str = "$2y$") -> str:
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    return f"{user}:{prefix}{hashed[4:]}"


@pytest.fixture
def htpasswd(tmp_path: Path) -> Path:
    path = tmp_path / "htpasswd"
    path.write_text(
        "# trustkit users\n\n"
        + bcrypt_line("alice", "wonderland")
        + "\n"
        + bcrypt_line("root", "toor", "$2b$")
        + "\r\n"
    )
    return path


@pytest.fixture
def issuer(htpasswd, issuer_keys, clock) -> HtpasswdTokenIssuer:
    return HtpasswdTokenIssuer(
        htpasswd_path=htpasswd,
        issuer=ISSUER,
        service=SERVICE,
        signing_key_pem=issuer_keys[0],
        cert_pem=issuer_keys[1],
        admins=frozenset({"root"}),
        clock=clock,
    )


def test_htpasswd_good_and_bad_passwords(issuer) -> None:
    assert issuer.check_password("alice", "wonderland")
    assert issuer.check_password("root", "toor")
    assert not issuer.check_password("alice", "Wonderland")
    assert not issuer.check_password("alice", "")
    assert not issuer.check_password("mallory", "wonderland")
    assert not issuer.check_password("alice:wonderland", "")


def test_htpasswd_accepts_every_bcrypt_flavour_but_2x(tmp_path, issuer_keys) -> None:
    path = tmp_path / "htpasswd"
    path.write_text("".join(bcrypt_line(f"u{p[2]}", "pw", p) + "\n" for p in ("$2y$", "$2b$", "$2a$")))
    issuer = HtpasswdTokenIssuer(
        htpasswd_path=path, issuer=ISSUER, service=SERVICE, signing_key_pem=issuer_keys[0], cert_pem=issuer_keys[1]
    )
    assert all(issuer.check_password(user, "pw") for user in ("uy", "ub", "ua"))


def test_htpasswd_long_passwords_are_cut_at_72_bytes_as_htpasswd_does(tmp_path, issuer_keys) -> None:
    path = tmp_path / "htpasswd"
    long_password = "p" * 80
    hashed = bcrypt.hashpw(long_password.encode()[:72], bcrypt.gensalt(rounds=4)).decode()
    path.write_text(f"bob:{hashed}\n")
    issuer = HtpasswdTokenIssuer(
        htpasswd_path=path, issuer=ISSUER, service=SERVICE, signing_key_pem=issuer_keys[0], cert_pem=issuer_keys[1]
    )
    assert issuer.check_password("bob", long_password)
    assert not issuer.check_password("bob", "p" * 71)


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("carol:$apr1$abcdefgh$0123456789abcdefghijkl", "Apache MD5"),
        ("carol:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "SHA-1"),
        ("carol:$6$salt$abcdef", "SHA-512-crypt"),
        ("carol:abJnggxhB/yWI", "not a bcrypt hash"),
        ("carol:plaintext", "not a bcrypt hash"),
        ("carol:$2x$04$" + "a" * 53, "$2x$"),
        ("carol:$2y$04$tooshort", "malformed"),
        ("carol", "not user:password-hash"),
    ],
)
def test_htpasswd_refuses_what_is_not_bcrypt(tmp_path, issuer_keys, entry, says) -> None:
    path = tmp_path / "htpasswd"
    path.write_text(bcrypt_line("alice", "wonderland") + "\n" + entry + "\n")
    with pytest.raises(AuthConfigError) as exc:
        HtpasswdTokenIssuer(
            htpasswd_path=path, issuer=ISSUER, service=SERVICE, signing_key_pem=issuer_keys[0], cert_pem=issuer_keys[1]
        )
    message = str(exc.value)
    assert "line 2" in message and says in message and "htpasswd -B" in message
    assert entry.partition(":")[2] not in message or not entry.partition(":")[2]  # the hash itself is not echoed


def test_htpasswd_refuses_duplicates_and_a_missing_file(tmp_path, issuer_keys) -> None:
    path = tmp_path / "htpasswd"
    path.write_text(bcrypt_line("alice", "a") + "\n" + bcrypt_line("alice", "b") + "\n")
    kwargs = {"issuer": ISSUER, "service": SERVICE, "signing_key_pem": issuer_keys[0], "cert_pem": issuer_keys[1]}
    with pytest.raises(AuthConfigError, match="appears twice"):
        HtpasswdTokenIssuer(htpasswd_path=path, **kwargs)
    with pytest.raises(AuthConfigError, match="does not exist"):
        HtpasswdTokenIssuer(htpasswd_path=tmp_path / "missing", **kwargs)


def test_htpasswd_is_reloaded_when_it_changes(issuer, htpasswd) -> None:
    assert issuer.check_password("alice", "wonderland")
    htpasswd.write_text(bcrypt_line("alice", "looking-glass") + "\n")
    stat = htpasswd.stat()
    os.utime(htpasswd, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert not issuer.check_password("alice", "wonderland")
    assert issuer.check_password("alice", "looking-glass")
    assert not issuer.check_password("root", "toor")  # removed


def test_a_broken_htpasswd_edit_refuses_everyone_until_fixed(issuer, htpasswd, issuer_keys, caplog) -> None:
    good = htpasswd.read_text()
    htpasswd.write_text(good + "dave:$apr1$x$y\n")
    with pytest.raises(AuthConfigError):
        issuer.check_password("alice", "wonderland")
    with TestClient(Starlette(routes=[Route("/auth/token", issuer.endpoint)])) as client:
        response = client.get("/auth/token", auth=("alice", "wonderland"))
        assert response.status_code == 503
        htpasswd.write_text(good)
        os.utime(htpasswd, ns=(0, htpasswd.stat().st_mtime_ns + 2_000_000_000))
        assert client.get("/auth/token", auth=("alice", "wonderland")).status_code == 200


def test_issuer_configuration_errors(htpasswd, issuer_keys) -> None:
    kwargs = {"htpasswd_path": htpasswd, "issuer": ISSUER, "service": SERVICE}
    _, other_cert = generate_token_keypair("other")
    with pytest.raises(AuthConfigError, match="not for the token signing key"):
        HtpasswdTokenIssuer(signing_key_pem=issuer_keys[0], cert_pem=other_cert, **kwargs)
    with pytest.raises(AuthConfigError, match="unencrypted PEM"):
        HtpasswdTokenIssuer(signing_key_pem=b"nope", cert_pem=issuer_keys[1], **kwargs)
    with pytest.raises(AuthConfigError, match="at least 60"):
        HtpasswdTokenIssuer(signing_key_pem=issuer_keys[0], cert_pem=issuer_keys[1], token_ttl=30, **kwargs)
    with pytest.raises(AuthConfigError, match="no PEM certificate"):
        TokenAuthorizer(realm=REALM, service=SERVICE, issuer=ISSUER, root_certs_pem=b"")
    assert issubclass(AuthConfigError, TrustkitError)


# --------------------------------------------------------------------------------------------
# Issuer grants


def test_grants_per_user(issuer) -> None:
    everything = [
        Access("repository", GUN, ("push", "pull", "*", "admin")),
        Access("registry", "catalog", ("*",)),
        Access("repository(plugin)", "x/y", ("pull",)),
    ]
    assert issuer.grant("alice", everything) == [{"type": "repository", "name": GUN, "actions": ["push", "pull"]}]
    assert issuer.grant("root", everything) == [
        {"type": "repository", "name": GUN, "actions": ["push", "pull", "*", "admin"]},
        {"type": "registry", "name": "catalog", "actions": ["*"]},
    ]
    assert issuer.grant("alice", [Access("registry", "catalog", ("*",))]) == []


def test_issued_token_claims(issuer, issuer_key, kid, clock) -> None:
    token, issued = issuer.issue("alice", [parse_scope(f"repository:{GUN}:pull")])
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "ES256" and header["kid"] == kid and header["typ"] == "JWT"
    no_times = {"verify_exp": False, "verify_nbf": False, "verify_iat": False}  # T0 is not today
    body = jwt.decode(token, issuer_key.public_key(), algorithms=["ES256"], audience=SERVICE, options=no_times)
    assert body["iss"] == ISSUER and body["sub"] == "alice" and body["aud"] == SERVICE
    assert body["exp"] - body["iat"] == 300 and body["nbf"] == body["iat"] == issued == int(clock.now)
    assert body["access"] == [{"type": "repository", "name": GUN, "actions": ["pull"]}]
    assert body["jti"] != jwt.decode(issuer.issue("alice", [])[0], options={"verify_signature": False})["jti"]


# --------------------------------------------------------------------------------------------
# The token endpoint and the whole flow, in a tiny app


def protected_app(authorizer: TokenAuthorizer, issuer: HtpasswdTokenIssuer) -> Starlette:
    """What trustkit server's app does with an Authorizer: a notary-like subset of routes."""

    def guarded(required_for):
        async def handler(request: Request) -> Response:
            required = required_for(request)
            decision = authorizer.authorize(request.headers.get("authorization"), required)
            if not decision.allowed:
                error = {"code": "UNAUTHORIZED", "message": "authentication required", "detail": decision.detail}
                body = {"errors": [error]}
                return JSONResponse(body, status_code=401, headers={"WWW-Authenticate": decision.challenge})
            return JSONResponse({"subject": decision.subject})

        return handler

    def repo(*actions):
        return lambda request: [Access("repository", request.path_params["gun"], actions)]

    return Starlette(
        routes=[
            Route("/v2/", guarded(lambda r: [Access("registry", "catalog", ("*",))])),
            Route("/v2/{gun:path}/_trust/tuf/root.json", guarded(repo("pull"))),
            Route("/v2/{gun:path}/_trust/tuf/", guarded(repo("push", "pull")), methods=["POST"]),
            Route("/v2/{gun:path}/_trust/tuf/", guarded(repo("*")), methods=["DELETE"]),
            Route("/v2/{gun:path}/_trust/settings", guarded(repo("admin")), methods=["PUT"]),
            Route("/auth/token", issuer.endpoint),
        ]
    )


@pytest.fixture
def app(issuer, issuer_keys, clock) -> Starlette:
    authorizer = TokenAuthorizer(
        realm=REALM, service=SERVICE, issuer=ISSUER, root_certs_pem=issuer_keys[1], clock=clock
    )
    return protected_app(authorizer, issuer)


@pytest.fixture
def client(app):
    with TestClient(app, base_url="https://testserver") as client:
        yield client


def test_endpoint_refuses_missing_and_bad_credentials(client) -> None:
    for auth in (None, ("alice", "nope"), ("mallory", "wonderland")):
        response = client.get("/auth/token", params={"service": SERVICE, "scope": f"repository:{GUN}:pull"}, auth=auth)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == 'Basic realm="trustkit"'
        assert response.json()["errors"][0]["code"] == "UNAUTHORIZED"
        assert "token" not in response.json()
    response = client.get("/auth/token", headers={"Authorization": "Basic !!!"})
    assert response.status_code == 401


def test_endpoint_answers_the_token_spec_shape(client, clock) -> None:
    response = client.get(
        "/auth/token",
        params=[
            ("service", SERVICE),
            ("scope", f"repository:{GUN}:push,pull"),
            ("scope", "registry:catalog:*"),
            ("account", "alice"),
        ],
        auth=("alice", "wonderland"),
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"token", "access_token", "expires_in", "issued_at"}
    assert body["token"] == body["access_token"]
    assert body["expires_in"] == 300 and isinstance(body["expires_in"], int)
    assert datetime.strptime(body["issued_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp() == int(clock.now)
    access = jwt.decode(body["token"], options={"verify_signature": False})["access"]
    assert access == [{"type": "repository", "name": GUN, "actions": ["push", "pull"]}]  # no catalog for alice


def test_endpoint_takes_space_separated_scopes_and_no_scope(client) -> None:
    response = client.get(
        "/auth/token", params={"scope": f"repository:{GUN}:pull repository:a/b:push"}, auth=("root", "toor")
    )
    access = jwt.decode(response.json()["token"], options={"verify_signature": False})["access"]
    assert [(a["name"], a["actions"]) for a in access] == [(GUN, ["pull"]), ("a/b", ["push"])]
    response = client.get("/auth/token", auth=("alice", "wonderland"))
    assert jwt.decode(response.json()["token"], options={"verify_signature": False})["access"] == []


@pytest.mark.parametrize(
    "params",
    [
        {"service": "registry.example.com"},
        {"account": "root"},
        {"scope": "repository:no-actions"},
        {"scope": " ".join(f"repository:r{i}:pull" for i in range(40))},
    ],
)
def test_endpoint_rejects_bad_parameters(client, params) -> None:
    response = client.get("/auth/token", params=params, auth=("alice", "wonderland"))
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "INVALID_PARAMETERS"


def test_endpoint_answers_get_only(issuer) -> None:
    app = Starlette(routes=[Route("/auth/token", issuer.endpoint, methods=["GET", "POST"])])
    with TestClient(app) as client:
        assert client.post("/auth/token", auth=("alice", "wonderland")).status_code == 405


def test_end_to_end_challenge_token_retry(client) -> None:
    url = f"/v2/{GUN}/_trust/tuf/root.json"
    first = client.get(url)
    assert first.status_code == 401
    assert first.headers["www-authenticate"] == challenge(f"repository:{GUN}:pull")
    assert first.json()["errors"][0]["detail"] == [{"Type": "repository", "Class": "", "Name": GUN, "Action": "pull"}]

    # what docker does with the challenge: GET <realm>?service=&scope=&account= with Basic auth
    params = {"service": SERVICE, "scope": f"repository:{GUN}:pull", "account": "alice"}
    token = client.get(REALM, params=params, auth=("alice", "wonderland")).json()["token"]

    retried = client.get(url, headers={"Authorization": f"Bearer {token}"})
    assert retried.status_code == 200
    assert retried.json() == {"subject": "alice"}

    # the pull token does not allow a push; the server says so with insufficient_scope
    push = client.post(f"/v2/{GUN}/_trust/tuf/", headers={"Authorization": f"Bearer {token}"})
    assert push.status_code == 401
    assert push.headers["www-authenticate"] == challenge(f"repository:{GUN}:push,pull", "insufficient_scope")


def test_end_to_end_admin_only_actions(client) -> None:
    def token_for(user, password, scope):
        return client.get(REALM, params={"service": SERVICE, "scope": scope}, auth=(user, password)).json()["token"]

    star, admin = f"repository:{GUN}:*", f"repository:{GUN}:admin"
    alice = {"Authorization": f"Bearer {token_for('alice', 'wonderland', star + ' ' + admin)}"}
    root = {"Authorization": f"Bearer {token_for('root', 'toor', star + ' ' + admin + ' registry:catalog:*')}"}
    assert client.delete(f"/v2/{GUN}/_trust/tuf/", headers=alice).status_code == 401
    assert client.put(f"/v2/{GUN}/_trust/settings", headers=alice).status_code == 401
    assert client.get("/v2/", headers=alice).status_code == 401
    assert client.delete(f"/v2/{GUN}/_trust/tuf/", headers=root).status_code == 200
    assert client.put(f"/v2/{GUN}/_trust/settings", headers=root).status_code == 200
    assert client.get("/v2/", headers=root).status_code == 200
    assert client.post(f"/v2/{GUN}/_trust/tuf/", headers=root).status_code == 200  # * covers push,pull


def test_issued_token_expires(client, clock) -> None:
    token = client.get(REALM, params={"scope": f"repository:{GUN}:pull"}, auth=("alice", "wonderland")).json()["token"]
    url = f"/v2/{GUN}/_trust/tuf/root.json"
    assert client.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    clock.now += 300 + 31
    expired = client.get(url, headers={"Authorization": f"Bearer {token}"})
    assert expired.status_code == 401
    assert expired.headers["www-authenticate"].endswith(',error="invalid_token"')


def buffered(client: TestClient) -> httpx.Client:
    """An ``httpx.Client`` whose responses arrive fully read, as ``httpx.MockTransport`` gives them
    (the way tests/unit/test_auth.py drives TokenAuth), forwarding every request to ``client``."""

    def forward(request: httpx.Request) -> httpx.Response:
        answer = client.request(request.method, str(request.url), headers=request.headers, content=request.content)
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    return httpx.Client(transport=httpx.MockTransport(forward), base_url="https://testserver")


def test_trustkit_token_auth_drives_the_flow(client) -> None:
    """trustkit's own client auth (trustkit.client.auth.TokenAuth) against the issuer + authorizer:
    it parses our challenge, asks our realm, takes our token and is let in on the retry."""
    http = buffered(client)
    auth = TokenAuth(Credentials("alice", "wonderland"), registry="testserver")
    url = f"/v2/{GUN}/_trust/tuf/root.json"
    response = http.get(url, auth=auth)
    assert response.status_code == 200 and response.json() == {"subject": "alice"}
    assert auth.token_requests == 1
    assert http.get(url, auth=auth).status_code == 200  # the cached token is sent up front
    assert auth.token_requests == 1
    assert http.post(f"/v2/{GUN}/_trust/tuf/", auth=auth).status_code == 200  # push,pull: a new token
    assert auth.token_requests == 2

    with pytest.raises(NotAuthorizedError, match="alice"):  # not an admin
        http.delete(f"/v2/{GUN}/_trust/tuf/", auth=auth)
    with pytest.raises(NotAuthorizedError, match="token server"):
        http.get(url, auth=TokenAuth(Credentials("alice", "wrong")))
    root = TokenAuth(Credentials("root", "toor"))
    assert http.delete(f"/v2/{GUN}/_trust/tuf/", auth=root).status_code == 200


def test_trustkit_token_auth_over_a_streaming_transport(client) -> None:
    auth = TokenAuth(Credentials("alice", "wonderland"), registry="testserver")
    assert client.get(f"/v2/{GUN}/_trust/tuf/root.json", auth=auth).status_code == 200


@pytest.mark.anyio
async def test_async_flow_through_asgi_transport(app) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
        url = f"/v2/{GUN}/_trust/tuf/root.json"
        first = await client.get(url)
        assert first.status_code == 401
        token_response = await client.get(
            "/auth/token", params={"service": SERVICE, "scope": f"repository:{GUN}:pull"}, auth=("alice", "wonderland")
        )
        assert token_response.status_code == 200
        retried = await client.get(url, headers={"Authorization": f"Bearer {token_response.json()['token']}"})
        assert retried.status_code == 200


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_secrets_never_reach_the_log(client, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="trustkit")
    client.get("/auth/token", params={"scope": f"repository:{GUN}:pull"}, auth=("alice", "s3cret-guess"))
    scope = {"scope": f"repository:{GUN}:pull"}
    token = client.get("/auth/token", params=scope, auth=("alice", "wonderland")).json()["token"]
    client.post(f"/v2/{GUN}/_trust/tuf/", headers={"Authorization": f"Bearer {token}"})
    client.get(f"/v2/{GUN}/_trust/tuf/root.json", headers={"Authorization": f"Bearer {token}x"})
    text = caplog.text
    assert "alice" in text  # the log does say who
    for secret in ("s3cret-guess", "wonderland", token, token.split(".")[2]):
        assert secret not in text
