"""Offline signing and the air-gapped hand-over (trustkit.offline), in process: trustkit's server
app is the trust server (a Starlette TestClient), an httpx transport that refuses every
connection plays the unreachable one, and each "machine" is a trust dir of its own."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from trustkit.client.notary import NotaryClient
from trustkit.client.updater import Updater
from trustkit.errors import (
    ExpiredError,
    HashMismatchError,
    NetworkError,
    NotSignedError,
    ThresholdError,
    VerificationError,
)
from trustkit.keys import KeyStore
from trustkit.keys.signer import CryptoSigner, generate
from trustkit.offline import (
    MAX_EXPORT_MEMBERS,
    PendingChangesError,
    PendingConflictError,
    StaleChangeError,
    export_bytes,
    load_pending,
    publish_export,
    publish_pending,
    read_export,
    record_path,
)
from trustkit.ops import TagTarget, TrustSession, add_signer, remove_signer, revoke, sign_tags, verify_tag
from trustkit.reference import parse_repository
from trustkit.roles import RELEASES, TARGETS
from trustkit.server.config import ServerConfig, build_app, prepare

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's TestClient with plain httpx
    from starlette.testclient import TestClient

URL = "http://testserver"
GUN = "example.com/team/app"
PASSPHRASE = "offline-test-passphrase"
A, B, C = "a" * 64, "b" * 64, "c" * 64


@pytest.fixture
def server(tmp_path, monkeypatch):
    for name in list(os.environ):
        if name.startswith("TRUSTKIT_SERVER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TRUSTKIT_SERVER_PASSPHRASE", "offline-server-passphrase")
    config = ServerConfig.load(None, {"database": f"sqlite:///{tmp_path / 'server.db'}"})
    prepare(config)
    with TestClient(build_app(config)) as client:
        yield client


def unreachable() -> httpx.Client:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    return httpx.Client(transport=httpx.MockTransport(refuse), base_url=URL)


def session(trust_dir: Path, server: TestClient | None, *, offline: bool = False, now: datetime | None = None):
    """One machine's session: ``server`` None = the trust server cannot be reached."""
    http = server if server is not None else unreachable()
    client = None if offline else NotaryClient(URL, GUN, http, retries=0)
    store = KeyStore(trust_dir, lambda request: PASSPHRASE)
    return TrustSession(parse_repository(GUN), client, store, trust_dir, now=now or datetime.now(UTC), offline=offline)


def tag(name: str, digest: str = A, size: int = 10) -> TagTarget:
    return TagTarget(name, digest, size)


def served_tags(server: TestClient, tmp_path: Path) -> dict[str, str]:
    """What a fresh client (its own trust dir) reads from the server: {tag: digest hex}."""
    reader = tmp_path / f"reader-{len(list(tmp_path.glob('reader-*')))}"
    trusted = Updater(NotaryClient(URL, GUN, server, retries=0), GUN, reader, now=datetime.now(UTC)).refresh()
    out = {}
    for role in (TARGETS, RELEASES):
        if role in trusted.targets:
            out.update({name: meta.sha256_hex for name, meta in trusted.targets[role].signed.targets.items()})
    return out


def server_state(server: TestClient) -> dict[str, bytes]:
    out = {}
    for role in ("root", "targets", "snapshot", "timestamp"):
        response = server.get(f"/v2/{GUN}/_trust/tuf/{role}.json")
        out[role] = response.content if response.status_code == 200 else b""
    return out


@pytest.fixture
def owner(tmp_path, server):
    """Machine A: the owner, repository initialised with v1 signed; its cache is current."""
    trust_dir = tmp_path / "owner"
    sign_tags(session(trust_dir, server), [tag("v1")])
    session(trust_dir, server).load()  # any online read leaves the cache current
    return trust_dir


def second_machine_with_same_keys(tmp_path: Path, owner: Path, name: str) -> Path:
    """Another machine holding the owner's keys (its own cache): someone publishing meanwhile."""
    other = tmp_path / name
    shutil.copytree(owner / "private", other / "private")
    return other


