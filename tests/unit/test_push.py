"""trustkit.oci.registry, trustkit.oci.sources and trustkit.oci.push against an in-process registry behind an
``httpx.MockTransport``: uploads (monolithic, chunked, verified while streaming), retries, error
mapping, the concurrency limit, skips, mounts, manifest ordering, immutability and the
pushed-but-not-signed failure.  The real registry is exercised in tests/interop."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
import time
from pathlib import Path

import httpx
import pytest

import images
from trustkit.client.notary import NotaryClient
from trustkit.errors import (
    HashMismatchError,
    ImmutableTagError,
    NetworkError,
    NotAuthorizedError,
    NotFoundError,
    PushedNotSignedError,
    ServerError,
    ServerRejectedError,
    TrustkitError,
)
from trustkit.oci.push import BlobLocationCache, plan_image, push_image, tag_image, upload
from trustkit.oci.registry import Manifest, RegistryClient, open_file, sha256_digest
from trustkit.oci.sources import (
    DockerArchiveSource,
    OCILayoutSource,
    RegistrySource,
    SourceError,
    parse_source,
)
from trustkit.ops import check_immutable_tag
from trustkit.reference import parse

BASE = "https://registry.test"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def envelope(code: str, message: str = "", detail: object = None) -> dict:
    return {"errors": [{"code": code, "message": message, "detail": detail}]}


class FakeRegistry:
    """The distribution API in memory, with hooks to observe and break it."""

    def __init__(self, *, upload_delay: float = 0.0) -> None:
        self.blobs: dict[str, bytes] = {}
        self.repos: dict[str, set[str]] = {}
        self.manifests: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.uploads: dict[str, tuple[str, bytearray]] = {}
        self.log: list[tuple[str, str]] = []
        self.upload_delay = upload_delay
        self.in_flight = 0
        self.max_in_flight = 0
        self.fail_next: list[httpx.Response] = []  # answers for the next blob PUT/PATCH requests
        self.deleted: list[str] = []
        self.lock = threading.Lock()
        self.counter = 0

    def client(self, **kwargs: object) -> RegistryClient:
        http = httpx.Client(transport=httpx.MockTransport(self.handle))
        kwargs.setdefault("sleep", lambda s: None)
        return RegistryClient("registry.test", http, BASE, **kwargs)  # type: ignore[arg-type]

    def has(self, repo: str, digest: str) -> bool:
        return digest in self.repos.get(repo, set())

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        method = request.method
        with self.lock:
            self.log.append((method, path))
        parts = path.split("/")
        if path == "/v2/":
            return httpx.Response(200, json={})
        if "/blobs/uploads/" in path:
            return self._upload(request, method, path)
        if "/blobs/" in path:
            repo, digest = "/".join(parts[2:-2]), parts[-1]
            if method == "HEAD":
                if self.has(repo, digest):
                    return httpx.Response(200, headers={"Content-Length": str(len(self.blobs[digest]))})
                return httpx.Response(404)
            if method == "GET":
                if self.has(repo, digest):
                    return httpx.Response(200, content=self.blobs[digest])
                return httpx.Response(404, json=envelope("BLOB_UNKNOWN", "blob unknown to registry"))
        if "/manifests/" in path:
            repo, ref = "/".join(parts[2:-2]), parts[-1]
            if method == "PUT":
                body = request.read()
                data = json.loads(body)
                for blob in [data.get("config")] + data.get("layers", []) if "layers" in data else []:
                    if not self.has(repo, blob["digest"]):
                        return httpx.Response(
                            400, json=envelope("MANIFEST_BLOB_UNKNOWN", "blob unknown", blob["digest"])
                        )
                self.manifests[(repo, ref)] = (body, request.headers["content-type"])
                self.manifests[(repo, digest_of(body))] = (body, request.headers["content-type"])
                return httpx.Response(201, headers={"Docker-Content-Digest": digest_of(body)})
            if (repo, ref) in self.manifests:
                body, media_type = self.manifests[(repo, ref)]
                return httpx.Response(
                    200,
                    content=body if method == "GET" else b"",
                    headers={"Content-Type": media_type, "Docker-Content-Digest": digest_of(body)},
                )
            return httpx.Response(404, json=envelope("MANIFEST_UNKNOWN", "manifest unknown"))
        return httpx.Response(404)

    def _upload(self, request: httpx.Request, method: str, path: str) -> httpx.Response:
        parts = path.split("/")
        if method == "POST":
            repo = "/".join(parts[2:-3])
            mount, source = request.url.params.get("mount"), request.url.params.get("from")
            if mount and source and self.has(source, mount):
                self.repos.setdefault(repo, set()).add(mount)
                return httpx.Response(201)
            with self.lock:
                self.counter += 1
                uuid = f"u{self.counter}"
                self.uploads[uuid] = (repo, bytearray())
            return httpx.Response(
                202, headers={"Location": f"/v2/{repo}/blobs/uploads/{uuid}?_state=x", "Range": "0-0"}
            )
        uuid = parts[-1]
        if method == "DELETE":
            self.deleted.append(uuid)
            self.uploads.pop(uuid, None)
            return httpx.Response(204)
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            failure = self.fail_next.pop(0) if self.fail_next else None
        try:
            body = request.read()  # runs trustkit's verifying generator
            if self.upload_delay:
                time.sleep(self.upload_delay)
            if failure is not None:
                return failure
            repo, data = self.uploads[uuid]
            if method == "PATCH":
                start, end = map(int, request.headers["content-range"].split("-"))
                assert start == len(data) and end == start + len(body) - 1
                data += body
                return httpx.Response(
                    202,
                    headers={"Location": f"/v2/{repo}/blobs/uploads/{uuid}?_state=y", "Range": f"0-{len(data) - 1}"},
                )
            data += body
            digest = request.url.params["digest"]
            if digest_of(bytes(data)) != digest:
                return httpx.Response(400, json=envelope("DIGEST_INVALID", "provided digest did not match"))
            self.blobs[digest] = bytes(data)
            self.repos.setdefault(repo, set()).add(digest)
            del self.uploads[uuid]
            return httpx.Response(201, headers={"Docker-Content-Digest": digest})
        finally:
            with self.lock:
                self.in_flight -= 1


def blob_file(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / digest_of(data).removeprefix("sha256:")
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------------------------
# the registry client


def test_monolithic_upload_then_head(tmp_path):
    fake = FakeRegistry()
    data = b"x" * 5000
    with fake.client() as client:
        client.upload_blob("team/app", digest_of(data), len(data), open_file(blob_file(tmp_path, data)))
        assert client.blob_size("team/app", digest_of(data)) == 5000
        assert client.blob_size("team/other", digest_of(data)) is None
    assert [m for m, p in fake.log if "uploads" in p] == ["POST", "PUT"]


def test_chunked_upload_sends_content_ranges_and_commits_last(tmp_path, monkeypatch):
    monkeypatch.setattr("trustkit.oci.registry.READ_SIZE", 1000)
    fake = FakeRegistry()
    data = bytes(range(256)) * 40  # 10,240 bytes
    with fake.client(chunk_threshold=4096, chunk_size=4096) as client:
        seen: list[int] = []
        client.upload_blob(
            "team/app", digest_of(data), len(data), open_file(blob_file(tmp_path, data)), progress=seen.append
        )
    assert [m for m, p in fake.log if "uploads" in p] == ["POST", "PATCH", "PATCH", "PATCH", "PUT"]
    assert fake.blobs[digest_of(data)] == data
    assert seen[-1] == len(data) and seen == sorted(seen)


@pytest.mark.parametrize("chunked", [False, True])
def test_bytes_that_do_not_match_the_digest_are_never_committed(tmp_path, chunked, monkeypatch):
    monkeypatch.setattr("trustkit.oci.registry.READ_SIZE", 1000)
    fake = FakeRegistry()
    declared = b"a" * 6000
    path = blob_file(tmp_path, declared)
    path.write_bytes(b"b" * 6000)  # same size, other bytes
    kwargs = {"chunk_threshold": 2000, "chunk_size": 2000} if chunked else {}
    with fake.client(**kwargs) as client, pytest.raises(HashMismatchError, match="does not match its digest"):
        client.upload_blob("team/app", digest_of(declared), 6000, open_file(path))
    assert fake.blobs == {}
    assert not [p for m, p in fake.log if m == "PUT"] if chunked else True
    assert fake.deleted  # the upload session was cancelled


def test_shorter_or_longer_than_declared_is_refused(tmp_path):
    fake = FakeRegistry()
    data = b"c" * 300
    with fake.client() as client:
        with pytest.raises(HashMismatchError, match="shorter"):
            client.upload_blob("r/a", digest_of(data), 301, open_file(blob_file(tmp_path, data)))
        with pytest.raises(HashMismatchError, match="longer"):
            client.upload_blob("r/a", digest_of(data[:299]), 299, open_file(blob_file(tmp_path, data)))


def test_transient_failures_restart_the_blob_with_backoff(tmp_path):
    fake = FakeRegistry()
    fake.fail_next = [httpx.Response(503), httpx.Response(429, headers={"Retry-After": "3"})]
    slept: list[float] = []
    data = b"d" * 100
    with fake.client(sleep=slept.append) as client:
        client.upload_blob("r/a", digest_of(data), 100, open_file(blob_file(tmp_path, data)))
    assert fake.blobs[digest_of(data)] == data
    assert len(slept) == 2 and slept[1] >= 3
    assert len(fake.deleted) == 2  # the failed sessions were cancelled


def test_persistent_failure_gives_up_with_a_clear_error(tmp_path):
    fake = FakeRegistry()
    fake.fail_next = [httpx.Response(503)] * 10
    data = b"e" * 10
    with fake.client() as client, pytest.raises(NetworkError, match="failed 4 times"):
        client.upload_blob("r/a", digest_of(data), 10, open_file(blob_file(tmp_path, data)))


def test_connect_errors_are_retried_for_reads():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) < 3:
            raise httpx.ConnectError("refused")
        return httpx.Response(404)

    client = RegistryClient("r.test", httpx.Client(transport=httpx.MockTransport(handler)), BASE, sleep=lambda s: None)
    assert client.blob_size("a/b", "sha256:" + "0" * 64) is None and len(calls) == 3


def test_blob_size_comes_from_the_head_answer_however_large():
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.method == "HEAD"
        return httpx.Response(200, headers={"Content-Length": str(5 << 30)})  # a 5 GiB layer

    client = RegistryClient("r.test", httpx.Client(transport=httpx.MockTransport(handler)), BASE, sleep=lambda s: None)
    assert client.blob_size("a/b", "sha256:" + "0" * 64) == 5 << 30


@pytest.mark.parametrize(
    ("status", "body", "error", "text"),
    [
        (401, envelope("UNAUTHORIZED", "authentication required"), NotAuthorizedError, "trustkit login"),
        (403, envelope("DENIED", "requested access to the resource is denied"), NotAuthorizedError, "denied"),
        (404, envelope("NAME_UNKNOWN", "repository name not known to registry"), NotFoundError, "not known"),
        (400, envelope("MANIFEST_BLOB_UNKNOWN", "blob unknown", "sha256:ab"), ServerRejectedError, "sha256:ab"),
        (400, envelope("TAG_INVALID", "manifest tag did not match URI"), ServerRejectedError, "TAG_INVALID"),
        (400, envelope("DIGEST_INVALID", "provided digest did not match"), HashMismatchError, "digest"),
        (500, b"oops", ServerError, "HTTP 500"),
    ],
)
def test_registry_errors_map_to_trustkit_errors(status, body, error, text):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body if isinstance(body, bytes) else json.dumps(body).encode())

    client = RegistryClient("r.test", httpx.Client(transport=httpx.MockTransport(handler)), BASE, sleep=lambda s: None)
    manifest = Manifest.from_bytes(b'{"schemaVersion":2,"config":{},"layers":[]}')
    with pytest.raises(error, match=text):
        client.put_manifest("team/app", "v1", manifest)


def test_a_hostile_error_body_is_a_clean_error():
    """An error body nested deeper than a recursive parser goes is no envelope, not a crash."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, content=b"[" * 60_000)

    client = RegistryClient("r.test", httpx.Client(transport=httpx.MockTransport(handler)), BASE, sleep=lambda s: None)
    with pytest.raises(ServerRejectedError, match=r"refused pushing the manifest team/app:v1 \(HTTP 400\)"):
        client.put_manifest("team/app", "v1", Manifest.from_bytes(b'{"schemaVersion":2,"config":{},"layers":[]}'))


def test_manifest_fetch_by_digest_is_checked():
    body = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}'

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})

    client = RegistryClient("r.test", httpx.Client(transport=httpx.MockTransport(handler)), BASE)
    assert client.get_manifest("a/b", "v1").digest == digest_of(body)
    with pytest.raises(HashMismatchError):
        client.get_manifest("a/b", "sha256:" + "1" * 64)


