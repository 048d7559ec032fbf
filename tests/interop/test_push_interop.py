"""trustkit push / tag / login against Debian's docker-registry, checked by skopeo, notary and
docker: what the registry holds is read back by the peers, never by trustkit itself."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import subprocess
import time
from pathlib import Path

import pytest

import images
import peers

pytestmark = pytest.mark.interop


def tk_for(tmp_path: Path, server: peers.NotaryServer | None = None, **kwargs: object) -> peers.TrustkitCLI:
    return peers.TrustkitCLI(tmp_path / f"docker-config-{os.urandom(3).hex()}", server, **kwargs)  # type: ignore[arg-type]


def push_json(tk: peers.TrustkitCLI, source: str, image: str, *args: str) -> dict:
    return json.loads(tk.run("push", source, image, "--format", "json", *args).stdout)


def skopeo(*args: str) -> str:
    result = subprocess.run(
        ["skopeo", *args], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def inspect_digest(registry: peers.Registry, image: str) -> str:
    return json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{registry.host_port}/{image}"))["Digest"]


def raw_manifest(registry: peers.Registry, image: str) -> bytes:
    return skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{registry.host_port}/{image}").encode()


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("trustkit: ")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def notary_targets(notary: peers.NotaryCLI, gun: str) -> dict[str, tuple[str, int]]:
    out = notary.run("list", gun).stdout
    rows = [line.split() for line in out.splitlines()[2:] if line.strip()]
    return {name: (digest, int(size)) for name, digest, size, _role in rows}


# --------------------------------------------------------------------------------------------
# pushing, skipping, mounting


def test_oci_layout_push_second_push_and_mount(registry, tmp_path):
    image = images.build_oci_layout(tmp_path / "layout", ref="v1", layers=4)
    tk = tk_for(tmp_path)
    first = push_json(tk, f"oci:{image.layout}:v1", f"{registry.host_port}/team/app:v1")
    assert first["digest"] == image.digest and first["size"] == image.size
    assert (first["layers_uploaded"], first["layers_skipped"], first["layers_mounted"]) == (4, 0, 0)
    assert first["signed"] is False and first["bytes_uploaded"] > 4 * 64 * 1024
    assert inspect_digest(registry, "team/app:v1") == image.digest
    assert raw_manifest(registry, "team/app:v1") == image.manifest  # the exact bytes

    again = push_json(tk, f"oci:{image.layout}", f"{registry.host_port}/team/app:v1")  # the only image: no REF
    assert (again["layers_uploaded"], again["layers_skipped"], again["bytes_uploaded"]) == (0, 4, 0)

    other = push_json(tk, f"oci:{image.layout}:v1", f"{registry.host_port}/team/other:v2")
    assert (other["layers_uploaded"], other["layers_mounted"], other["bytes_uploaded"]) == (0, 4, 0)
    assert inspect_digest(registry, "team/other:v2") == image.digest

    plain = tk.run("push", f"oci:{image.layout}:v1", f"{registry.host_port}/team/app:v1")
    assert f"v1: digest: {image.digest} size: {image.size}" in plain.stdout
    assert plain.stderr.count("Layer already exists") == 4


def test_docker_archive_push_is_read_back_by_skopeo(registry, tmp_path):
    image = images.build_oci_layout(tmp_path / "layout", ref="v1", layers=3)
    archive = images.docker_archive(image.layout, "v1", tmp_path / "saved.tar", "example.com/team/app:v1")
    tk = tk_for(tmp_path)
    pushed = push_json(tk, f"docker-archive:{archive}", f"{registry.host_port}/team/archived:v1")
    assert pushed["media_type"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert pushed["layers_uploaded"] == 3
    assert inspect_digest(registry, "team/archived:v1") == pushed["digest"]
    manifest = json.loads(raw_manifest(registry, "team/archived:v1"))
    assert [layer["mediaType"] for layer in manifest["layers"]] == [
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    ] * 3
    # skopeo pulls it into a docker archive of its own: it decompresses every layer and checks
    # the result against the config's diff_ids.
    skopeo(
        "copy",
        "--src-tls-verify=false",
        f"docker://{registry.host_port}/team/archived:v1",
        f"docker-archive:{tmp_path / 'back.tar'}:example.com/back:v1",
    )
    # The same archive again (selected by its name): same digests, nothing uploaded.
    again = push_json(tk, f"docker-archive:{archive}:example.com/team/app:v1", f"{registry.host_port}/team/archived:v2")
    assert again["digest"] == pushed["digest"] and again["layers_uploaded"] == 0


def test_docker_save_with_an_embedded_oci_layout(registry, tmp_path):
    """The docker 25+ `docker save` format: an OCI layout inside the tar, pushed as it is."""
    import tarfile

    image = images.build_oci_layout(tmp_path / "layout", ref="v1", layers=2)
    archive = tmp_path / "new-save.tar"
    with tarfile.open(archive, "w") as tar:
        for path in sorted(image.layout.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=path.relative_to(image.layout).as_posix())
    pushed = push_json(tk_for(tmp_path), f"docker-archive:{archive}", f"{registry.host_port}/team/newsave:v1")
    assert pushed["digest"] == image.digest
    assert inspect_digest(registry, "team/newsave:v1") == image.digest


def test_multi_arch_index_pushes_children_then_the_index(registry, tmp_path):
    index, children = images.build_oci_index(tmp_path / "layout", ref="multi")
    pushed = push_json(tk_for(tmp_path), f"oci:{index.layout}:multi", f"{registry.host_port}/team/multi:v1")
    assert pushed["digest"] == index.digest and pushed["manifests"] == 3
    assert pushed["layers_uploaded"] == 4
    assert raw_manifest(registry, "team/multi:v1") == index.manifest
    for child in children:
        assert registry.manifest_status("team/multi", child.digest) == 200
    arm = json.loads(
        skopeo(
            "inspect", "--tls-verify=false", "--override-arch", "arm64", f"docker://{registry.host_port}/team/multi:v1"
        )
    )
    assert arm["Digest"] == index.digest and arm["Architecture"] == "arm64"


def test_docker_source_is_mounted_within_a_registry_and_copied_across(registry, tmp_path):
    image = images.build_oci_layout(tmp_path / "layout", ref="v1", layers=3)
    tk = tk_for(tmp_path)
    tk.run("push", f"oci:{image.layout}:v1", f"{registry.host_port}/team/src:v1")
    fresh = tk_for(tmp_path)  # no local cache: the mount comes from the docker:// source itself
    mounted = push_json(fresh, f"docker://{registry.host_port}/team/src:v1", f"{registry.host_port}/team/dst:v1")
    assert (mounted["layers_mounted"], mounted["layers_uploaded"]) == (3, 0)
    assert inspect_digest(registry, "team/dst:v1") == image.digest
    with peers.Registry(tmp_path / "second-registry") as second:
        copied = push_json(fresh, f"docker://{registry.host_port}/team/src:v1", f"{second.host_port}/team/copy:v1")
        assert copied["layers_uploaded"] == 3 and copied["digest"] == image.digest
        assert inspect_digest(second, "team/copy:v1") == image.digest


def test_never_more_than_five_uploads_in_flight(registry, tmp_path):
    image = images.build_oci_layout(tmp_path / "layout", ref="v1", layers=9, layer_size=256 * 1024)
    tk = tk_for(tmp_path)
    with peers.CountingProxy(registry.host_port, delay=0.15) as proxy:
        pushed = push_json(tk, f"oci:{image.layout}:v1", f"{proxy.host_port}/team/app:v1")
        assert pushed["layers_uploaded"] == 9
        assert sum(1 for method, path in proxy.requests if method == "PUT" and "/blobs/uploads/" in path) == 10
        assert 2 <= proxy.max_in_flight <= 5, proxy.max_in_flight
    with peers.CountingProxy(registry.host_port, delay=0.15) as proxy:
        push_json(tk, f"oci:{image.layout}:v1", f"{proxy.host_port}/team/two:v1", "--max-concurrent-uploads", "2")
        assert proxy.max_in_flight == 2
    assert inspect_digest(registry, "team/app:v1") == image.digest


def test_large_blobs_go_up_in_chunks(registry, tmp_path):
    image = images.build_oci_layout(tmp_path / "layout", ref="v1", sizes=[700 * 1024, 10])
    tk = tk_for(tmp_path)
    with peers.CountingProxy(registry.host_port) as proxy:
        push_json(tk, f"oci:{image.layout}:v1", f"{proxy.host_port}/team/chunked:v1", "--chunk-size", "262144")
        patches = [path for method, path in proxy.requests if method == "PATCH"]
        assert len(patches) >= 3
    assert inspect_digest(registry, "team/chunked:v1") == image.digest
    skopeo(
        "copy",
        "--src-tls-verify=false",
        f"docker://{registry.host_port}/team/chunked:v1",
        f"oci:{tmp_path / 'back'}:v1",
    )


# --------------------------------------------------------------------------------------------
# content trust


def test_push_with_content_trust_is_seen_by_notary_and_docker(
    registry, notary_server, notary_cli, docker_cli, tmp_path
):
    image = images.build_oci_layout(tmp_path / "layout", ref="v1", layers=2)
    gun = f"{registry.host_port}/team/signed"
    tk = tk_for(tmp_path, notary_server, extra_env={"DOCKER_CONTENT_TRUST": "1"})
    pushed = push_json(tk, f"oci:{image.layout}:v1", f"{gun}:v1")
    assert pushed["signed"] is True and pushed["signed_roles"] == ["targets"]
    assert notary_targets(notary_cli(), gun) == {"v1": (image.digest.removeprefix("sha256:"), image.size)}
    inspect = json.loads(docker_cli().run("trust", "inspect", gun).stdout)
    assert [(t["SignedTag"], t["Digest"]) for t in inspect[0]["SignedTags"]] == [
        ("v1", image.digest.removeprefix("sha256:"))
    ]
    # An index is signed with the index digest.
    index, _ = images.build_oci_index(tmp_path / "multi", ref="multi")
    multi = push_json(tk, f"oci:{index.layout}:multi", f"{gun}:multi")
    assert multi["signed"] and notary_targets(notary_cli(), gun)["multi"] == (
        index.digest.removeprefix("sha256:"),
        index.size,
    )
    # --disable-content-trust wins over the variable.
    unsigned = push_json(tk, f"oci:{image.layout}:v1", f"{gun}:plain", "--disable-content-trust")
    assert unsigned["signed"] is False and "plain" not in notary_targets(notary_cli(), gun)


def test_tag_adds_a_tag_without_uploading_and_signs_it(registry, notary_server, notary_cli, tmp_path):
    image = images.build_oci_layout(tmp_path / "layout", ref="v1", layers=2)
    gun = f"{registry.host_port}/team/tagged"
    tk = tk_for(tmp_path, notary_server)
    tk.run("push", f"oci:{image.layout}:v1", f"{gun}:v1")
    with peers.CountingProxy(registry.host_port) as proxy:
        via = f"{proxy.host_port}/team/tagged"
        result = json.loads(tk.run("tag", f"{via}:v1", f"{via}:v2", "--format", "json").stdout)
        assert result["digest"] == image.digest and result["signed"] is False
        assert not [r for r in proxy.requests if "/blobs/uploads" in r[1]]
    assert inspect_digest(registry, "team/tagged:v2") == image.digest
    signed = json.loads(tk.run("tag", f"{gun}:v1", f"{gun}:v3", "--sign", "--format", "json").stdout)
    assert signed["signed"] is True
    assert notary_targets(notary_cli(), gun) == {"v3": (image.digest.removeprefix("sha256:"), image.size)}
    other = json.loads(tk.run("tag", f"{gun}:v1", f"{registry.host_port}/team/elsewhere:v1", "--format", "json").stdout)
    assert other["layers_mounted"] == 2 and other["layers_uploaded"] == 0
    assert inspect_digest(registry, "team/elsewhere:v1") == image.digest


# --------------------------------------------------------------------------------------------
# failures: a clear one-line error, and no manifest in the registry


def _assert_nothing_pushed(registry: peers.Registry, repo: str, tag: str, blob: str | None = None) -> None:
    assert registry.manifest_status(repo, tag) == 404
    if blob is not None:
        assert registry.get(f"/v2/{repo}/blobs/{blob}").status_code == 404


def test_no_passphrase_and_no_tty_fails_before_uploading(registry, notary_server, tmp_path):
    image = images.build_oci_layout(tmp_path / "layout", ref="v1", layers=2)
    tk = tk_for(tmp_path, notary_server, passphrases=False, extra_env={"DOCKER_CONTENT_TRUST": "1"})
    line = one_error_line(tk.run("push", f"oci:{image.layout}:v1", f"{registry.host_port}/team/nopass:v1", check=False))
    assert "DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE" in line
    _assert_nothing_pushed(registry, "team/nopass", "v1", image.layer_digests[0])


def test_wrong_passphrase_fails_before_uploading(registry, notary_server, tmp_path):
    image = images.build_oci_layout(tmp_path / "layout", ref="v1", layers=2)
    gun = f"{registry.host_port}/team/wrongpass"
    good = tk_for(tmp_path, notary_server)
    good.run("init", gun)
    bad = peers.TrustkitCLI(
        good.config_dir,
        notary_server,
        passphrases=False,
        extra_env={
            "DOCKER_CONTENT_TRUST": "1",
            "DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE": "wrong",
            "DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE": "wrong",
        },
    )
    line = one_error_line(bad.run("push", f"oci:{image.layout}:v1", f"{gun}:v1", check=False))
    assert "passphrase" in line.lower() or "decrypt" in line.lower()
    _assert_nothing_pushed(registry, "team/wrongpass", "v1", image.layer_digests[0])


def test_unreachable_trust_server_fails_before_uploading(registry, tmp_path):
    image = images.build_oci_layout(tmp_path / "layout", ref="v1", layers=2)
    tk = tk_for(
        tmp_path,
        extra_env={
            "DOCKER_CONTENT_TRUST": "1",
            "DOCKER_CONTENT_TRUST_SERVER": f"https://127.0.0.1:{peers.free_port()}",
        },
    )
    line = one_error_line(tk.run("push", f"oci:{image.layout}:v1", f"{registry.host_port}/team/nots:v1", check=False))
    assert "trust server" in line
    _assert_nothing_pushed(registry, "team/nots", "v1", image.layer_digests[0])


def test_a_blob_that_does_not_match_its_digest(registry, tmp_path):
    image = images.build_oci_layout(tmp_path / "layout", ref="v1", layers=3)
    victim = image.blob_path(image.layer_digests[1])
    victim.write_bytes(os.urandom(victim.stat().st_size))  # same size, other bytes
    line = one_error_line(
        tk_for(tmp_path).run("push", f"oci:{image.layout}:v1", f"{registry.host_port}/team/bad:v1", check=False)
    )
    assert image.layer_digests[1] in line and "does not match its digest" in line
    _assert_nothing_pushed(registry, "team/bad", "v1", image.layer_digests[1])


def test_a_missing_blob(registry, tmp_path):
    image = images.build_oci_layout(tmp_path / "layout", ref="v1", layers=3)
    image.blob_path(image.layer_digests[2]).unlink()
    line = one_error_line(
        tk_for(tmp_path).run("push", f"oci:{image.layout}:v1", f"{registry.host_port}/team/missing:v1", check=False)
    )
    assert image.layer_digests[2] in line and "missing" in line
    _assert_nothing_pushed(registry, "team/missing", "v1", image.layer_digests[0])


def test_a_129_character_tag_is_refused_before_any_network_work(registry, tmp_path):
    image = images.build_oci_layout(tmp_path / "layout", ref="v1", layers=1)
    tag = "t" * 129
    with peers.CountingProxy(registry.host_port) as proxy:
        line = one_error_line(
            tk_for(tmp_path).run("push", f"oci:{image.layout}:v1", f"{proxy.host_port}/team/longtag:{tag}", check=False)
        )
        assert proxy.requests == []
    assert "129 characters" in line and "at most 128" in line
    assert registry.get("/v2/_catalog").json()["repositories"] == []
    short = one_error_line(
        tk_for(tmp_path).run("push", f"oci:{image.layout}:v1", f"{registry.host_port}/a:v1", check=False)
    )
    assert "at least 2" in short


def test_signing_failure_after_the_push_is_not_reported_as_success(registry, notary_server, tmp_path):
    """The trust server goes away between the checks and the signing: the image is pushed,
    the command fails, and says the image is NOT signed (docker/cli #2721)."""
    image = images.build_oci_layout(tmp_path / "layout", ref="v1", layers=6, layer_size=128 * 1024)
    tk = tk_for(tmp_path, notary_server, extra_env={"DOCKER_CONTENT_TRUST": "1"})
    with peers.CountingProxy(registry.host_port, delay=0.5) as proxy:
        command = [*tk.argv0, "push", f"oci:{image.layout}:v1", f"{proxy.host_port}/team/late:v1", "--format", "json"]
        process = subprocess.Popen(
            command, env=tk.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 60
        while proxy.max_in_flight == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        notary_server.stop()  # uploads are under way: the trust server disappears
        out, err = process.communicate(timeout=120)
    assert process.returncode == 1 and "Traceback" not in err
    assert "was pushed" in err and "NOT signed" in err
    summary = json.loads(out)
    assert summary["signed"] is False and summary["digest"] == image.digest
    assert registry.manifest_status("team/late", "v1") == 200


# --------------------------------------------------------------------------------------------
# login


def test_login_writes_docker_config_and_push_authenticates(tmp_path):
    htpasswd = peers.write_htpasswd(tmp_path / "htpasswd", {"alice": "s3cret-pass"})
    image = images.build_oci_layout(tmp_path / "layout", ref="v1", layers=1)
    with peers.Registry(tmp_path / "auth-registry", htpasswd=htpasswd) as registry:
        tk = tk_for(tmp_path)
        refused = one_error_line(
            tk.run("push", f"oci:{image.layout}:v1", f"{registry.host_port}/team/app:v1", check=False)
        )
        assert "trustkit login" in refused

        def login(password: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [*tk.argv0, "login", registry.host_port, "-u", "alice", "--password-stdin"],
                input=password + "\n",
                env=tk.env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )

        wrong = login("nope")
        assert wrong.returncode == 1 and "refused" in wrong.stderr
        assert not (tk.config_dir / "config.json").exists()
        ok = login("s3cret-pass")
        assert ok.returncode == 0 and "Login Succeeded" in ok.stdout
        config_path = tk.config_dir / "config.json"
        assert stat.S_IMODE(config_path.stat().st_mode) == 0o600
        config = json.loads(config_path.read_text())
        assert config["auths"][registry.host_port]["auth"] == base64.b64encode(b"alice:s3cret-pass").decode()
        assert "s3cret-pass" not in ok.stdout + ok.stderr

        pushed = push_json(tk, f"oci:{image.layout}:v1", f"{registry.host_port}/team/app:v1")
        assert registry.manifest_status("team/app", "v1", auth=("alice", "s3cret-pass")) == 200
        assert pushed["digest"] == image.digest

        # The docker CLI reads the file trustkit wrote (logout needs no daemon).
        docker = peers.DockerCLI(tk.config_dir)
        assert f"Removing login credentials for {registry.host_port}" in docker.run("logout", registry.host_port).stdout

        no_stdin = tk.run("login", registry.host_port, "-u", "alice", check=False)
        assert no_stdin.returncode == 2 and "--password-stdin" in no_stdin.stderr


def test_an_immutable_repository_refuses_a_push_that_moves_a_signed_tag(registry, trustkit_server, tmp_path):
    """trustkit's own server marks the repository immutable (GET /v2/<gun>/_trust/settings):
    moving a signed tag is refused before anything is uploaded; the same digest still goes."""
    first = images.build_oci_layout(tmp_path / "a", ref="v1", layers=1)
    second = images.build_oci_layout(tmp_path / "b", ref="v1", layers=1)
    gun = f"{registry.host_port}/team/frozen"
    tk = tk_for(tmp_path, trustkit_server, extra_env={"DOCKER_CONTENT_TRUST": "1"})
    assert push_json(tk, f"oci:{first.layout}:v1", f"{gun}:v1")["signed"] is True
    assert "immutable now" in tk.run("repo", "immutable", gun).stdout
    line = one_error_line(tk.run("push", f"oci:{second.layout}:v1", f"{gun}:v1", check=False))
    assert "immutable" in line and first.digest in line
    assert inspect_digest(registry, "team/frozen:v1") == first.digest
    assert registry.get(f"/v2/team/frozen/blobs/{second.layer_digests[0]}").status_code == 404
    assert push_json(tk, f"oci:{first.layout}:v1", f"{gun}:v1")["signed"] is True  # same digest: fine
    assert push_json(tk, f"oci:{second.layout}:v1", f"{gun}:v2")["signed"] is True  # a new tag: fine


def test_memory_stays_flat_whatever_the_layer_size(registry, tmp_path):
    """An 80 MB layer goes up (in chunks) while the trustkit process stays far below 80 MB."""
    image = images.build_oci_layout(tmp_path / "layout", ref="v1", sizes=[80 * 1024 * 1024], level=0)
    tk = tk_for(tmp_path)
    probe = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    result = subprocess.run(
        [
            tk.argv0[0],
            "-c",
            probe,
            *tk.argv0,
            "push",
            f"oci:{image.layout}:v1",
            f"{registry.host_port}/team/big:v1",
            "--quiet",
        ],
        env=tk.env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    peak_mb = int(result.stdout.split()[-1]) / 1024
    assert peak_mb < 60, f"peak RSS {peak_mb:.0f} MB for an 80 MB layer"
    assert inspect_digest(registry, "team/big:v1") == image.digest


def test_progress_bars_on_a_terminal(registry, tmp_path):
    """On a TTY a line per layer and a bar for the bytes uploaded under them; elsewhere plain lines
    (checked above)."""
    import pexpect

    image = images.build_oci_layout(tmp_path / "layout", ref="v1", layers=2)
    tk = tk_for(tmp_path)
    child = pexpect.spawn(
        tk.argv0[0],
        [*tk.argv0[1:], "push", f"oci:{image.layout}:v1", f"{registry.host_port}/team/tty:v1"],
        env=tk.env,
        encoding="utf-8",
        timeout=60,
        dimensions=(40, 160),
    )
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    for digest in image.layer_digests:
        assert f"{digest.removeprefix('sha256:')[:12]}: Pushed" in child.before
    bars = re.findall(r"Pushing  \[([#-]+)\]  (\d+)%", child.before)
    assert bars and bars[-1][1] == "100" and set(bars[-1][0]) == {"#"}, child.before
    assert "2 layers done" in child.before and f"v1: digest: {image.digest}" in child.before


def test_sign_reads_the_digest_and_size_from_the_registry(registry, notary_server, notary_cli, tmp_path):
    image = images.build_oci_layout(tmp_path / "layout", ref="v1", layers=2)
    gun = f"{registry.host_port}/team/sign-later"
    tk = tk_for(tmp_path, notary_server)
    push_json(tk, f"oci:{image.layout}:v1", f"{gun}:v1")  # pushed, not signed
    tk.run("sign", f"{gun}:v1")  # no --digest/--size: the registry's manifest says
    assert notary_targets(notary_cli(), gun) == {"v1": (image.digest.removeprefix("sha256:"), image.size)}
    missing = tk.run("sign", f"{gun}:nope", check=False)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