# ---- signing offline, status, publish


def test_sign_offline_keeps_the_change_pending_and_publish_sends_it(tmp_path, server, owner):
    before = server_state(server)
    result = sign_tags(session(owner, None, offline=True), [tag("v2", B, 20)])
    assert result.signed == {"v2": [TARGETS]}
    assert server_state(server) == before  # nothing went to the server

    change = load_pending(owner, GUN)
    assert change is not None and set(change.files) == {TARGETS}
    [summary] = change.summary()
    assert summary["base_version"] == 1 and summary["version"] == 2  # the first sign made version 1
    assert summary["tags"]["added"] == {"v2": f"sha256:{B} (20 bytes)"}

    published = publish_pending(session(owner, server))
    assert published.how == "as signed" and published.roles == [TARGETS]
    assert load_pending(owner, GUN) is None
    assert served_tags(server, tmp_path) == {"v1": A, "v2": B}
    # The server holds exactly the bytes signed offline.
    assert server.get(f"/v2/{GUN}/_trust/tuf/targets.json").content == change.files[TARGETS]


def test_without_offline_an_unreachable_server_fails_and_nothing_is_kept(owner):
    with pytest.raises(NetworkError):
        sign_tags(session(owner, None), [tag("v2")])
    assert load_pending(owner, GUN) is None


def test_offline_edits_accumulate_into_one_pending_change(tmp_path, server, owner):
    sign_tags(session(owner, None, offline=True), [tag("v2", B)])
    sign_tags(session(owner, None, offline=True), [tag("v3", C)])
    revoke(session(owner, None, offline=True), "v1")
    change = load_pending(owner, GUN)
    assert change is not None
    [summary] = change.summary()
    assert summary["version"] == summary["base_version"] + 1  # one update, however many edits
    assert set(summary["tags"]["added"]) == {"v2", "v3"} and set(summary["tags"]["removed"]) == {"v1"}
    publish_pending(session(owner, server))
    assert served_tags(server, tmp_path) == {"v2": B, "v3": C}


def test_an_online_edit_is_refused_while_changes_are_pending(tmp_path, server, owner):
    sign_tags(session(owner, None, offline=True), [tag("v2", B)])
    before = server_state(server)
    with pytest.raises(PendingChangesError, match="trustkit publish"):
        sign_tags(session(owner, server), [tag("v3", C)])
    assert server_state(server) == before


def test_an_unreadable_record_says_how_to_drop_it(tmp_path, server, owner, capsys):
    from trustkit.cli import main

    sign_tags(session(owner, None, offline=True), [tag("v2", B)])
    record_path(owner, GUN).write_text('{"format": "trustkit-pending/1", "gun": "' + GUN + '", "roles": 5}')
    with pytest.raises(SystemExit) as failed:
        main(["--trust-dir", str(owner), "status", GUN])
    err = capsys.readouterr().err
    assert failed.value.code == 1 and "cannot be read" in err and f"status {GUN} --reset" in err
    assert run("--trust-dir", str(owner), "status", GUN, "--reset").exit_code == 0
    assert load_pending(owner, GUN) is None


def test_offline_needs_a_cache(tmp_path):
    with pytest.raises(NotSignedError, match="without --offline"):
        sign_tags(session(tmp_path / "empty", None, offline=True), [tag("v1")])


def test_publish_re_signs_on_top_of_a_newer_version_when_nothing_conflicts(tmp_path, server, owner):
    sign_tags(session(owner, None, offline=True), [tag("v2", B)])
    other = second_machine_with_same_keys(tmp_path, owner, "colleague")
    sign_tags(session(other, server), [tag("v3", C)])  # published while the owner was offline

    published = publish_pending(session(owner, server))
    assert published.how == "re-signed"
    assert served_tags(server, tmp_path) == {"v1": A, "v2": B, "v3": C}


