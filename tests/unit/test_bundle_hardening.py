"""Client bundles are hostile input (trustkit issue 9, item 13): a zip's declared sizes lie, its
members may be bombs, duplicated, encrypted or corrupt.  Limits count the bytes actually
decompressed; every refusal is one clear line, never ``internal error``.

Peak memory is measured with tracemalloc in-process (``read_bundle``) and with the child's
``ru_maxrss`` for the real CLI (``python -m trustkit bundle import``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc
import warnings
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from trustkit.cli import main
from trustkit.errors import KeyFormatError
from trustkit.keys.bundle import MAX_BUNDLE_BYTES, MAX_MEMBER_SIZE, MAX_ZIP_SIZE, read_bundle

PASS = "test-passphrase"
MiB = 1 << 20


def _usage(**allowed: bool) -> x509.KeyUsage:
    names = (
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
        "encipher_only",
        "decipher_only",
    )
    return x509.KeyUsage(**{name: allowed.get(name, False) for name in names})


def bundle_pems(cn: str = "dev1") -> dict[str, bytes]:
    """cert.pem / key.pem / ca.pem of a UCP-style bundle: a client certificate issued by the cluster CA."""
    now = datetime.now(UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "UCP Client Root CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(digital_signature=True, key_encipherment=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return {
        "cert.pem": cert.public_bytes(serialization.Encoding.PEM),
        "key.pem": key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        "ca.pem": ca.public_bytes(serialization.Encoding.PEM),
    }


def write_zip(path: Path, members: list[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression=method) as archive, warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Duplicate name", UserWarning)  # some tests want the same name twice
        for name, data in members:
            archive.writestr(name, data)
    return path


def write_bomb(path: Path, *, method: int, real_mib: int, declared: int, name: str = "cert.pem") -> Path:
    """A bundle whose ``name`` inflates to ``real_mib`` MiB of zeros while the central directory
    declares ``declared`` bytes (streamed in: building it never holds the bomb in memory)."""
    pems = bundle_pems()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for other in ("key.pem", "ca.pem"):
            archive.writestr(other, pems[other])
        info = zipfile.ZipInfo(name)
        info.compress_type = method
        chunk = bytes(MiB)
        with archive.open(info, "w") as member:
            for _ in range(real_mib):
                member.write(chunk)
        info.file_size = declared  # written into the central directory when the archive closes
    return path


def peak_bytes(call) -> tuple[int, BaseException | None]:
    tracemalloc.start()
    try:
        call()
        error = None
    except BaseException as exc:  # noqa: BLE001 - the test inspects it
        error = exc
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak, error


@pytest.fixture(scope="module")
def deflate_bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The issue's shape: ~260 KB on disk, 256 MiB inflated, 700 bytes declared."""
    return write_bomb(
        tmp_path_factory.mktemp("bomb") / "bundle.zip", method=zipfile.ZIP_DEFLATED, real_mib=256, declared=700
    )


