"""Client-bundle certificates made by the real ``openssl`` CLI (trustkit issue 9, item 16).

A UCP/MKE bundle's cert.pem is a client certificate issued by the cluster CA in ca.pem (which
may hold several CAs; the chain may have an intermediate).  ``trustkit bundle import`` must check
that chain and that the certificate is one a signer may use; ``trustkit signer add --key cert.pem
--ca ca.pem`` must refuse a certificate that does not chain to the given CA, before publishing.
The certificates here come from ``openssl req`` / ``openssl ca``, as an administrator makes them.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

import peers

pytestmark = pytest.mark.interop

EXTENSIONS = """
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[server_only]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
[no_signing]
basicConstraints = critical,CA:FALSE
keyUsage = critical,keyEncipherment
extendedKeyUsage = clientAuth
[intermediate]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


class OpenSSL:
    def __init__(self, workdir: Path) -> None:
        try:
            self.binary = peers.require("openssl")
        except peers.PeerMissing as exc:
            pytest.fail(str(exc), pytrace=False)
        self.workdir = workdir
        (workdir / "ext.cnf").write_text(EXTENSIONS)

    def run(self, *args: str | Path) -> None:
        peers.run_command(
            [self.binary, *map(str, args)],
            env={"PATH": "/usr/bin:/bin"},
            cwd=self.workdir,
            timeout=60,
            input=None,
            check=True,
            what="openssl",
        )

    def key(self, path: Path, algorithm: str = "ec") -> Path:
        options = ["-pkeyopt", "ec_paramgen_curve:P-256"] if algorithm == "ec" else ["-pkeyopt", "rsa_keygen_bits:2048"]
        self.run("genpkey", "-algorithm", algorithm.upper(), *options, "-out", path)
        return path


@dataclass
class CA:
    """A CA made with ``openssl req -x509`` (root) or issued by another CA (intermediate)."""

    openssl: OpenSSL
    folder: Path
    cert: Path
    key: Path

    @classmethod
    def root(cls, openssl: OpenSSL, name: str) -> CA:
        folder = openssl.workdir / name
        folder.mkdir()
        key = openssl.key(folder / "ca.key")
        cert = folder / "ca.pem"
        openssl.run(
            "req",
            "-x509",
            "-new",
            "-key",
            key,
            "-out",
            cert,
            "-days",
            "3650",
            "-subj",
            f"/CN={name}",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        )
        return cls(openssl, folder, cert, key).with_database()

    def intermediate(self, name: str) -> CA:
        folder = self.openssl.workdir / name
        folder.mkdir()
        cert, key = self.issue(folder, name, "intermediate")
        return CA(self.openssl, folder, cert, key).with_database()

    def with_database(self) -> CA:
        (self.folder / "index.txt").write_text("")
        (self.folder / "serial").write_text("1000\n")
        (self.folder / "new").mkdir()
        (self.folder / "ca.cnf").write_text(
            f"[ca]\ndefault_ca = this\n[this]\ndir = {self.folder}\ndatabase = $dir/index.txt\n"
            "new_certs_dir = $dir/new\nserial = $dir/serial\ndefault_md = sha256\npolicy = any\n"
            "unique_subject = no\n[any]\ncommonName = supplied\n"
        )
        return self

    def issue(
        self, folder: Path, cn: str, extensions: str, *, algorithm: str = "ec", dates: tuple[str, str] | None = None
    ) -> tuple[Path, Path]:
        """``openssl ca`` signs a CSR for ``cn`` with the ``extensions`` section of ext.cnf."""
        folder.mkdir(parents=True, exist_ok=True)
        key = self.openssl.key(folder / "key.pem", algorithm)
        csr = folder / "request.csr"
        self.openssl.run("req", "-new", "-key", key, "-subj", f"/CN={cn}", "-out", csr)
        validity = ["-startdate", dates[0], "-enddate", dates[1]] if dates else ["-days", "30"]
        cert = folder / "cert.pem"
        self.openssl.run(
            "ca",
            "-batch",
            "-notext",
            "-config",
            self.folder / "ca.cnf",
            "-cert",
            self.cert,
            "-keyfile",
            self.key,
            "-in",
            csr,
            "-out",
            cert,
            "-extfile",
            "ext.cnf",
            "-extensions",
            extensions,
            *validity,
        )
        csr.unlink()
        return cert, key


@pytest.fixture(scope="module")
def cas(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CA]:
    openssl = OpenSSL(tmp_path_factory.mktemp("openssl"))
    cluster = CA.root(openssl, "UCP Client Root CA")
    return {
        "cluster": cluster,
        "other": CA.root(openssl, "Another Cluster CA"),
        "intermediate": cluster.intermediate("UCP Intermediate CA"),
    }