def test_publish_refuses_when_the_same_tag_now_points_elsewhere(tmp_path, server, owner):
    sign_tags(session(owner, None, offline=True), [tag("v1", B)])
    other = second_machine_with_same_keys(tmp_path, owner, "colleague")
    sign_tags(session(other, server), [tag("v1", C)])
    before = server_state(server)

    with pytest.raises(PendingConflictError, match=r"v1 in targets: .*sha256:" + B + r".* now sha256:" + C):
        publish_pending(session(owner, server))
    assert server_state(server) == before
    assert load_pending(owner, GUN) is not None  # kept, to look at or reset


def test_an_edit_already_published_elsewhere_is_not_a_conflict(tmp_path, server, owner):
    sign_tags(session(owner, None, offline=True), [tag("v2", B)])
    other = second_machine_with_same_keys(tmp_path, owner, "colleague")
    sign_tags(session(other, server), [tag("v2", B), tag("v3", C)])
    assert publish_pending(session(owner, server)).how == "re-signed"
    assert served_tags(server, tmp_path) == {"v1": A, "v2": B, "v3": C}


def test_concurrent_signer_adds_merge_but_a_removed_delegate_cannot_publish(tmp_path, server, owner):
    alice_dir = tmp_path / "alice"
    private = generate("ecdsa")
    alice_public = CryptoSigner(private).public_key
    KeyStore(alice_dir, lambda r: PASSPHRASE).add(private, role="alice")
    bob_key = CryptoSigner(generate("ecdsa")).public_key
    add_signer(session(owner, server), "alice", [alice_public])
    # Alice reads the repository once, then signs offline into targets/releases (and targets/alice).
    session(alice_dir, server).load()
    signed = sign_tags(session(alice_dir, None, offline=True), [tag("v2", B)])
    assert set(signed.signed["v2"]) == {RELEASES, "targets/alice"}
    # The owner, whose cache predates alice, adds bob offline: both adds created targets/releases,
    # so publishing merges the two (alice's key and bob's), re-signed on top.
    add_signer(session(owner, None, offline=True), "bob", [bob_key])
    assert publish_pending(session(owner, server)).how == "re-signed"
    releases = session(tmp_path / "reader", server).load().targets[TARGETS].signed.delegations.role(RELEASES)
    assert set(releases.keyids) == {alice_public.keyid, bob_key.keyid}
    # ...then removes alice: her pending signatures no longer count.
    remove_signer(session(owner, server), "alice")
    before = server_state(server)
    with pytest.raises(PendingConflictError, match="no longer"):
        publish_pending(session(alice_dir, server))
    assert server_state(server) == before


# ---- export and publish --from


def export_of(owner: Path, tmp_path: Path) -> Path:
    change = load_pending(owner, GUN)
    assert change is not None
    path = tmp_path / "handover.tar"
    path.write_bytes(export_bytes(change))
    return path


def test_an_export_is_published_by_a_machine_without_keys(tmp_path, server, owner):
    sign_tags(session(owner, None, offline=True), [tag("v2", B)])
    path = export_of(owner, tmp_path)
    connected = tmp_path / "connected"  # no private keys at all
    assert publish_export(session(connected, server), read_export(path)) == [TARGETS]
    assert not (connected / "private").exists()
    assert served_tags(server, tmp_path) == {"v1": A, "v2": B}
    # Back on the owner's machine, publishing finds it done.
    assert publish_pending(session(owner, server)).how == "already published"


def rewrite(path: Path, change) -> None:
    """Rewrite the tar at ``path``, passing each (name, data) through ``change``."""
    members = []
    with tarfile.open(path) as tar:
        for info in tar:
            members.append((info.name, tar.extractfile(info).read()))
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for old_name, old_data in members:
            name, data = change(old_name, old_data)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(out.getvalue())