@pytest.fixture
def run(tmp_path, monkeypatch, capsys):
    """The CLI in-process with a fresh DOCKER_CONFIG; returns (exit status, stdout, stderr)."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.setenv("DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE", PASS)
    monkeypatch.chdir(tmp_path)

    def invoke(*args: str) -> tuple[int, str, str]:
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


def stored_keys(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "docker" / "trust" / "private"
    return sorted(folder.iterdir()) if folder.exists() else []


def assert_refused(result: tuple[int, str, str], needle: str, tmp_path: Path) -> None:
    code, _, err = result
    assert code == 1, err
    assert err.startswith("trustkit: error: ") and "internal error" not in err and "Traceback" not in err, err
    assert needle in err, err
    assert stored_keys(tmp_path) == []


# --------------------------------------------------------------------------------------------
# Memory: limits on the bytes actually decompressed


def test_deflate_bomb_with_lying_sizes_is_read_in_bounded_memory(deflate_bomb: Path) -> None:
    assert deflate_bomb.stat().st_size < 400_000
    peak, error = peak_bytes(lambda: read_bundle(deflate_bomb))
    assert peak < 4 * MiB, f"peak {peak / MiB:.0f} MiB for a {deflate_bomb.stat().st_size} byte zip"
    assert isinstance(error, KeyFormatError) and "corrupt" in str(error), repr(error)


def test_deflate_bomb_declaring_a_huge_size_stops_at_the_cap(tmp_path: Path) -> None:
    # file_size = 0xFFFFFFFE: "too large" must come from the bytes read, and the CRC never matters
    bomb = write_bomb(tmp_path / "b.zip", method=zipfile.ZIP_DEFLATED, real_mib=64, declared=0xFFFF_FFFE)
    peak, error = peak_bytes(lambda: read_bundle(bomb))
    assert peak < 4 * MiB, f"peak {peak / MiB:.0f} MiB"
    assert isinstance(error, KeyFormatError) and "more than" in str(error), repr(error)


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_bzip2_and_lzma_members_are_refused_before_decompressing(tmp_path: Path, method: int) -> None:
    # zipfile hands bzip2/lzma data to a decompressor with no output limit: 320 bytes -> 64 MiB
    bomb = write_bomb(tmp_path / "b.zip", method=method, real_mib=64, declared=700)
    peak, error = peak_bytes(lambda: read_bundle(bomb))
    assert peak < 4 * MiB, f"peak {peak / MiB:.0f} MiB"
    assert isinstance(error, KeyFormatError) and "compress" in str(error), repr(error)


def test_cli_peak_memory_on_the_zip_bomb(deflate_bomb: Path, tmp_path: Path) -> None:
    """The real command in a child process: its peak RSS stays near an ordinary import's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "NOTARY_", "TRUSTKIT_"))}
    env.update(DOCKER_CONFIG=str(tmp_path / "docker"), DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE=PASS)
    probe = (
        "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
        "sys.stderr.write(r.stderr); print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )

    def measure(bundle: Path) -> tuple[int, float, str]:
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                probe,
                sys.executable,
                "-m",
                "trustkit",
                "bundle",
                "import",
                str(bundle),
                "--dir",
                str(tmp_path),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
            cwd=tmp_path,
            check=False,
        )
        code, rss_kib = result.stdout.split()
        return int(code), int(rss_kib) / 1024, result.stderr

    pems = bundle_pems()
    ordinary = write_zip(tmp_path / "ordinary.zip", sorted(pems.items()))
    ordinary_code, ordinary_mib, ordinary_err = measure(ordinary)
    assert ordinary_code == 0, ordinary_err
    code, bomb_mib, err = measure(deflate_bomb)
    assert code == 1 and "corrupt" in err and "internal error" not in err, err
    assert bomb_mib < ordinary_mib + 16, f"peak RSS {bomb_mib:.0f} MiB on the bomb, {ordinary_mib:.0f} MiB normally"


def test_folder_members_are_read_capped(tmp_path: Path) -> None:
    folder = tmp_path / "bundle"
    folder.mkdir()
    for name, data in bundle_pems().items():
        (folder / name).write_bytes(data)
    with (folder / "cert.pem").open("r+b") as handle:  # a sparse 64 MiB file: nothing on disk, all on read
        handle.truncate(64 * MiB)
    peak, error = peak_bytes(lambda: read_bundle(folder))
    assert peak < 4 * MiB, f"peak {peak / MiB:.0f} MiB"
    assert isinstance(error, KeyFormatError) and "more than" in str(error), repr(error)


