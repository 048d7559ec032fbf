"""Co-signing a threshold delegation through `trustkit server` (issue 12 section 3), with real
processes: a 2-of-3 signer whose members each have their own trust dir holding only their own
key ("two machines") stage and complete a release through the server's staging area, with no
folder shared between them; the real notary CLI (`notary lookup`) and docker CLI (`docker trust
inspect`) read the result.  A stale staged version is refused, verify and the web page say what
is pending, and against a plain notary-server `--staging-dir` stays the way (the message says so).
In-process detail (bad input, auth, limits) is in tests/unit/test_server_staging.py."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.interop

DIGEST = "sha256:" + "5e" * 32
DIGEST_2 = "sha256:" + "6f" * 32
TEAM = "targets/team"


@pytest.fixture
def team(trustkit_server, trustkit_cli, tmp_path):
    """A repository on the trustkit server whose signer "team" needs 2 of its 3 keys; returns
    (gun, [member CLIs]) where each member's trust dir holds only their own key."""
    gun = f"{trustkit_server.host_port}/team/cosign"
    members = []
    for name in ("m1", "m2", "m3"):
        member = trustkit_cli(server=trustkit_server)
        member.run("key", "generate", name, "--dir", tmp_path)
        members.append(member)
    keys = [arg for name in ("m1", "m2", "m3") for arg in ("--key", tmp_path / f"{name}.pub")]
    trustkit_cli(server=trustkit_server).run("signer", "add", "team", gun, *keys, "--threshold", "2")
    return gun, members


def key_id(member) -> str:
    """The member's key ID as inspect shows a signer's key (the private key's ID)."""
    return json.loads(member.run("key", "list", "--format", "json").stdout)[0]["keyid"]


def test_two_members_on_two_machines_sign_through_the_server(
    trustkit_server, trustkit_cli, notary_cli, docker_cli, team
):
    gun, (m1, m2, _) = team
    first = m1.run("sign", f"{gun}:v1", "--digest", DIGEST, "--size", "5")
    assert "staged on the trust server" in first.stdout and "--staging-dir" not in first.stdout
    staged = trustkit_server.get(f"/v2/{gun}/_trust/staged/")
    assert {e["role"]: e["signed_by"] for e in staged.json()["staged"]}[TEAM] == [key_id(m1)]

    reader = trustkit_cli(server=trustkit_server)
    not_yet = reader.run("verify", "--trust-only", f"{gun}:v1", check=False)
    assert not_yet.returncode == 6, not_yet.stderr
    assert "1 of the 2 signatures" in not_yet.stderr and key_id(m1)[:12] in not_yet.stderr
    notary = notary_cli(server=trustkit_server)
    assert notary.run("lookup", gun, "v1", check=False).returncode != 0  # nothing published yet

    second = json.loads(m2.run("sign", f"{gun}:v1", "--digest", DIGEST, "--size", "5", "--format", "json").stdout)
    assert sorted(second["published"]) == ["targets/releases", TEAM] and second["pending"] == {}
    assert trustkit_server.get(f"/v2/{gun}/_trust/staged/").json() == {"staged": []}

    looked_up = notary.run("lookup", gun, "v1").stdout.split()
    assert looked_up[:3] == ["v1", DIGEST, "5"]
    inspected = json.loads(docker_cli(server=trustkit_server).run("trust", "inspect", gun).stdout)[0]
    assert {row["SignedTag"]: row["Signers"] for row in inspected["SignedTags"]} == {"v1": ["team"]}
    assert reader.run("verify", "--trust-only", f"{gun}:v1").stdout.split()[1] == DIGEST


def test_a_stale_staged_version_is_refused(trustkit_server, team, tmp_path):
    gun, (m1, m2, m3) = team
    m1.run("sign", f"{gun}:v1", "--digest", DIGEST, "--size", "5")
    stale = trustkit_server.get(f"/v2/{gun}/_trust/staged/{TEAM}.json").content
    # m2 and m3 release something else meanwhile, the folder way: team moves on without m1's version.
    shared = tmp_path / "shared"
    for member in (m2, m3):
        member.run("--staging-dir", shared, "sign", f"{gun}:v2", "--digest", DIGEST_2, "--size", "6")
    assert trustkit_server.get(f"/v2/{gun}/_trust/staged/").json() == {"staged": []}  # dropped when read
    with trustkit_server.client() as client:
        refused = client.put(f"/v2/{gun}/_trust/staged/{TEAM}.json", content=stale)
    assert refused.status_code == 400
    assert refused.json()["errors"][0]["code"] == "VERSION"


def test_verify_and_the_web_page_show_what_is_pending(trustkit_server, trustkit_cli, team):
    gun, (m1, m2, _) = team
    for member in (m1, m2):
        member.run("sign", f"{gun}:v1", "--digest", DIGEST, "--size", "5")
    m1.run("sign", f"{gun}:v2", "--digest", DIGEST_2, "--size", "6")
    checked = trustkit_cli(server=trustkit_server).run("verify", "--trust-only", f"{gun}:v1")
    assert checked.stdout.split()[1] == DIGEST
    pending = [line for line in checked.stderr.splitlines() if line.startswith("pending: ")]
    assert any(
        f"{TEAM} version 2 is pending on the trust server" in line
        and "adds v2" in line
        and "1 of 2 signatures" in line
        and key_id(m1)[:12] in line
        for line in pending
    ), checked.stderr
    as_json = json.loads(
        trustkit_cli(server=trustkit_server).run("verify", "--trust-only", "--format", "json", f"{gun}:v1").stdout
    )
    staged = [entry for entry in as_json["pending"] if entry["role"] == TEAM]
    assert staged and staged[0]["version"] == 2 and staged[0]["threshold"] == 2, as_json
    assert staged[0]["added"] == ["v2"] and staged[0]["signed_by"] == [key_id(m1)[:12]]
    page = trustkit_server.get(f"/repositories/{gun}").text
    section = page.split('id="pending"', 1)[1]
    assert TEAM in section and "adds v2" in section and key_id(m1) in section


def test_against_notary_server_the_staging_dir_stays_the_way(notary_server, trustkit_cli, tmp_path):
    gun = f"{notary_server.host_port}/team/cosign-plain"
    members = []
    for name in ("m1", "m2"):
        member = trustkit_cli()
        member.run("key", "generate", name, "--dir", tmp_path)
        members.append(member)
    keys = [arg for name in ("m1", "m2") for arg in ("--key", tmp_path / f"{name}.pub")]
    trustkit_cli().run("signer", "add", "team", gun, *keys, "--threshold", "2")
    alone = members[0].run("sign", f"{gun}:v1", "--digest", DIGEST, "--size", "5")
    assert "no staging area" in alone.stdout and "--staging-dir" in alone.stdout
    shared = tmp_path / "shared"
    members[0].run("--staging-dir", shared, "sign", f"{gun}:v1", "--digest", DIGEST, "--size", "5")
    members[1].run("--staging-dir", shared, "sign", f"{gun}:v1", "--digest", DIGEST, "--size", "5")
    assert trustkit_cli().run("verify", "--trust-only", f"{gun}:v1").returncode == 0