def test_a_tampered_export_is_refused_and_publishes_nothing(tmp_path, server, owner):
    sign_tags(session(owner, None, offline=True), [tag("v2", B)])
    path = export_of(owner, tmp_path)
    before = server_state(server)

    import base64
    import hashlib

    b64_b = base64.b64encode(bytes.fromhex(B)).decode().encode()
    b64_c = base64.b64encode(bytes.fromhex(C)).decode().encode()

    def swap_target(name, data):
        return name, data.replace(b64_b, b64_c) if name == "targets.json" else data

    rewrite(path, swap_target)
    with pytest.raises(HashMismatchError, match="not the file its manifest lists"):
        read_export(path)

    # The manifest fixed up too: now the signature gives it away.
    def fix_manifest(name, data):
        if name != "manifest.json":
            return name, data
        with tarfile.open(path) as tar:
            targets = tar.extractfile("targets.json").read()
        manifest = json.loads(data)
        manifest["files"][0]["sha256"] = hashlib.sha256(targets).hexdigest()
        manifest["files"][0]["length"] = len(targets)
        return name, json.dumps(manifest).encode()

    rewrite(path, fix_manifest)
    with pytest.raises(ThresholdError):
        publish_export(session(tmp_path / "connected", server), read_export(path))
    assert server_state(server) == before


def test_a_stale_export_is_refused(tmp_path, server, owner):
    sign_tags(session(owner, None, offline=True), [tag("v2", B)])
    path = export_of(owner, tmp_path)
    other = second_machine_with_same_keys(tmp_path, owner, "colleague")
    sign_tags(session(other, server), [tag("v3", C)])
    before = server_state(server)
    with pytest.raises(StaleChangeError, match="signed on version 1 .* now has version 2"):
        publish_export(session(tmp_path / "connected", server), read_export(path))
    assert server_state(server) == before


def test_an_expired_export_is_refused(tmp_path, server, owner):
    long_ago = datetime.now(UTC) - timedelta(days=4 * 365)  # targets are signed for 3 years
    sign_tags(session(owner, None, offline=True, now=long_ago), [tag("v2", B)])
    path = export_of(owner, tmp_path)
    before = server_state(server)
    with pytest.raises(ExpiredError, match="expired"):
        publish_export(session(tmp_path / "connected", server), read_export(path))
    assert server_state(server) == before


def test_an_export_for_another_repository_is_refused(tmp_path, server, owner):
    sign_tags(session(owner, None, offline=True), [tag("v2", B)])
    export = read_export(export_of(owner, tmp_path))
    export.gun = "example.com/team/other"
    with pytest.raises(VerificationError, match="not example.com/team/app"):
        publish_export(session(tmp_path / "connected", server), export)


