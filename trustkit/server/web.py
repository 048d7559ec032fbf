"""Layer `server`: the web page at ``/`` — the "Repositories ➤ Tags" check of the DTR days.

``/`` lists the repositories (GUNs) with trust data, when each last changed and whether it is
immutable; ``/repositories/<gun>`` shows a repository's signed tags (tag, digest, size, signers,
as ``docker trust inspect`` groups them), its signers and its administrative keys.

The page shows what the server *stores*: signatures are not verified here (clients do that), and
a stored file that cannot be parsed is skipped with a visible note, never a 500.  Every name a
client signed is shown as text: markup escaped, control, format and bidi characters and lone
surrogates shown as ``\u202e``-style escapes, very long names cut.  The page follows the API's
access rules (:class:`trustkit.server.auth.PageAccess`): a user sees only the repositories they
may pull.  It is plain
server-rendered HTML with inline CSS and no JavaScript, built in one pass into a list of strings
so that a repository with 10,000 tags renders in a few tens of milliseconds.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from trustkit.errors import TrustkitError
from trustkit.metadata import Metadata
from trustkit.reference import tag_sort_key
from trustkit.roles import RELEASES, ROOT, TARGETS
from trustkit.server.auth import Access, PageAccess
from trustkit.server.registry_check import RegistryReader, RegistryReport
from trustkit.server.staging import PendingRole, Staging
from trustkit.server.storage import Storage, StoredFile
from trustkit.trust.drift import RegistryCheck, RegistryState
from trustkit.trust.resolution import released_tags, verified_tree

REPO_ADMIN = "Repo Admin"  # docker trust inspect's name for tags signed only with the targets key
HEADERS = {
    "Cache-Control": "no-cache",
    # No script, no frames, no outside requests: only the inline stylesheet.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
NAME_SHOWN = 256  # characters of a signed name shown (docker's tags have at most 128)


# --------------------------------------------------------------------------------------------
# What the page shows, read from the stored files


@dataclass(slots=True)
class SignedTag:
    tag: str
    digest: str  # sha256, hex
    size: int
    signers: list[str]


@dataclass
class SignerInfo:
    name: str  # the delegation role without "targets/"
    keyids: list[str]  # canonical (private key) IDs, as docker trust inspect lists them
    threshold: int
    paths: list[str]
    tags: int | None = None  # tags it signs; None when it has no stored file (nothing signed yet)
    changed: datetime | None = None


@dataclass
class RepositoryView:
    gun: str
    changed: datetime | None
    immutable: bool
    tags: list[SignedTag] = field(default_factory=list)
    signers: list[SignerInfo] = field(default_factory=list)
    admin: list[tuple[str, list[str]]] = field(default_factory=list)  # ("Root"|"Repository", key IDs)
    pending: list[PendingRole] = field(default_factory=list)  # staged for co-signers (server/staging.py)
    targets_version: int | None = None
    targets_expires: datetime | None = None
    notes: list[str] = field(default_factory=list)  # what could not be read, shown on the page
    registry: RegistryReport | None = None  # what the registry serves (server started with --registry)


def _problem(exc: Exception) -> str:
    text = exc.message if isinstance(exc, TrustkitError) else f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 300 else text[:300] + "…"


def _parse(files: dict[str, StoredFile], role: str, notes: list[str]) -> Metadata[Any] | None:
    stored = files.get(role)
    if stored is None:
        return None
    try:
        return Metadata.from_bytes(stored.data, role=role)
    except Exception as exc:  # noqa: BLE001 - stored data is shown, never trusted: note it, go on
        notes.append(f"{role}.json (version {stored.version}) could not be read and is left out: {_problem(exc)}")
        return None


def repository_view(gun: str, files: dict[str, StoredFile], immutable: bool) -> RepositoryView:
    """Group the stored files' targets as ``docker trust inspect`` does: one row per (tag,
    digest) in ``targets`` or ``targets/releases``, signed by every other delegation that lists
    the same tag and digest, or by "Repo Admin" when none does."""
    changed = max((f.created_at for f in files.values()), default=None)
    view = RepositoryView(gun, changed, immutable)
    notes = view.notes

    root = _parse(files, ROOT, notes)
    if root is not None:
        for label, role in (("Root", ROOT), ("Repository", TARGETS)):
            listed = root.signed.roles.get(role)
            view.admin.append((label, sorted(listed.keyids) if listed else []))
    elif ROOT not in files:
        notes.append("root.json is not stored: the repository has no administrative keys here.")

    top = _parse(files, TARGETS, notes)
    if top is None:
        if TARGETS not in files:
            notes.append("targets.json is not stored: nothing has been signed yet.")
        return view
    view.targets_version = top.signed.version
    try:
        view.targets_expires = top.signed.expires_at
    except Exception:  # noqa: BLE001 - checked by the parser; a display detail either way
        view.targets_expires = None

    # Every delegation reachable from targets; the tags shown are the ones clients resolve
    # (trustkit.trust.resolution: verify, inspect and the immutability rule use the same walk).
    parsed: dict[str, Metadata[Any]] = {}
    pending: list[Metadata[Any]] = [top]
    while pending:
        parent = pending.pop(0)
        keys = parent.signed.delegations.keys
        for role in parent.signed.delegations.roles:
            if role.name != RELEASES:
                ids = []
                for keyid in role.keyids:
                    try:
                        ids.append(keys[keyid].canonical_id)
                    except Exception:  # noqa: BLE001 - a key that does not load: show its listed ID
                        ids.append(keyid)
                stored = files.get(role.name)
                view.signers.append(
                    SignerInfo(
                        role.name.removeprefix("targets/"),
                        sorted(set(ids)),
                        role.threshold,
                        list(role.paths),
                        None,
                        stored.created_at if stored else None,
                    )
                )
            child = _parse(files, role.name, notes)
            if child is not None and role.name not in parsed:
                parsed[role.name] = child
                pending.append(child)
    tree = verified_tree(top, parsed)
    for role, child in parsed.items():
        visible = tree.visible(role)
        if visible is None:
            notes.append(
                f"{role} is not signed by enough of its delegated keys, or its paths leave it nothing: "
                f"clients ignore it and so does this page."
            )
        elif len(visible) < len(child.signed.targets):
            notes.append(
                f"{role} lists {len(child.signed.targets) - len(visible)} target(s) outside "
                f"its delegated paths; clients ignore them and so does this page."
            )
    view.tags = [
        SignedTag(
            row.tag, row.digest, row.size, sorted(s.removeprefix("targets/") for s in row.signers) or [REPO_ADMIN]
        )
        for row in released_tags(tree)
    ]
    for signer in view.signers:
        visible = tree.visible(f"{TARGETS}/{signer.name}")
        signer.tags = len(visible) if visible is not None else None
    view.signers.sort(key=lambda s: tag_sort_key(s.name))
    return view


# --------------------------------------------------------------------------------------------
# HTML

STYLE = """
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans","DejaVu Sans",sans-serif;
color:#1f2933;background:#f4f6f8}
a{color:#0b62c4;text-decoration:none}a:hover{text-decoration:underline}
header{background:#102a43;color:#fff;padding:14px 0}
header .wrap{display:flex;align-items:baseline;gap:14px}
header a{color:#fff;font-weight:600;font-size:18px}
header span{color:#9fb3c8;font-size:13px}
.wrap{max-width:1200px;margin:0 auto;padding:0 24px}
main{padding:22px 0 40px}
h1{font-size:24px;margin:4px 0 6px;word-break:break-all;display:flex;align-items:center;gap:12px;flex-wrap:wrap}
h2{font-size:17px;margin:30px 0 10px}
h2 small{font-weight:400;color:#627d98;font-size:14px}
.crumbs{font-size:13px;color:#627d98}
.meta{display:flex;flex-wrap:wrap;gap:8px 28px;margin:10px 0 4px;color:#486581;font-size:14px}
.meta b{color:#1f2933;font-weight:600}
.card{background:#fff;border:1px solid #d9e2ec;border-radius:8px;overflow:hidden}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:8px 14px;vertical-align:baseline}
th{background:#f0f4f8;color:#486581;font-size:12px;text-transform:uppercase;letter-spacing:.04em;
position:sticky;top:0;border-bottom:1px solid #d9e2ec}
tbody tr{border-top:1px solid #eef2f6}tbody tr:first-child{border-top:0}
tbody tr:hover{background:#f7fafc}
td.tag{font-weight:600;word-break:break-all}
.mono{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:12.5px;word-break:break-all}
td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
th.num{text-align:right}
.badge{display:inline-block;padding:1px 9px;border-radius:999px;font-size:12px;font-weight:600;
line-height:20px;white-space:nowrap;vertical-align:middle}
.immutable{background:#fff3c4;color:#8d2b0b;border:1px solid #f0b429}
.mutable{background:#f0f4f8;color:#627d98;border:1px solid #d9e2ec}
.served{background:#e3f9e5;color:#0e5814;border:1px solid #91d69b}
.drifted,.missing{background:#ffe3e3;color:#8a041a;border:1px solid #f29b9b}
.untagged{background:#fff3c4;color:#8d2b0b;border:1px solid #f0b429}
.unchecked{background:#f0f4f8;color:#829ab1;border:1px solid #d9e2ec}
.signer{display:inline-block;background:#e3f8ff;color:#035388;border-radius:4px;padding:0 7px;margin:1px 4px 1px 0;
font-size:13px}
.admin{background:#f0f4f8;color:#486581}
.when{white-space:nowrap}.when small{display:block;color:#829ab1;font-size:12px}
.notes{background:#fffbea;border:1px solid #f7d070;border-radius:8px;padding:10px 16px;margin:16px 0;color:#8d2b0b}
.notes ul{margin:4px 0;padding-left:20px}
.empty{padding:22px;color:#627d98}
.ctl{font:12px ui-monospace,"DejaVu Sans Mono",monospace;background:#fff3c4;color:#8d2b0b;border-radius:3px;
padding:0 2px}
form.filter{display:flex;gap:8px;margin:0 0 10px}
form.filter input{flex:0 1 320px;padding:6px 10px;border:1px solid #bcccdc;border-radius:6px;font:inherit}
form.filter button{padding:6px 14px;border:1px solid #0b62c4;background:#0b62c4;color:#fff;border-radius:6px;
  font:inherit}
footer{color:#829ab1;font-size:13px;padding:8px 0 30px}
"""


_NOT_PLAIN = re.compile(r"[^\x20-\x7e]")  # printable ASCII needs escape() only: the fast path
_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})  # controls, bidi/zero-width, surrogates, private, breaks


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    if unicodedata.category(char) not in _HIDDEN:
        return char
    return f'<span class="ctl">{ascii(char)[1:-1]}</span>'  # "\u202e", "\x1b", "\ud800"


def _text(value: str, limit: int | None = NAME_SHOWN) -> str:
    """A client-chosen name as HTML text that cannot break the page or disguise itself: markup
    escaped; control, format (bidi overrides, zero-width) and line-break characters and lone
    surrogates (which cannot even be encoded) shown as escapes; more than ``limit`` characters
    cut, with the count of the rest."""
    rest = ""
    if limit is not None and len(value) > limit:
        rest = f'<span class="ctl">… {len(value) - limit:,} more characters</span>'
        value = value[:limit]
    return _NOT_PLAIN.sub(_visible, escape(value)) + rest


def _attr(value: str) -> str:
    """``value`` for an attribute or the title: escaped, hidden characters as U+FFFD."""
    return _NOT_PLAIN.sub(
        lambda m: "\ufffd" if unicodedata.category(m.group()) in _HIDDEN else m.group(), escape(value)
    )


def _when(moment: datetime | None, now: datetime, *, inline: bool = False) -> str:
    if moment is None:
        return '<span class="when">—</span>'
    moment = moment.astimezone(UTC)
    seconds = max(0, int((now - moment).total_seconds()))
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            ago = f"{count} {unit}{'s' if count != 1 else ''} ago"
            break
    else:
        ago = "just now"
    stamp = moment.strftime("%Y-%m-%d %H:%M:%S UTC")
    if inline:
        return f'<b><time datetime="{moment.isoformat()}">{stamp}</time></b> ({ago})'
    return f'<span class="when"><time datetime="{moment.isoformat()}">{stamp}</time><small>{ago}</small></span>'


def _badge(immutable: bool) -> str:
    return (
        '<span class="badge immutable" title="signed tags cannot change digest or be removed">immutable</span>'
        if immutable
        else '<span class="badge mutable">mutable</span>'
    )


_REGISTRY_BADGES = {
    RegistryState.SERVED: ("in registry", "the registry serves the signed manifest for this tag"),
    RegistryState.DRIFTED: ("drift", ""),  # the title names both digests
    RegistryState.UNTAGGED: (
        "untagged in registry",
        "the registry has no such tag, but has the signed manifest: a content-trust pull still works",
    ),
    RegistryState.MISSING: (
        "missing from registry",
        "the registry has neither the tag nor the signed manifest: a content-trust pull fails",
    ),
}


def _registry_badge(check: RegistryCheck | None) -> str:
    if check is None:
        return '<span class="badge unchecked" title="not compared with the registry on this view">not checked</span>'
    label, title = _REGISTRY_BADGES[check.state]
    if check.state is RegistryState.DRIFTED:
        # Digests are "sha256:" + hex, from our own hashing: nothing to escape.
        title = f"the registry serves {check.served} for this tag, signed is {check.signed}: " + (
            "a content-trust pull gets the signed one"
            if check.signed_present
            else "the signed manifest is gone too, so a content-trust pull fails"
        )
        label = f"drift: {(check.served or '')[7:19]}"
    return f'<span class="badge {check.state.value}" title="{title}">{label}</span>'


def filter_tags(tags: list[SignedTag], query: str) -> list[SignedTag]:
    """The rows the page's tag filter keeps (a case-insensitive substring of the tag)."""
    if not query:
        return tags
    needle = query.casefold()
    return [row for row in tags if needle in row.tag.casefold()]


def _page(title: str, body: Iterable[str], base: str) -> str:
    head = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_attr(title)}</title><style>{STYLE}</style></head><body>"
        f'<header><div class="wrap"><a href="{escape(base)}/">trustkit server</a>'
        "<span>Docker Content Trust · Notary-compatible</span></div></header>"
        '<main><div class="wrap">'
    )
    foot = (
        '</div></main><footer><div class="wrap">This page shows the trust data as this server stores it; '
        "signatures are not verified here. Check an image with <code>trustkit verify</code> or "
        "<code>docker trust inspect</code>.</div></footer></body></html>"
    )
    return "".join([head, *body, foot])


def repository_href(base: str, gun: str) -> str:
    return f"{base}/repositories/{quote(gun, safe='/:@')}"


def render_index(
    repositories: list[tuple[str, datetime | None]], immutable: set[str], now: datetime, base: str = ""
) -> str:
    out: list[str] = ["<h1>Repositories</h1>"]
    count = len(repositories)
    out.append(
        f'<div class="meta"><span><b>{count:,}</b> repositor{"y" if count == 1 else "ies"} with trust data</span></div>'
    )
    out.append('<div class="card">')
    if not repositories:
        out.append(
            '<div class="empty">No repository has trust data yet. Sign a tag with '
            "<code>trustkit sign IMAGE:TAG</code> (or <code>docker trust sign</code>) against this "
            "server and it appears here.</div>"
        )
    else:
        out.append("<table><thead><tr><th>Repository</th><th>Last changed</th><th>Status</th></tr></thead><tbody>")
        append = out.append
        for gun, changed in repositories:
            append(
                f'<tr><td class="tag"><a href="{_attr(repository_href(base, gun))}">{_text(gun)}</a></td>'
                f"<td>{_when(changed, now)}</td><td>{_badge(gun in immutable)}</td></tr>"
            )
        out.append("</tbody></table>")
    out.append("</div>")
    return _page("Repositories · trustkit server", out, base)


def render_repository(view: RepositoryView, now: datetime, base: str = "", query: str = "") -> str:
    gun = _text(view.gun)
    out: list[str] = [
        f'<div class="crumbs"><a href="{escape(base)}/">Repositories</a> › Tags</div>',
        f"<h1>{gun} {_badge(view.immutable)}</h1>",
        '<div class="meta">',
    ]
    out.append(f"<span><b>{len(view.tags):,}</b> signed tag{'s' if len(view.tags) != 1 else ''}</span>")
    out.append(f"<span>Last changed {_when(view.changed, now, inline=True)}</span>")
    if view.targets_version is not None:
        expires = (
            (
                f", expires {view.targets_expires.strftime('%Y-%m-%d')}"
                + (" (expired)" if view.targets_expires <= now else "")
            )
            if view.targets_expires
            else ""
        )
        out.append(f"<span>targets version <b>{view.targets_version}</b>{escape(expires)}</span>")
    out.append("</div>")
    if view.immutable:
        out.append(
            '<div class="meta">Immutable: the server refuses any update that changes the digest of a '
            "signed tag or removes it, and refuses to delete this trust data. New tags can be signed.</div>"
        )
    report = view.registry
    if report is not None:
        counts = {state: 0 for state in RegistryState}
        for check in report.checks.values():
            counts[check.state] += 1
        parts = [f"<b>{counts[state]:,}</b> {_REGISTRY_BADGES[state][0]}" for state in RegistryState if counts[state]]
        if report.unchecked:
            parts.append(f"<b>{report.unchecked:,}</b> not checked (filter the tags to check others)")
        out.append(
            f'<div class="meta" id="registry">Registry {_text(report.registry)}: {", ".join(parts) or "—"}</div>'
        )
    if view.notes:
        out.append('<div class="notes"><b>Some stored data could not be shown</b><ul>')
        out.extend(f"<li>{_text(note, 1000)}</li>" for note in view.notes)
        out.append("</ul></div>")
    if report is not None and report.problem:
        out.append(
            f'<div class="notes"><b>The registry could not be compared</b><ul><li>{_text(report.problem, 1000)}</li>'
            "</ul></div>"
        )

    tags = filter_tags(view.tags, query)
    shown = f"<small>{len(tags):,} of {len(view.tags):,} matching “{_text(query)}”</small>" if query else ""
    out.append(f"<h2>Signed tags {shown}</h2>")
    if len(view.tags) > 20 or query:
        out.append(
            f'<form class="filter" method="get"><input type="search" name="q" value="{_attr(query)}" '
            'placeholder="Filter tags" aria-label="Filter tags"><button type="submit">Filter</button></form>'
        )
    out.append('<div class="card">')
    if not tags:
        out.append(f'<div class="empty">No signed tags{" match the filter" if query else ""}.</div>')
    else:
        registry_column = "<th>Registry</th>" if report is not None else ""
        out.append(
            '<table id="tags"><thead><tr><th>Tag</th><th>Digest (sha256)</th><th class="num">Size</th>'
            f"<th>Signers</th>{registry_column}</tr></thead><tbody>"
        )
        append = out.append
        admin = f'<span class="signer admin">{REPO_ADMIN}</span>'
        for row in tags:
            signers = (
                admin
                if row.signers == [REPO_ADMIN]
                else "".join(f'<span class="signer">{_text(name)}</span>' for name in row.signers)
            )
            served = (
                f"<td>{_registry_badge(report.checks.get((row.tag, row.digest)))}</td>" if report is not None else ""
            )
            # The digest is hex from our own decoding: nothing to escape.
            append(
                f'<tr><td class="tag">{_text(row.tag)}</td><td class="mono">{row.digest}</td>'
                f'<td class="num">{row.size:,}</td><td>{signers}</td>{served}</tr>'
            )
        out.append("</tbody></table>")
    out.append("</div>")

    out.append('<h2>Signers <small>delegations that sign tags</small></h2><div class="card">')
    if not view.signers:
        out.append(f'<div class="empty">No signers: tags are signed with the repository key ({REPO_ADMIN}).</div>')
    else:
        out.append(
            '<table id="signers"><thead><tr><th>Signer</th><th>Key IDs</th><th class="num">Threshold</th>'
            '<th>Paths</th><th class="num">Tags</th><th>Last signed</th></tr></thead><tbody>'
        )
        for signer in view.signers:
            keys = "<br>".join(_text(k) for k in signer.keyids) or "—"
            paths = ", ".join("(all)" if p == "" else _text(p) for p in signer.paths) or "(none)"
            count = "—" if signer.tags is None else f"{signer.tags:,}"
            out.append(
                f'<tr><td class="tag">{_text(signer.name)}</td><td class="mono">{keys}</td>'
                f'<td class="num">{signer.threshold}</td><td class="mono">{paths}</td>'
                f'<td class="num">{count}</td><td>{_when(signer.changed, now)}</td></tr>'
            )
        out.append("</tbody></table>")
    out.append("</div>")

    out.extend(_pending_section(view.pending, now))
    out.append('<h2>Administrative keys</h2><div class="card">')
    if not view.admin:
        out.append('<div class="empty">No root.json could be read.</div>')
    else:
        out.append('<table id="admin"><thead><tr><th>Role</th><th>Key IDs</th></tr></thead><tbody>')
        for label, keyids in view.admin:
            keys = "<br>".join(_text(k) for k in keyids) or "—"
            out.append(f'<tr><td class="tag">{label}</td><td class="mono">{keys}</td></tr>')
        out.append("</tbody></table>")
    out.append("</div>")
    return _page(f"{view.gun} · trustkit server", out, base)


def _pending_section(pending: list[PendingRole], now: datetime) -> list[str]:
    """Role versions staged for co-signers: what they change and whose signatures they have."""
    if not pending:
        return []

    def tags(verb: str, names: list[str]) -> str:
        shown = ", ".join(_text(name) for name in names[:20])
        return f"{verb} {shown}" + (f" and {len(names) - 20:,} more" if len(names) > 20 else "") if names else ""

    out = [
        '<h2 id="pending">Waiting for signatures <small>staged here until enough signers have signed</small></h2>'
        '<div class="card"><table><thead><tr><th>Role</th><th class="num">Version</th><th>Change</th>'
        '<th class="num">Signatures</th><th>Signed by</th><th>Staged</th></tr></thead><tbody>'
    ]
    for entry in pending:
        change = [tags("adds", entry.added), tags("changes", entry.changed), tags("removes", entry.removed)]
        change += ["changes delegations"] if entry.delegations_changed else []
        keys = "<br>".join(_text(k) for k in entry.signed_by) or "—"
        out.append(
            f'<tr><td class="tag">{_text(entry.role)}</td><td class="num">{entry.version}</td>'
            f"<td>{'; '.join(c for c in change if c) or 're-signs it'}</td>"
            f'<td class="num">{len(entry.signed_by)} of {entry.threshold}</td><td class="mono">{keys}</td>'
            f"<td>{_when(entry.updated_at, now)}</td></tr>"
        )
    out.append("</tbody></table></div>")
    return out


def render_not_found(gun: str, base: str = "") -> str:
    return _page(
        "Not found · trustkit server",
        [
            f'<div class="crumbs"><a href="{escape(base)}/">Repositories</a></div>',
            f"<h1>{_text(gun)}</h1>",
            '<div class="card"><div class="empty">This server has no trust data for this repository.</div></div>',
        ],
        base,
    )


# --------------------------------------------------------------------------------------------
# Routes


def _pull(gun: str) -> Access:
    return Access("repository", gun, ("pull",))


def web_routes(
    storage: Storage,
    *,
    clock: Callable[[], datetime] | None = None,
    access: PageAccess | None = None,
    registry: RegistryReader | None = None,
) -> list[Route]:
    """``GET /`` and ``GET /repositories/{gun}`` (HEAD too), rendered from ``storage`` for
    whoever ``access`` says is asking (default: everyone sees everything, as ``--auth none``).
    A repository the viewer may not pull is left out of the index and answers 404 like one
    that does not exist, so its name is not confirmed either.  With ``registry``, each shown
    tag is compared with what that registry serves (a badge per tag)."""
    now = clock or (lambda: datetime.now(UTC))
    access = access or PageAccess()

    def index_html(base: str, may: Callable[[Access], bool]) -> str:
        repositories: list[tuple[str, datetime | None]] = list(storage.guns())
        immutable = storage.immutable_guns()
        listed = {gun for gun, _ in repositories}
        # Immutable before anything was published: listed too, with no change yet.
        repositories += [(gun, None) for gun in immutable - listed]
        repositories = [item for item in repositories if may(_pull(item[0]))]
        repositories.sort(key=lambda item: item[0])
        return render_index(repositories, immutable, now(), base)

    def repository_html(gun: str, base: str, query: str, may: Callable[[Access], bool]) -> tuple[int, str]:
        if not may(_pull(gun)):
            return 404, render_not_found(gun, base)
        files = storage.latest_all(gun)
        immutable = storage.is_immutable(gun)
        if not files and not immutable:
            return 404, render_not_found(gun, base)
        view = repository_view(gun, files, immutable)
        view.pending = Staging(storage, now).pending(gun, drop_stale=False)
        if registry is not None:
            shown = filter_tags(view.tags, query)
            view.registry = registry.check(gun, [(row.tag, row.digest) for row in shown])
        return 200, render_repository(view, now(), base, query)

    async def index(request: Request) -> Response:
        viewer = await access.principal(request)
        if isinstance(viewer, Response):
            return viewer
        body = await run_in_threadpool(index_html, request.scope.get("root_path", "").rstrip("/"), viewer.may)
        return HTMLResponse(body, headers=HEADERS)

    async def repository(request: Request) -> Response:
        gun = request.path_params["gun"]
        viewer = await access.principal(request, [_pull(gun)])
        if isinstance(viewer, Response):
            return viewer
        query = request.query_params.get("q", "")[:200]
        status, body = await run_in_threadpool(
            repository_html, gun, request.scope.get("root_path", "").rstrip("/"), query, viewer.may
        )
        return HTMLResponse(body, status_code=status, headers=HEADERS)

    return [Route("/", index, methods=["GET"]), Route("/repositories/{gun:path}", repository, methods=["GET"])]


__all__ = [
    "REPO_ADMIN",
    "RepositoryView",
    "SignedTag",
    "SignerInfo",
    "filter_tags",
    "render_index",
    "render_repository",
    "repository_view",
    "web_routes",
]
