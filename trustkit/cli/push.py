"""Layer `cli`: ``trustkit push | tag | login``."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from trustkit.cli.context import Context, can_prompt, pass_context
from trustkit.cli.output import FORMAT_OPTION, emit_json

if TYPE_CHECKING:
    from trustkit.oci.push import BlobLocationCache, PushEvent, PushSigning, PushSummary
    from trustkit.oci.sources import ImageSource, SourceProgress, SourceSpec
    from trustkit.ops import CreatedKey, PreparedSigning
    from trustkit.reference import ImageReference

INSECURE_OPTION = click.option(
    "--insecure-registry",
    "insecure_registries",
    multiple=True,
    metavar="HOST[:PORT]",
    help="Allow plain HTTP (and unverified TLS) for this registry; repeatable. Loopback registries always are.",
)
SIGN_OPTIONS = [
    click.option("--sign", "sign_flag", is_flag=True, help="Sign the tag (as DOCKER_CONTENT_TRUST=1 does)."),
    click.option("--disable-content-trust", is_flag=True, help="Do not sign, whatever DOCKER_CONTENT_TRUST says."),
]
QUIET_OPTION = click.option("-q", "--quiet", is_flag=True, help="No progress output.")


def _sign_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(SIGN_OPTIONS):
        func = option(func)
    return func


def _signing_enabled(sign_flag: bool, disable: bool) -> bool:
    if sign_flag and disable:
        raise click.UsageError("--sign and --disable-content-trust contradict each other")
    if sign_flag or disable:
        return sign_flag
    if not os.environ.get("DOCKER_CONTENT_TRUST", "").strip():
        return False  # what content_trust_enabled says, without importing the signing layers
    from trustkit.ops import content_trust_enabled

    return content_trust_enabled(None)


def _target(image: str) -> tuple[ImageReference, str]:
    """IMAGE:TAG, and its tag."""
    from trustkit.reference import parse

    reference = parse(image)
    if reference.tag is None or reference.digest is not None:
        raise click.UsageError(f"give the target as IMAGE:TAG (got {image!r})")
    return reference, reference.tag


def _cache() -> BlobLocationCache:
    from trustkit.client.docker_config import docker_config_dir
    from trustkit.oci.push import BlobLocationCache

    return BlobLocationCache(docker_config_dir() / "trustkit" / "push-cache.json")


class _Display:
    """Progress on stderr, so stdout carries only the result (or the JSON); nothing with --quiet.
    A line per layer as docker prints them, and on a terminal one bar (click's) under those
    lines for the bytes being uploaded, five layers at a time.

    Not rich's bars: with rich installed, ``import httpx`` loads httpx's own command-line tool
    (rich and pygments) in every command that talks to a server, ~40 ms each time."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.terminal = not quiet and sys.stderr.isatty()
        self.bar: Any = None  # click's ProgressBar, once the first upload starts
        self.sent: dict[str, int] = {}  # bytes sent per blob being uploaded
        self.layers_done = 0

    def __enter__(self) -> _Display:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.render_finish()  # ends the bar's line and shows the cursor again
            self.bar = None

    def line(self, text: str) -> None:
        if self.quiet:
            return
        if self.bar is None:
            click.echo(text, err=True)
            return
        click.echo(f"\r\033[K{text}", err=True)  # the line takes the bar's place; the bar is drawn below it
        self.bar.render_progress()

    def __call__(self, event: PushEvent) -> None:
        if self.quiet:
            return
        if not event.layer and event.kind.startswith("blob-"):
            return  # like docker: the config blob is pushed silently
        short = event.digest.removeprefix("sha256:")[:12]
        if event.kind in ("blob-start", "blob-bytes"):
            self._bytes(event)
        elif event.kind == "blob-exists":
            self._layer_done(f"{short}: Layer already exists")
        elif event.kind == "blob-mounted":
            self._layer_done(f"{short}: Mounted from {event.detail}")
        elif event.kind == "blob-pushed":
            self._bytes(event)
            self._layer_done(f"{short}: Pushed ({event.size} bytes)")
        elif event.kind == "compressing":
            self.line(f"{short}: Compressing layer ({event.detail} bytes)")
        elif event.kind == "manifest-pushed":
            self._drop_bar()  # every blob is up: the lines above say how each went
            self.line(f"{event.detail}: manifest {event.digest} pushed")

    def _drop_bar(self) -> None:
        if self.bar is not None:
            click.echo("\r\033[K\033[?25h", nl=False, err=True)  # erase it, show the cursor again
            self.bar = None

    def _status(self, _: int | None) -> str:
        return f"{self.layers_done} layer{'' if self.layers_done == 1 else 's'} done"

    def _layer_done(self, text: str) -> None:
        self.layers_done += 1
        self.line(text)

    def _bytes(self, event: PushEvent) -> None:
        if not self.terminal:
            return
        if self.bar is None:
            self.bar = click.progressbar(
                length=0,
                label="Pushing",
                file=sys.stderr,
                show_pos=False,
                item_show_func=self._status,
            )
        if event.digest not in self.sent:
            self.sent[event.digest] = 0
            self.bar.length += event.size
            self.bar.finished = False  # more to send than the bar knew of
        done = event.size if event.kind == "blob-pushed" else event.done
        step, self.sent[event.digest] = done - self.sent[event.digest], done
        self.bar.update(step, self.layers_done)


def _report(
    summary: PushSummary, target: ImageReference, output_format: str, quiet: bool, created: list[CreatedKey]
) -> None:
    if output_format == "json":
        keys = [{"id": k.keyid, "role": k.role, "path": str(k.path)} for k in created]
        emit_json({**summary.to_json(), "created_keys": keys})
        return
    click.echo(f"{target.tag}: digest: {summary.digest} size: {summary.size}")
    if summary.signed and not quiet:
        click.echo(f"Signed {target.familiar}:{target.tag} into {', '.join(summary.signed_roles)}")
    if created:  # only a signing push creates keys (an unsigned one never imports the signing layers)
        from trustkit.ops import created_keys_notice

        for line in created_keys_notice(created):  # shown even with --quiet: the backup matters
            click.echo(line, err=True)


class _Signing:
    """Prepares content trust for the push engine, and remembers what it prepared (the keys a
    first signed push created are reported after it)."""

    def __init__(self, ctx: Context, target: ImageReference, tag: str, display: _Display) -> None:
        self.ctx, self.target, self.tag, self.display = ctx, target, tag, display
        self.prepared: PreparedSigning | None = None

    def __call__(self) -> PushSigning:
        from trustkit.errors import NetworkError
        from trustkit.ops import PreparedSigning

        self.display.line(f"Content trust: preparing to sign {self.target.familiar}:{self.tag}")
        try:  # the push engine prepares signing before the first upload: this failure pushed nothing
            self.prepared = PreparedSigning(self.ctx.trust_session(self.target), self.tag)
        except NetworkError as exc:
            name = f"{self.target.familiar}:{self.tag}"
            raise type(exc)(
                f"cannot reach the trust server to sign {name}, so nothing was pushed: {exc.message}",
                hint="to push it unsigned, run the same command with --disable-content-trust; sign it later "
                f"with `trustkit sign {name}` (or now with `trustkit sign {name} --offline`, published by "
                f"`trustkit publish {self.target.gun}` once the trust server is reachable)",
            ) from exc
        return self.prepared

    @property
    def created_keys(self) -> list[CreatedKey]:
        return list(self.prepared.session.created_keys) if self.prepared is not None else []


def _signing(ctx: Context, target: ImageReference, tag: str, enabled: bool, display: _Display) -> _Signing | None:
    return _Signing(ctx, target, tag, display) if enabled else None


def _run(
    job: Callable[[], PushSummary],
    target: ImageReference,
    output_format: str,
    quiet: bool,
    signing: _Signing | None = None,
) -> None:
    summary = job()  # a PushedNotSignedError's summary is reported by the CLI's error handler
    _report(summary, target, output_format, quiet, signing.created_keys if signing is not None else [])


@click.command("push")
@click.argument("source")
@click.argument("image")
@_sign_options
@click.option(
    "--max-concurrent-uploads",
    type=click.IntRange(1, 64),
    default=5,
    show_default=True,
    help="Blob uploads in flight at once.",
)
@click.option(
    "--chunk-size",
    type=click.IntRange(min=0),
    default=None,
    hidden=True,
    help="Upload blobs larger than this in PATCH chunks of this many bytes (0: never).",
)
@INSECURE_OPTION
@QUIET_OPTION
@FORMAT_OPTION
@pass_context
def push(
    ctx: Context,
    source: str,
    image: str,
    sign_flag: bool,
    disable_content_trust: bool,
    max_concurrent_uploads: int,
    chunk_size: int | None,
    insecure_registries: tuple[str, ...],
    quiet: bool,
    output_format: str,
) -> None:
    """Push SOURCE to the registry as IMAGE:TAG; sign it when content trust is on.

    \b
    SOURCE is one of:
      oci:DIR[:REF]              an OCI image layout (REF: its ref.name annotation)
      docker-archive:FILE[:NAME] a `docker save` tarball
      docker://IMAGE[:TAG]       an image in a registry (copied; mounted within one registry)

    With DOCKER_CONTENT_TRUST=1 or --sign, keys, passphrases and the trust server are checked
    before anything is uploaded, and the tag is signed with the manifest's digest and size.
    If signing fails after the push, the command fails and says the image is NOT signed.
    """
    from trustkit.errors import SourceError
    from trustkit.oci.push import push_image
    from trustkit.oci.registry import connect
    from trustkit.oci.sources import RegistrySource, parse_source

    target, target_tag = _target(image)
    spec = parse_source(source)
    enabled = _signing_enabled(sign_flag, disable_content_trust)
    display = _Display(quiet or output_format == "json")
    cache = _cache()
    with display:

        def source_progress(kind: str, digest: str, detail: str) -> None:
            from trustkit.oci.push import PushEvent

            display(PushEvent(kind, digest, detail=detail))

        image_source = _file_source(spec, cache, source_progress)
        remote = spec.reference  # docker://IMAGE: read from a registry
        origin_client = None
        if remote is not None and remote.registry != target.registry:
            origin_client = connect(
                remote.registry, insecure_registries=insecure_registries, pool=max_concurrent_uploads
            )
        try:
            client = connect(target.registry, insecure_registries=insecure_registries, pool=max_concurrent_uploads)
            if chunk_size is not None:
                client.chunk_threshold = client.chunk_size = chunk_size
            if remote is not None:
                image_source = RegistrySource(origin_client or client, remote)
            if image_source is None:  # parse_source gives every source a path or a reference
                raise SourceError(f"{source!r} names no image to push")
            display.line(f"The push refers to repository [{target.name}]")
            signing = _signing(ctx, target, target_tag, enabled, display)
            _run(
                lambda: push_image(
                    image_source,
                    target,
                    client,
                    signing=signing,
                    max_concurrent_uploads=max_concurrent_uploads,
                    progress=display,
                    cache=cache,
                ),
                target,
                output_format,
                quiet,
                signing,
            )
        finally:
            if image_source is not None:
                image_source.close()


def _file_source(spec: SourceSpec, cache: BlobLocationCache, progress: SourceProgress) -> ImageSource | None:
    """The ``oci:DIR`` or ``docker-archive:FILE`` source, opened; None for ``docker://IMAGE``."""
    from trustkit.oci.sources import DockerArchiveSource, OCILayoutSource

    if spec.path is None:
        return None
    if spec.kind == "oci":
        return OCILayoutSource(spec.path, spec.ref)
    return DockerArchiveSource(spec.path, spec.ref, cache=cache, progress=progress)


@click.command("tag")
@click.argument("source_image")
@click.argument("image")
@_sign_options
@INSECURE_OPTION
@QUIET_OPTION
@FORMAT_OPTION
@pass_context
def tag(
    ctx: Context,
    source_image: str,
    image: str,
    sign_flag: bool,
    disable_content_trust: bool,
    insecure_registries: tuple[str, ...],
    quiet: bool,
    output_format: str,
) -> None:
    """Tag SOURCE_IMAGE (IMAGE:TAG or IMAGE@DIGEST) as IMAGE:TAG in the same registry, without
    uploading (blobs of another repository are mounted); sign it when content trust is on."""
    from trustkit.oci.push import tag_image
    from trustkit.oci.registry import connect
    from trustkit.reference import parse

    source = parse(source_image)
    if source.tag is None and source.digest is None:
        raise click.UsageError(f"give the source as IMAGE:TAG or IMAGE@sha256:... (got {source_image!r})")
    target, target_tag = _target(image)
    enabled = _signing_enabled(sign_flag, disable_content_trust)
    display = _Display(quiet or output_format == "json")
    signing = _signing(ctx, target, target_tag, enabled, display)
    with display, connect(target.registry, insecure_registries=insecure_registries) as client:
        _run(
            lambda: tag_image(client, source, target, signing=signing, progress=display, cache=_cache()),
            target,
            output_format,
            quiet,
            signing,
        )


@click.command("login")
@click.argument("registry")
@click.option("-u", "--username", help="User name (asked on a terminal when missing).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@INSECURE_OPTION
def login(registry: str, username: str | None, password_stdin: bool, insecure_registries: tuple[str, ...]) -> None:
    """Check credentials against REGISTRY and store them in $DOCKER_CONFIG/config.json, as
    `docker login` does (or in the credential helper it names).  The password comes from
    --password-stdin or a terminal prompt, never from the command line."""
    from trustkit.client.docker_config import DOCKER_HUB_HOSTS, Credentials, save_login
    from trustkit.errors import NotAuthorizedError
    from trustkit.oci.registry import connect
    from trustkit.reference import parse

    name = registry.strip().removeprefix("https://").removeprefix("http://").rstrip("/")
    if name.endswith("/v1") or name.endswith("/v2"):
        name = name[:-3]
    host = parse(f"{name}/probe").registry if "/" not in name else None
    if host is None or (host == "docker.io" and name not in DOCKER_HUB_HOSTS):
        raise click.UsageError(f"{registry!r} is not a registry host[:port]")
    if username is None:
        if password_stdin or not can_prompt():
            raise click.UsageError("give the user name with -u USER")
        username = click.prompt("Username", err=True)
    if password_stdin:
        password = sys.stdin.read().rstrip("\r\n")
    elif can_prompt():
        password = click.prompt("Password", hide_input=True, err=True)
    else:
        raise click.UsageError("no terminal to ask for the password on: pipe it in with --password-stdin")
    if not password:
        raise click.UsageError("the password is empty")
    credentials = Credentials(username, password)
    try:
        with connect(host, insecure_registries=insecure_registries, credentials=credentials) as client:
            client.ping(authenticate=True)
    except NotAuthorizedError as exc:
        # Its usual hint (log in again) is this very command: say what to check instead.
        raise NotAuthorizedError(
            exc.message, hint=f'check the user name "{username}" and its password; nothing was stored'
        ) from None
    where = save_login(host, username, password)
    click.echo(f"Login Succeeded (credentials stored in {where})")


@click.command("logout")
@click.argument("registry")
def logout(registry: str) -> None:
    """Remove REGISTRY's stored credentials, from $DOCKER_CONFIG/config.json and from the
    credential helper that holds them, as `docker logout` does."""
    from trustkit.client.docker_config import remove_login

    name = registry.strip().removeprefix("https://").removeprefix("http://").rstrip("/")
    removed = remove_login(name)
    if removed:
        click.echo(f"Removing login credentials for {name} (from {', '.join(removed)})")
    else:
        click.echo(f"Not logged in to {name}")


COMMANDS = [push, tag, login, logout]