def tar_with(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
            else:
                info = tarfile.TarInfo(member[0])
                info.size = len(member[1])
                tar.addfile(info, io.BytesIO(member[1]))
    return path


def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([("../targets.json", b"{}")], "neither the manifest nor a role file"),
        ([("/etc/targets.json", b"{}")], "neither the manifest nor a role file"),
        ([("targets/../../x.json", b"{}")], "neither the manifest nor a role file"),
        ([("timestamp.json", b"{}")], "neither the manifest nor a role file"),
        ([link("targets.json", "/etc/passwd")], "not a plain file"),
        ([link("targets.json", "manifest.json", tarfile.LNKTYPE)], "not a plain file"),
        ([("targets.json", b"{}"), ("targets.json", b"{}")], "twice"),
        ([("targets.json", b"{}")], "no manifest.json"),
        ([("manifest.json", b'{"format": "trustkit-export/1", "gun": "x", "files": []}')], "non-empty"),
        ([("manifest.json", b"[1, 2")], "not a valid trustkit export"),
    ],
)
def test_hostile_exports_are_refused_before_anything_is_read_into_place(tmp_path, members, message):
    path = tar_with(tmp_path / "bad.tar", members)
    with pytest.raises(VerificationError, match=message):
        read_export(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.tar"]  # nothing extracted


def test_export_size_and_member_count_are_bounded(tmp_path, monkeypatch):
    many = tar_with(tmp_path / "many.tar", [(f"targets/r{i}.json", b"") for i in range(MAX_EXPORT_MEMBERS + 1)])
    with pytest.raises(VerificationError, match="more than"):
        read_export(many)
    import trustkit.offline

    monkeypatch.setattr(trustkit.offline, "MAX_EXPORT_BYTES", 1000)
    with pytest.raises(VerificationError, match="at most 1000"):
        read_export(many)
    not_tar = tmp_path / "not.tar"
    not_tar.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(VerificationError, match="not a trustkit export"):
        read_export(not_tar)


def test_manifest_must_list_exactly_the_members(tmp_path, server, owner):
    sign_tags(session(owner, None, offline=True), [tag("v2", B)])
    path = export_of(owner, tmp_path)
    with tarfile.open(path) as tar:
        members = [(i.name, tar.extractfile(i).read()) for i in tar]
    tar_with(path, [*members, ("targets/extra.json", b"{}")])
    with pytest.raises(VerificationError, match="not in the manifest"):
        read_export(path)
    tar_with(path, [m for m in members if m[0] != "targets.json"])
    with pytest.raises(VerificationError, match="listed but not in the tar"):
        read_export(path)


# ---- the command line


def run(*args: str, env: dict[str, str] | None = None):
    from trustkit.cli import cli

    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def test_cli_status_publish_export_and_reset(tmp_path, server, owner, monkeypatch):
    sign_tags(session(owner, None, offline=True), [tag("v2", B)])
    shown = run("--trust-dir", str(owner), "status", GUN)
    assert shown.exit_code == 0
    assert "targets: version 2 (signed on version 1)" in shown.output and f"+ v2 sha256:{B}" in shown.output
    as_json = json.loads(run("--trust-dir", str(owner), "status", GUN, "--format", "json").output)
    assert as_json["pending"][0]["tags"]["added"] == {"v2": f"sha256:{B} (10 bytes)"}

    export = tmp_path / "out.tar"
    exported = run("--trust-dir", str(owner), "publish", GUN, "--export", str(export))
    assert exported.exit_code == 0 and "publish --from out.tar" in exported.output
    assert read_export(export).files == load_pending(owner, GUN).files

    reset = run("--trust-dir", str(owner), "status", GUN, "--reset")
    assert reset.exit_code == 0 and "Dropped" in reset.output
    assert not record_path(owner, GUN).exists()
    assert "No changes pending" in run("--trust-dir", str(owner), "status", GUN).output
    nothing = run("--trust-dir", str(owner), "publish", GUN)  # as notary: nothing to do is no failure
    assert nothing.exit_code == 0 and "No changes pending" in nothing.output


def test_cli_sign_without_a_server_names_offline_and_with_it_keeps_the_change(tmp_path, owner, monkeypatch):
    from trustkit.cli import main

    monkeypatch.setenv("DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE", PASSPHRASE)
    base = ["--trust-dir", str(owner), "--server", "http://127.0.0.1:9"]  # nothing listens on port 9
    sign = ["sign", f"{GUN}:v2", "--digest", f"sha256:{B}", "--size", "5"]
    with pytest.raises(SystemExit) as failed:
        main([*base, *sign])
    assert failed.value.code == 1
    assert load_pending(owner, GUN) is None

    result = run(*base, *sign, "--offline")
    assert result.exit_code == 0, result.output
    assert "Kept pending" in result.output and load_pending(owner, GUN) is not None


def test_cli_unreachable_message_mentions_offline(owner, capsys, monkeypatch):
    from trustkit.cli import main

    monkeypatch.setenv("DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE", PASSPHRASE)
    with pytest.raises(SystemExit):
        main(["--trust-dir", str(owner), "--server", "http://127.0.0.1:9", "revoke", f"{GUN}:v1"])
    err = capsys.readouterr().err
    assert "--offline" in err and f"trustkit publish {GUN}" in err


def test_verify_is_not_fooled_by_a_pending_change(tmp_path, server, owner):
    sign_tags(session(owner, None, offline=True), [tag("v2", B)])
    with pytest.raises(NotSignedError):
        verify_tag(session(owner, server), "v2")  # the record is not trust data: verify reads the server's
