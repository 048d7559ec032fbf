"""The push-and-sign workflow as a new team walks it (issue 13): each test drives the trustkit CLI
the way the user did, against the real docker-registry and notary-server."""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

import pexpect
import pytest

import images
import peers

pytestmark = pytest.mark.interop


def tk_for(tmp_path: Path, server: peers.NotaryServer | None = None, **kwargs: object) -> peers.TrustkitCLI:
    return peers.TrustkitCLI(tmp_path / f"docker-config-{os.urandom(3).hex()}", server, **kwargs)  # type: ignore[arg-type]


def _delete_from_storage(registry: peers.Registry, repository: str, digest: str) -> None:
    """Remove a manifest and every tag from the registry's storage, as `registry garbage-collect`
    after a delete leaves it (no cache is configured, so the registry sees it at once)."""
    manifests = registry.storage_dir / "docker/registry/v2/repositories" / repository / "_manifests"
    shutil.rmtree(manifests / "revisions/sha256" / digest.removeprefix("sha256:"))
    shutil.rmtree(manifests / "tags")


# --------------------------------------------------------------------------------------------
# 1. verify checks what the registry serves


def test_verify_exits_4_when_the_registry_serves_another_manifest(registry, notary_server, tmp_path):
    signed = images.build_oci_layout(tmp_path / "layout", ref="signed", layers=1)
    other = images.build_oci_layout(tmp_path / "layout", ref="other", layers=1)
    gun = f"{registry.host_port}/team/drift"
    tk = tk_for(tmp_path, notary_server, extra_env={"DOCKER_CONTENT_TRUST": "1"})
    tk.run("push", f"oci:{signed.layout}:signed", f"{gun}:v1")
    assert tk.run("verify", f"{gun}:v1").returncode == 0

    tk.run("push", f"oci:{other.layout}:other", f"{gun}:v1", "--disable-content-trust")
    drift = tk.run("verify", f"{gun}:v1", check=False)
    assert drift.returncode == 4, drift.stderr
    assert other.digest in drift.stderr and signed.digest in drift.stderr
    assert "content-trust pull gets the signed one" in drift.stderr
    # Air-gapped: the trust data alone still says v1 is signed.
    trust_only = tk.run("verify", f"{gun}:v1", "--trust-only")
    assert signed.digest in trust_only.stdout


def test_verify_fails_clearly_when_the_signed_manifest_is_gone(registry, notary_server, tmp_path):
    image = images.build_oci_layout(tmp_path / "layout", ref="v1", layers=1)
    gun = f"{registry.host_port}/team/gone"
    tk = tk_for(tmp_path, notary_server, extra_env={"DOCKER_CONTENT_TRUST": "1"})
    tk.run("push", f"oci:{image.layout}:v1", f"{gun}:v1")
    _delete_from_storage(registry, "team/gone", image.digest)
    assert registry.manifest_status("team/gone", image.digest) == 404

    gone = tk.run("verify", f"{gun}:v1", check=False)
    assert gone.returncode == 9, gone.stderr
    assert image.digest in gone.stderr and "registry has neither the tag nor that manifest" in gone.stderr
    assert tk.run("verify", f"{gun}:v1", "--trust-only").returncode == 0
    assert json.loads(tk.run("verify", f"{gun}:v1", "--offline", "--format", "json").stdout)["digest"] == image.digest


# --------------------------------------------------------------------------------------------
# 2. key IDs that match what inspect shows


def _self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    """A signer's key pair and certificate, as `openssl req -x509` makes them."""
    folder.mkdir(parents=True, exist_ok=True)
    key, cert = folder / "key.pem", folder / "cert.pem"
    peers.run_command(
        [peers.require("openssl"), "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={name}", "-days", "30"],
        env={"PATH": "/usr/bin:/bin"}, cwd=folder, timeout=60, input=None, check=True, what="openssl",
    )  # fmt: skip
    return key, cert


