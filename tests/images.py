"""Build small test images on disk, without docker: OCI image layouts with random-content layers.

:func:`build_oci_layout` writes ``DIR/oci-layout``, ``DIR/index.json`` and ``DIR/blobs/sha256/*``:
``layers`` gzip-compressed tar layers, each holding one file of random bytes, a config whose
``rootfs.diff_ids`` are the uncompressed tars' digests, and an OCI image manifest tagged with
the ``org.opencontainers.image.ref.name`` annotation. :func:`build_oci_index` adds a multi-arch
index over several such images. :func:`docker_archive` asks skopeo to turn a layout into a
``docker save`` tarball.

Used by the interop tests and by benchmarks/bench_push.py; it has no pytest dependency.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"


@dataclass
class BuiltImage:
    """What was written: the manifest's digest (``sha256:HEX``), size and bytes, and its blobs."""

    layout: Path
    ref: str
    digest: str
    size: int
    manifest: bytes
    media_type: str = OCI_MANIFEST
    layer_digests: list[str] = field(default_factory=list)
    config_digest: str = ""

    def blob_path(self, digest: str) -> Path:
        return self.layout / "blobs" / "sha256" / digest.removeprefix("sha256:")


def _write_blob(layout: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    path = layout / "blobs" / "sha256" / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return f"sha256:{digest}"


def _layer(size: int, name: str, *, level: int = 1) -> tuple[bytes, str]:
    """A gzip-compressed tar with one file of ``size`` random bytes; returns (blob, diff_id)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = size
        info.mtime = 0
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(os.urandom(size)))
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes, compresslevel=level, mtime=0), "sha256:" + hashlib.sha256(tar_bytes).hexdigest()


def _read_index(layout: Path) -> dict:
    path = layout / "index.json"
    if path.exists():
        return json.loads(path.read_text())
    return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}


def _write_index(layout: Path, index: dict) -> None:
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (layout / "index.json").write_text(json.dumps(index))


def _add_to_index(layout: Path, ref: str | None, media_type: str, digest: str, size: int) -> None:
    index = _read_index(layout)
    entries = [m for m in index["manifests"] if ref is None or m.get("annotations", {}).get(REF_NAME) != ref]
    entry: dict = {"mediaType": media_type, "digest": digest, "size": size}
    if ref is not None:
        entry["annotations"] = {REF_NAME: ref}
    index["manifests"] = entries + [entry]
    _write_index(layout, index)


def build_oci_layout(
    layout: str | os.PathLike[str],
    *,
    ref: str = "latest",
    layers: int = 3,
    layer_size: int = 64 * 1024,
    sizes: list[int] | None = None,
    arch: str = "amd64",
    add_to_index: bool = True,
    level: int = 1,
) -> BuiltImage:
    """Write an image with ``layers`` random layers (or one per entry of ``sizes``) into the
    layout at ``layout`` (created if needed; other images already there are kept)."""
    root = Path(layout)
    root.mkdir(parents=True, exist_ok=True)
    sizes = list(sizes) if sizes is not None else [layer_size] * layers
    layer_descs, diff_ids = [], []
    for number, size in enumerate(sizes):
        blob, diff_id = _layer(size, f"layer{number}.bin", level=level)
        digest = _write_blob(root, blob)
        layer_descs.append({"mediaType": OCI_LAYER_GZIP, "digest": digest, "size": len(blob)})
        diff_ids.append(diff_id)
    config = json.dumps(
        {
            "architecture": arch,
            "os": "linux",
            "config": {"Cmd": ["/bin/true"], "Labels": {"nonce": os.urandom(8).hex()}},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created_by": f"trustkit test layer {i}"} for i in range(len(sizes))],
        },
        separators=(",", ":"),
    ).encode()
    config_digest = _write_blob(root, config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": layer_descs,
        },
        separators=(",", ":"),
    ).encode()
    digest = _write_blob(root, manifest)
    if add_to_index:
        _add_to_index(root, ref, OCI_MANIFEST, digest, len(manifest))
    return BuiltImage(
        root, ref, digest, len(manifest), manifest, OCI_MANIFEST, [d["digest"] for d in layer_descs], config_digest
    )


def build_oci_index(
    layout: str | os.PathLike[str],
    *,
    ref: str = "multi",
    arches: tuple[str, ...] = ("amd64", "arm64"),
    layers: int = 2,
    layer_size: int = 32 * 1024,
) -> tuple[BuiltImage, list[BuiltImage]]:
    """A multi-arch image: one image per architecture and an OCI index over them, tagged ``ref``."""
    root = Path(layout)
    children = [
        build_oci_layout(root, ref=f"{ref}-{arch}", layers=layers, layer_size=layer_size, arch=arch, add_to_index=False)
        for arch in arches
    ]
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": c.digest,
                    "size": c.size,
                    "platform": {"architecture": arch, "os": "linux"},
                }
                for c, arch in zip(children, arches, strict=True)
            ],
        },
        separators=(",", ":"),
    ).encode()
    digest = _write_blob(root, index)
    _add_to_index(root, ref, OCI_INDEX, digest, len(index))
    return BuiltImage(root, ref, digest, len(index), index, OCI_INDEX), children


def docker_archive(layout: Path, ref: str, archive: Path, name: str) -> Path:
    """``skopeo copy oci:LAYOUT:REF docker-archive:ARCHIVE:NAME`` (a ``docker save`` tarball)."""
    archive.unlink(missing_ok=True)
    subprocess.run(
        ["skopeo", "copy", "--quiet", f"oci:{layout}:{ref}", f"docker-archive:{archive}:{name}"],
        check=True,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    return archive