def test_schema1_manifests_are_refused_with_a_hint():
    with pytest.raises(TrustkitError, match="schema 1"):
        Manifest.from_bytes(b'{"schemaVersion":1,"name":"a","fsLayers":[]}')


# --------------------------------------------------------------------------------------------
# sources


def test_parse_source_forms(tmp_path):
    (tmp_path / "lay:out").mkdir()
    archive = tmp_path / "a:b.tar"
    archive.write_bytes(b"")
    assert parse_source(f"oci:{tmp_path / 'lay:out'}").path == tmp_path / "lay:out"
    spec = parse_source(f"oci:{tmp_path / 'lay:out'}:v1")
    assert (spec.path, spec.ref) == (tmp_path / "lay:out", "v1")
    spec = parse_source(f"docker-archive:{archive}:example.com/app:v1")
    assert (spec.path, spec.ref) == (archive, "example.com/app:v1")
    assert parse_source("docker://alpine").reference == parse("docker.io/library/alpine:latest")
    with pytest.raises(SourceError, match="oci:DIR"):
        parse_source("dir:/tmp/x")


def test_oci_layout_picks_by_ref_and_checks_blobs(tmp_path):
    first = images.build_oci_layout(tmp_path, ref="v1", layers=1, layer_size=100)
    images.build_oci_layout(tmp_path, ref="v2", layers=1, layer_size=100)
    with pytest.raises(SourceError, match="holds 2 images"):
        OCILayoutSource(tmp_path).root()
    with pytest.raises(SourceError, match="no image named 'v3'.*v1, v2"):
        OCILayoutSource(tmp_path, "v3").root()
    source = OCILayoutSource(tmp_path, "v1")
    assert source.root().raw == first.manifest
    first.blob_path(first.layer_digests[0]).write_bytes(b"short")
    with pytest.raises(HashMismatchError, match="5 bytes"):
        plan_image(source)
    first.blob_path(first.layer_digests[0]).unlink()
    with pytest.raises(SourceError, match="missing"):
        plan_image(source)


