"""The web page's registry badges (issue 13, item 1): ``trustkit server --registry URL`` compares
each signed tag with what the real docker-registry serves, as ``trustkit verify`` does."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import images
import peers

pytestmark = pytest.mark.interop


def tk_for(tmp_path: Path, server: peers.TrustkitServer) -> peers.TrustkitCLI:
    return peers.TrustkitCLI(
        tmp_path / f"docker-config-{os.urandom(3).hex()}",
        server,  # type: ignore[arg-type]  # same interface as NotaryServer
        extra_env={"DOCKER_CONTENT_TRUST": "1"},
    )


def _delete_from_storage(registry: peers.Registry, repository: str, tag: str, digest: str | None = None) -> None:
    """Remove a tag (and a manifest) from the registry's storage, as a delete and
    `registry garbage-collect` leave it (no cache is configured: the registry sees it at once)."""
    manifests = registry.storage_dir / "docker/registry/v2/repositories" / repository / "_manifests"
    shutil.rmtree(manifests / "tags" / tag)
    if digest is not None:
        shutil.rmtree(manifests / "revisions/sha256" / digest.removeprefix("sha256:"))


def _badges(page: str) -> dict[str, str]:
    """tag -> the registry badge's class and label, read off the tag table."""
    found = {}
    table = page.split('<table id="tags">', 1)[1].split("</table>", 1)[0]
    for row in re.findall(r"<tr>(.*?)</tr>", table):
        tag = re.search(r'<td class="tag">(.*?)</td>', row)
        badge = re.search(r'<span class="badge (\w+)"[^>]*>([^<]*)</span>', row)
        if tag and badge:
            found[tag.group(1)] = f"{badge.group(1)}: {badge.group(2)}"
    return found


def test_each_signed_tag_shows_what_the_registry_serves(registry, tmp_path):
    signed = images.build_oci_layout(tmp_path / "layout", ref="signed", layers=1)
    other = images.build_oci_layout(tmp_path / "layout", ref="other", layers=1)
    gone = images.build_oci_layout(tmp_path / "layout-gone", ref="gone", layers=1)
    gun = f"{registry.host_port}/team/app"
    with peers.TrustkitServer(tmp_path / "server", extra_args=["--registry", registry.url]) as server:
        said = json.loads(server.log_path.read_text().splitlines()[0])
        assert said["registry"].startswith(registry.url)
        tk = tk_for(tmp_path, server)
        for tag in ("v1", "v2", "v3"):
            tk.run("push", f"oci:{signed.layout}:signed", f"{gun}:{tag}")
        page = server.get(f"/repositories/{gun}").text
        assert _badges(page) == {tag: "served: in registry" for tag in ("v1", "v2", "v3")}
        assert "<b>3</b> in registry" in page

        # v1 is overwritten without content trust: drift, and the title names both digests.
        tk.run("push", f"oci:{other.layout}:other", f"{gun}:v1", "--disable-content-trust")
        # v4's signed manifest disappears from the registry with its tag: missing.
        tk.run("push", f"oci:{gone.layout}:gone", f"{gun}:v4")
        _delete_from_storage(registry, "team/app", "v4", gone.digest)
        assert registry.manifest_status("team/app", "v4") == 404
        # v3's tag is deleted, the signed manifest (v2's too) stays: untagged.
        _delete_from_storage(registry, "team/app", "v3")
        # the cache keeps answers for 30 s: a new server process asks afresh
        server.restart()
        page = server.get(f"/repositories/{gun}").text
        badges = _badges(page)
        assert badges["v1"] == f"drifted: drift: {other.digest[7:19]}"
        assert badges["v4"] == "missing: missing from registry"
        assert badges["v3"] == "untagged: untagged in registry"
        assert badges["v2"] == "served: in registry"
        title = re.search(r'<span class="badge drifted" title="([^"]*)"', page)
        assert title is not None
        assert other.digest in title.group(1) and signed.digest in title.group(1)
        assert "content-trust pull gets the signed one" in title.group(1)
        assert "<b>1</b> drift" in page and "<b>1</b> missing from registry" in page

        # the same judgement as trustkit verify
        assert tk.run("verify", f"{gun}:v1", check=False).returncode == 4
        assert tk.run("verify", f"{gun}:v4", check=False).returncode == 9

        # the filter narrows what is shown and checked
        filtered = server.get(f"/repositories/{gun}", params={"q": "v4"}).text
        assert _badges(filtered) == {"v4": "missing: missing from registry"}


