"""Unit tests for the reference layer: docker's reference grammar, normalisation and GUNs."""

from __future__ import annotations

import ast
import contextlib
import dataclasses
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from trustkit import reference
from trustkit.errors import InvalidReferenceError, TrustkitError
from trustkit.reference import (
    DOCKER_HUB,
    ImageReference,
    parse,
    parse_repository,
    validate_digest,
    validate_tag,
)

HEX = "0123456789abcdef" * 4
DIGEST = f"sha256:{HEX}"


# --- accepted references -----------------------------------------------------------------

# input, registry, repository, tag, digest, familiar
GOOD = [
    ("alpine", "docker.io", "library/alpine", None, None, "alpine"),
    ("alpine:3.19", "docker.io", "library/alpine", "3.19", None, "alpine"),
    ("library/alpine", "docker.io", "library/alpine", None, None, "alpine"),
    ("docker.io/alpine", "docker.io", "library/alpine", None, None, "alpine"),
    ("docker.io/library/alpine:latest", "docker.io", "library/alpine", "latest", None, "alpine"),
    ("index.docker.io/library/alpine", "docker.io", "library/alpine", None, None, "alpine"),
    ("index.docker.io/alpine", "docker.io", "library/alpine", None, None, "alpine"),
    ("user/app", "docker.io", "user/app", None, None, "user/app"),
    ("user/team/app:v1", "docker.io", "user/team/app", "v1", None, "user/team/app"),
    # Only "library/<one component>" loses its prefix, as in docker's FamiliarName.
    ("library/a/b", "docker.io", "library/a/b", None, None, "library/a/b"),
    (
        "myreg.example.com/team/app",
        "myreg.example.com",
        "team/app",
        None,
        None,
        "myreg.example.com/team/app",
    ),
    ("myreg:5000/team/app", "myreg:5000", "team/app", None, None, "myreg:5000/team/app"),
    ("myreg:5000/app:1.0", "myreg:5000", "app", "1.0", None, "myreg:5000/app"),
    ("localhost/app", "localhost", "app", None, None, "localhost/app"),
    ("localhost:5000/app:dev", "localhost:5000", "app", "dev", None, "localhost:5000/app"),
    ("127.0.0.1:5000/app", "127.0.0.1:5000", "app", None, None, "127.0.0.1:5000/app"),
    ("[::1]:5000/app", "[::1]:5000", "app", None, None, "[::1]:5000/app"),
    ("[fe80::1]/team/app:x", "[fe80::1]", "team/app", "x", None, "[fe80::1]/team/app"),
    # Docker treats an uppercase first component as a registry, not as a Hub namespace.
    ("Foo/bar", "Foo", "bar", None, None, "Foo/bar"),
    (
        "Registry.Example.com/app",
        "Registry.Example.com",
        "app",
        None,
        None,
        "Registry.Example.com/app",
    ),
    # A ':' with no '/' after it is a tag, so this is Docker Hub's "localhost", tag 5000.
    ("localhost:5000", "docker.io", "library/localhost", "5000", None, "localhost"),
    ("localhost", "docker.io", "library/localhost", None, None, "localhost"),
    (f"alpine@{DIGEST}", "docker.io", "library/alpine", None, DIGEST, "alpine"),
    (f"alpine:3@{DIGEST}", "docker.io", "library/alpine", "3", DIGEST, "alpine"),
    (f"myreg:5000/app:v2@{DIGEST}", "myreg:5000", "app", "v2", DIGEST, "myreg:5000/app"),
    # Docker's separators: '.', '_', '__' and runs of '-'.
    (
        "user/a.b_c__d---e/f-g",
        "docker.io",
        "user/a.b_c__d---e/f-g",
        None,
        None,
        "user/a.b_c__d---e/f-g",
    ),
    # ...and a '.' in the first component makes it a registry, as in docker.
    ("a.b/cd", "a.b", "cd", None, None, "a.b/cd"),
    ("my-app_x/a__b", "docker.io", "my-app_x/a__b", None, None, "my-app_x/a__b"),
    (
        "alpine:_Tag.With-Mixed_Case",
        "docker.io",
        "library/alpine",
        "_Tag.With-Mixed_Case",
        None,
        "alpine",
    ),
    # A Hub namespace with a '.' keeps "docker.io/" in its familiar form: without it the
    # name would read back as registry "foo.bar".
    ("docker.io/foo.bar/app", "docker.io", "foo.bar/app", None, None, "docker.io/foo.bar/app"),
    (
        "docker.io/localhost/app",
        "docker.io",
        "localhost/app",
        None,
        None,
        "docker.io/localhost/app",
    ),
    # "ab" is two characters: the shortest repository path allowed.
    ("localhost:5000/ab", "localhost:5000", "ab", None, None, "localhost:5000/ab"),
    ("a", "docker.io", "library/a", None, None, "a"),
]