def _legacy_archive(path: Path, layers: list[bytes], name: str = "example.com/app:v1") -> list[str]:
    tars = []
    for number, content in enumerate(layers):
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w") as tar:
            info = tarfile.TarInfo(f"file{number}")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        tars.append(raw.getvalue())
    diff_ids = [digest_of(t) for t in tars]
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    ).encode()
    with tarfile.open(path, "w") as archive:

        def add(member: str, data: bytes) -> None:
            info = tarfile.TarInfo(member)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))

        add("config.json", config)
        for number, data in enumerate(tars):
            add(f"layer{number}/layer.tar", data)
        link = tarfile.TarInfo("shared.tar")
        link.type = tarfile.SYMTYPE
        link.linkname = "layer0/layer.tar"
        archive.addfile(link)
        add(
            "manifest.json",
            json.dumps(
                [
                    {
                        "Config": "config.json",
                        "RepoTags": [name],
                        "Layers": ["shared.tar"] + [f"layer{i}/layer.tar" for i in range(1, len(tars))],
                    }
                ]
            ).encode(),
        )
    return diff_ids


def test_docker_archive_builds_a_deterministic_schema2_manifest(tmp_path):
    archive = tmp_path / "saved.tar"
    _legacy_archive(archive, [b"hello" * 1000, b"world" * 2000])
    events: list[tuple[str, str, str]] = []
    cache = BlobLocationCache(tmp_path / "cache.json")
    first = DockerArchiveSource(archive, cache=cache, progress=lambda *e: events.append(e))
    manifest = first.root()
    data = manifest.json()
    assert data["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert [layer["mediaType"] for layer in data["layers"]] == ["application/vnd.docker.image.rootfs.diff.tar.gzip"] * 2
    assert sum(1 for e in events if e[0] == "compressing") == 2
    # The same bytes again, another source: same manifest, and the cache spares the compression.
    events.clear()
    second = DockerArchiveSource(archive, "example.com/app:v1", cache=cache, progress=lambda *e: events.append(e))
    assert second.root().digest == manifest.digest and not events
    # Uploading a cached layer compresses it then, and it must match.
    layer = plan_image(second).blobs[1][0]
    with second.opener(layer)() as reader:
        assert digest_of(reader.read()) == layer.digest
    first.close()
    second.close()
    with pytest.raises(SourceError, match="no image named"):
        DockerArchiveSource(archive, "example.com/app:v2").root()


def test_zstd_archives_are_refused_with_a_hint_and_broken_gzip_clearly(tmp_path):
    archive = tmp_path / "saved.tar.zst"
    archive.write_bytes(b"\x28\xb5\x2f\xfdrest")
    with pytest.raises(SourceError, match="decompress it first"):
        DockerArchiveSource(archive)
    broken = tmp_path / "saved.tar.gz"
    broken.write_bytes(b"\x1f\x8b\x08\x00rest")
    with pytest.raises(SourceError, match="truncated"):
        DockerArchiveSource(broken)


# --------------------------------------------------------------------------------------------
# the push engine


def _image(tmp_path: Path, layers: int = 6, size: int = 2000):
    built = images.build_oci_layout(tmp_path / "layout", ref="v1", layers=layers, layer_size=size)
    return built, OCILayoutSource(built.layout, "v1")


def test_at_most_n_uploads_in_flight_and_the_manifest_goes_last(tmp_path):
    built, source = _image(tmp_path, layers=12)
    fake = FakeRegistry(upload_delay=0.05)
    target = parse("registry.test/team/app:v1")
    with fake.client() as client:
        summary = upload(plan_image(source), source, client, target, max_concurrent_uploads=3)
    assert fake.max_in_flight == 3
    assert (summary.layers_uploaded, summary.layers_skipped, summary.layers_mounted) == (12, 0, 0)
    manifest_at = fake.log.index(("PUT", "/v2/team/app/manifests/v1"))
    assert all(i < manifest_at for i, (m, p) in enumerate(fake.log) if "/blobs/" in p)
    assert fake.manifests[("team/app", "v1")][0] == built.manifest


def test_existing_blobs_are_skipped_and_known_ones_mounted(tmp_path):
    built, source = _image(tmp_path, layers=3)
    fake = FakeRegistry()
    cache = BlobLocationCache(tmp_path / "cache.json")
    with fake.client() as client:
        first = push_image(source, parse("registry.test/team/app:v1"), client, cache=cache)
        again = push_image(source, parse("registry.test/team/app:v1"), client, cache=cache)
        mounted = push_image(
            source, parse("registry.test/team/other:v1"), client, cache=BlobLocationCache(tmp_path / "cache.json")
        )  # read back from disk
    assert first.layers_uploaded == 3 and first.bytes_uploaded > 0
    assert (again.layers_uploaded, again.layers_skipped, again.bytes_uploaded) == (0, 3, 0)
    assert (mounted.layers_mounted, mounted.layers_uploaded) == (3, 0)


def test_a_mount_the_registry_refuses_falls_back_to_an_upload(tmp_path):
    built, source = _image(tmp_path, layers=2)
    fake = FakeRegistry()
    cache = BlobLocationCache(None)
    cache.remember("registry.test", "team/nowhere", built.layer_digests + [built.config_digest])
    with fake.client() as client:
        summary = push_image(source, parse("registry.test/team/app:v1"), client, cache=cache)
    assert summary.layers_uploaded == 2 and summary.layers_mounted == 0
    assert ("POST", "/v2/team/app/blobs/uploads/") in fake.log


def test_one_failing_blob_stops_the_push_before_any_manifest(tmp_path):
    built, source = _image(tmp_path, layers=5)
    victim = built.blob_path(built.layer_digests[3])
    victim.write_bytes(bytes(reversed(victim.read_bytes())))
    fake = FakeRegistry()
    with fake.client() as client, pytest.raises(HashMismatchError):
        push_image(source, parse("registry.test/team/app:v1"), client)
    assert not [p for m, p in fake.log if "/manifests/" in p]


def test_an_index_pushes_children_first_then_the_index(tmp_path):
    index, children = images.build_oci_index(tmp_path / "layout", ref="multi")
    source = OCILayoutSource(index.layout, "multi")
    fake = FakeRegistry()
    with fake.client() as client:
        summary = push_image(source, parse("registry.test/team/multi:v1"), client)
    puts = [p for m, p in fake.log if m == "PUT" and "/manifests/" in p]
    assert puts == [f"/v2/team/multi/manifests/{c.digest}" for c in children] + ["/v2/team/multi/manifests/v1"]
    assert summary.digest == index.digest and summary.manifests == 3


def test_docker_source_copies_and_tag_mounts(tmp_path):
    built, source = _image(tmp_path, layers=2)
    fake = FakeRegistry()
    with fake.client() as client:
        push_image(source, parse("registry.test/team/src:v1"), client)
        copied = push_image(
            RegistrySource(client, parse("registry.test/team/src:v1")), parse("registry.test/team/dst:v1"), client
        )
        assert copied.layers_mounted == 2
        tagged = tag_image(client, parse("registry.test/team/src:v1"), parse("registry.test/team/src:v2"))
        assert tagged.digest == built.digest and fake.manifests[("team/src", "v2")][0] == built.manifest
        with pytest.raises(TrustkitError, match="different registries"):
            tag_image(client, parse("registry.test/team/src:v1"), parse("other.test/team/src:v2"))


class _Signing:
    def __init__(self, fail: Exception | None = None) -> None:
        self.fail = fail
        self.checked: list[str] = []
        self.signed: list[tuple[str, int]] = []

    def check_immutable(self, digest: str) -> None:
        self.checked.append(digest)

    def sign(self, digest: str, size: int) -> list[str]:
        if self.fail is not None:
            raise self.fail
        self.signed.append((digest, size))
        return ["targets"]


def test_signing_is_prepared_before_uploading_and_done_after(tmp_path):
    built, source = _image(tmp_path, layers=2)
    fake = FakeRegistry()
    signing = _Signing()
    order: list[str] = []

    def prepare() -> _Signing:
        order.append(f"prepared after {len(fake.log)} requests")
        return signing

    with fake.client() as client:
        summary = push_image(source, parse("registry.test/team/app:v1"), client, signing=prepare)  # type: ignore[arg-type]
    assert order == ["prepared after 0 requests"]
    assert signing.checked == [built.digest] and signing.signed == [(built.digest, built.size)]
    assert summary.signed and summary.signed_roles == ["targets"]


def test_a_failure_to_prepare_signing_uploads_nothing(tmp_path):
    _, source = _image(tmp_path, layers=2)
    fake = FakeRegistry()

    def prepare() -> _Signing:
        raise NetworkError("cannot reach the trust server")

    with fake.client() as client, pytest.raises(NetworkError):
        push_image(source, parse("registry.test/team/app:v1"), client, signing=prepare)  # type: ignore[arg-type]
    assert fake.log == []


def test_signing_failure_after_the_push_says_not_signed(tmp_path):
    built, source = _image(tmp_path, layers=2)
    fake = FakeRegistry()
    with fake.client() as client, pytest.raises(PushedNotSignedError) as caught:
        push_image(
            source,
            parse("registry.test/team/app:v1"),
            client,
            signing=lambda: _Signing(NetworkError("trust server went away")),
        )  # type: ignore[arg-type]
    assert "was pushed" in str(caught.value) and "NOT signed" in str(caught.value)
    assert caught.value.summary is not None and caught.value.summary.signed is False
    assert ("team/app", "v1") in fake.manifests


# --------------------------------------------------------------------------------------------
# immutability


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (404, b"", False),
        (200, b'{"immutable": true}', True),
        (200, b'{"immutable": false}', False),
        (200, b'{"immutable": "yes"}', ServerError),
        (200, b"not json", ServerError),
        (500, b"", ServerError),
    ],
)
def test_the_push_reads_immutability_through_the_notary_client(status, body, expected):
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(status, content=body)

    http = httpx.Client(transport=httpx.MockTransport(handler))
    client = NotaryClient("https://notary.test", "reg.test/team/app", http, retries=0)
    if isinstance(expected, bool):
        assert client.settings()["immutable"] is expected
    else:
        with pytest.raises(expected):
            client.settings()
    assert seen == ["/v2/reg.test/team/app/_trust/settings"]


