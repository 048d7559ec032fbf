"""The push's blob-location cache is rewritten only when it learnt something (issue 15: a warm
re-push writes nothing but the manifest)."""

from __future__ import annotations

from trustkit.oci.push import BlobLocationCache

DIGESTS = [f"sha256:{i:064x}" for i in range(3)]


def test_remembering_what_it_knows_does_not_rewrite_the_file(tmp_path):
    path = tmp_path / "cache.json"
    cache = BlobLocationCache(path)
    cache.remember("r.test", "team/app", DIGESTS)
    cache.save()
    written = path.stat()
    again = BlobLocationCache(path)
    again.remember("r.test", "team/app", DIGESTS)
    again.save()
    assert path.stat().st_ino == written.st_ino  # atomic writes replace the file: not replaced
    again.remember("r.test", "team/other", DIGESTS[:1])
    again.save()
    assert path.stat().st_ino != written.st_ino
    assert BlobLocationCache(path).repositories("r.test", DIGESTS[0]) == ["team/other", "team/app"]
