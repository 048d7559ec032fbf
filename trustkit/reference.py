"""The ``reference`` layer: image references, the way docker reads them.

It parses ``[registry[:port]/]repository[:tag][@digest]`` with the grammar of
distribution/reference (the package the docker CLI uses), normalises it the way docker does
(no registry -> ``docker.io``, ``index.docker.io`` -> ``docker.io``, one-component Docker Hub
names get ``library/``) and derives the GUN, the fully qualified name that Notary keys trust
data by (``docker.io/library/alpine``, ``myreg:5000/team/app``).  Every refusal is an
``InvalidReferenceError`` whose message quotes the input and names the rule it breaks.

It imports nothing from trustkit but the errors, and does no I/O.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace

from trustkit.errors import InvalidReferenceError

__all__ = [
    "DOCKER_HUB",
    "ImageReference",
    "parse",
    "parse_repository",
    "is_loopback_host",
    "tag_sort_key",
    "validate_digest",
    "validate_tag",
]

DOCKER_HUB = "docker.io"
_LEGACY_DOCKER_HUB = "index.docker.io"
_OFFICIAL_PREFIX = "library/"
_LOCALHOST = "localhost"

# distribution/reference's NameTotalLengthMax, checked against the whole normalised name,
# registry included ("docker.io/library/alpine", not "alpine").  That name is the GUN, and the
# GUN rule lives in notary_api (gun_problem, MAX_GUN_BYTES: notary-server's varchar(255)
# columns); every name accepted here passes it (tests/unit/test_notary_api.py), so a longer
# name could never hold trust data.  Older docker/distribution checked the full name the same
# way; docker 28.2 checks only the path (measured), so it accepts "myreg.io/<250 chars>" and we
# do not.
NAME_MAX = 255
# From the issue ("repository names are 2-255 characters"); docker itself has no minimum.  It is
# checked on the repository path without the registry, since the registry always makes the full
# name longer than 2.  A Docker Hub name like "a" becomes "library/a" and passes.
REPOSITORY_MIN = 2
TAG_MAX = 128
_SHA256_HEX = 64
# The longest reference that can be valid: name, ":" tag, "@sha256:" digest.  Anything longer
# is refused before any regex runs, so hostile input costs nothing.
_REFERENCE_MAX = NAME_MAX + 1 + TAG_MAX + 1 + len("sha256:") + _SHA256_HEX

# The grammar, piece by piece, from distribution/reference regexp.go.  re.ASCII because Go's
# \w is ASCII only, and Python's is not.
_DOMAIN_COMPONENT = re.compile(r"[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]", re.ASCII)
_IPV6_HOST = re.compile(r"\[[a-fA-F0-9:]+\]", re.ASCII)
_PORT = re.compile(r"[0-9]+", re.ASCII)
# The issue states the separator as [._-]; docker's real rule is one '.', one or two '_', or any
# run of '-'.  That accepts everything the simpler rule does, plus what docker also accepts.
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*", re.ASCII)
_TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_TAG_CHARS = re.compile(r"[\w.-]*", re.ASCII)
_DIGEST_ALGORITHM = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*", re.ASCII)
_LOWER_HEX = re.compile(r"[a-f0-9]+", re.ASCII)
# Docker refuses a bare 64-hex string as a name: it is an image ID, not a repository.
_IMAGE_ID = re.compile(r"[a-f0-9]{64}", re.ASCII)

_PATH_RULE = "must match [a-z0-9]+ separated by '.', '_', '__' or '-'"


def _quote(text: str) -> str:
    """Quote user input for a message: escaped so control characters show, cut if huge."""
    if len(text) > 2 * _REFERENCE_MAX:
        text = text[: 2 * _REFERENCE_MAX] + f"... ({len(text)} characters)"
    escaped = text.encode("unicode_escape").decode("ascii").replace('"', '\\"')
    return f'"{escaped}"'


# Each _*_problem function returns None when the part is valid, else the broken rule as a
# phrase that quotes the part.  parse() prefixes it with the whole input; the public
# validators raise it as it is.


def _tag_problem(tag: str) -> str | None:
    if not tag:
        return "tag is empty"
    if len(tag) > TAG_MAX:
        return f"tag {_quote(tag)} is {len(tag)} characters; tags are at most {TAG_MAX}"
    if _TAG.fullmatch(tag):
        return None
    if _TAG_CHARS.fullmatch(tag):
        return f"tag {_quote(tag)} must start with a letter, digit or '_'"
    return f"tag {_quote(tag)} may contain only letters, digits, '_', '.' and '-'"


def _digest_problem(digest: str) -> str | None:
    if not digest:
        return "digest is empty"
    algorithm, colon, hex_part = digest.partition(":")
    if not colon or not _DIGEST_ALGORITHM.fullmatch(algorithm):
        return f"digest {_quote(digest)} must be <algorithm>:<hex>, e.g. sha256:<64 hex digits>"
    if algorithm != "sha256":
        return f"digest algorithm {_quote(algorithm)} is not supported; content trust signs sha256 digests only"
    if not _LOWER_HEX.fullmatch(hex_part):
        return f"digest {_quote(digest)} must be sha256: followed by lowercase hex [0-9a-f]"
    if len(hex_part) != _SHA256_HEX:
        return f"digest {_quote(digest)} has {len(hex_part)} hex digits; a sha256 digest has {_SHA256_HEX}"
    return None


def _registry_problem(registry: str) -> str | None:
    port: str | None
    if registry.startswith("["):
        address, bracket, rest = registry.partition("]")
        address += bracket
        if not _IPV6_HOST.fullmatch(address):
            return f"registry IPv6 address {_quote(address)} must be hex digits and ':' in brackets"
        if rest and not rest.startswith(":"):
            return f"registry {_quote(registry)} must be [IPv6 address] or [IPv6 address]:port"
        port = rest[1:] if rest else None
    else:
        host, colon, port = registry.partition(":")
        port = port if colon else None
        if not host:
            return f"registry {_quote(registry)} has no host name before the port"
        for component in host.split("."):
            if not _DOMAIN_COMPONENT.fullmatch(component):
                return (
                    f"registry host component {_quote(component)} must be letters, digits "
                    "and '-', and must not start or end with '-'"
                )
    # Docker's grammar takes any run of digits; we also refuse ports no TCP connection can
    # use.  Leading zeros stay (docker keeps them, and they are part of the GUN).
    if port is not None and not (_PORT.fullmatch(port) and len(port.lstrip("0")) <= 5 and 0 < int(port) <= 65535):
        return f"registry port {_quote(port)} must be a number from 1 to 65535"
    return None


def _is_domain(first: str) -> bool:
    """Docker's rule: the first path segment names a registry only if it looks like a host.

    Such a segment must then be a valid host.  Docker itself, given "x_y.io/app", falls back
    to a name with no registry at all; we refuse it instead.
    """
    return "." in first or ":" in first or first == _LOCALHOST or first.lower() != first


def _path_problem(path: str) -> str | None:
    if not path:
        return "repository path is empty"
    if path.lower() != path:
        return "repository name must be lowercase"
    for component in path.split("/"):
        if not component:
            return f"repository path {_quote(path)} has an empty component (leading, trailing or doubled '/')"
        if not _PATH_COMPONENT.fullmatch(component):
            return f"repository path component {_quote(component)} {_PATH_RULE}"
    if len(path) < REPOSITORY_MIN:
        return f"repository {_quote(path)} is {len(path)} character; repository names are at least {REPOSITORY_MIN}"
    return None


def _name_problem(registry: str, repository: str) -> str | None:
    problem = _registry_problem(registry) or _path_problem(repository)
    if problem:
        return problem
    name = f"{registry}/{repository}"
    if len(name) > NAME_MAX:
        return f"name {_quote(name)} is {len(name)} characters; names are at most {NAME_MAX}, registry included"
    return None


def _normalisation_problem(registry: str, repository: str) -> str | None:
    """What stops the fields from being the normal form parse() would produce."""
    if registry == _LEGACY_DOCKER_HUB:
        return f"registry {_quote(registry)} must be written {_quote(DOCKER_HUB)}"
    if not _is_domain(registry):
        # Written out, "team/app" would be read back as a Docker Hub repository.
        return (
            f"registry {_quote(registry)} must contain '.' or ':' or be 'localhost', "
            "or docker reads it as part of a Docker Hub repository"
        )
    if registry == DOCKER_HUB and "/" not in repository:
        official = _OFFICIAL_PREFIX + repository
        return f"Docker Hub repository {_quote(repository)} must be written {_quote(official)}"
    return None


@dataclass(frozen=True)
class ImageReference:
    """A parsed, normalised image reference.  Construct it with parse(); the constructor
    checks its fields too, so that ``parse(str(ref)) == ref`` holds for every instance."""

    registry: str  # normalised domain, e.g. "docker.io", "localhost:5000"
    repository: str  # path, e.g. "library/alpine"
    tag: str | None = None
    digest: str | None = None  # "sha256:<hex>"

    def __post_init__(self) -> None:
        problem = (
            _name_problem(self.registry, self.repository)
            or _normalisation_problem(self.registry, self.repository)
            or (self.tag is not None and _tag_problem(self.tag))
            or (self.digest is not None and _digest_problem(self.digest))
        )
        if problem:
            raise InvalidReferenceError(f"invalid reference {_quote(_compose(self))}: {problem}")

    @property
    def name(self) -> str:
        """The fully qualified repository name, e.g. ``docker.io/library/alpine``."""
        return f"{self.registry}/{self.repository}"

    @property
    def gun(self) -> str:
        """The Notary GUN: the fully qualified name, as docker passes it to notary (one that
        ``notary_api.gun_problem`` accepts)."""
        return self.name

    @property
    def familiar(self) -> str:
        """The name as docker shows it: ``alpine``, ``user/app``, ``myreg:5000/app``."""
        if self.registry != DOCKER_HUB:
            return self.name
        path = self.repository
        # Like docker, only "library/x" loses its prefix; "library/a/b" keeps it.
        if path.startswith(_OFFICIAL_PREFIX) and "/" not in path[len(_OFFICIAL_PREFIX) :]:
            return path[len(_OFFICIAL_PREFIX) :]
        # Docker would show "docker.io/foo.bar/app" as "foo.bar/app", which reads back as
        # registry "foo.bar".  Keep the registry whenever dropping it changes the meaning.
        first = path.split("/", 1)[0]
        return self.name if _is_domain(first) else path

    def with_tag(self, tag: str) -> ImageReference:
        """The same reference with ``tag`` (validated); a digest, if any, is kept."""
        return replace(self, tag=validate_tag(tag))

    def __str__(self) -> str:
        return _compose(self)


def _compose(ref: ImageReference) -> str:
    text = f"{ref.registry}/{ref.repository}"
    if ref.tag is not None:
        text += f":{ref.tag}"
    if ref.digest is not None:
        text += f"@{ref.digest}"
    return text


def validate_tag(tag: str) -> str:
    """Return ``tag`` if it is a valid tag, else raise InvalidReferenceError naming the rule."""
    problem = _tag_problem(tag)
    if problem:
        raise InvalidReferenceError(problem)
    return tag


def validate_digest(digest: str) -> str:
    """Return ``digest`` if it is ``sha256:`` and 64 lowercase hex digits, else raise."""
    problem = _digest_problem(digest)
    if problem:
        raise InvalidReferenceError(problem)
    return digest


def _split(text: str, what: str) -> ImageReference:
    """Parse ``text``; ``what`` names it in messages ("reference", "repository")."""

    def refuse(problem: str, hint: str | None = None) -> InvalidReferenceError:
        return InvalidReferenceError(f"invalid {what} {_quote(text)}: {problem}", hint=hint)

    if not isinstance(text, str):
        raise TypeError(f"an image {what} must be a str, not {type(text).__name__}")
    if not text:
        raise refuse(f"{what} is empty")
    if len(text) > _REFERENCE_MAX:
        raise refuse(
            f"{what} is {len(text)} characters; no valid reference is longer than "
            f"{_REFERENCE_MAX} (a {NAME_MAX}-character name, a {TAG_MAX}-character tag "
            "and a sha256 digest)"
        )
    blank = next((ch for ch in text if ch.isspace()), None)
    if blank is not None:
        raise refuse(f"{what} contains whitespace ({_quote(blank)})")
    if _IMAGE_ID.fullmatch(text):
        raise refuse(
            "a 64-character hex string is an image ID, not a repository name",
        )

    name_tag, at, digest = text.partition("@")
    if at:
        if "@" in digest:
            raise refuse("a reference has at most one '@' (before the digest)")
        problem = _digest_problem(digest)
        if problem:
            raise refuse(problem)
    # A ':' after the last '/' starts the tag; earlier ones belong to the registry's port.
    name, tag = name_tag, None
    colon = name_tag.rfind(":")
    if colon > name_tag.rfind("/"):
        name, tag = name_tag[:colon], name_tag[colon + 1 :]
    if not name:
        raise refuse("repository name is empty")

    slash = name.find("/")
    if slash >= 0 and _is_domain(name[:slash]):
        registry, repository = name[:slash], name[slash + 1 :]
    else:
        registry, repository = DOCKER_HUB, name
    if registry == _LEGACY_DOCKER_HUB:
        registry = DOCKER_HUB
    if registry == DOCKER_HUB and "/" not in repository:
        repository = _OFFICIAL_PREFIX + repository

    problem = _name_problem(registry, repository) or (_tag_problem(tag) if tag is not None else None)
    if problem:
        raise refuse(problem)
    return ImageReference(registry, repository, tag, digest if at else None)


def parse(text: str, *, default_tag: str | None = None) -> ImageReference:
    """Parse and normalise an image reference.

    ``default_tag`` (e.g. ``"latest"``) is applied, like docker's TagNameOnly, only when the
    reference has neither a tag nor a digest.
    """
    ref = _split(text, "reference")
    if default_tag is not None and ref.tag is None and ref.digest is None:
        return ref.with_tag(default_tag)
    return ref


def parse_repository(text: str) -> ImageReference:
    """Parse a repository name: a reference with neither a tag nor a digest (e.g. a GUN)."""
    ref = _split(text, "repository")
    if ref.digest is not None:
        raise InvalidReferenceError(
            f"invalid repository {_quote(text)}: a repository name has no digest (found {_quote('@' + ref.digest)})"
        )
    if ref.tag is not None:
        hint = None
        if ref.tag.isdigit() and "/" not in text:
            # "localhost:5000" reads as Docker Hub's "localhost" with tag "5000".
            hint = f"if {text} is a registry, add the repository path: {text}/<repository>"
        raise InvalidReferenceError(
            f"invalid repository {_quote(text)}: a repository name has no tag (found {_quote(':' + ref.tag)})",
            hint=hint,
        )
    return ref


_DIGIT_RUN = re.compile(r"([0-9]+)")  # ASCII only: "²" or "٣" are text, as before


def tag_sort_key(text: str) -> tuple[object, ...]:
    """Natural order for tags and signer names: ``v2`` before ``v10``, ``1.9.1`` before ``1.10.0``.

    Digit runs compare by value without ``int()``, which refuses more than 4,300 digits: leading
    zeros stripped, then (length, digits), then the run as written, so ``v01`` and ``v1`` still
    differ.  Text runs compare as strings.  A total order on all strings; never raises.
    """
    parts = _DIGIT_RUN.split(text)  # str, digits, str, digits, ..., str: same kinds at the same places
    return tuple(
        part if i % 2 == 0 else (len(part.lstrip("0")), part.lstrip("0"), part) for i, part in enumerate(parts)
    )


def is_loopback_host(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 or ::1 (brackets allowed)."""
    bare = host.strip("[]").lower().rstrip(".")
    if bare == "localhost":
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        return False