@pytest.mark.parametrize(("text", "registry", "repository", "tag", "digest", "familiar"), GOOD)
def test_parse_accepts_and_normalises(text, registry, repository, tag, digest, familiar):
    ref = parse(text)
    assert ref == ImageReference(registry, repository, tag, digest)
    assert ref.name == ref.gun == f"{registry}/{repository}"
    assert ref.familiar == familiar
    assert parse(str(ref)) == ref
    assert parse(ref.familiar) == dataclasses.replace(ref, tag=None, digest=None)


@pytest.mark.parametrize(
    ("text", "gun"),
    [
        ("alpine", "docker.io/library/alpine"),
        ("myreg:5000/team/app:1", "myreg:5000/team/app"),
        ("index.docker.io/user/app", "docker.io/user/app"),
    ],
)
def test_gun_is_the_fully_qualified_name(text, gun):
    assert parse(text).gun == gun


def test_str_is_the_full_normalised_reference():
    assert str(parse("alpine")) == "docker.io/library/alpine"
    assert str(parse("alpine:3")) == "docker.io/library/alpine:3"
    assert str(parse(f"alpine:3@{DIGEST}")) == f"docker.io/library/alpine:3@{DIGEST}"
    assert str(parse(f"localhost:5000/app@{DIGEST}")) == f"localhost:5000/app@{DIGEST}"


def test_docker_hub_constant():
    assert DOCKER_HUB == "docker.io"
    assert parse("alpine").registry == DOCKER_HUB


def test_default_tag_applies_only_to_a_bare_name():
    assert parse("alpine", default_tag="latest").tag == "latest"
    assert parse("alpine:3", default_tag="latest").tag == "3"
    # Like docker's TagNameOnly: a digest pins the image, so no tag is invented.
    assert parse(f"alpine@{DIGEST}", default_tag="latest").tag is None
    with pytest.raises(InvalidReferenceError, match="must start with"):
        parse("alpine", default_tag="-bad")


def test_with_tag_validates_and_keeps_the_digest():
    ref = parse(f"myreg:5000/app@{DIGEST}")
    tagged = ref.with_tag("v1")
    assert tagged.tag == "v1" and tagged.digest == DIGEST and ref.tag is None
    with pytest.raises(InvalidReferenceError, match="at most 128"):
        ref.with_tag("t" * 129)


def test_reference_is_frozen_and_hashable():
    ref = parse("alpine")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ref.tag = "x"  # type: ignore[misc]
    assert len({ref, parse("docker.io/library/alpine"), parse("index.docker.io/alpine")}) == 1


# --- limits -------------------------------------------------------------------------------


def test_tag_of_128_characters_is_accepted_and_129_refused():
    assert parse("alpine:" + "t" * 128).tag == "t" * 128
    with pytest.raises(InvalidReferenceError) as err:
        parse("alpine:" + "t" * 129)
    assert 'tag "' + "t" * 129 + '" is 129 characters; tags are at most 128' in str(err.value)


def test_one_character_repository_is_refused():
    with pytest.raises(InvalidReferenceError, match="at least 2") as err:
        parse("localhost:5000/a")
    assert '"localhost:5000/a"' in str(err.value)


def test_name_of_255_characters_is_accepted_and_256_refused():
    # The limit counts the registry: "myreg.io/" is 9 characters.  docker 28 counts only the
    # path and would accept this, but notary-server keeps GUNs in varchar(255) columns.
    assert len(parse("myreg.io/" + "a" * 246).name) == 255
    with pytest.raises(InvalidReferenceError, match="256 characters; names are at most 255"):
        parse("myreg.io/" + "a" * 247)


