"""The server's web page (``/`` and ``/repositories/<gun>``), in-process through Starlette's
TestClient, on a temporary SQLite storage filled with metadata built by trustkit's own classes."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from html import escape

import pytest
from starlette.testclient import TestClient

from simulator import NOW, Simulator
from trustkit.reference import tag_sort_key
from trustkit.roles import RELEASES, ROOT, SNAPSHOT, TARGETS, TIMESTAMP
from trustkit.server.app import create_app
from trustkit.server.keys import ServerKeys
from trustkit.server.storage import Storage
from trustkit.server.web import REPO_ADMIN, repository_view, web_routes

GUN = "registry.example.com/team/app"
LATER = NOW + timedelta(hours=3)
ROW = re.compile(r'<tr><td class="tag">')


@pytest.fixture
def storage(tmp_path):
    store = Storage("sqlite:///" + str(tmp_path / "db"))
    yield store
    store.close()


@pytest.fixture
def client(storage):
    app = create_app(
        storage, ServerKeys(storage, "web-test-passphrase"), extra_routes=web_routes(storage, clock=lambda: LATER)
    )
    with TestClient(app) as test_client:
        yield test_client


def store(storage: Storage, sim: Simulator, *, now=NOW) -> None:
    """Put the simulator's current files into the server's storage, as one publish would."""
    files = []
    for role in [ROOT, *sorted(sim.targets), SNAPSHOT, TIMESTAMP]:
        data = sim.current(role)
        stored = storage.current(sim.gun, role)
        version = (stored.version + 1) if stored else 1
        files.append((role, version, data))
    storage.update_many(sim.gun, files, now=now)


def tags_table(html: str) -> str:
    return html.split('<table id="tags">', 1)[1].split("</table>", 1)[0]


def tag_rows(html: str) -> list[str]:
    return re.findall(r"<tr>.*?</tr>", tags_table(html).split("<tbody>", 1)[1])


def signed_repo(gun: str = GUN) -> tuple[Simulator, dict]:
    """targets: v1 (Repo Admin); releases + alice: v2 and v10; releases only: latest;
    alice alone (not in releases): hidden, as docker trust inspect does."""
    sim = Simulator(gun)
    alice = sim.add_delegation("targets/alice")
    sim.add_delegation(RELEASES)
    v1 = sim.add_target("v1")
    v2 = sim.add_target("v2", role=RELEASES)
    sim.add_target("v2", role="targets/alice")
    v10 = sim.add_target("v10", role=RELEASES)
    sim.add_target("v10", role="targets/alice")
    latest = sim.add_target("latest", role=RELEASES)
    sim.add_target("only-alice", role="targets/alice")
    sim.publish()
    return sim, {"v1": v1, "v2": v2, "v10": v10, "latest": latest, "alice": alice}


def test_index_lists_repositories_with_links_times_and_the_immutable_badge(storage, client):
    sim, _ = signed_repo()
    store(storage, sim)
    other = Simulator("registry.example.com/team/other")
    other.add_target("v1")
    other.publish()
    store(storage, other, now=NOW + timedelta(hours=1))
    storage.set_immutable(GUN, True, now=NOW)
    storage.set_immutable("registry.example.com/team/not-yet", True, now=NOW)

    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "3</b> repositories" in html
    assert f'<a href="/repositories/{GUN}">{GUN}</a>' in html
    assert '<a href="/repositories/registry.example.com/team/other">' in html
    rows = re.findall(r"<tr><td class=\"tag\">.*?</tr>", html)
    assert [re.search(r">([^<]+)</a>", r).group(1) for r in rows] == [
        GUN,
        "registry.example.com/team/not-yet",
        "registry.example.com/team/other",
    ]
    assert "badge immutable" in rows[0] and "badge mutable" in rows[2]
    assert "badge immutable" in rows[1] and "—" in rows[1]  # immutable before any publish
    assert "2026-03-01 12:00:00 UTC" in rows[0] and "3 hours ago" in rows[0]
    assert "2 hours ago" in rows[2]
    assert "<script" not in html.lower()
    assert "signatures are not verified here" in html


def test_index_without_repositories(client):
    html = client.get("/").text
    assert "No repository has trust data yet" in html


def test_repository_page_groups_tags_and_signers_as_docker_trust_inspect(storage, client):
    sim, meta = signed_repo()
    store(storage, sim)
    page = client.get(f"/repositories/{GUN}")
    assert page.status_code == 200
    html = page.text
    rows = tag_rows(html)
    tags = [re.search(r'<td class="tag">([^<]*)</td>', r).group(1) for r in rows]
    assert tags == ["latest", "v1", "v2", "v10"]  # natural order
    by_tag = dict(zip(tags, rows, strict=True))
    assert meta["v2"].sha256_hex in by_tag["v2"] and f">{meta['v2'].length:,}<" in by_tag["v2"]
    assert '<span class="signer">alice</span>' in by_tag["v2"]
    assert '<span class="signer">alice</span>' in by_tag["v10"]
    assert REPO_ADMIN in by_tag["v1"] and REPO_ADMIN in by_tag["latest"]
    assert "only-alice" not in tags_table(html)
    assert "4</b> signed tags" in html

    signers = html.split('<table id="signers">', 1)[1].split("</table>", 1)[0]
    assert ">alice</td>" in signers and "releases" not in signers
    assert meta["alice"][0].public.canonical_id in signers
    assert re.search(r'<td class="num">3</td>', signers)  # alice signs three tags
    admin = html.split('<table id="admin">', 1)[1].split("</table>", 1)[0]
    assert sim.keys[ROOT][0].keyid in admin and sim.keys[TARGETS][0].keyid in admin
    assert "badge mutable" in html and "targets version <b>1</b>" in html
    assert "3 hours ago" in html
    assert 'class="notes"' not in html
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert page.headers["x-content-type-options"] == "nosniff"
    assert client.head(f"/repositories/{GUN}").status_code == 200


def test_view_matches_the_inspect_rule_for_same_tag_other_digest(storage):
    sim = Simulator(GUN)
    sim.add_delegation(RELEASES)
    sim.add_delegation("targets/bob")
    sim.add_target("v1", b"manifest one", role=RELEASES)
    sim.add_target("v1", b"another manifest", role="targets/bob")  # same tag, other digest
    sim.publish()
    store(storage, sim)
    view = repository_view(GUN, storage.latest_all(GUN), False)
    assert [(t.tag, t.signers) for t in view.tags] == [("v1", [REPO_ADMIN])]
    assert [(s.name, s.tags) for s in view.signers] == [("bob", 1)]


def test_the_immutable_badge_on_the_repository_page(storage, client):
    sim, _ = signed_repo()
    store(storage, sim)
    storage.set_immutable(GUN, True, now=NOW)
    html = client.get(f"/repositories/{GUN}").text
    assert '<span class="badge immutable"' in html
    assert "refuses any update that changes the digest" in html


def test_everything_is_escaped(storage, client):
    gun = "registry.example.com/<b>&\"x'/app"
    sim = Simulator(gun)
    sim.add_delegation(RELEASES)
    evil = '<script>alert("x")</script>&amp;<img src=x onerror=1>'
    sim.add_target(evil, role=RELEASES)
    sim.add_target("v1")
    sim.publish()
    store(storage, sim)
    index = client.get("/").text
    assert "<b>&" not in index and "<script" not in index
    assert escape(gun) in index
    assert 'href="/repositories/registry.example.com/%3Cb%3E%26%22x%27/app"' in index

    page = client.get("/repositories/registry.example.com/%3Cb%3E%26%22x%27/app")
    assert page.status_code == 200
    html = page.text
    assert "<script" not in html.lower() and "<img" not in html
    assert escape(evil) in html
    assert f"<h1>{escape(gun)} " in html
    assert len(tag_rows(html)) == 2


def test_unknown_repository_is_a_404_page(client):
    page = client.get("/repositories/registry.example.com/nobody/<here>")
    assert page.status_code == 404
    assert "no trust data" in page.text and "&lt;here&gt;" in page.text


def test_the_api_routes_are_still_served(storage, client):
    sim, _ = signed_repo()
    store(storage, sim)
    response = client.get(f"/v2/{GUN}/_trust/tuf/targets.json")
    assert response.status_code == 200 and response.content == sim.current(TARGETS)
    assert client.get("/_notary_server/health").status_code == 200
    assert client.get("/nothing-here").status_code == 404


def test_malformed_stored_files_are_skipped_with_a_visible_note(storage, client):
    sim, _ = signed_repo()
    store(storage, sim)
    # The server stores what its validation accepted; a damaged database must still render.
    storage.update_many(
        GUN,
        [("targets/alice", 2, b'{"signed": not json'), (ROOT, 2, b'{"signed":{"_type":"Root"},"signatures":[]}')],
        now=LATER,
    )
    page = client.get(f"/repositories/{GUN}")
    assert page.status_code == 200
    html = page.text
    notes = html.split('<div class="notes">', 1)[1].split("</div>", 1)[0]
    assert "targets/alice.json (version 2) could not be read" in notes
    assert "root.json (version 2) could not be read" in notes
    assert "No root.json could be read" in html
    rows = tag_rows(html)
    assert len(rows) == 4 and all("alice</span>" not in row for row in rows)  # alice's file is unreadable
    assert ">alice</td>" in html  # still listed as a signer by targets.json

    storage.update_many(GUN, [(TARGETS, 2, b"\xff\xfe garbage")], now=LATER)
    html = client.get(f"/repositories/{GUN}").text
    assert "targets.json (version 2) could not be read" in html
    assert "No signed tags" in html


def test_delegated_paths_limit_what_a_signer_signs(storage, client):
    sim = Simulator(GUN)
    sim.add_delegation(RELEASES)
    sim.add_delegation("targets/carol", paths=["prod-"])
    sim.add_target("prod-1", role=RELEASES)
    sim.add_target("dev-1", role=RELEASES)
    sim.targets["targets/carol"].targets["prod-1"] = sim.targets[RELEASES].targets["prod-1"]
    sim.targets["targets/carol"].targets["dev-1"] = sim.targets[RELEASES].targets["dev-1"]
    sim.publish(roles=["targets/carol"])
    store(storage, sim)
    html = client.get(f"/repositories/{GUN}").text
    rows = {re.search(r'<td class="tag">([^<]*)</td>', r).group(1): r for r in tag_rows(html)}
    assert "carol</span>" in rows["prod-1"] and REPO_ADMIN in rows["dev-1"]
    assert "outside its delegated paths" in html
    assert '<td class="mono">prod-</td>' in html


def test_filter_by_tag(storage, client):
    sim = Simulator(GUN)
    for i in range(30):
        sim.add_target(f"v{i}")
    sim.add_target("latest")
    sim.publish()
    store(storage, sim)
    html = client.get(f"/repositories/{GUN}", params={"q": "V2"}).text
    tags = [re.search(r'<td class="tag">([^<]*)</td>', r).group(1) for r in tag_rows(html)]
    assert tags == ["v2", "v20", "v21", "v22", "v23", "v24", "v25", "v26", "v27", "v28", "v29"]
    assert "11 of 31 matching" in html
    assert 'name="q" value="V2"' in html


def test_tags_sort_naturally():  # the page's order: trustkit.reference.tag_sort_key
    names = ["v10", "v2", "1.10.0", "1.9.1", "latest", "10", "9", "a", "", "²"]
    assert sorted(names, key=tag_sort_key) == ["", "1.9.1", "1.10.0", "9", "10", "a", "latest", "v2", "v10", "²"]


def test_ten_thousand_tags_render_fast(storage, client):
    sim = Simulator(GUN)
    sim.add_delegation(RELEASES)
    sim.add_delegation("targets/ci")
    releases, ci = sim.targets[RELEASES].targets, sim.targets["targets/ci"].targets
    for i in range(10_000):
        meta = sim.add_target(f"build-{i}", f"manifest {i}".encode(), role=RELEASES)
        if i % 2:
            ci[f"build-{i}"] = meta
    assert len(releases) == 10_000
    sim.publish()
    store(storage, sim)

    client.get(f"/repositories/{GUN}")  # warm-up (imports, connection pool)
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        page = client.get(f"/repositories/{GUN}")
        timings.append(time.perf_counter() - started)
    best = min(timings)
    print(
        f"\n10,000-tag repository page: {best * 1000:.0f} ms end to end (query, parse, render), "
        f"{len(page.content) / 1e6:.1f} MB"
    )
    assert page.status_code == 200
    rows = tag_rows(page.text)
    assert len(rows) == 10_000
    assert sum("ci</span>" in row for row in rows) == 5_000
    assert re.search(r'<td class="tag">build-9</td>', rows[9]) and "build-10<" in rows[10]  # natural order
    assert best < 0.5, f"the 10,000-tag page took {best:.3f} s"
