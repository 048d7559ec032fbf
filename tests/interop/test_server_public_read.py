"""``trustkit server --auth htpasswd --public-read`` as a real process, read by the real notary CLI
without credentials: every read-only notary command asks the token service for a pull token
anonymously, which works only with ``--public-read``; anything that writes still needs a login.
The web page of the same process follows the same rules (checked over HTTP and in Chromium)."""

from __future__ import annotations

import base64
import subprocess

import pytest
from test_server_web_chromium import chromium

import peers

pytestmark = pytest.mark.interop

USERS = {"alice": "alice-password"}


def listed(notary: peers.NotaryCLI, gun: str) -> subprocess.CompletedProcess[str]:
    return notary.run("list", gun, check=False)


def tags(result: subprocess.CompletedProcess[str]) -> set[str]:
    rows = [line.split() for line in result.stdout.splitlines()[2:] if line.strip()]
    return {row[0] for row in rows if len(row) >= 2}


def logged_in(notary: peers.NotaryCLI, user: str) -> peers.NotaryCLI:
    """notary reads NOTARY_AUTH (base64 user:password) instead of prompting for credentials."""
    notary.env["NOTARY_AUTH"] = base64.b64encode(f"{user}:{USERS[user]}".encode()).decode()
    return notary


def refused(result: subprocess.CompletedProcess[str]) -> bool:
    output = (result.stdout + result.stderr).lower()
    return result.returncode != 0 and ("unauthorized" in output or "not authorized" in output)


def test_notary_reads_anonymously_only_with_public_read(notary_cli, tmp_path):
    htpasswd = peers.write_htpasswd(tmp_path / "htpasswd", USERS)
    auth = ["--auth", "htpasswd", "--htpasswd", str(htpasswd)]
    artifact = tmp_path / "artifact"
    artifact.write_bytes(b"public read\n")
    with peers.TrustkitServer(tmp_path / "server", extra_args=[*auth, "--public-read"]) as server:
        gun = f"{server.host_port}/team/public"
        anonymous_writer = notary_cli(server=server)
        attempt = anonymous_writer.run("init", gun, "-p", check=False)  # stdin closed: no credentials
        assert refused(attempt), attempt.stdout + attempt.stderr
        assert server.get(f"/v2/{gun}/_trust/tuf/root.json").status_code == 404  # nothing was published

        alice = logged_in(notary_cli(server=server), "alice")
        alice.run("init", gun, "-p")
        alice.run("add", gun, "v1", artifact, "-p")

        reader = notary_cli(server=server)  # a fresh trust dir and no credentials at all
        result = listed(reader, gun)
        assert result.returncode == 0, result.stdout + result.stderr
        assert tags(result) == {"v1"}
        assert "targets/releases" not in reader.run("delegation", "list", gun).stdout  # another read

        # alice's own trust dir, with her signing keys, but no credentials: the server says no
        credentials = alice.env.pop("NOTARY_AUTH")
        alice.run("add", gun, "v2", artifact)  # staged locally
        denied = alice.run("publish", gun, check=False)
        assert refused(denied), denied.stdout + denied.stderr
        assert tags(listed(reader, gun)) == {"v1"}
        alice.env["NOTARY_AUTH"] = credentials
        alice.run("publish", gun)
        assert tags(listed(reader, gun)) == {"v1", "v2"}
        deleted = reader.run("delete", gun, "--remote", check=False)
        assert refused(deleted), deleted.stdout + deleted.stderr
        assert tags(listed(reader, gun)) == {"v1", "v2"}

        # The same data without --public-read: reading needs a login again.
        server.extra_args = auth
        server.restart()
        closed = listed(notary_cli(server=server), gun)
        assert refused(closed), closed.stdout + closed.stderr
        # (notary's read-only commands never send credentials, NOTARY_AUTH or not: only a login reads)
        assert refused(listed(logged_in(notary_cli(server=server), "alice"), gun))
        with server.client() as http:
            scope = {"service": "trustkit", "scope": f"repository:{gun}:pull"}
            assert http.get("/auth/token", params=scope).status_code == 401
            token = http.get("/auth/token", params=scope, auth=("alice", USERS["alice"])).json()["token"]
            read = http.get(f"/v2/{gun}/_trust/tuf/root.json", headers={"Authorization": f"Bearer {token}"})
            assert read.status_code == 200


def test_the_web_page_of_a_real_server_asks_for_a_login(notary_cli, tmp_path):
    browser = chromium()  # fail first, with the install command, when the browser is missing
    htpasswd = peers.write_htpasswd(tmp_path / "htpasswd", USERS)
    with peers.TrustkitServer(
        tmp_path / "server", extra_args=["--auth", "htpasswd", "--htpasswd", str(htpasswd)]
    ) as server:
        gun = f"{server.host_port}/team/web"
        artifact = tmp_path / "artifact"
        artifact.write_bytes(b"web page\n")
        logged_in(notary_cli(server=server), "alice").run("init", gun, "-p")

        anonymous = server.get("/")
        assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == 'Basic realm="trustkit"'
        assert gun not in anonymous.text
        assert server.get(f"/repositories/{gun}").status_code == 401
        page = server.get(f"/repositories/{gun}", auth=("alice", USERS["alice"]))
        assert page.status_code == 200 and "Administrative keys" in page.text

        def dom(url: str) -> str:
            command = [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-proxy-server",
                "--ignore-certificate-errors",
                f"--user-data-dir={tmp_path / 'profile'}",
                "--dump-dom",
                url,
            ]
            result = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
                stdin=subprocess.DEVNULL,
                env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
            )
            assert result.returncode == 0, result.stderr[-3000:]
            return result.stdout

        assert gun not in dom(f"{server.url}/")  # the browser gets the challenge, not the list
        shown = dom(f"https://alice:{USERS['alice']}@{server.host_port}/")  # credentials a user typed in
        assert f'href="/repositories/{gun}"' in shown, shown[-2000:]
