"""trustkit.trust.resolution: the one tag -> digest resolution, checked against notary 0.7's walk
(``GetTargetByName`` / ``WalkTargets``: breadth first, paths restricted by every parent, named
roles' subtrees skipped) and docker's rule (only targets/releases or targets may answer)."""

from __future__ import annotations

import hashlib

from simulator import Simulator, new_key
from trustkit.encoding import b64encode
from trustkit.metadata import FileMeta, Metadata
from trustkit.metadata.payload import DelegationRole, Delegations, Targets
from trustkit.roles import RELEASES, TARGETS
from trustkit.trust.resolution import DelegationTree, changed_resolutions, released_tags, verified_tree

KEY = new_key()


def meta(label: str, length: int = 10) -> FileMeta:
    return FileMeta.for_digest(hashlib.sha256(label.encode()).hexdigest(), length)


def digest(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def tree(spec: dict[str, tuple[dict[str, str], list[tuple[str, list[str]]]]]) -> DelegationTree:
    """{role: ({tag: content label}, [(child, paths), ...])} -> a tree of those roles."""
    roles = {}
    for role, (tags, children) in spec.items():
        delegations = Delegations(
            {KEY.keyid: KEY.public}, [DelegationRole(child, [KEY.keyid], 1, paths) for child, paths in children]
        )
        roles[role] = Targets(
            expires="2030-01-01T00:00:00Z",
            version=1,
            targets={tag: meta(label) for tag, label in tags.items()},
            delegations=delegations,
        )
    return DelegationTree(roles)


def resolved(found) -> tuple[str, str] | None:
    return (found.role, found.meta.sha256_hex) if found is not None else None


def test_docker_prefers_releases_and_notary_prefers_targets():
    t = tree({TARGETS: ({"v1": "top"}, [(RELEASES, [""])]), RELEASES: ({"v1": "released"}, [])})
    assert resolved(t.docker_lookup("v1")) == (RELEASES, digest("released"))
    assert resolved(t.lookup("v1")) == (TARGETS, digest("top"))


def test_the_walk_is_breadth_first_in_listing_order():
    """notary's queue: targets/a's child is visited after targets/b, so b wins."""
    t = tree(
        {
            TARGETS: ({}, [("targets/a", [""]), ("targets/b", [""])]),
            "targets/a": ({}, [("targets/a/x", [""])]),
            "targets/a/x": ({"v1": "deep"}, []),
            "targets/b": ({"v1": "shallow"}, []),
        }
    )
    assert resolved(t.lookup("v1")) == ("targets/b", digest("shallow"))
    assert t.docker_lookup("v1") is None  # found in a signer role: docker says "No trust data"


def test_paths_are_restricted_by_every_parent():
    t = tree(
        {
            TARGETS: ({}, [("targets/a", ["team/"])]),
            "targets/a": ({"team/v1": "a", "other": "a"}, [("targets/a/b", ["", "team/x"])]),
            "targets/a/b": ({"team/x1": "b", "team/y": "b"}, []),
        }
    )
    assert resolved(t.lookup("team/v1")) == ("targets/a", digest("a"))
    assert t.lookup("other") is None  # outside targets/a's paths
    assert resolved(t.lookup("team/x1")) == ("targets/a/b", digest("b"))
    assert t.lookup("team/y") is None  # "" is not under "team/": b keeps only "team/x"
    assert t.visible("targets/a") == ["team/v1"] and t.visible("targets/a/b") == ["team/x1"]


def test_a_role_with_no_paths_left_is_never_visited():
    t = tree({TARGETS: ({"v1": "top"}, [(RELEASES, [])]), RELEASES: ({"v1": "released", "v2": "released"}, [])})
    assert resolved(t.docker_lookup("v1")) == (TARGETS, digest("top"))
    assert t.docker_lookup("v2") is None and t.visible(RELEASES) is None


def test_docker_refuses_a_tag_found_below_releases_even_if_targets_has_it():
    t = tree(
        {
            TARGETS: ({"v1": "top"}, [(RELEASES, [""])]),
            RELEASES: ({}, [("targets/releases/ci", [""])]),
            "targets/releases/ci": ({"v1": "ci"}, []),
        }
    )
    assert t.docker_lookup("v1") is None  # the releases walk finds it in a child: not an accepted role
    assert resolved(t.lookup("v1")) == (TARGETS, digest("top"))


def test_the_targets_walk_skips_the_releases_subtree_for_docker():
    t = tree(
        {
            TARGETS: ({}, [(RELEASES, [""]), ("targets/dev", [""])]),
            RELEASES: ({}, []),
            "targets/dev": ({"v1": "dev"}, []),
        }
    )
    assert t.docker_lookup("v1") is None  # found in targets/dev: docker accepts only the two roles
    assert resolved(t.lookup("v1", (RELEASES, TARGETS))) == ("targets/dev", digest("dev"))


def test_released_tags_show_what_a_pull_gets_and_who_signed_it():
    t = tree(
        {
            TARGETS: ({"v1": "top", "v9": "x"}, [(RELEASES, ["v"]), ("targets/dev", ["v1"]), ("targets/qa", [""])]),
            RELEASES: ({"v1": "rel", "v10": "rel", "w": "rel"}, []),
            "targets/dev": ({"v1": "rel", "v10": "rel"}, []),
            "targets/qa": ({"v10": "rel"}, []),
        }
    )
    rows = [(r.tag, r.digest, r.role, r.signers) for r in released_tags(t)]
    assert rows == [
        ("v1", digest("rel"), RELEASES, ("targets/dev",)),
        ("v9", digest("x"), TARGETS, ()),
        ("v10", digest("rel"), RELEASES, ("targets/dev", "targets/qa")),
    ]  # "v1" is a prefix of "v10"
    assert t.docker_lookup("w") is None  # listed by releases, outside its paths: not shown, not verified


def test_changed_resolutions_judge_effects_not_files():
    before = tree({TARGETS: ({}, [(RELEASES, [""])]), RELEASES: ({"v1": "a", "v2": "b"}, [])})
    same = tree(
        {
            TARGETS: ({"v1": "a"}, []),
        }
    )  # releases gone, but v1 moved with the same digest
    assert [str(c) for c in changed_resolutions(before, same)] == ["v2 would no longer resolve"]
    shadow = tree({TARGETS: ({"v1": "evil"}, [(RELEASES, [""])]), RELEASES: ({"v1": "a", "v2": "b"}, [])})
    assert [str(c) for c in changed_resolutions(before, shadow)] == ["v1 would point at another digest"]
    narrowed = tree({TARGETS: ({}, [(RELEASES, ["v2"])]), RELEASES: ({"v1": "a", "v2": "b"}, [])})
    assert [c.name for c in changed_resolutions(before, narrowed)] == ["v1"]
    grown = tree(
        {
            TARGETS: ({}, [(RELEASES, [""]), ("targets/qa", [""])]),
            RELEASES: ({"v1": "a", "v2": "b", "v3": "c"}, []),
            "targets/qa": ({"v1": "z"}, []),
        }
    )
    assert changed_resolutions(before, grown) == []


def test_a_digest_spelled_with_unused_base64_bits_is_the_same_target():
    raw = hashlib.sha256(b"a").digest()
    plain = b64encode(raw)
    assert plain.endswith("=")
    odd = plain[:-2] + chr(ord(plain[-2]) + 1) + "="  # the last 2 bits of the final character are unused
    before = tree({TARGETS: ({"v1": "a"}, [])})
    after = tree({TARGETS: ({}, [])})
    after.roles[TARGETS].targets["v1"] = FileMeta(10, {"sha256": odd})
    assert odd != plain and changed_resolutions(before, DelegationTree(after.roles)) == []
    after.roles[TARGETS].targets["v1"] = FileMeta(11, {"sha256": plain})
    assert [c.name for c in changed_resolutions(before, DelegationTree(after.roles))] == ["v1"]


def test_verified_tree_drops_delegations_short_of_their_threshold():
    sim = Simulator()
    sim.add_delegation(RELEASES, keys=2, threshold=2)
    sim.add_target("v1", b"released", role=RELEASES)
    sim.publish()
    top = Metadata.from_bytes(sim.current(TARGETS), role=TARGETS)
    releases = Metadata.from_bytes(sim.current(RELEASES), role=RELEASES)
    assert verified_tree(top, {RELEASES: releases}).docker_lookup("v1") is not None
    releases.signatures = releases.signatures[:1]
    assert verified_tree(top, {RELEASES: releases}).docker_lookup("v1") is None