def test_a_refusal_names_the_signer_key_as_inspect_does(registry, notary_server, tmp_path):
    image = images.build_oci_layout(tmp_path / "layout", ref="v1", layers=1)
    gun = f"{registry.host_port}/team/ids"
    admin = tk_for(tmp_path, notary_server, extra_env={"DOCKER_CONTENT_TRUST": "1"})
    admin.run("push", f"oci:{image.layout}:v1", f"{gun}:v1")
    _, cert = _self_signed(tmp_path / "dev1", "dev1")
    admin.run("signer", "add", "dev1", gun, "--key", cert)
    [entry] = json.loads(admin.run("inspect", gun).stdout)
    [dev1] = [s for s in entry["Signers"] if s["Name"] == "dev1"]
    shown = dev1["Keys"][0]["ID"][:12]

    stranger = tk_for(tmp_path, notary_server)
    refused = stranger.run("sign", f"{gun}:v2", "--digest", image.digest, "--size", str(image.size), check=False)
    assert refused.returncode == 1
    assert f"targets/dev1: {shown}" in refused.stderr, refused.stderr


# --------------------------------------------------------------------------------------------
# 3. errors name the server that refused


def _htpasswd(path: Path, users: dict[str, str]) -> Path:
    import bcrypt

    lines = (f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=4)).decode()}\n" for u, p in users.items())
    path.write_text("".join(lines))
    return path