def test_total_of_the_members_is_capped(tmp_path: Path) -> None:
    pad = b"# padding\n" * ((MAX_MEMBER_SIZE - 4096) // 10)  # each member below the per-file cap
    assert len(pad) * 3 > MAX_BUNDLE_BYTES and len(pad) < MAX_MEMBER_SIZE
    members = [(name, pad + data) for name, data in bundle_pems().items()]
    bundle = write_zip(tmp_path / "big.zip", members)
    assert bundle.stat().st_size < MAX_ZIP_SIZE
    with pytest.raises(KeyFormatError, match=f"more than {MAX_BUNDLE_BYTES}"):
        read_bundle(bundle)


def test_a_zip_larger_than_any_bundle_is_refused_unopened(tmp_path: Path) -> None:
    members = sorted(bundle_pems().items()) + [("padding.bin", os.urandom(MAX_ZIP_SIZE))]
    bundle = write_zip(tmp_path / "huge.zip", members, method=zipfile.ZIP_STORED)
    with pytest.raises(KeyFormatError, match="larger than"):
        read_bundle(bundle)


# --------------------------------------------------------------------------------------------
# Corrupt, duplicated, encrypted: clear refusals through the CLI


def test_crc_error_is_a_corrupt_bundle_not_an_internal_error(run, tmp_path: Path) -> None:
    pems = bundle_pems()
    bundle = write_zip(tmp_path / "bundle.zip", sorted(pems.items()), method=zipfile.ZIP_STORED)
    raw = bytearray(bundle.read_bytes())
    at = raw.index(b"-----BEGIN CERTIFICATE-----") + 40  # inside cert.pem's stored bytes: only the CRC breaks
    raw[at] ^= 0x01
    bundle.write_bytes(bytes(raw))
    assert_refused(run("bundle", "import", str(bundle)), "corrupt", tmp_path)


def test_an_unreadable_zip_is_a_corrupt_bundle(run, tmp_path: Path) -> None:
    bundle = write_zip(tmp_path / "bundle.zip", sorted(bundle_pems().items()))
    raw = bytearray(bundle.read_bytes())
    start = raw.index(b"key.pem") + len(b"key.pem")  # deflate data of key.pem follows its local header
    raw[start : start + 64] = b"\xff" * 64
    bundle.write_bytes(bytes(raw))
    assert_refused(run("bundle", "import", str(bundle)), "corrupt", tmp_path)


def test_an_encrypted_member_is_refused_clearly(run, tmp_path: Path) -> None:
    pems = bundle_pems()
    bundle = tmp_path / "bundle.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        for name, data in sorted(pems.items()):
            archive.writestr(name, data)
        archive.getinfo("key.pem").flag_bits |= 0x1  # "encrypted" in the central directory
    assert_refused(run("bundle", "import", str(bundle)), "encrypted", tmp_path)


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ([("cert.pem", "cert"), ("cert.pem", "cert2"), ("key.pem", "key"), ("ca.pem", "ca")], "cert.pem twice"),
        (
            [
                ("a/cert.pem", "cert"),
                ("a/key.pem", "key"),
                ("a/ca.pem", "ca"),
                ("b/cert.pem", "cert2"),
                ("b/key.pem", "key"),
                ("b/ca.pem", "ca"),
            ],
            "several bundles",
        ),
    ],
)
def test_ambiguous_bundles_are_refused(run, tmp_path: Path, layout: list[tuple[str, str]], message: str) -> None:
    pems, other = bundle_pems(), bundle_pems("mallory")
    data = {"cert": pems["cert.pem"], "cert2": other["cert.pem"], "key": pems["key.pem"], "ca": pems["ca.pem"]}
    bundle = write_zip(tmp_path / "bundle.zip", [(name, data[what]) for name, what in layout])
    assert_refused(run("bundle", "import", str(bundle)), message, tmp_path)


def test_bundle_files_come_from_one_folder(run, tmp_path: Path) -> None:
    pems = bundle_pems()
    nested = write_zip(
        tmp_path / "nested.zip",
        [(f"ucp-bundle-dev1/{name}", data) for name, data in pems.items()]
        + [("ucp-bundle-dev1/env.sh", b"export DOCKER_HOST=tcp://ucp:443\n")],
    )
    mixed = write_zip(
        tmp_path / "mixed.zip",
        [("cert.pem", pems["cert.pem"]), ("ca.pem", pems["ca.pem"]), ("old/key.pem", pems["key.pem"])],
    )
    assert_refused(run("bundle", "import", str(mixed)), "no key.pem", tmp_path)  # not cert and key of two folders
    code, out, err = run("bundle", "import", str(nested))  # one subfolder, as unpacked copies have it: fine
    assert code == 0 and "Imported key" in out, err
    assert (tmp_path / "dev1.crt").read_bytes() == pems["cert.pem"]
    assert len(stored_keys(tmp_path)) == 1