def test_name_limit_counts_the_normalised_docker_hub_name():
    # "docker.io/library/" is 18 characters, so a bare Hub name may be 237 long, not 255.
    assert len(parse("a" * 237).name) == 255
    with pytest.raises(InvalidReferenceError, match="at most 255, registry included"):
        parse("a" * 238)


def test_tag_and_digest_do_not_count_towards_the_name_limit():
    ref = parse("myreg.io/" + "a" * 246 + ":" + "t" * 128 + "@" + DIGEST)
    assert len(str(ref)) == 255 + 1 + 128 + 1 + 71


# --- refusals: one per rule ---------------------------------------------------------------

BAD = [
    # (input, words that name the broken rule)
    ("", "reference is empty"),
    (":latest", "repository name is empty"),
    (f"@{DIGEST}", "repository name is empty"),
    (" alpine", "whitespace"),
    ("alpine ", "whitespace"),
    ("al pine", "whitespace"),
    ("alpine\n", "whitespace"),
    ("alpine:\t3", "whitespace"),
    ("Foo", "repository name must be lowercase"),
    ("docker.io/Foo/bar", "repository name must be lowercase"),
    ("myreg:5000/Team/app", "repository name must be lowercase"),
    ("a..b", 'repository path component "a..b" must match [a-z0-9]+ separated by'),
    ("user/-app", 'repository path component "-app" must match'),
    ("user/app-", 'repository path component "app-" must match'),
    ("user/a___b", 'repository path component "a___b" must match'),
    ("user/a._b", 'repository path component "a._b" must match'),
    ("user/.app", 'repository path component ".app" must match'),
    ("user/ap%2e", 'repository path component "ap%2e" must match'),
    ("user/ünïcode", "repository path component"),
    # ".." has a '.', so docker reads it as a registry: it is refused either way.
    ("../../etc/passwd", 'registry host component ""'),
    ("user/../etc/passwd", 'repository path component ".." must match'),
    ("myreg.io/../x", 'repository path component ".." must match'),
    ("user//app", "empty component"),
    ("user/app/", "empty component"),
    ("myreg.io/", "repository path is empty"),
    ("myreg.io//app", "empty component"),
    ("localhost:5000/a", "repository names are at least 2"),
    ("myreg.io/" + "a" * 247, "names are at most 255"),
    ("a" * 238, "names are at most 255"),
    ("-myreg.io/app", "registry host component \"-myreg\" must be letters, digits and '-'"),
    ("myreg-.io/app", 'registry host component "myreg-"'),
    # Docker reads this as a name with no registry at all; we refuse the bad host.
    ("my_reg.io/app", 'registry host component "my_reg"'),
    ("myreg..io/app", 'registry host component ""'),
    (":5000/app", "no host name before the port"),
    ("myreg:/app", 'registry port "" must be a number from 1 to 65535'),
    ("myreg:abc/app", 'registry port "abc" must be a number'),
    ("myreg:0/app", 'registry port "0" must be a number from 1 to 65535'),
    ("myreg:65536/app", 'registry port "65536" must be a number from 1 to 65535'),
    ("myreg:5000:1/app", 'registry port "5000:1"'),
    ("[::1/app", 'registry IPv6 address "[::1"'),
    ("[::g]:5000/app", 'registry IPv6 address "[::g]"'),
    ("[::1]5000/app", "must be [IPv6 address] or [IPv6 address]:port"),
    ("[::1]:x/app", 'registry port "x"'),
    ("alpine:", "tag is empty"),
    ("alpine:" + "t" * 129, "is 129 characters; tags are at most 128"),
    ("alpine:-x", "tag \"-x\" must start with a letter, digit or '_'"),
    ("alpine:.x", "must start with a letter, digit or '_'"),
    ("alpine:a+b", "tag \"a+b\" may contain only letters, digits, '_', '.' and '-'"),
    ("alpine:tåg", "may contain only letters, digits"),
    ("alpine@", "digest is empty"),
    ("alpine@" + HEX, "must be <algorithm>:<hex>"),
    ("alpine@sha256", "must be <algorithm>:<hex>"),
    ("alpine@1sha:" + HEX, "must be <algorithm>:<hex>"),
    (
        "alpine@sha512:" + HEX * 2,
        'digest algorithm "sha512" is not supported; content trust signs sha256 digests only',
    ),
    ("alpine@SHA256:" + HEX, 'digest algorithm "SHA256" is not supported'),
    ("alpine@sha256:" + HEX[:-1], "has 63 hex digits; a sha256 digest has 64"),
    ("alpine@sha256:" + HEX + "0", "has 65 hex digits"),
    ("alpine@sha256:", "lowercase hex"),
    ("alpine@sha256:" + HEX.upper(), "lowercase hex [0-9a-f]"),
    ("alpine@sha256:" + HEX[:-1] + "g", "lowercase hex"),
    (f"alpine@{DIGEST}@{DIGEST}", "at most one '@'"),
    (HEX, "64-character hex string is an image ID"),
    ("a" * 457, "457 characters; no valid reference is longer than 456"),
]


