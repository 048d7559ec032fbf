"""Layer `registry` (clients): where the images that ``trustkit push`` uploads come from.

``SOURCE`` is one of

* ``oci:DIR[:REF]``: an OCI image layout (``oci-layout``, ``index.json``, ``blobs/sha256/*``).
  REF is the ``org.opencontainers.image.ref.name`` annotation of an ``index.json`` entry; without
  it the layout must hold exactly one.
* ``docker-archive:FILE[:NAME]``: a ``docker save`` tarball, legacy (``manifest.json``, a config
  and layer tars) or the newer one that embeds an OCI layout, plain or gzipped (``docker save |
  gzip``: indexed in one streaming pass, see ``gzindex``).  Blobs are read straight out of the
  tar (byte ranges of the file, or of the gzip stream; no extraction).  Uncompressed legacy layers are gzipped
  into a spool folder first (a docker schema2 manifest needs the compressed digests), in
  parallel and deterministically, so the same archive always gives the same digests.
* ``docker://REF``: an image in a registry, copied blob by blob (mounted when the target is
  in the same registry).

Every source gives the top manifest's exact bytes, child manifests of an index, and an
``Opener`` per blob; sizes and presence are checked up front, digests while uploading.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import tarfile
import tempfile
import threading
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from trustkit.encoding import loads_strict
from trustkit.errors import EncodingError, HashMismatchError, InvalidReferenceError, SourceError
from trustkit.oci.gzindex import GzipIndex
from trustkit.oci.registry import (
    DOCKER_MANIFEST,
    MANIFEST_LIMIT,
    Manifest,
    Opener,
    RegistryClient,
    open_file,
    open_range,
    sha256_digest,
)
from trustkit.reference import ImageReference, parse

__all__ = [
    "Descriptor",
    "DockerArchiveSource",
    "ImageSource",
    "OCILayoutSource",
    "RegistrySource",
    "SourceError",
    "SourceSpec",
    "image_blobs",
    "index_children",
    "parse_source",
]

DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
GZIP_LEVEL = 6
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}")
_SMALL_JSON = 16 * 1024 * 1024  # index.json, manifest.json, configs


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    urls: tuple[str, ...] = ()

    @property
    def foreign(self) -> bool:
        """A non-distributable layer (Windows base layers): registries do not hold it."""
        return bool(self.urls) and ("foreign" in self.media_type or "nondistributable" in self.media_type)

    @classmethod
    def from_json(cls, data: Any, what: str) -> Descriptor:
        if not isinstance(data, dict):
            raise SourceError(f"{what} is not a descriptor object")
        digest, size, media_type = data.get("digest"), data.get("size"), data.get("mediaType", "")
        if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
            raise SourceError(f"{what} has digest {str(digest)[:80]!r}; trustkit handles sha256:<64 hex> digests")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise SourceError(f"{what} ({digest[:19]}) has no valid size")
        if not isinstance(media_type, str):
            raise SourceError(f"{what} ({digest[:19]}) has a mediaType that is not a string")
        urls = data.get("urls") or ()
        return cls(
            media_type, digest, size, tuple(u for u in urls if isinstance(u, str)) if isinstance(urls, list) else ()
        )


def image_blobs(manifest: Manifest) -> tuple[Descriptor, list[Descriptor]]:
    """The config and layer descriptors of an image manifest."""
    data = manifest.json()
    config = Descriptor.from_json(data.get("config"), f"the config of manifest {manifest.digest}")
    layers = data.get("layers")
    if not isinstance(layers, list):
        raise SourceError(f"manifest {manifest.digest} has no layers list")
    return config, [
        Descriptor.from_json(layer, f"layer {i} of manifest {manifest.digest}") for i, layer in enumerate(layers)
    ]


def index_children(manifest: Manifest) -> list[Descriptor]:
    data = manifest.json()
    children = data.get("manifests")
    if not isinstance(children, list) or not children:
        raise SourceError(f"index {manifest.digest} lists no manifests")
    return [Descriptor.from_json(child, f"entry {i} of index {manifest.digest}") for i, child in enumerate(children)]


class ImageSource(Protocol):
    description: str

    @property
    def mount_from(self) -> tuple[str, str] | None:
        """(registry, repository) that holds every blob of this source, for cross-repository mounts
        (read-only here, so a source that always has one may say ``tuple[str, str]``)."""

    def root(self) -> Manifest: ...

    def manifest(self, descriptor: Descriptor) -> Manifest: ...

    def opener(self, descriptor: Descriptor) -> Opener: ...

    def check(self, descriptor: Descriptor) -> None: ...

    def close(self) -> None: ...


#: Reports local preparation work: (event, digest, detail), e.g. ("compressing", diff_id, "").
SourceProgress = Callable[[str, str, str], None]


class DiffIdCache(Protocol):
    def compressed(self, diff_id: str) -> tuple[str, int] | None: ...

    def remember_compressed(self, diff_id: str, digest: str, size: int) -> None: ...

    def forget_compressed(self, diff_id: str) -> None: ...


# --------------------------------------------------------------------------------------------
# SOURCE strings


@dataclass(frozen=True)
class SourceSpec:
    kind: str  # "oci", "docker-archive", "docker"
    path: Path | None = None
    ref: str | None = None
    reference: ImageReference | None = None

    def __str__(self) -> str:
        if self.kind == "docker":
            return f"docker://{self.reference}"
        return f"{self.kind}:{self.path}" + (f":{self.ref}" if self.ref else "")


def _split_path_ref(rest: str, *, directory: bool) -> tuple[Path, str | None]:
    """``PATH[:REF]``: the longest prefix that exists wins; else the first ':' splits."""
    exists = Path.is_dir if directory else Path.is_file
    if exists(Path(rest)):
        return Path(rest), None
    for index in range(len(rest) - 1, 0, -1):
        if rest[index] == ":" and exists(Path(rest[:index])):
            return Path(rest[:index]), rest[index + 1 :] or None
    path, _, ref = rest.partition(":")
    return Path(path), ref or None


def parse_source(text: str) -> SourceSpec:
    """Parse ``oci:DIR[:REF]``, ``docker-archive:FILE[:NAME]`` or ``docker://REF`` (no I/O
    beyond telling which prefix of the text is an existing path).

    Raises:
        SourceError: another form; InvalidReferenceError: a bad ``docker://`` reference.
    """
    if text.startswith("docker://"):
        return SourceSpec("docker", reference=parse(text.removeprefix("docker://"), default_tag="latest"))
    if text.startswith("oci:"):
        path, ref = _split_path_ref(text.removeprefix("oci:"), directory=True)
        return SourceSpec("oci", path=path, ref=ref)
    if text.startswith("docker-archive:"):
        path, ref = _split_path_ref(text.removeprefix("docker-archive:"), directory=False)
        return SourceSpec("docker-archive", path=path, ref=ref)
    raise SourceError(
        f"unknown image source {text[:200]!r}", hint="use oci:DIR[:REF], docker-archive:FILE or docker://IMAGE[:TAG]"
    )


def _json(data: bytes, what: str) -> Any:
    try:
        return loads_strict(data, max_size=_SMALL_JSON, what=what)
    except EncodingError as exc:
        raise SourceError(str(exc)) from None


def _pick(
    entries: list[dict[str, Any]], ref: str | None, names: Callable[[dict[str, Any]], list[str]], where: str
) -> dict[str, Any]:
    if ref is None:
        if len(entries) == 1:
            return entries[0]
        listed = sorted({n for e in entries for n in names(e)})
        raise SourceError(
            f"{where} holds {len(entries)} images; name one",
            hint=f"known names: {', '.join(listed) or 'none'}" if entries else None,
        )
    found = [e for e in entries if ref in names(e)]
    if not found:
        listed = sorted({n for e in entries for n in names(e)})
        raise SourceError(f"{where} has no image named {ref!r}", hint=f"known names: {', '.join(listed) or 'none'}")
    if len(found) > 1:
        raise SourceError(f"{where} has {len(found)} images named {ref!r}")
    return found[0]


def _index_names(entry: dict[str, Any]) -> list[str]:
    annotations = entry.get("annotations")
    if not isinstance(annotations, dict):
        return []
    return [v for k, v in annotations.items() if k in (REF_NAME, CONTAINERD_NAME) and isinstance(v, str)]


def _manifest_from(raw: bytes, descriptor: Descriptor, where: str) -> Manifest:
    if len(raw) != descriptor.size or sha256_digest(raw) != descriptor.digest:
        raise HashMismatchError(
            f"manifest {descriptor.digest} in {where} does not match its descriptor "
            f"(size {len(raw)}, digest {sha256_digest(raw)})",
            hint="the source is corrupt",
        )
    media_type = descriptor.media_type or None
    return Manifest.from_bytes(raw, media_type, what=f"manifest {descriptor.digest} in {where}")


# --------------------------------------------------------------------------------------------
# oci:DIR[:REF]


class OCILayoutSource:
    """An OCI image layout on disk."""

    mount_from = None

    def __init__(self, directory: Path, ref: str | None = None) -> None:
        self.directory = directory
        self.ref = ref
        self.description = f"oci:{directory}" + (f":{ref}" if ref else "")
        if not directory.is_dir():
            raise SourceError(f"{directory} is not a directory (expected an OCI image layout)")
        if not (directory / "index.json").is_file():
            raise SourceError(f"{directory} has no index.json; it is not an OCI image layout")

    def root(self) -> Manifest:
        index = _json((self.directory / "index.json").read_bytes(), f"{self.directory}/index.json")
        entries = index.get("manifests") if isinstance(index, dict) else None
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise SourceError(f"{self.directory}/index.json has no manifests list")
        entry = _pick(entries, self.ref, _index_names, f"the OCI layout {self.directory}")
        return self.manifest(Descriptor.from_json(entry, f"the index.json entry of {self.description}"))

    def blob_path(self, digest: str) -> Path:
        return self.directory / "blobs" / "sha256" / digest.removeprefix("sha256:")

    def check(self, descriptor: Descriptor) -> None:
        path = self.blob_path(descriptor.digest)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise SourceError(
                f"blob {descriptor.digest} is missing from the OCI layout {self.directory}", hint=f"expected {path}"
            ) from None
        if size != descriptor.size:
            raise HashMismatchError(
                f"blob {descriptor.digest} in {self.directory} is {size} bytes, but its "
                f"descriptor says {descriptor.size}",
                hint="the layout is corrupt",
            )

    def manifest(self, descriptor: Descriptor) -> Manifest:
        self.check(descriptor)
        if descriptor.size > MANIFEST_LIMIT:
            raise SourceError(f"manifest {descriptor.digest} is larger than {MANIFEST_LIMIT} bytes")
        return _manifest_from(self.blob_path(descriptor.digest).read_bytes(), descriptor, self.description)

    def opener(self, descriptor: Descriptor) -> Opener:
        return open_file(self.blob_path(descriptor.digest))

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------------------------
# docker-archive:FILE[:NAME]


@dataclass(frozen=True)
class _Member:
    offset: int
    size: int


class DockerArchiveSource:
    """A ``docker save`` tarball, read in place."""

    mount_from = None

    def __init__(
        self,
        path: Path,
        ref: str | None = None,
        *,
        cache: DiffIdCache | None = None,
        progress: SourceProgress | None = None,
        workers: int = 4,
    ) -> None:
        self.path = path
        self.ref = ref
        self.description = f"docker-archive:{path}" + (f":{ref}" if ref else "")
        self.cache = cache
        self.progress = progress
        self.workers = max(1, workers)
        self._blobs: dict[str, Opener] = {}  # digest -> opener
        self._manifests: dict[str, Manifest] = {}
        self._lazy: dict[str, tuple[str, _Member]] = {}  # digest -> (diff_id, member), compressed on demand
        self._lock = threading.Lock()
        self._spool: Path | None = None
        self._gzip: GzipIndex | None = None  # set by _scan for a gzipped archive
        self.members = self._scan()

    # ---- reading the tar

    def _scan(self) -> dict[str, _Member]:
        try:
            with self.path.open("rb") as handle:
                magic = handle.read(4)
        except FileNotFoundError:
            raise SourceError(f"{self.path} does not exist") from None
        except IsADirectoryError:
            raise SourceError(f"{self.path} is a directory, not a docker save tarball") from None
        if magic == b"\x28\xb5\x2f\xfd":
            raise SourceError(
                f"{self.path} is zstd-compressed",
                hint="decompress it first (zstd -d), or compress it with gzip; "
                "trustkit reads layers out of a plain or gzipped tar without extracting it",
            )
        if magic[:2] == b"\x1f\x8b":  # `docker save | gzip`: one streaming pass indexes it
            self._gzip = GzipIndex(self.path)
        members: dict[str, _Member] = {}
        links: dict[str, str] = {}
        try:
            with self._open_tar() as tar:
                for info in tar:
                    name = _clean(info.name)
                    if info.isfile():
                        members[name] = _Member(info.offset_data, info.size)
                    elif info.issym():
                        links[name] = _clean(str(Path(name).parent / info.linkname))
                    elif info.islnk():
                        links[name] = _clean(info.linkname)
        except (tarfile.TarError, OSError) as exc:
            raise SourceError(f"{self.path} is not a readable tar file: {exc}") from None
        for name, link in links.items():
            target = link
            for _ in range(8):
                if target in members:
                    members[name] = members[target]
                    break
                if target not in links:
                    break
                target = links[target]
        return members

    def _open_tar(self) -> tarfile.TarFile:
        if self._gzip is None:
            return tarfile.open(self.path, mode="r:")
        return tarfile.open(fileobj=self._gzip.scanner(self.path.open("rb")), mode="r|")

    def _range(self, offset: int, length: int) -> Opener:
        """An opener over ``length`` bytes of the (uncompressed) tar from ``offset``."""
        gzip = self._gzip
        if gzip is None:
            return open_range(self.path, offset, length)
        return lambda: gzip.open(offset, length)

    def _read_range(self, offset: int, length: int) -> bytes:
        with contextlib.closing(self._range(offset, length)()) as reader:
            parts, left = [], length
            while left > 0:
                part = reader.read(min(1 << 20, left))
                if not part:
                    break
                parts.append(part)
                left -= len(part)
            return b"".join(parts)

    def _read(self, name: str, what: str, limit: int = _SMALL_JSON) -> bytes:
        member = self.members.get(name)
        if member is None:
            raise SourceError(f"{self.path} has no {name} ({what})")
        if member.size > limit:
            raise SourceError(f"{name} in {self.path} is larger than {limit} bytes")
        return self._read_range(member.offset, member.size)

    # ---- the image

    def root(self) -> Manifest:
        if "index.json" in self.members and "oci-layout" in self.members:
            embedded = self._embedded_oci()
            if embedded is not None:
                return embedded
        if "manifest.json" not in self.members:
            raise SourceError(f"{self.path} is not a docker save tarball (no manifest.json, no OCI layout)")
        return self._legacy()

    def _embedded_oci(self) -> Manifest | None:
        """The newer docker save format (docker 25+): an OCI layout inside the tar.  None when
        it references blobs the tar does not hold (then manifest.json describes the image)."""
        index = _json(self._read("index.json", "OCI index"), f"index.json in {self.path}")
        entries = index.get("manifests") if isinstance(index, dict) else None
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise SourceError(f"index.json in {self.path} has no manifests list")
        names = _archive_names
        entry = _pick(entries, self.ref and _normal_name(self.ref), names, str(self.path))
        top = Descriptor.from_json(entry, f"the index.json entry of {self.path}")
        try:
            manifest = self.manifest(top)
            pending = [manifest]
            while pending:
                current = pending.pop()
                if current.is_index:
                    for child in index_children(current):
                        pending.append(self.manifest(child))
                else:
                    config, layers = image_blobs(current)
                    for blob in [config, *layers]:
                        if not blob.foreign:
                            self.check(blob)
        except SourceError:
            if "manifest.json" in self.members:
                return None
            raise
        return manifest

    def _legacy(self) -> Manifest:
        entries = _json(self._read("manifest.json", "image list"), f"manifest.json in {self.path}")
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise SourceError(f"manifest.json in {self.path} is not a list of images")
        entry = _pick(
            entries,
            self.ref and _normal_name(self.ref),
            lambda e: [_normal_name(t) for t in e.get("RepoTags") or [] if isinstance(t, str)],
            str(self.path),
        )
        config_name, layer_names = entry.get("Config"), entry.get("Layers")
        if (
            not isinstance(config_name, str)
            or not isinstance(layer_names, list)
            or not all(isinstance(n, str) for n in layer_names)
        ):
            raise SourceError(f"manifest.json in {self.path} has an entry without Config/Layers")
        config_raw = self._read(_clean(config_name), "image config")
        config = _json(config_raw, f"config {config_name} in {self.path}")
        rootfs = config.get("rootfs") if isinstance(config, dict) else None
        diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
        if (
            not isinstance(diff_ids, list)
            or len(diff_ids) != len(layer_names)
            or not all(isinstance(d, str) and _DIGEST.fullmatch(d) for d in diff_ids)
        ):
            raise SourceError(
                f"the config of {self.description} lists {len(diff_ids or [])} diff_ids for {len(layer_names)} layers"
            )
        config_digest = sha256_digest(config_raw)
        self._blobs[config_digest] = self._range(*self._member(config_name))
        layers = self._legacy_layers([_clean(n) for n in layer_names], diff_ids)
        manifest = {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG, "size": len(config_raw), "digest": config_digest},
            "layers": [{"mediaType": DOCKER_LAYER_GZIP, "size": size, "digest": digest} for digest, size in layers],
        }
        # docker's own serialisation of a schema2 manifest: three-space indent.
        return Manifest.from_bytes(
            json.dumps(manifest, indent=3).encode(), DOCKER_MANIFEST, what=f"the manifest built for {self.description}"
        )

    def _member(self, name: str) -> tuple[int, int]:
        member = self.members.get(_clean(name))
        if member is None:
            raise SourceError(f"{self.path} has no {name}, which its manifest.json lists")
        return member.offset, member.size

    def _legacy_layers(self, names: list[str], diff_ids: list[str]) -> list[tuple[str, int]]:
        results: list[tuple[str, int] | None] = [None] * len(names)
        work = []
        for i, (name, diff_id) in enumerate(zip(names, diff_ids, strict=True)):
            offset, size = self._member(name)
            member = _Member(offset, size)
            magic = self._read_range(offset, min(size, 2))
            if magic == b"\x1f\x8b":  # already gzipped: push as it is
                digest = _hash_range(self._range(offset, size))
                self._blobs[digest] = self._range(offset, size)
                results[i] = (digest, size)
                continue
            cached = self.cache.compressed(diff_id) if self.cache is not None else None
            if cached is not None:
                self._lazy[cached[0]] = (diff_id, member)
                results[i] = cached
                continue
            work.append((i, diff_id, member))
        if work:
            self._spool_dir()
            with ThreadPoolExecutor(max_workers=min(self.workers, len(work))) as pool:
                futures = {i: pool.submit(self._compress, diff_id, member) for i, diff_id, member in work}
                for i, future in futures.items():
                    results[i] = future.result()
        return [r for r in results if r is not None]

    def _spool_dir(self) -> Path:
        with self._lock:
            if self._spool is None:
                self._spool = Path(tempfile.mkdtemp(prefix="trustkit-push-"))
            return self._spool

    def _compress(self, diff_id: str, member: _Member) -> tuple[str, int]:
        """gzip a layer into the spool while checking its diff_id; returns (digest, size)."""
        if self.progress is not None:
            self.progress("compressing", diff_id, str(member.size))
        target = self._spool_dir() / diff_id.removeprefix("sha256:")
        raw_hash, out_hash = hashlib.sha256(), hashlib.sha256()
        compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # gzip wrapper, mtime 0: deterministic
        size = 0
        with contextlib.closing(self._range(member.offset, member.size)()) as source, target.open("wb") as out:
            left = member.size
            while left > 0:
                chunk = source.read(min(1 << 20, left))
                if not chunk:
                    raise SourceError(f"{self.path} is truncated")
                left -= len(chunk)
                raw_hash.update(chunk)
                piece = compressor.compress(chunk)
                out.write(piece)
                out_hash.update(piece)
                size += len(piece)
            tail = compressor.flush()
            out.write(tail)
            out_hash.update(tail)
            size += len(tail)
        if "sha256:" + raw_hash.hexdigest() != diff_id:
            raise HashMismatchError(
                f"a layer of {self.description} does not match its diff_id {diff_id}", hint="the archive is corrupt"
            )
        digest = "sha256:" + out_hash.hexdigest()
        self._blobs[digest] = open_file(target)
        if self.cache is not None:
            self.cache.remember_compressed(diff_id, digest, size)
        if self.progress is not None:
            self.progress("compressed", diff_id, digest)
        return digest, size

    # ---- blobs

    def check(self, descriptor: Descriptor) -> None:
        if descriptor.digest in self._blobs or descriptor.digest in self._lazy:
            return
        member = self.members.get(f"blobs/sha256/{descriptor.digest.removeprefix('sha256:')}")
        if member is None:
            raise SourceError(f"blob {descriptor.digest} is missing from {self.path}")
        if member.size != descriptor.size:
            raise HashMismatchError(
                f"blob {descriptor.digest} in {self.path} is {member.size} bytes, but its "
                f"descriptor says {descriptor.size}"
            )

    def manifest(self, descriptor: Descriptor) -> Manifest:
        if descriptor.digest not in self._manifests:
            self.check(descriptor)
            raw = self._read(f"blobs/sha256/{descriptor.digest.removeprefix('sha256:')}", "manifest", MANIFEST_LIMIT)
            self._manifests[descriptor.digest] = _manifest_from(raw, descriptor, self.description)
        return self._manifests[descriptor.digest]

    def opener(self, descriptor: Descriptor) -> Opener:
        digest = descriptor.digest
        if digest in self._blobs:
            return self._blobs[digest]
        if digest in self._lazy:
            return lambda: self._open_lazy(digest)
        self.check(descriptor)
        member = self.members[f"blobs/sha256/{digest.removeprefix('sha256:')}"]
        return self._range(member.offset, member.size)

    def _open_lazy(self, digest: str) -> Any:
        """A layer whose compressed digest came from the cache and must now be uploaded:
        compress it (once) and make sure it still compresses to that digest."""
        with self._lock:
            opener = self._blobs.get(digest)
        if opener is None:
            diff_id, member = self._lazy[digest]
            got, _ = self._compress(diff_id, member)
            if got != digest:
                if self.cache is not None:
                    self.cache.forget_compressed(diff_id)
                raise SourceError(
                    f"layer {diff_id} of {self.description} now compresses to {got}, not to the cached {digest}",
                    hint="the stale cache entry was dropped; push again",
                )
            opener = self._blobs[digest]
        return opener()

    def close(self) -> None:
        if self._spool is not None:
            shutil.rmtree(self._spool, ignore_errors=True)
            self._spool = None


def _clean(name: str) -> str:
    parts: list[str] = []
    for part in name.replace("\\", "/").split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/".join(parts)


def _normal_name(name: str) -> str:
    """docker's normalised form of an image name, for matching RepoTags (``app:v1`` is
    ``docker.io/library/app:v1``); a bare tag or non-reference is kept as it is."""
    try:
        return str(parse(name, default_tag="latest"))
    except InvalidReferenceError:
        return name


def _archive_names(entry: dict[str, Any]) -> list[str]:
    names = _index_names(entry)
    return names + [_normal_name(n) for n in names]


def _hash_range(opener: Opener) -> str:
    hasher = hashlib.sha256()
    with contextlib.closing(opener()) as reader:
        while chunk := reader.read(1 << 20):
            hasher.update(chunk)
    return "sha256:" + hasher.hexdigest()


# --------------------------------------------------------------------------------------------
# docker://REF


class RegistrySource:
    """An image in a registry."""

    def __init__(self, client: RegistryClient, reference: ImageReference) -> None:
        self.client = client
        self.reference = reference
        self.description = f"docker://{reference}"
        self.mount_from = (reference.registry, reference.repository)

    def root(self) -> Manifest:
        ref = self.reference
        return self.client.get_manifest(ref.repository, ref.digest or ref.tag or "latest")

    def manifest(self, descriptor: Descriptor) -> Manifest:
        return self.client.get_manifest(self.reference.repository, descriptor.digest)

    def check(self, descriptor: Descriptor) -> None:
        pass  # the copy itself finds out, and the manifest is only pushed when every blob is in

    def opener(self, descriptor: Descriptor) -> Opener:
        return lambda: self.client.open_blob(self.reference.repository, descriptor.digest)

    def close(self) -> None:
        self.client.close()