class _Target:
    def __init__(self, hex_digest: str) -> None:
        self.sha256_hex = hex_digest


class _Session:
    def __init__(self, signed: str | None) -> None:
        self.last_trusted = object() if signed is not None else None
        self.signed = signed
        self.reference = parse("reg.test/team/app")


def test_an_immutable_repository_refuses_a_signed_tag_for_another_digest(monkeypatch):
    monkeypatch.setattr(
        "trustkit.ops.released_target", lambda trusted, tag: ("targets", _Target("aa" * 32)) if tag == "v1" else None
    )
    asked: list[bool] = []

    def immutable(value: bool):
        def ask() -> bool:
            asked.append(value)
            return value

        return ask

    session = _Session("aa" * 32)
    with pytest.raises(ImmutableTagError, match="already signed for sha256:aaaa"):
        check_immutable_tag(session, "v1", "sha256:" + "bb" * 32, immutable(True))  # type: ignore[arg-type]
    check_immutable_tag(session, "v1", "sha256:" + "bb" * 32, immutable(False))  # type: ignore[arg-type]
    asked.clear()
    check_immutable_tag(session, "v1", "sha256:" + "aa" * 32, immutable(True))  # type: ignore[arg-type]
    check_immutable_tag(session, "v2", "sha256:" + "bb" * 32, immutable(True))  # type: ignore[arg-type]
    check_immutable_tag(_Session(None), "v1", "sha256:" + "bb" * 32, immutable(True))  # type: ignore[arg-type]
    assert asked == []  # only asked when it matters


def test_blob_location_cache_is_bounded_and_survives_garbage(tmp_path):
    path = tmp_path / "cache.json"
    path.write_text("{not json")
    cache = BlobLocationCache(path, limit=3)
    for i in range(5):
        cache.remember("r.test", f"team/a{i}", [f"sha256:{i:064x}"])
    cache.remember("r.test", "team/b", [f"sha256:{4:064x}"])
    cache.save()
    again = BlobLocationCache(path, limit=3)
    assert again.repositories("r.test", f"sha256:{0:064x}") == []
    assert again.repositories("r.test", f"sha256:{4:064x}") == ["team/b", "team/a4"]
    assert sha256_digest(b"") == digest_of(b"")