@pytest.mark.parametrize(("text", "rule"), BAD)
def test_parse_refuses_and_names_the_rule(text, rule):
    with pytest.raises(InvalidReferenceError) as err:
        parse(text)
    message = str(err.value)
    assert rule in message
    # The whole input is quoted (escaped), so the user sees exactly what was refused.
    quoted = text.encode("unicode_escape").decode("ascii")
    assert message.startswith(f'invalid reference "{quoted}": ')


def test_lowercase_message_reads_as_documented():
    with pytest.raises(InvalidReferenceError) as err:
        parse("Foo")
    assert str(err.value) == 'invalid reference "Foo": repository name must be lowercase'


def test_refusals_are_trustkit_errors():
    with pytest.raises(TrustkitError):
        parse("Foo")


def test_control_characters_are_escaped_in_messages():
    with pytest.raises(InvalidReferenceError) as err:
        parse("alpine\x1b[31m")
    assert "\x1b" not in str(err.value) and "\\x1b" in str(err.value)


def test_huge_input_is_refused_with_a_short_message():
    with pytest.raises(InvalidReferenceError, match="no valid reference is longer") as err:
        parse("a" * 1_000_000)
    assert len(str(err.value)) < 2000


def test_non_string_is_a_type_error():
    with pytest.raises(TypeError):
        parse(b"alpine")  # type: ignore[arg-type]


# --- repository names ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("alpine", "docker.io/library/alpine"),
        ("docker.io/library/alpine", "docker.io/library/alpine"),
        ("myreg:5000/team/app", "myreg:5000/team/app"),
        ("[::1]:5000/app", "[::1]:5000/app"),
    ],
)
def test_parse_repository_accepts_names(text, name):
    ref = parse_repository(text)
    assert ref.name == name and ref.tag is None and ref.digest is None


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("alpine:3", 'invalid repository "alpine:3": a repository name has no tag (found ":3")'),
        (f"alpine@{DIGEST}", "a repository name has no digest"),
        (f"alpine:3@{DIGEST}", "a repository name has no digest"),
        ("Foo", 'invalid repository "Foo": repository name must be lowercase'),
        ("", 'invalid repository "": repository is empty'),
    ],
)
def test_parse_repository_refuses(text, rule):
    with pytest.raises(InvalidReferenceError) as err:
        parse_repository(text)
    assert rule in str(err.value)


def test_parse_repository_hints_at_a_registry_without_a_path():
    with pytest.raises(InvalidReferenceError) as err:
        parse_repository("localhost:5000")
    assert "localhost:5000/<repository>" in (err.value.hint or "")


# --- standalone validators and the constructor --------------------------------------------


def test_validate_tag():
    assert validate_tag("v1.2.3-rc_1") == "v1.2.3-rc_1"
    assert validate_tag("t" * 128) == "t" * 128
    for bad, rule in [
        ("", "empty"),
        ("t" * 129, "at most 128"),
        ("-x", "must start"),
        ("a/b", "may contain only"),
        ("a:b", "may contain only"),
    ]:
        with pytest.raises(InvalidReferenceError, match=rule):
            validate_tag(bad)


def test_validate_digest():
    assert validate_digest(DIGEST) == DIGEST
    for bad, rule in [
        ("", "empty"),
        ("sha256", "<algorithm>:<hex>"),
        ("sha384:" + "a" * 96, "sha256 digests only"),
        ("sha256:" + "A" * 64, "lowercase"),
        ("sha256:abc", "has 3 hex digits"),
    ]:
        with pytest.raises(InvalidReferenceError, match=rule):
            validate_digest(bad)