def _logged_in(tk: peers.TrustkitCLI, host: str, user: str, password: str) -> peers.TrustkitCLI:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (tk.config_dir / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return tk


def test_refusals_name_the_trust_server_and_a_next_step_that_works(registry, tmp_path):
    users = {"dev1": "dev1-password", "admin": "admin-password"}
    args = ["--auth", "htpasswd", "--htpasswd", str(_htpasswd(tmp_path / "htpasswd", users)), "--admin", "admin"]
    with peers.TrustkitServer(tmp_path / "server", extra_args=args) as server:
        gun = f"{registry.host_port}/team/app"
        digest = "sha256:" + "ab" * 32
        dev1 = _logged_in(tk_for(tmp_path, server), server.host_port, "dev1", users["dev1"])
        dev1.run("sign", f"{gun}:v1", "--digest", digest, "--size", "1")  # the trust server's own login is used

        refused = dev1.run("repo", "immutable", gun, check=False)
        assert refused.returncode == 1
        assert f'the trust server {server.host_port} does not allow "dev1"' in refused.stderr, refused.stderr
        assert registry.host_port not in refused.stderr.split("(", 1)[0]

        wrong = _logged_in(tk_for(tmp_path, server), server.host_port, "dev1", "not-the-password")
        line = wrong.run("sign", f"{gun}:v2", "--digest", digest, "--size", "1", check=False).stderr
        assert f"the token server of the trust server {server.host_port} refused" in line, line
        assert "current one" in line

        # Credentials for the registry only: the hint points at the trust server's own login.
        registry_login = _logged_in(tk_for(tmp_path, server), registry.host_port, "dev1", "registry-password")
        line = registry_login.run("sign", f"{gun}:v3", "--digest", digest, "--size", "1", check=False).stderr
        assert f"run `trustkit login {server.host_port}`" in line, line


def test_a_refused_login_does_not_suggest_logging_in_again(tmp_path):
    users = {"dev1": "dev1-password"}
    with peers.Registry(tmp_path / "registry", htpasswd=_htpasswd(tmp_path / "htpasswd", users)) as registry:
        tk = tk_for(tmp_path)
        result = peers.run_command(
            [*tk.argv0, "login", registry.host_port, "-u", "dev1", "--password-stdin"],
            env=tk.env, cwd=None, timeout=60, input="wrong-password\n", check=False, what="trustkit",
        )  # fmt: skip
        assert result.returncode == 1, result.stderr
        assert "trustkit login" not in result.stderr and 'check the user name "dev1"' in result.stderr


# --------------------------------------------------------------------------------------------
# 4, 5, 12. the first signed push: one passphrase per new key, no stray keys, what it created


def _terminal_push(tk: peers.TrustkitCLI, *args: str) -> pexpect.spawn:
    """`trustkit push` on a terminal, passphrases typed (none in the environment)."""
    env = {k: v for k, v in tk.env.items() if not k.startswith("DOCKER_CONTENT_TRUST_") or k.endswith("SERVER")}
    env.pop("CI", None)
    return pexpect.spawn(tk.argv0[0], [*tk.argv0[1:], "push", *args], env=env, encoding="utf-8", timeout=60)


def _private_keys(tk: peers.TrustkitCLI) -> list[Path]:
    folder = tk.trust_dir / "private"
    return sorted(folder.glob("*.key")) if folder.is_dir() else []


def test_a_terminal_first_push_asks_each_new_passphrase_once_and_says_what_it_created(
    registry, notary_server, tmp_path
):
    image = images.build_oci_layout(tmp_path / "layout", ref="v1", layers=1)
    gun = f"{registry.host_port}/team/first"
    tk = tk_for(tmp_path, notary_server)
    child = _terminal_push(tk, f"oci:{image.layout}:v1", f"{gun}:v1", "--sign")
    for kind in ("root", "repository"):
        child.expect(f"Enter a new passphrase for {kind} key")
        child.sendline(f"{kind}-passphrase")
        child.expect("Repeat passphrase")
        child.sendline(f"{kind}-passphrase")
    asked = child.expect(["Enter (a new )?passphrase", "Signed "])
    assert asked == 1, "a passphrase was asked for a third time"
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    output = child.before

    [entry] = json.loads(tk.run("inspect", gun).stdout)
    admin = {a["Name"]: a["Keys"][0]["ID"] for a in entry["AdministrativeKeys"]}
    assert f"Created root key {admin['Root'][:12]}" in output, output
    assert f"Created repository key {admin['Repository'][:12]}" in output
    assert str(tk.trust_dir / "private") in output and "trustkit key export" in output and "offline" in output
    assert len(_private_keys(tk)) == 2


def test_an_aborted_first_push_leaves_no_key_and_the_next_run_makes_one_of_each(registry, notary_server, tmp_path):
    image = images.build_oci_layout(tmp_path / "layout", ref="v1", layers=1)
    gun = f"{registry.host_port}/team/aborted"
    tk = tk_for(tmp_path, notary_server)
    child = _terminal_push(tk, f"oci:{image.layout}:v1", f"{gun}:v1", "--sign")
    child.expect("Enter a new passphrase for root key")
    child.sendline("root-passphrase")
    child.expect("Repeat passphrase")
    child.sendline("root-passphrase")
    child.expect("Enter a new passphrase for repository key")
    child.sendintr()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus != 0
    assert _private_keys(tk) == []
    assert registry.manifest_status("team/aborted", "v1") == 404

    tk.run("push", f"oci:{image.layout}:v1", f"{gun}:v1", "--sign")
    assert len(_private_keys(tk)) == 2
    assert tk.run("verify", f"{gun}:v1").returncode == 0


# --------------------------------------------------------------------------------------------
# 6. the commands users look for: logout, repo list, repo show; repo immutable needs trust data

# A keychain as docker's credential helper protocol sees it: one entry in a file beside the script.
KEYCHAIN_HELPER = """#!/bin/sh
entry="$(dirname "$0")/entry.json"
case "$1" in
  store) cat > "$entry" ;;
  get) read server
       if grep -qF "\\"ServerURL\\": \\"$server\\"" "$entry" 2>/dev/null; then cat "$entry"
       else echo "credentials not found in native keychain"; exit 1; fi ;;
  erase) read server
       if grep -qF "\\"ServerURL\\": \\"$server\\"" "$entry" 2>/dev/null; then rm "$entry"
       else echo "credentials not found in native keychain"; exit 1; fi ;;
esac
"""


def _login(tk: peers.TrustkitCLI, host: str, user: str, password: str) -> None:
    result = peers.run_command(
        [*tk.argv0, "login", host, "-u", user, "--password-stdin"],
        env=tk.env, cwd=None, timeout=60, input=password + "\n", check=True, what="trustkit",
    )  # fmt: skip
    assert "Login Succeeded" in result.stdout


def test_logout_forgets_the_login_in_config_json_and_in_the_credential_helper(tmp_path):
    users = {"dev1": "dev1-password"}
    with peers.Registry(tmp_path / "registry", htpasswd=_htpasswd(tmp_path / "htpasswd", users)) as registry:
        plain = tk_for(tmp_path)
        _login(plain, registry.host_port, "dev1", users["dev1"])
        assert registry.host_port in (plain.config_dir / "config.json").read_text()
        out = plain.run("logout", registry.host_port).stdout
        assert "Removing login credentials" in out
        assert registry.host_port not in json.loads((plain.config_dir / "config.json").read_text())["auths"]
        assert "Not logged in" in plain.run("logout", registry.host_port).stdout

        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        helper = bin_dir / "docker-credential-keychain"
        helper.write_text(KEYCHAIN_HELPER)
        helper.chmod(0o755)
        keychain = tk_for(tmp_path, extra_env={"PATH": f"{bin_dir}:{os.environ['PATH']}"})
        (keychain.config_dir / "config.json").write_text(json.dumps({"credsStore": "keychain"}))
        _login(keychain, registry.host_port, "dev1", users["dev1"])
        assert (bin_dir / "entry.json").is_file()
        assert "docker-credential-keychain" in keychain.run("logout", registry.host_port).stdout
        assert not (bin_dir / "entry.json").exists()
        assert registry.host_port not in json.loads((keychain.config_dir / "config.json").read_text())["auths"]


def test_repo_list_show_and_immutable_without_trust_data(trustkit_server, tmp_path):
    tk = tk_for(tmp_path, trustkit_server)
    digest = "sha256:" + "cd" * 32
    tk.run("sign", f"{trustkit_server.host_port}/team/one:v1", "--digest", digest, "--size", "3")
    tk.run("sign", f"{trustkit_server.host_port}/team/two:v1", f"{trustkit_server.host_port}/team/two:v2",
           "--digest", digest, "--size", "3")  # fmt: skip
    listed = json.loads(tk.run("repo", "list", "--format", "json").stdout)
    counts = {row["repository"]: row["tags"] for row in listed}
    assert counts == {f"{trustkit_server.host_port}/team/one": 1, f"{trustkit_server.host_port}/team/two": 2}
    assert "team/two" in tk.run("repo", "list").stdout

    gun = f"{trustkit_server.host_port}/team/two"
    _, cert = _self_signed(tmp_path / "dev1", "dev1")
    tk.run("signer", "add", "dev1", gun, "--key", cert)
    tk.run("repo", "immutable", gun)
    shown = json.loads(tk.run("repo", "show", gun, "--format", "json").stdout)
    assert shown["immutable"] is True and shown["signed_tags"] == 2
    assert [s["name"] for s in shown["signers"]] == ["dev1"]
    assert {"root", "targets", "snapshot", "timestamp"} <= set(shown["expires"])
    table = tk.run("repo", "show", gun).stdout
    assert "Immutable:   yes" in table and "dev1" in table

    missing = tk.run("repo", "immutable", f"{trustkit_server.host_port}/team/typo", check=False)
    assert missing.returncode == 1 and "no trust data" in missing.stderr
    assert "immutable now" not in missing.stdout


# --------------------------------------------------------------------------------------------
# 7. inspect falls back to the cache when the trust server is down; verify does not


def test_inspect_shows_the_cache_with_a_warning_when_the_trust_server_is_down(tmp_path):
    digest = "sha256:" + "ef" * 32
    with peers.TrustkitServer(tmp_path / "server") as server:
        gun = f"{server.host_port}/team/cached"
        tk = tk_for(tmp_path, server)
        tk.run("sign", f"{gun}:v1", "--digest", digest, "--size", "5")
        online = json.loads(tk.run("inspect", gun).stdout)
    # The server is stopped now.
    offline = tk.run("inspect", gun)
    assert json.loads(offline.stdout) == online
    assert "warning:" in offline.stderr and "cached" in offline.stderr
    verify = tk.run("verify", f"{gun}:v1", "--trust-only", check=False)
    assert verify.returncode == 7, verify.stderr
    fresh = tk_for(tmp_path, server).run("inspect", gun, check=False)  # nothing cached: the network error
    assert fresh.returncode == 1 and "warning" not in fresh.stderr


# --------------------------------------------------------------------------------------------
# 8. --format json on failure: {"error": {...}} on stdout


def test_json_output_on_failure_is_an_error_object(registry, notary_server, tmp_path):
    tk = tk_for(tmp_path, notary_server)
    gun = f"{registry.host_port}/team/none"
    unsigned = tk.run("verify", f"{gun}:v1", "--format", "json", check=False)
    assert unsigned.returncode == 3
    assert json.loads(unsigned.stdout)["error"]["code"] == "not_signed"
    assert json.loads(unsigned.stdout)["error"]["exit_status"] == 3

    missing = tk.run("push", f"oci:{tmp_path / 'nothing'}:v1", f"{gun}:v1", "--format", "json", check=False)
    assert missing.returncode == 1
    error = json.loads(missing.stdout)["error"]
    assert error["exit_status"] == 1 and error["message"] and error["code"]

    usage = tk.run("key", "list", "--format", "json", "--no-such-flag", check=False)
    assert usage.returncode == 2 and json.loads(usage.stdout)["error"]["exit_status"] == 2


# --------------------------------------------------------------------------------------------
# 11. re-importing a bundle under a new --name


def _openssl(folder: Path, *args: str) -> None:
    peers.run_command([peers.require("openssl"), *args], env={"PATH": "/usr/bin:/bin"}, cwd=folder, timeout=60,
                      input=None, check=True, what="openssl")  # fmt: skip


def _ucp_bundle(folder: Path, cn: str) -> Path:
    """cert.pem (a client certificate issued by ca.pem), key.pem and ca.pem, as `openssl` makes them."""
    folder.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    _openssl(folder, "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=ucp-ca", "-days", "30",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")  # fmt: skip
    (folder / "ext.cnf").write_text(
        "[client]\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
    )
    _openssl(folder, "req", *ec, "-keyout", "key.pem", "-out", "req.csr", "-subj", f"/CN={cn}")
    _openssl(folder, "x509", "-req", "-in", "req.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "cert.pem", "-days", "30", "-extfile", "ext.cnf", "-extensions", "client")  # fmt: skip
    return folder


def test_reimporting_a_bundle_under_a_new_name_is_refused_without_force(tmp_path):
    bundle = _ucp_bundle(tmp_path / "bundle", "dev1")
    tk = tk_for(tmp_path)
    tk.run("bundle", "import", bundle)
    again = tk.run("bundle", "import", bundle)  # the same name: nothing to say
    assert "Renamed" not in again.stderr

    renamed = tk.run("bundle", "import", bundle, "--name", "ci", check=False)
    assert renamed.returncode == 1 and 'already stored as signer "dev1"' in renamed.stderr
    assert [k["role"] for k in json.loads(tk.run("key", "list", "--format", "json").stdout)] == ["dev1"]

    forced = tk.run("bundle", "import", bundle, "--name", "ci", "--force")
    assert "Renamed key" in forced.stderr and '"dev1" to "ci"' in forced.stderr
    assert [k["role"] for k in json.loads(tk.run("key", "list", "--format", "json").stdout)] == ["ci"]


# --------------------------------------------------------------------------------------------
# 10. a failed upload chunk resumes from the registry's offset


class FlakyProxy:
    """An HTTP proxy in front of the registry, one request per connection, that answers PATCH
    number ``fail_patch`` with 503 itself, as an overloaded load balancer does, without passing
    it on.  It records ``(method, path, body bytes forwarded)`` of every request."""

    def __init__(self, upstream: str, fail_patch: int) -> None:
        self.upstream = upstream
        self.fail_patch = fail_patch
        self.requests: list[tuple[str, str, int]] = []
        self.patches = 0

    def __enter__(self) -> FlakyProxy:
        import socketserver
        import threading

        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                proxy.serve(self.rfile, self.wfile)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def host_port(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def serve(self, rfile, wfile) -> None:
        import http.client

        request_line = rfile.readline().decode("latin-1").strip()
        if not request_line:
            return
        method, path, _ = request_line.split(" ", 2)
        headers = []
        while (line := rfile.readline().decode("latin-1").strip()) != "":
            name, value = line.split(":", 1)
            headers.append((name.strip(), value.strip()))
        length = int(next((v for n, v in headers if n.lower() == "content-length"), "0"))
        body = rfile.read(length) if length else b""
        if method == "PATCH":
            self.patches += 1
            if self.patches == self.fail_patch:
                self.requests.append((method, path, 0))
                wfile.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
        self.requests.append((method, path, length))
        host, port = self.upstream.rsplit(":", 1)
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        skip = {"connection", "content-length", "transfer-encoding"}
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers:
            if name.lower() not in skip:
                connection.putheader(name, value)
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        answer = response.read()
        out = [f"HTTP/1.1 {response.status} {response.reason}"]
        out += [f"{n}: {v}" for n, v in response.getheaders() if n.lower() not in skip]
        out += [f"Content-Length: {len(answer)}", "Connection: close"]
        wfile.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + (b"" if method == "HEAD" else answer))
        connection.close()


def test_a_failed_upload_chunk_resumes_from_the_registry_offset(registry, tmp_path):
    size = 3 * 1024 * 1024
    image = images.build_oci_layout(tmp_path / "layout", ref="v1", sizes=[size], level=0)
    chunk = 1024 * 1024
    with FlakyProxy(registry.host_port, fail_patch=2) as proxy:
        tk = tk_for(tmp_path)
        pushed = json.loads(
            tk.run("push", f"oci:{image.layout}:v1", f"{proxy.host_port}/team/resume:v1", "--chunk-size", str(chunk),
                   "--format", "json").stdout
        )  # fmt: skip
    assert pushed["digest"] == image.digest
    layer = image.layer_digests[0]
    assert registry.manifest_status("team/resume", "v1") == 200
    layer_size = registry.get(f"/v2/team/resume/blobs/{layer}").headers["content-length"]
    sessions = [r for r in proxy.requests if r[0] == "POST" and "/blobs/uploads" in r[1]]
    patched = sum(n for m, _, n in proxy.requests if m == "PATCH")
    # One upload session for the layer (plus the config's), its status asked once, no byte sent twice.
    assert len(sessions) == 2, proxy.requests
    assert patched == int(layer_size), (patched, layer_size)
    assert [m for m, p, _ in proxy.requests if m == "GET" and "/blobs/uploads/" in p] == ["GET"]


# --------------------------------------------------------------------------------------------
# 10. gzip-compressed `docker save` archives


def _gzip(path: Path) -> Path:
    """`gzip -k`, as `docker save | gzip > app.tar.gz` leaves it."""
    peers.run_command([peers.require("gzip"), "-k", "-f", str(path)], env={"PATH": "/usr/bin:/bin"}, cwd=None,
                      timeout=60, input=None, check=True, what="gzip")  # fmt: skip
    return path.with_name(path.name + ".gz")


def test_gzipped_docker_save_archives_push_like_plain_ones(registry, tmp_path):
    import tarfile

    image = images.build_oci_layout(tmp_path / "layout", ref="v1", layers=3, layer_size=3 << 20)
    legacy = images.docker_archive(image.layout, "v1", tmp_path / "saved.tar", "example.com/team/app:v1")
    tk = tk_for(tmp_path)
    gzipped = json.loads(tk.run("push", f"docker-archive:{_gzip(legacy)}", f"{registry.host_port}/team/gz:v1",
                                "--format", "json").stdout)  # fmt: skip
    assert gzipped["layers_uploaded"] == 3
    plain = json.loads(tk.run("push", f"docker-archive:{legacy}", f"{registry.host_port}/team/plain:v1",
                              "--format", "json").stdout)  # fmt: skip
    assert gzipped["digest"] == plain["digest"]

    newer = tmp_path / "new-save.tar"  # docker 25+: an OCI layout inside the tar
    with tarfile.open(newer, "w") as tar:
        for path in sorted(image.layout.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=path.relative_to(image.layout).as_posix())
    pushed = json.loads(tk.run("push", f"docker-archive:{_gzip(newer)}", f"{registry.host_port}/team/gz-oci:v1",
                               "--format", "json").stdout)  # fmt: skip
    assert pushed["digest"] == image.digest
    assert registry.manifest_status("team/gz-oci", "v1") == 200