def test_a_repository_of_another_registry_or_an_unreachable_one_is_said_plainly(registry, tmp_path):
    image = images.build_oci_layout(tmp_path / "layout", ref="v1", layers=1)
    gun = f"{registry.host_port}/team/app"
    with peers.TrustkitServer(tmp_path / "server") as server:
        tk_for(tmp_path, server).run("push", f"oci:{image.layout}:v1", f"{gun}:v1")
        # no --registry: no column at all
        assert "Registry" not in server.get(f"/repositories/{gun}").text
        registry.stop()  # the registry goes away
        server.extra_args = ["--registry", registry.url]
        server.restart()
        page = server.get(f"/repositories/{gun}")
        assert page.status_code == 200
        assert "The registry could not be compared" in page.text and "cannot reach 127.0.0.1" in page.text
        assert _badges(page.text) == {"v1": "unchecked: not checked"}
        server.extra_args = ["--registry", "http://registry.example:5000"]
        server.restart()
        page = server.get(f"/repositories/{gun}").text
        assert f"{gun} is not a repository of registry.example:5000" in page


def test_a_registry_behind_tls_and_a_login(tmp_path):
    htpasswd = peers.write_htpasswd(tmp_path / "htpasswd", {"alice": "s3cret-pass"})
    image = images.build_oci_layout(tmp_path / "layout", ref="v1", layers=1)
    with peers.Registry(tmp_path / "registry", tls=True, htpasswd=htpasswd) as registry:
        gun = f"{registry.host_port}/team/app"
        args = ["--registry", registry.url, "--registry-ca", str(registry.ca_path), "--registry-user", "alice"]
        with peers.TrustkitServer(tmp_path / "server", extra_args=args) as server:
            tk = tk_for(tmp_path, server)
            tls_dir = tk.config_dir / "tls" / registry.host_port
            tls_dir.mkdir(parents=True)
            shutil.copyfile(registry.ca_path, tls_dir / "ca.crt")
            login = subprocess.run(
                [*tk.argv0, "login", registry.host_port, "-u", "alice", "--password-stdin"],
                input="s3cret-pass\n",
                env=tk.env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert login.returncode == 0, login.stderr
            tk.run("push", f"oci:{image.layout}:v1", f"{gun}:v1")

            # no password configured: the registry refuses, and the page says so
            page = server.get(f"/repositories/{gun}").text
            assert "refused the configured registry login" in page
            server.stop()
            os.environ["TRUSTKIT_SERVER_REGISTRY_PASSWORD"] = "s3cret-pass"
            try:
                server.start()
            finally:
                del os.environ["TRUSTKIT_SERVER_REGISTRY_PASSWORD"]
            assert _badges(server.get(f"/repositories/{gun}").text) == {"v1": "served: in registry"}


def test_a_registry_that_sends_clients_to_the_trust_servers_token_service(tmp_path):
    """The DTR/MSR set-up: docker-registry trusts tokens from trustkit server's built-in token
    service; the page's reader logs in there as the configured user."""
    htpasswd = peers.write_htpasswd(tmp_path / "htpasswd", {"alice": "s3cret-pass"})
    image = images.build_oci_layout(tmp_path / "layout", ref="v1", layers=1)
    auth = ["--auth", "htpasswd", "--htpasswd", str(htpasswd)]
    with peers.TrustkitServer(tmp_path / "server", extra_args=auth) as server:
        token_auth = {
            "realm": f"{server.url}/auth/token",
            "service": "trustkit",
            "issuer": "trustkit",
            "rootcertbundle": str(server.workdir / "token-signing-cert.pem"),
        }
        with peers.Registry(tmp_path / "registry", token_auth=token_auth) as registry:
            gun = f"{registry.host_port}/team/app"
            tk = tk_for(tmp_path, server)
            login = base64.b64encode(b"alice:s3cret-pass").decode()
            auths = {host: {"auth": login} for host in (server.host_port, registry.host_port)}
            (tk.config_dir / "config.json").write_text(json.dumps({"auths": auths}))
            tk.run("push", f"oci:{image.layout}:v1", f"{gun}:v1")
            assert registry.manifest_status("team/app", "v1") == 401  # anonymous: sent to the token service

            server.extra_args = [*auth, "--registry", registry.url, "--registry-ca", str(server.ca_path)]
            server.extra_args += ["--registry-user", "alice"]
            os.environ["TRUSTKIT_SERVER_REGISTRY_PASSWORD"] = "s3cret-pass"
            try:
                server.restart()
            finally:
                del os.environ["TRUSTKIT_SERVER_REGISTRY_PASSWORD"]
            page = server.get(f"/repositories/{gun}", auth=("alice", "s3cret-pass")).text
            assert _badges(page) == {"v1": "served: in registry"}, page
        # the token service's lines are JSON like the rest of the log (issue 13, item 9)
        lines = server.log_path.read_text().splitlines()
        issued = [json.loads(line) for line in lines if "token issued" in line]
        assert issued and all(entry["logger"] == "trustkit.server.auth.issuer" for entry in issued)
        assert all(isinstance(json.loads(line), dict) for line in lines)