@pytest.mark.parametrize(
    ("fields", "rule"),
    [
        (("index.docker.io", "library/alpine"), 'must be written "docker.io"'),
        (("docker.io", "alpine"), 'must be written "library/alpine"'),
        (("team", "app"), "must contain '.' or ':' or be 'localhost'"),
        (("myreg.io", "App"), "must be lowercase"),
        (("myreg.io", "app", "-x"), "must start with"),
        (("myreg.io", "app", None, "sha256:00"), "hex digits"),
        (("myreg.io", "a"), "at least 2"),
    ],
)
def test_constructor_refuses_fields_parse_would_never_produce(fields, rule):
    with pytest.raises(InvalidReferenceError, match=rule):
        ImageReference(*fields)


# --- properties ---------------------------------------------------------------------------

_component = st.from_regex(r"[a-z0-9]{1,8}(?:(?:[._]|__|-{1,3})[a-z0-9]{1,8}){0,2}", fullmatch=True)
_path = st.lists(_component, min_size=1, max_size=4).map("/".join)
_host_label = st.from_regex(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?", fullmatch=True)
_port = st.integers(1, 65535).map(lambda p: f":{p}")
_registries = st.one_of(
    st.just("docker.io"),
    st.just("localhost"),
    st.builds(lambda p: "localhost" + p, _port),
    # A '.' makes a name a registry for docker.
    st.builds(
        lambda labels, port: ".".join(labels) + port,
        st.lists(_host_label, min_size=2, max_size=4),
        st.one_of(st.just(""), _port),
    ),
    # So does a port alone.
    st.builds(lambda label, port: label + port, _host_label, _port),
    st.builds(
        lambda address, port: f"[{address}]{port}",
        st.from_regex(r"[a-fA-F0-9:]{0,19}:[a-fA-F0-9:]{0,19}", fullmatch=True),
        st.one_of(st.just(""), _port),
    ),
)
_tags = st.one_of(st.none(), st.from_regex(r"[\w][\w.-]{0,127}", fullmatch=True).filter(lambda t: t.isascii()))
_digests = st.one_of(st.none(), st.from_regex(r"[a-f0-9]{64}", fullmatch=True).map(lambda h: "sha256:" + h))


@st.composite
def _references(draw, registries=_registries):
    registry = draw(registries)
    path = draw(_path)
    if registry == DOCKER_HUB and "/" not in path:
        path = "library/" + path
    assume(len(path) >= 2 and len(registry) + 1 + len(path) <= 255)
    return ImageReference(registry, path, draw(_tags), draw(_digests))


@given(_references())
def test_property_str_round_trips(ref):
    assert parse(str(ref)) == ref
    # The familiar form names the same repository.
    assert parse(ref.familiar) == dataclasses.replace(ref, tag=None, digest=None)


@given(_references(registries=st.just(DOCKER_HUB)))
def test_property_docker_hub_spellings_agree(ref):
    bare = str(ref)[len("docker.io/") :]
    assert parse("index.docker.io/" + bare) == ref
    # With the "library/" prefix dropped too, for official images.
    if ref.repository.count("/") == 1 and ref.repository.startswith("library/"):
        assert parse(bare[len("library/") :]) == ref


_REFERENCE_ALPHABET = "abcAB019._-:/@[]" + "sha256:" + " \t\n\x00é"


@given(st.one_of(st.text(), st.text(alphabet=_REFERENCE_ALPHABET, max_size=80)))
def test_property_arbitrary_text_parses_or_is_refused(text):
    try:
        ref = parse(text)
    except InvalidReferenceError as err:
        assert str(err).startswith("invalid reference ")
    else:
        assert parse(str(ref)) == ref


@given(st.text(), st.text())
def test_property_validators_return_or_refuse(tag, digest):
    for validate, value in ((validate_tag, tag), (validate_digest, digest)):
        with contextlib.suppress(InvalidReferenceError):
            assert validate(value) == value


# --- layering -----------------------------------------------------------------------------


def test_reference_layer_imports_only_errors_and_stdlib():
    tree = ast.parse(Path(reference.__file__).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    assert imported <= {"__future__", "ipaddress", "re", "dataclasses", "trustkit.errors"}