def build(case: str, cas: dict[str, CA], folder: Path) -> Path:
    """A bundle folder (cert.pem, key.pem, ca.pem) for one case; returns it."""
    cluster, other, intermediate = cas["cluster"], cas["other"], cas["intermediate"]
    ca_pem = cluster.cert.read_bytes()
    if case in ("good", "several_cas"):
        cluster.issue(folder, "dev1", "client")
        if case == "several_cas":
            ca_pem = other.cert.read_bytes() + ca_pem
    elif case == "rsa":
        cluster.issue(folder, "dev1", "client", algorithm="rsa")
    elif case == "other_ca":
        other.issue(folder, "dev1", "client")
    elif case == "ca_as_leaf":
        folder.mkdir()
        shutil.copyfile(cluster.cert, folder / "cert.pem")
        shutil.copyfile(cluster.key, folder / "key.pem")
    elif case in ("server_only", "no_signing"):
        cluster.issue(folder, "dev1", case)
    elif case == "expired":
        cluster.issue(folder, "dev1", "client", dates=("200101000000Z", "200201000000Z"))
    elif case == "key_mismatch":
        cluster.issue(folder, "dev1", "client")
        cluster.openssl.key(folder / "key.pem")  # a fresh key, not the certificate's
    elif case.startswith("intermediate"):
        intermediate.issue(folder, "dev1", "client")
        if case == "intermediate_in_ca_pem":
            ca_pem += intermediate.cert.read_bytes()
        elif case == "intermediate_in_cert_pem":
            with (folder / "cert.pem").open("ab") as cert:
                cert.write(intermediate.cert.read_bytes())
    (folder / "ca.pem").write_bytes(ca_pem)
    return folder


# (case, what `bundle import` and `signer add --ca` say; None: accepted)
CASES = [
    ("good", None, None),
    ("rsa", None, None),
    ("several_cas", None, None),
    ("intermediate_in_ca_pem", None, None),
    ("intermediate_in_cert_pem", None, None),
    ("other_ca", "was not issued by a CA in", "was not issued by a CA in"),
    ("intermediate_missing", "was not issued by a CA in", "was not issued by a CA in"),
    ("ca_as_leaf", "is a CA certificate", "is a CA certificate"),
    ("server_only", "does not include clientAuth", "does not include clientAuth"),
    ("no_signing", "digitalSignature", "digitalSignature"),
    ("expired", "expired", "expired"),
    ("key_mismatch", "does not belong to cert.pem", None),  # the certificate itself is fine
]


@pytest.mark.parametrize(("case", "import_error", "signer_error"), CASES, ids=[c[0] for c in CASES])
def test_bundle_import_and_signer_add_check_the_chain(
    case, import_error, signer_error, cas, trustkit_cli, notary_server, tmp_path
):
    bundle = build(case, cas, tmp_path / "bundle")
    member = trustkit_cli()
    imported = member.run("bundle", "import", bundle, "--format", "json", check=False)
    keys = json.loads(member.run("key", "list", "--format", "json").stdout)
    if import_error is None:
        assert imported.returncode == 0, imported.stderr
        assert json.loads(imported.stdout)["signer"] == "dev1" and [k["role"] for k in keys] == ["dev1"]
    else:
        assert_one_clear_line(imported, import_error)
        assert keys == []  # nothing stored

    gun = f"{notary_server.host_port}/team/{case.replace('_', '-')}"
    admin = trustkit_cli()
    added = admin.run(
        "signer",
        "add",
        "dev1",
        gun,
        "--key",
        bundle / "cert.pem",
        "--ca",
        bundle / "ca.pem",
        "--format",
        "json",
        check=False,
    )
    if signer_error is None:
        assert added.returncode == 0, added.stderr
        assert json.loads(added.stdout)[0]["signer"] == "dev1"
    else:
        assert_one_clear_line(added, signer_error)
        assert notary_server.get(f"/v2/{gun}/_trust/tuf/root.json").status_code == 404  # nothing published


def test_a_bundle_without_ca_pem_is_refused(cas, trustkit_cli, tmp_path):
    bundle = build("good", cas, tmp_path / "bundle")
    (bundle / "ca.pem").unlink()
    member = trustkit_cli()
    assert_one_clear_line(member.run("bundle", "import", bundle, check=False), "no ca.pem")
    assert json.loads(member.run("key", "list", "--format", "json").stdout) == []


def test_signer_add_with_ca_refuses_a_bare_public_key(cas, trustkit_cli, notary_server, tmp_path):
    bundle = build("good", cas, tmp_path / "bundle")
    openssl = cas["cluster"].openssl
    public = tmp_path / "dev1.pub"
    openssl.run("pkey", "-in", bundle / "key.pem", "-pubout", "-out", public)
    gun = f"{notary_server.host_port}/team/bare"
    result = trustkit_cli().run("signer", "add", "dev1", gun, "--key", public, "--ca", bundle / "ca.pem", check=False)
    assert_one_clear_line(result, "--ca needs the certificate")
    assert notary_server.get(f"/v2/{gun}/_trust/tuf/root.json").status_code == 404


def assert_one_clear_line(result, needle: str) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("trustkit: error: "), result.stderr
    assert needle in lines[0] and "internal error" not in lines[0], lines[0]
