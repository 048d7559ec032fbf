"""Nothing a client signs may break the web page for others: tag names are shown as text
whatever they hold (a 5,000-digit number, markup, control and bidi characters, lone
surrogates, 20,000 characters), and the rest of the page still renders around them.  (Signer
names cannot carry any of this: the metadata parser allows only a-z, 0-9, "-", "_" and "/".)"""

from __future__ import annotations

import re
import warnings
from html.parser import HTMLParser

import pytest

from simulator import NOW, Simulator
from trustkit.roles import ROOT, SNAPSHOT, TIMESTAMP
from trustkit.server.app import create_app
from trustkit.server.keys import ServerKeys
from trustkit.server.storage import Storage
from trustkit.server.web import web_routes

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette 1.x prefers httpx2 for its TestClient; plain httpx works
    from starlette.testclient import TestClient

GUN = "registry.example.com/team/hostile"
HUGE = "1" * 5000  # int() refuses more than 4,300 digits
LONG = "L" * 20_000
# Raw control characters are refused by the metadata parser; JSON escapes of them parse.  The
# placeholders are swapped for such escapes in the stored bytes (the page shows what is stored
# and verifies no signature).
ESCAPED = {
    "PLACEHOLDER-BEL": b"bel\\u0007x",
    "PLACEHOLDER-ESC": b"esc\\u001b[31mred",
    "PLACEHOLDER-SURROGATE": b"half\\ud800pair",
    "PLACEHOLDER-NEWLINE": b"line\\nbreak",
}
HOSTILE = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "rtl\u202egpj.exe",
    "zero\u200bwidth",
    "c1\u0085next",
    "&amp;lt;",
    HUGE,
    LONG,
]


@pytest.fixture
def client(tmp_path):
    storage = Storage("sqlite:///" + str(tmp_path / "db"))
    sim = Simulator(GUN)
    for name in [*HOSTILE, *ESCAPED, "v1", "v2", "v10"]:
        sim.add_target(name)
    sim.publish()
    files = []
    for role in [ROOT, *sorted(sim.targets), SNAPSHOT, TIMESTAMP]:
        data = sim.current(role)
        for placeholder, escaped in ESCAPED.items():
            data = data.replace(placeholder.encode(), escaped)
        files.append((role, 1, data))
    storage.update_many(GUN, files, now=NOW)
    app = create_app(storage, ServerKeys(storage, "web-names-passphrase"), extra_routes=web_routes(storage))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client
    storage.close()


class Text(HTMLParser):
    """The elements and the text a browser would build from the page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.cells: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "td":
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.cells.append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def test_the_page_renders_whatever_names_were_signed(client):
    page = client.get(f"/repositories/{GUN}")
    assert page.status_code == 200, page.text[-2000:]
    html = page.content.decode("utf-8")  # encodable: a lone surrogate did not make it a 500
    parsed = Text()
    parsed.feed(html)
    assert "script" not in parsed.tags and "img" not in parsed.tags
    cells = parsed.cells
    # markup shows as the text that was signed
    assert "<script>alert(1)</script>" in cells and '"><img src=x onerror=alert(1)>' in cells
    assert "&amp;lt;" in cells
    # characters that would reorder, hide or break text are shown as escapes
    assert "rtl\\u202egpj.exe" in cells and "zero\\u200bwidth" in cells and "c1\\x85next" in cells
    assert "bel\\x07x" in cells and "esc\\x1b[31mred" in cells and "half\\ud800pair" in cells
    assert "line\\nbreak" in cells
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]", html)
    # very long names are cut, with what is left out said
    assert f"{'1' * 256}… 4,744 more characters" in cells and f"{'L' * 256}… 19,744 more characters" in cells
    assert LONG not in html
    # the natural order holds around them, and the page is whole
    tags = [cell for cell in cells if cell in ("v1", "v2", "v10")]
    assert tags == ["v1", "v2", "v10"]
    assert html.index("1" * 256) < html.index(">v1<")  # a name that starts with a number sorts first
    assert html.rstrip().endswith("</html>") and "<h2>Signers" in html and 'id="admin"' in html


def test_the_filter_shows_the_query_as_text_too(client):
    page = client.get(f"/repositories/{GUN}", params={"q": '"><script>x</script>\u202e'})
    assert page.status_code == 200
    parsed = Text()
    parsed.feed(page.text)
    assert "script" not in parsed.tags
    assert 'value="&quot;&gt;&lt;script&gt;x&lt;/script&gt;\ufffd"' in page.text
    found = client.get(f"/repositories/{GUN}", params={"q": "script"})
    assert "<script>alert(1)</script>" in (cells := _cells(found.text)) and "v1" not in cells


def _cells(html: str) -> list[str]:
    parsed = Text()
    parsed.feed(html)
    return parsed.cells
