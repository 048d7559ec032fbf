"""Co-signing through the trust server (issue 12 section 3), in-process: trustkit's client
stack (TrustSession -> NotaryClient) against the ASGI app of ``trustkit server``.

Two signers of a 2-of-3 delegation, each with their own trust dir holding only their own key,
stage and complete a release through ``/v2/<gun>/_trust/staged/``; the server checks what is
staged (role, version, signatures, threshold), drops what went stale, never serves it as trust
data, applies publishing's access rules and body limit, and the web page shows what is pending.
The same flow against the real notary CLI, docker CLI and a real server process is in
tests/interop/test_server_cosign.py."""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from raw_asgi import request as raw_request
from trustkit.client.notary import NotaryClient
from trustkit.client.staging import FolderStaging, ServerStaging
from trustkit.errors import ThresholdError
from trustkit.keys import CryptoSigner, KeyStore, PublicKey, generate
from trustkit.metadata import Metadata, Signature
from trustkit.ops import TagTarget, TrustSession, add_signer, pending_changes, sign_tags, verify_tag
from trustkit.reference import parse_repository
from trustkit.roles import RELEASES
from trustkit.server.app import ServerSettings, create_app
from trustkit.server.keys import ServerKeys
from trustkit.server.staging import Staging
from trustkit.server.storage import STAGED_FILES, Storage
from trustkit.server.web import web_routes

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette 1.x prefers httpx2 for its TestClient; plain httpx works
    from starlette.testclient import TestClient

GUN = "registry.example.com/team/cosign"
URL = "http://testserver"
TEAM = "targets/team"
STAGED = f"/v2/{GUN}/_trust/staged/"
DIGEST_A, DIGEST_B = "ab" * 32, "cd" * 32
PASSPHRASE = "test-passphrase"


@dataclass
class Member:
    name: str
    trust_dir: Path
    key: CryptoSigner

    @property
    def keyid(self) -> str:
        return self.key.public_key.keyid


@dataclass
class Setup:
    storage: Storage
    http: TestClient
    members: list[Member]
    tmp: Path

    def session(self, trust_dir: Path, *, staging_dir: Path | None = None, http: TestClient | None = None):
        store = KeyStore(trust_dir, lambda request: PASSPHRASE)
        client = NotaryClient(URL, GUN, http or self.http, retries=0)
        return TrustSession(parse_repository(GUN), client, store, trust_dir, staging_dir=staging_dir)

    def sign(self, member: Member, tag: str = "v1", digest: str = DIGEST_A, **kwargs):
        return sign_tags(self.session(member.trust_dir, **kwargs), [TagTarget(tag, digest, 5)])

    def reader(self) -> TrustSession:
        return self.session(self.tmp / f"reader-{len(list(self.tmp.iterdir()))}")

    def staged_rows(self) -> list[tuple[str, int]]:
        with self.storage.engine.connect() as conn:
            return [(r.role, r.version) for r in conn.execute(STAGED_FILES.select().order_by(STAGED_FILES.c.role))]


def make_app(storage: Storage, **settings):
    return create_app(
        storage, ServerKeys(storage, "server-passphrase"), ServerSettings(**settings), extra_routes=web_routes(storage)
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    """A repository whose signer "team" has three keys and needs two of them (so does
    targets/releases); each member's trust dir holds only their own key.  On SQLite and on
    PostgreSQL (a fresh database of the test's own)."""
    url = f"sqlite:///{tmp_path / 'server.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    storage = Storage(url)
    with TestClient(make_app(storage)) as http:
        members = []
        for name in ("m1", "m2", "m3"):
            trust_dir = tmp_path / name
            private = generate()
            KeyStore(trust_dir, lambda request: PASSPHRASE).add(private, role=name)
            members.append(Member(name, trust_dir, CryptoSigner(private)))
        setup = Setup(storage, http, members, tmp_path)
        admin = setup.session(tmp_path / "admin")
        add_signer(admin, "team", [m.key.public_key for m in members], threshold=2)
        yield setup
    storage.close()


def staged_list(setup: Setup, **headers) -> list[dict]:
    answer = setup.http.get(STAGED, headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()["staged"]


def canonical(member: Member) -> str:
    return PublicKey.from_crypto(member.key.private_key.public_key()).canonical_id


def error_code(answer) -> str:
    return answer.json()["errors"][0]["code"]


# ---- the flow


def test_two_signers_on_two_machines_complete_a_release_through_the_server(setup):
    m1, m2, _ = setup.members
    first = setup.sign(m1)
    assert first.published == []
    assert set(first.pending) == {TEAM, RELEASES}
    assert all(where == f"on the trust server {URL}" for where in first.pending.values())
    listed = {entry["role"]: entry for entry in staged_list(setup)}
    assert set(listed) == {TEAM, RELEASES}
    assert listed[TEAM]["signed_by"] == [canonical(m1)] and listed[TEAM]["threshold"] == 2
    assert listed[TEAM]["added"] == ["v1"] and listed[TEAM]["version"] == 1

    # Staged data is never trust data: not served, not in the snapshot, no change recorded.
    assert setup.http.get(f"/v2/{GUN}/_trust/tuf/{TEAM}.json").status_code == 404
    snapshot = Metadata.from_bytes(setup.http.get(f"/v2/{GUN}/_trust/tuf/snapshot.json").content, role="snapshot")
    assert TEAM not in snapshot.signed.meta and RELEASES not in snapshot.signed.meta
    changes = setup.http.get(f"/v2/{GUN}/_trust/changefeed", params={"records": "100", "change_id": "0"}).json()
    assert changes["count"] == 1  # the signer add only

    # A reader is told the tag waits for signatures, and whose it has (key IDs as inspect names them).
    with pytest.raises(ThresholdError) as pending:
        verify_tag(setup.reader(), "v1")
    assert "1 of the 2 signatures" in str(pending.value)
    assert f"on the trust server {URL}" in pending.value.hint and canonical(m1)[:12] in pending.value.hint

    second = setup.sign(m2)
    assert sorted(second.published) == [RELEASES, TEAM] and second.pending == {}
    assert staged_list(setup) == [] and setup.staged_rows() == []  # cleared by the signer who published
    assert verify_tag(setup.reader(), "v1").digest == DIGEST_A
    team = Metadata.from_bytes(setup.http.get(f"/v2/{GUN}/_trust/tuf/{TEAM}.json").content, role=TEAM)
    assert {s.keyid for s in team.signatures} == {m1.keyid, m2.keyid}


def test_pending_changes_are_listed_for_verify(setup):
    m1, m2, _ = setup.members
    setup.sign(m1)
    setup.sign(m2)  # v1 published
    setup.sign(m1, "v2", DIGEST_B)
    reader = setup.reader()
    assert verify_tag(reader, "v1").digest == DIGEST_A
    changes = {c.role: c for c in pending_changes(reader, reader.last_trusted)}
    assert set(changes) == {TEAM, RELEASES}
    assert changes[TEAM].added == ["v2"] and changes[TEAM].version == 2
    assert changes[TEAM].signed_by == [canonical(m1)[:12]]
    assert "targets/team version 2 is pending on the trust server" in changes[TEAM].describe()
    assert "1 of 2 signatures" in changes[TEAM].describe()


def test_a_co_signer_asked_to_sign_other_content_replaces_it_and_is_told(setup):
    m1, m2, m3 = setup.members
    setup.sign(m1, "v1", DIGEST_A)
    other = setup.sign(m2, "v1", DIGEST_B)  # same tag, another digest: not what m1 signed
    assert other.published == [] and any("other content" in w for w in other.warnings)
    assert {e["role"]: e["signed_by"] for e in staged_list(setup)}[TEAM] == [canonical(m2)]
    setup.sign(m3, "v1", DIGEST_B)
    assert verify_tag(setup.reader(), "v1").digest == DIGEST_B


def test_a_stale_staged_version_is_refused_and_dropped(setup):
    m1, m2, m3 = setup.members
    setup.sign(m1, "v1")
    staged_team = setup.http.get(f"{STAGED}{TEAM}.json").content
    # m2 and m3 release v2 another way (a shared folder): the team role moves on to version 1.
    shared = setup.tmp / "shared"
    setup.sign(m2, "v2", DIGEST_B, staging_dir=shared)
    setup.sign(m3, "v2", DIGEST_B, staging_dir=shared)
    assert verify_tag(setup.reader(), "v2").digest == DIGEST_B
    # m1's version 1 is stale now: dropped when read, refused when staged again.
    assert staged_list(setup) == [] and setup.staged_rows() == []
    assert setup.http.get(f"{STAGED}{TEAM}.json").status_code == 404
    refused = setup.http.put(f"{STAGED}{TEAM}.json", content=staged_team)
    assert refused.status_code == 400 and error_code(refused) == "VERSION"
    assert "only version 2 can be staged" in refused.json()["errors"][0]["detail"]
    assert setup.staged_rows() == []


def test_co_signers_at_once_both_count(setup):
    """Two co-signers of the same content, each starting from the first signer's version (a
    3-of-3 race): the server keeps every valid signature."""
    m1, m2, m3 = setup.members
    setup.sign(m1)
    staged = Metadata.from_bytes(setup.http.get(f"{STAGED}{TEAM}.json").content, role=TEAM)
    only_m3 = Metadata(staged.signed)
    only_m3.sign([(m3.key, m3.keyid)])
    answer = setup.http.put(f"{STAGED}{TEAM}.json", content=only_m3.data)
    assert answer.status_code == 200, answer.text
    assert answer.json()["signed_by"] == sorted([canonical(m1), canonical(m3)])
    merged = Metadata.from_bytes(setup.http.get(f"{STAGED}{TEAM}.json").content, role=TEAM)
    assert {s.keyid for s in merged.signatures} == {m1.keyid, m3.keyid}


# ---- what the server refuses


def test_bad_staged_versions_are_refused_with_notarys_envelope(setup):
    m1, _, m3 = setup.members
    setup.sign(m1)
    good = Metadata.from_bytes(setup.http.get(f"{STAGED}{TEAM}.json").content, role=TEAM)
    before = setup.staged_rows()

    def put(role: str, body: bytes):
        return setup.http.put(f"{STAGED}{role}.json", content=body)

    def signed_by(signers, **changes) -> bytes:
        meta = Metadata(copy.deepcopy(good.signed))
        for name, value in changes.items():
            setattr(meta.signed, name, value)
        meta.sign(signers)
        return meta.data

    outsider = CryptoSigner(generate())
    cases = [
        (put(TEAM, b"{not json"), 400, "MALFORMED_JSON"),
        (put(TEAM, b'{"signed": {}, "signatures": []}'), 400, "INVALID_UPDATE"),
        (put("root", good.data), 400, "INVALID_ROLE"),
        (put("targets/nobody", good.data), 400, "INVALID_UPDATE"),  # not delegated
        (put(TEAM, signed_by([(outsider, outsider.public_key.keyid)])), 400, "INVALID_UPDATE"),
        (put(TEAM, signed_by([])), 400, "INVALID_UPDATE"),  # no signature at all
        (put(TEAM, signed_by([(m3.key, m3.keyid)], version=5)), 400, "VERSION"),
        (put(TEAM, signed_by([(m1.key, m1.keyid), (m3.key, m3.keyid)])), 400, "INVALID_UPDATE"),  # complete
        (put("", good.data), 404, "METADATA_NOT_FOUND"),  # the list is read-only
        (setup.http.delete(f"{STAGED}{TEAM}.json", params={"version": "x"}), 400, "INVALID_PARAMETERS"),
    ]
    expired = Metadata(copy.deepcopy(good.signed))
    expired.signed.set_expiry(datetime.now(UTC) - timedelta(days=1))
    expired.sign([(m3.key, m3.keyid)])
    cases.append((put(TEAM, expired.data), 400, "INVALID_UPDATE"))
    forged = Metadata.from_bytes(good.data, role=TEAM)
    forged.signatures = [Signature(m3.keyid, forged.signatures[0].method, forged.signatures[0].sig)]
    cases.append((put(TEAM, forged.to_bytes()), 400, "INVALID_UPDATE"))  # m1's signature under m3's ID
    for answer, status, code in cases:
        assert (answer.status_code, error_code(answer)) == (status, code), answer.text
    assert setup.staged_rows() == before  # nothing lost or changed
    assert setup.http.get(f"{STAGED}{TEAM}.json").content == good.data


def test_an_oversized_staged_body_is_413_with_the_envelope(tmp_path):
    storage = Storage(f"sqlite:///{tmp_path / 'server.db'}")
    try:
        app = make_app(storage, max_body=4096)
        declared = raw_request(
            app, "PUT", f"{STAGED}{TEAM}.json", body_chunks=[b"x" * 5000], headers={"Content-Length": "5000"}
        )
        streamed = raw_request(app, "PUT", f"{STAGED}{TEAM}.json", body_chunks=[b"{" + b" " * 2048] * 3)
        for sent in (declared, streamed):
            assert sent.status == 413
            assert json.loads(sent.body)["errors"][0]["code"] == "TOO_LARGE"
        assert declared.pulled == 0  # refused on the declared length, before any byte was read
    finally:
        storage.close()


def test_staging_needs_push_access_and_reading_it_pull(tmp_path, monkeypatch):
    """Publishing's rules (htpasswd logins, tokens per scope): no token, or a pull-only token,
    cannot stage or clear; a pull token can read; --public-read opens reading only."""
    import bcrypt

    from trustkit.server.config import ServerConfig, build_app, prepare

    for name in [n for n in __import__("os").environ if n.startswith("TRUSTKIT_SERVER_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TRUSTKIT_SERVER_PASSPHRASE", "staging-auth-passphrase")
    (tmp_path / "htpasswd").write_text(f"alice:{bcrypt.hashpw(b'alice-pw', bcrypt.gensalt(4)).decode()}\n")
    base = {
        "database": f"sqlite:///{tmp_path / 'server.db'}",
        "auth": "htpasswd",
        "htpasswd": str(tmp_path / "htpasswd"),
    }
    for public_read in (False, True):
        config = ServerConfig.load(None, {**base, "public_read": public_read})
        prepare(config)
        with TestClient(build_app(config)) as client:

            def token(scope: str, client=client) -> dict[str, str]:
                answer = client.get(
                    "/auth/token", params={"service": "trustkit", "scope": scope}, auth=("alice", "alice-pw")
                )
                return {"Authorization": f"Bearer {answer.json()['token']}"}

            pull, push = token(f"repository:{GUN}:pull"), token(f"repository:{GUN}:push,pull")
            body = b'{"signed": {}, "signatures": []}'
            for headers in ({}, pull):
                put = client.put(f"{STAGED}{TEAM}.json", content=body, headers=headers)
                assert put.status_code == 401 and error_code(put) == "UNAUTHORIZED", put.text
                delete = client.delete(f"{STAGED}{TEAM}.json", headers=headers)
                assert delete.status_code == 401 and error_code(delete) == "UNAUTHORIZED"
            anonymous = client.get(STAGED)
            assert anonymous.status_code == (200 if public_read else 401)
            assert client.get(STAGED, headers=pull).status_code == 200
            other = client.get("/v2/registry.example.com/team/other/_trust/staged/", headers=pull)
            assert other.status_code == 401  # a token for one repository is not one for another
            # With push access the request gets as far as the checks (this GUN has no trust data).
            allowed = client.put(f"{STAGED}{TEAM}.json", content=body, headers=push)
            assert allowed.status_code == 400 and error_code(allowed) == "INVALID_UPDATE"


# ---- the client's own checks, and the places it stages


def test_a_co_signer_does_not_build_on_a_tampered_staged_version(setup):
    m1, m2, _ = setup.members
    shared = setup.tmp / "shared"
    setup.sign(m1, staging_dir=shared)
    path = shared / GUN / f"{TEAM}.json"
    meta = Metadata.from_bytes(path.read_bytes(), role=TEAM)
    meta.signatures.append(Signature(setup.members[2].keyid, "ecdsa", "AAAA"))  # a forged co-signature
    path.write_bytes(meta.to_bytes())
    result = setup.sign(m2, staging_dir=shared)
    assert any(f"the {TEAM} staged" in w and "not a valid one" in w for w in result.warnings)
    assert TEAM not in result.published and TEAM in result.pending  # signed afresh: one signature again
    assert len(Metadata.from_bytes(path.read_bytes(), role=TEAM).signatures) == 1


def test_where_staging_goes(setup, tmp_path):
    """An explicit --staging-dir wins; else the server's area when it has one; a server without
    one (notary-server's answer to the list is 404) leaves the trust dir's own folder."""
    m1 = setup.members[0]
    assert isinstance(setup.session(m1.trust_dir).staging(), ServerStaging)
    chosen = setup.session(m1.trust_dir, staging_dir=tmp_path / "shared").staging()
    assert isinstance(chosen, FolderStaging) and chosen.chosen
    import httpx

    def notary_like(request: httpx.Request) -> httpx.Response:
        body = b'{"errors":[{"code":"METADATA_NOT_FOUND","message":"...","detail":{}}]}\n'
        return httpx.Response(404, content=body)

    plain = httpx.Client(transport=httpx.MockTransport(notary_like))
    fallback = setup.session(m1.trust_dir, http=plain).staging()
    assert isinstance(fallback, FolderStaging) and not fallback.chosen
    assert fallback.location(TEAM) == str(m1.trust_dir / "staged" / GUN / f"{TEAM}.json")


# ---- the web page


def test_the_web_page_shows_what_is_pending_and_who_signed(setup):
    m1 = setup.members[0]
    setup.sign(m1, "v7")
    page = setup.http.get(f"/repositories/{GUN}")
    assert page.status_code == 200
    section = page.text.split('id="pending"', 1)[1]
    assert TEAM in section and RELEASES in section and "v7" in section
    assert canonical(m1) in section and "1 of 2" in section
    # The page only reads: what it shows is what the API lists, and a stale entry is not shown.
    assert sorted(entry.role for entry in Staging(setup.storage).pending(GUN, drop_stale=False)) == [RELEASES, TEAM]
    shared = setup.tmp / "shared"
    for member in setup.members[1:]:  # the roles move on without m1's version
        setup.sign(member, "v8", DIGEST_B, staging_dir=shared)
    assert 'id="pending"' not in setup.http.get(f"/repositories/{GUN}").text
    assert len(setup.staged_rows()) == 2  # not dropped by the page


def test_clearing_takes_only_the_named_version(setup):
    """The signer who publishes clears the version it built on; a later one staged meanwhile stays."""
    setup.sign(setup.members[0])
    wrong = setup.http.delete(f"{STAGED}{TEAM}.json", params={"version": "2"})
    assert wrong.status_code == 404 and (TEAM, 1) in setup.staged_rows()
    assert setup.http.delete(f"{STAGED}{TEAM}.json", params={"version": "1"}).status_code == 200
    assert setup.staged_rows() == [(RELEASES, 1)]


def test_a_staging_area_that_fails_does_not_change_verifys_verdict(setup):
    """verify's pending details only add to "not signed": a server whose staging area fails
    (here: 500) still gets the plain verdict, not a server error."""
    import httpx

    from trustkit.errors import NotSignedError

    def broken_staging(request: httpx.Request) -> httpx.Response:
        if "/_trust/staged/" in request.url.path:
            return httpx.Response(500, content=b'{"errors":[{"code":"UNKNOWN","message":"unknown error"}]}\n')
        answer = setup.http.request(request.method, str(request.url), content=request.content)
        return httpx.Response(answer.status_code, content=answer.content, headers=answer.headers)

    setup.sign(setup.members[0])
    reader = setup.session(
        setup.tmp / "reader-broken", http=httpx.Client(transport=httpx.MockTransport(broken_staging))
    )
    with pytest.raises(NotSignedError):
        verify_tag(reader, "v1")


def test_verify_asks_no_staging_area_when_every_role_needs_one_signature(tmp_path):
    """Without threshold roles nothing can be pending: verify's text output costs no extra request."""
    import httpx

    from trustkit.cli.trustcmds import _pending

    storage = Storage(f"sqlite:///{tmp_path / 'server.db'}")
    asked: list[str] = []
    try:
        with TestClient(make_app(storage)) as http:

            def counting(request: httpx.Request) -> httpx.Response:
                asked.append(request.url.path)
                headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
                answer = http.request(request.method, str(request.url), content=request.content, headers=headers)
                return httpx.Response(answer.status_code, content=answer.content, headers=answer.headers)

            def session(name: str) -> TrustSession:
                store = KeyStore(tmp_path / name, lambda request: PASSPHRASE)
                client = NotaryClient(URL, GUN, httpx.Client(transport=httpx.MockTransport(counting)), retries=0)
                return TrustSession(parse_repository(GUN), client, store, tmp_path / name)

            sign_tags(session("admin"), [TagTarget("v1", DIGEST_A, 5)])
            reader = session("reader")
            assert verify_tag(reader, "v1").digest == DIGEST_A
            assert _pending(reader, []) == []
            assert not [path for path in asked if "/_trust/staged/" in path]
    finally:
        storage.close()
