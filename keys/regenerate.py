#!/usr/bin/env python3
"""Regenerate the golden fixtures in keys/ with the REAL notary and docker CLIs.

    python keys/regenerate.py            # rewrites keys/notary, keys/docker,
                                         # keys/manifest.json and keys/README.md

THE FILES THIS WRITES ARE TEST FIXTURES, NOT SECRETS. Their passphrases are public constants
(tests/peers.py). Never use them for anything real.

What it does (keys/README.md lists the exact commands, keys/manifest.json every file):

1. starts a throwaway notary-server on loopback (tests/peers.py),
2. builds a staging tree that mirrors keys/ and runs every peer command with that tree as the
   working directory and relative paths, so the commands recorded in the manifest are exact;
3. notary CLI: init, targets (one with < > & é U+2028 U+2029 in its name), two delegations
   (a PUBLIC KEY one and an RSA x509 one), delegated targets, root rotation, targets rotation,
   plus ``notary key generate -o`` output;
4. docker CLI: ``trust key generate``, ``trust key load`` (EC SEC1 and RSA PKCS#8 input),
   ``trust signer add`` (initialises the repository), ``trust sign`` of an already-released tag,
   ``trust inspect``;
5. downloads every role file from the server with its exact bytes;
6. checks every private key file: decrypts it with ``openssl pkcs8`` and the recorded passphrase,
   and checks that the file name is the key's canonical key ID (wire spec 3.3/6.2);
7. writes manifest.json and README.md, then replaces keys/notary and keys/docker.

Key material that is not written by a peer (delegate keys handed to ``notary key import`` /
``docker trust key load``, the delegate certificate, target contents) is generated here with
pyca/cryptography and kept under ``*/inputs/`` so tests can compare against it.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from importlib.metadata import version as dist_version
from pathlib import Path

KEYS_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(KEYS_DIR.parent / "tests"))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

import peers  # noqa: E402

NOTARY_GUN = "example.com/golden/app"
# Docker's GUN is "<registry host>/<repo>". The trust server comes from
# DOCKER_CONTENT_TRUST_SERVER, so the registry host need not exist; a fixed name (not
# 127.0.0.1:<random port>) keeps the fixtures stable and the paths free of ':'.
DOCKER_GUN = "registry.example.com/golden/docker"

# Target names. SPECIAL exercises the HTML escaping of < > & (wire spec 1.1) next to raw
# UTF-8 (é); SEPARATORS the \u2028/\u2029 escapes. The notary CLI accepted both.
TARGET_V1 = "v1"
TARGET_SPECIAL = "a<b>&c-é"
TARGET_SEPARATORS = "line\u2028para\u2029sep"
TARGET_RELEASED = "v2"  # in targets/releases
TARGET_QA = "qa/build-1"  # in targets/qa (paths ["qa/"])
DOCKER_TAG = "v1"

TEST_FIXTURE_WARNING = (
    "TEST FIXTURES, NOT SECRETS: every key in keys/ was generated for trustkit's tests and its "
    "passphrase is published here. Never use these keys, certificates or metadata for anything real."
)


# --------------------------------------------------------------------------------------------
# key helpers (pyca/cryptography only; no peer source consulted)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _keyid(keytype: str, public: str) -> str:
    """TUF key ID: sha256 of the canonical JSON of the public key object (wire spec 3.3).

    For these objects (ASCII strings, a null) sorted compact json.dumps is canonical JSON.
    """
    obj = {"keytype": keytype, "keyval": {"private": None, "public": public}}
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _algorithm(key) -> str:
    if isinstance(key, (ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey)):
        return "ecdsa"
    if isinstance(key, (rsa.RSAPublicKey, rsa.RSAPrivateKey)):
        return "rsa"
    if isinstance(key, (ed25519.Ed25519PublicKey, ed25519.Ed25519PrivateKey)):
        return "ed25519"
    raise TypeError(type(key))


def _key_details(public_key) -> dict:
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return {"algorithm": "ecdsa", "curve": public_key.curve.name}
    if isinstance(public_key, rsa.RSAPublicKey):
        return {"algorithm": "rsa", "bits": public_key.key_size}
    return {"algorithm": _algorithm(public_key)}


def canonical_keyid(public_key) -> str:
    """Canonical key ID: keytype ecdsa|rsa, public = base64(DER SubjectPublicKeyInfo)."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return _keyid(_algorithm(public_key), _b64(der))


def cert_keyid(cert_pem: bytes, public_key) -> str:
    """Certificate key ID: keytype <alg>-x509, public = base64(certificate PEM)."""
    return _keyid(_algorithm(public_key) + "-x509", _b64(cert_pem))


def write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def make_cert(key, common_name: str, days: int = 3650) -> bytes:
    """A self-signed code-signing certificate, the shape notary uses for root/delegate certs."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(
            x509.KeyUsage(True, False, True, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def pem_block_info(text: str) -> tuple[str, dict[str, str]]:
    """(PEM type, RFC 1421 headers) of the first block in ``text``."""
    lines = text.splitlines()
    begin = lines[0]
    assert begin.startswith("-----BEGIN ") and begin.endswith("-----"), begin
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" not in line:
            break
        k, v = line.split(":", 1)
        headers[k.strip()] = v.strip()
    return begin[len("-----BEGIN ") : -5], headers


def decrypt_with_openssl(path: Path, passphrase: str):
    """Decrypt a notary/docker key file with ``openssl pkcs8``; return the private key.

    The PEM headers are dropped first (openssl would read them as RFC 1423 encryption
    headers). OpenSSL accepts notary's version-1 ECDSA PKCS#8 that pyca/cryptography refuses
    (wire spec 6.2) and re-encodes it as standard PKCS#8, which cryptography then loads.
    """
    text = path.read_text()
    pem_type, headers = pem_block_info(text)
    body = [line for line in text.splitlines()[1 + len(headers) :] if line and not line.startswith("-----")]
    pem = f"-----BEGIN {pem_type}-----\n" + "\n".join(body) + f"\n-----END {pem_type}-----\n"
    env = dict(os.environ, TRUSTKIT_FIXTURE_PASS=passphrase)
    out = subprocess.run(
        [peers.require("openssl"), "pkcs8", "-passin", "env:TRUSTKIT_FIXTURE_PASS"],
        input=pem.encode(),
        capture_output=True,
        env=env,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"openssl could not decrypt {path} with the recorded passphrase:\n{out.stderr.decode()}")
    return serialization.load_pem_private_key(out.stdout, None)


def load_public(pem: bytes):
    """Load a PUBLIC KEY PEM, tolerating notary/docker's ``role:`` header."""
    text = pem.decode()
    pem_type, headers = pem_block_info(text)
    body = [line for line in text.splitlines()[1 + len(headers) :] if line and not line.startswith("-----")]
    der = base64.b64decode("".join(body))
    return pem_type, headers, serialization.load_der_public_key(der)


# --------------------------------------------------------------------------------------------
# recording what each peer command produced


class Recorder:
    """Runs peer commands in the staging tree and remembers which command last wrote each file."""

    def __init__(self, stage: Path):
        self.stage = stage
        self.steps: list[dict] = []
        self.writer: dict[str, str] = {}  # relative path -> command that last created/changed it

    def _snapshot(self) -> dict[str, bytes]:
        return {
            p.relative_to(self.stage).as_posix(): hashlib.sha256(p.read_bytes()).digest()
            for p in self.stage.rglob("*")
            if p.is_file()
        }

    def run(self, cli, command: str, *, input: str | None = None, note: str) -> subprocess.CompletedProcess[str]:
        """Run ``command`` (shell-quoted, program name first) with ``cli``; record its effect."""
        argv = shlex.split(command)
        before = self._snapshot()
        result = cli.run(*argv[1:], input=input)
        after = self._snapshot()
        command = shlex.join(argv)
        changed = sorted(p for p, h in after.items() if before.get(p) != h)
        removed = sorted(p for p in before if p not in after)
        for p in changed:
            self.writer[p] = command
        self.steps.append(
            {
                "step": len(self.steps) + 1,
                "command": command,
                **({"stdin": input} if input is not None else {}),
                "effect": note,
                "files_written": changed,
                **({"files_removed": removed} if removed else {}),
            }
        )
        print(f"[{len(self.steps):2}] {command}", flush=True)
        return result

    def save_stdout(self, result: subprocess.CompletedProcess[str], path: Path) -> None:
        path.write_text(result.stdout, encoding="utf-8")
        """Save the stdout of the step just run; produced_by = that command + "  (stdout)"."""
        self.writer[path.relative_to(self.stage).as_posix()] = self.steps[-1]["command"] + "  (stdout)"

    def note_python(self, path: Path, how: str) -> None:
        self.writer[path.relative_to(self.stage).as_posix()] = f"keys/regenerate.py: {how}"


# --------------------------------------------------------------------------------------------
# the two scenarios


def make_inputs(stage: Path, rec: Recorder) -> None:
    """Key material and target files that are *inputs* to the peers (made with cryptography)."""
    ni = stage / "notary" / "inputs"
    targets = {
        "v1.txt": b"golden target v1\n",
        "special.txt": b"target with < > & \xc3\xa9 in its name\n",
        "separators.txt": b"target with U+2028 and U+2029 in its name\n",
        "v2.txt": b"golden target v2, signed by targets/releases\n",
        "qa-build-1.txt": b"qa build 1, signed by targets/qa (RSA)\n",
    }
    for name, data in targets.items():
        p = ni / "targets" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        rec.note_python(p, "target file content")

    # targets/releases delegate: ECDSA P-256, unencrypted PKCS#8 for `notary key import`,
    # and its PUBLIC KEY PEM for `notary delegation add` (keytype "ecdsa" in targets.json).
    rel = ec.generate_private_key(ec.SECP256R1())
    write_private(
        ni / "releases-key.pem",
        rel.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    (ni / "releases.pub").write_bytes(
        rel.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    rec.note_python(ni / "releases-key.pem", "ec.generate_private_key(SECP256R1), PKCS#8 PEM, unencrypted")
    rec.note_python(ni / "releases.pub", "public key of releases-key.pem, SubjectPublicKeyInfo PEM")

    # targets/qa delegate: RSA 2048, PKCS#1 ("RSA PRIVATE KEY") for `notary key import`, and a
    # self-signed certificate for `notary delegation add` (keytype "rsa-x509", rsapss signatures).
    qa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write_private(
        ni / "qa-key.pem",
        qa.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ),
    )
    (ni / "qa.crt").write_bytes(make_cert(qa, "targets/qa"))
    rec.note_python(ni / "qa-key.pem", "rsa.generate_private_key(2048), PKCS#1 PEM, unencrypted")
    rec.note_python(ni / "qa.crt", "self-signed x509 (CN=targets/qa, code signing, 10 years) of qa-key.pem")

    # docker `trust key load` inputs: carol = EC SEC1 ("EC PRIVATE KEY"), dave = RSA PKCS#8.
    # docker refuses key files that are group/other readable, hence mode 0600.
    di = stage / "docker" / "inputs"
    carol = ec.generate_private_key(ec.SECP256R1())
    write_private(
        di / "carol.pem",
        carol.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ),
    )
    (di / "carol.pub").write_bytes(
        carol.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    rec.note_python(di / "carol.pem", "ec.generate_private_key(SECP256R1), SEC1 PEM, unencrypted")
    rec.note_python(di / "carol.pub", "public key of carol.pem, SubjectPublicKeyInfo PEM")
    dave = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write_private(
        di / "dave.pem",
        dave.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    (di / "dave.pub").write_bytes(
        dave.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    rec.note_python(di / "dave.pem", "rsa.generate_private_key(2048), PKCS#8 PEM, unencrypted")
    rec.note_python(di / "dave.pub", "public key of dave.pem, SubjectPublicKeyInfo PEM")
    # The "image manifest" the docker tag points at (docker never reads it; only its hash counts).
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": "sha256:" + hashlib.sha256(b"{}").hexdigest(),
                "size": 2,
            },
            "layers": [],
        },
        separators=(",", ":"),
    ).encode()
    (di / "v1-manifest.json").write_bytes(manifest)
    rec.note_python(di / "v1-manifest.json", "a minimal OCI image manifest (target content for tag v1)")


def notary_scenario(stage: Path, rec: Recorder, server: peers.NotaryServer) -> None:
    cli = peers.NotaryCLI(
        stage / "notary" / "trust",
        server,
        config_path=stage.parent / "notary-client.json",
        cwd=stage,
    )
    q = shlex.quote
    g = NOTARY_GUN
    t = "notary/inputs/targets/"
    rec.run(
        cli,
        f"notary init {g} -p",
        note="root v1 (new root key + self-signed cert), targets v1, snapshot v1 signed by a "
        "new LOCAL snapshot key (the notary CLI does not make snapshots server-managed), "
        "timestamp v1 from the server",
    )
    rec.run(cli, f"notary add {g} {TARGET_V1} {t}v1.txt -p", note="target v1 in targets")
    rec.run(
        cli,
        f"notary add {g} {q(TARGET_SPECIAL)} {t}special.txt -p",
        note="target named a<b>&c-é: HTML-escaped < > & on the wire, raw UTF-8 é",
    )
    rec.run(
        cli,
        f"notary add {g} {q(TARGET_SEPARATORS)} {t}separators.txt -p",
        note="target whose name contains U+2028 and U+2029 (\\u2028/\\u2029 on the wire)",
    )
    rec.run(
        cli,
        "notary key import notary/inputs/releases-key.pem --role targets/releases",
        note="notary re-encrypts the unencrypted ECDSA PKCS#8 with NOTARY_DELEGATION_PASSPHRASE; "
        "headers: role targets/releases, no gun",
    )
    rec.run(
        cli,
        f"notary delegation add {g} targets/releases notary/inputs/releases.pub --all-paths -p",
        note='delegation targets/releases, keytype ecdsa (a PUBLIC KEY PEM is accepted), paths [""]',
    )
    rec.run(
        cli,
        "notary key import notary/inputs/qa-key.pem --role targets/qa",
        note="RSA PKCS#1 input re-encrypted as PKCS#8 (RSA) with the delegation passphrase",
    )
    rec.run(
        cli,
        f"notary delegation add {g} targets/qa notary/inputs/qa.crt --paths qa/ -p",
        note='delegation targets/qa, keytype rsa-x509 (key ID = certificate key ID), paths ["qa/"]',
    )
    rec.run(
        cli,
        f"notary add {g} {TARGET_RELEASED} {t}v2.txt --roles targets/releases -p",
        note="targets/releases.json v1, ecdsa signature",
    )
    rec.run(
        cli,
        f"notary add {g} {TARGET_QA} {t}qa-build-1.txt --roles targets/qa -p",
        note="targets/qa.json v1, rsapss signature whose keyid is the certificate key ID",
    )
    rec.run(
        cli,
        f"notary key rotate {g} root",
        input="yes\n",
        note="root v2: new root key and cert; signed by the old and the new root key. Needs 'yes' "
        "on stdin; with stdin closed notary prints 'Aborting action.' and exits 0",
    )
    rec.run(
        cli,
        f"notary key rotate {g} targets",
        note="root v3 (new targets key listed) signed by the new root key; targets re-signed with "
        "the new targets key; notary DELETES the old targets key file",
    )
    (stage / "notary" / "generate-output").mkdir()
    rec.run(
        cli,
        "notary key generate ecdsa --role targets/releases -o notary/generate-output/spare",
        note="writes spare.pem (PUBLIC KEY, header role) and spare-key.pem (encrypted with the "
        "delegation passphrase); the key is NOT added to the trust dir, and `notary key import` "
        "refuses spare-key.pem",
    )
    listing = rec.run(cli, f"notary list {g}", note="listing saved as notary/list.txt")
    rec.save_stdout(listing, stage / "notary" / "list.txt")


def docker_scenario(stage: Path, rec: Recorder, server: peers.NotaryServer) -> None:
    docker = peers.DockerCLI(stage / "docker", server, cwd=stage)
    g = DOCKER_GUN
    rec.run(
        docker,
        "docker trust key generate alice --dir docker",
        note="ECDSA key: docker/alice.pub (PUBLIC KEY, role: alice) and trust/private/<id>.key "
        "(role: alice, no gun, repository passphrase)",
    )
    rec.run(
        docker,
        "docker trust key load docker/inputs/carol.pem --name carol",
        note="EC SEC1 input re-encrypted as PKCS#8 with the repository passphrase, role: carol",
    )
    rec.run(
        docker,
        "docker trust key load docker/inputs/dave.pem --name dave",
        note="RSA PKCS#8 input re-encrypted with the repository passphrase, role: dave",
    )
    rec.run(
        docker,
        f"docker trust signer add --key docker/alice.pub alice {g}",
        note="initialises the repository: new root key (role root) and targets key (gun + role "
        "targets), server-managed snapshot and timestamp; root v1, targets v1 with targets/alice "
        "and targets/releases",
    )
    rec.run(
        docker,
        f"docker trust signer add --key docker/inputs/carol.pub carol {g}",
        note="targets: adds targets/carol and carol's key to targets/releases",
    )
    rec.run(
        docker,
        f"docker trust signer add --key docker/inputs/dave.pub dave {g}",
        note="targets: adds targets/dave (keytype rsa) and dave's key to targets/releases",
    )
    # `docker trust sign` of a NEW tag needs a daemon (it pushes the image). Release the tag
    # once with the notary CLI on docker's own trust dir (signer keys are found by key ID;
    # their passphrase is NOTARY_DELEGATION_PASSPHRASE = the repository passphrase).
    notary_on_docker = peers.NotaryCLI(
        docker.trust_dir, server, config_path=stage.parent / "notary-on-docker.json", cwd=stage
    )
    rec.run(
        notary_on_docker,
        f"notary add {g} {DOCKER_TAG} docker/inputs/v1-manifest.json --roles targets/releases -p",
        note="bootstrap, run with trust_dir=docker/trust: puts tag v1 into targets/releases "
        "(docker trust sign cannot create a new tag without a daemon)",
    )
    rec.run(
        docker,
        f"docker trust sign {g}:{DOCKER_TAG}",
        note="tag already released, so docker re-signs its hashes daemonless into the delegations "
        "it holds keys for (manifest: repositories.docker.tag_signed_into); targets/releases "
        "gets one signature per key",
    )
    out = rec.run(docker, f"docker trust inspect {g}", note="saved as docker/inspect.json")
    rec.save_stdout(out, stage / "docker" / "inspect.json")
    out = rec.run(docker, f"docker trust inspect --pretty {g}", note="saved as docker/inspect-pretty.txt")
    rec.save_stdout(out, stage / "docker" / "inspect-pretty.txt")
    shutil.rmtree(stage / "docker" / "tls")  # the throwaway server's CA; not a fixture


# --------------------------------------------------------------------------------------------
# downloading and describing


def download(server: peers.NotaryServer, gun: str, dest: Path, rec: Recorder, *, server_snapshot: bool) -> list[str]:
    """Save every role file (and the server's timestamp/snapshot public keys) exactly as served.

    ``GET .../snapshot.key`` *creates* a server snapshot key when there is none, so it is only
    fetched for a repository whose snapshot is server-managed (``server_snapshot``).
    """
    files: list[str] = []
    with server.client(timeout=10.0) as c:

        def save(name: str, required: bool = True) -> bytes | None:
            path = server.metadata_path(gun, name)
            r = c.get(path)
            if r.status_code == 404 and not required:
                return None
            r.raise_for_status()
            out = dest / name
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(r.content)
            rel = out.relative_to(rec.stage).as_posix()
            rec.writer[rel] = f"GET {path} (served by notary-server at the end of the run)"
            files.append(name)
            return r.content

        root = json.loads(save("root.json"))
        for v in range(1, root["signed"]["version"] + 1):
            save(f"{v}.root.json")
        save("targets.json")
        save("snapshot.json")
        save("timestamp.json")
        save("timestamp.key")
        if server_snapshot:
            save("snapshot.key")
        pending = ["targets"]
        while pending:
            parent = json.loads((dest / f"{pending.pop()}.json").read_bytes())
            for role in parent["signed"]["delegations"]["roles"]:
                if save(f"{role['name']}.json", required=False) is not None:
                    pending.append(role["name"])
    return files


_REPOS = {
    "notary": {"gun": NOTARY_GUN, "producer": "notary CLI"},
    "docker": {"gun": DOCKER_GUN, "producer": "docker CLI"},
}


def _key_index(stage: Path) -> tuple[dict[str, str], dict[str, set[str]]]:
    """Every key that any downloaded metadata names: metadata key ID -> canonical key ID, and
    canonical key ID -> the current roles that list it ("repo:role")."""
    alias_to_canonical: dict[str, str] = {}
    used_by: dict[str, set[str]] = {}
    for name in _REPOS:
        mdir = stage / name / "metadata"
        for f in sorted(mdir.rglob("*.json")):
            signed = json.loads(f.read_bytes())["signed"]
            keys = dict(signed.get("keys", {}))
            keys.update(signed.get("delegations", {}).get("keys", {}))
            for kid, k in keys.items():
                alias_to_canonical[kid] = canonical_keyid(_metadata_public_key(k))
        # "used by" comes from the current files only.
        root = json.loads((mdir / "root.json").read_bytes())["signed"]
        for role, r in root["roles"].items():
            for kid in r["keyids"]:
                used_by.setdefault(alias_to_canonical.get(kid, kid), set()).add(f"{name}:{role}")
        for f in [mdir / "targets.json", *sorted((mdir / "targets").glob("*.json"))]:
            if f.exists():
                for r in json.loads(f.read_bytes())["signed"]["delegations"]["roles"]:
                    for kid in r["keyids"]:
                        used_by.setdefault(alias_to_canonical.get(kid, kid), set()).add(f"{name}:{r['name']}")
    return alias_to_canonical, used_by


def _metadata_public_key(k: dict):
    public = base64.b64decode(k["keyval"]["public"])
    if k["keytype"].endswith("-x509"):
        return x509.load_pem_x509_certificate(public).public_key()
    if k["keytype"] == "ed25519":
        return ed25519.Ed25519PublicKey.from_public_bytes(public)
    return serialization.load_der_public_key(public)


class _Fixtures:
    """One manifest entry per file in the staging tree."""

    def __init__(self, stage: Path, rec: Recorder):
        self.stage = stage
        self.rec = rec
        self.alias_to_canonical, self.used_by = _key_index(stage)

    def aliases(self, canon: str) -> list[str]:
        return sorted(k for k, c in self.alias_to_canonical.items() if c == canon and k != canon)

    def all(self) -> list[dict]:
        return [self.entry(path) for path in sorted(p for p in self.stage.rglob("*") if p.is_file())]

    def entry(self, path: Path) -> dict:
        rel = path.relative_to(self.stage).as_posix()
        repo = rel.split("/", 1)[0]
        gun = _REPOS[repo]["gun"]
        data = path.read_bytes()
        entry: dict = {"path": rel, "sha256": hashlib.sha256(data).hexdigest(), "length": len(data)}
        produced_by = self.rec.writer.get(rel)
        if rel.startswith(f"{repo}/trust/private/"):
            entry.update(self.private_key(path, rel, data))
        elif path.suffix == ".key" and "/metadata/" in rel:
            k = json.loads(data)
            entry.update(
                kind="server-key",
                role=path.stem,
                gun=gun,
                keytype=k["keytype"],
                keyid=_keyid(k["keytype"], k["keyval"]["public"]),
            )
        elif rel.endswith(".json") and ("/metadata/" in rel):
            entry.update(self.metadata(repo, rel, gun, data))
        elif data.startswith(b"-----BEGIN"):
            entry.update(self.pem(path, repo, data))
        elif rel.startswith(f"{repo}/inputs/targets/") or rel == "docker/inputs/v1-manifest.json":
            entry.update(kind="target")
        else:
            entry.update(kind="cli-output")
        if entry["kind"] in ("key", "plain-key", "pub", "cert"):
            entry.setdefault("gun", None)  # keys: the PEM gun header, if any
        else:
            entry.setdefault("gun", gun)
        for common in ("role", "keyid", "passphrase", "algorithm"):
            entry.setdefault(common, None)  # every entry has the same core fields
        entry["produced_by"] = produced_by
        if entry["kind"] in ("key", "plain-key"):
            entry["test_fixture"] = True
        return entry

    def private_key(self, path: Path, rel: str, data: bytes) -> dict:
        pem_type, headers = pem_block_info(data.decode())
        role = headers.get("role")
        passphrase = peers.ROOT_PASSPHRASE if role == "root" else peers.REPO_PASSPHRASE
        key = decrypt_with_openssl(path, passphrase)
        canon = canonical_keyid(key.public_key())
        if canon != path.stem:
            raise SystemExit(f"{rel}: file name is not the canonical key ID {canon}")
        return dict(
            kind="key",
            role=role,
            gun=headers.get("gun"),
            keyid=path.stem,
            passphrase=passphrase,
            **_key_details(key.public_key()),
            pem_type=pem_type,
            pem_headers=headers,
            in_trust_dir=True,
            metadata_keyids=self.aliases(canon),
            used_by=sorted(self.used_by.get(canon, ())),
        )

    def metadata(self, repo: str, rel: str, gun: str, data: bytes) -> dict:
        env = json.loads(data)
        signed = env["signed"]
        rp = rel.split("/metadata/", 1)[1][: -len(".json")]
        cached = "/trust/tuf/" in rel
        role = rp.split(".", 1)[1] if rp.split(".", 1)[0].isdigit() else rp
        entry = dict(
            kind="cache" if cached else "metadata",
            role=role,
            gun=gun,
            type=signed["_type"],
            version=signed["version"],
            expires=signed["expires"],
            signatures=[{"keyid": s["keyid"], "method": s["method"]} for s in env["signatures"]],
        )
        if cached:
            served = self.stage / repo / "metadata" / f"{rp}.json"
            entry["same_bytes_as"] = (
                served.relative_to(self.stage).as_posix() if served.exists() and served.read_bytes() == data else None
            )
        return entry

    def pem(self, path: Path, repo: str, data: bytes) -> dict:
        pem_type, headers = pem_block_info(data.decode())
        if pem_type == "PUBLIC KEY":
            _, headers, pub = load_public(data)
            return dict(
                kind="pub",
                role=headers.get("role"),
                keyid=canonical_keyid(pub),
                **_key_details(pub),
                pem_headers=headers,
            )
        elif pem_type == "CERTIFICATE":
            cert = x509.load_pem_x509_certificate(data)
            return dict(
                kind="cert",
                keyid=canonical_keyid(cert.public_key()),
                cert_keyid=cert_keyid(data, cert.public_key()),
                subject=cert.subject.rfc4514_string(),
                **_key_details(cert.public_key()),
            )
        elif pem_type == "ENCRYPTED PRIVATE KEY":  # notary key generate -o output
            key = decrypt_with_openssl(path, peers.REPO_PASSPHRASE)
            return dict(
                kind="key",
                role=headers.get("role"),
                gun=headers.get("gun"),
                keyid=canonical_keyid(key.public_key()),
                passphrase=peers.REPO_PASSPHRASE,
                **_key_details(key.public_key()),
                pem_type=pem_type,
                pem_headers=headers,
                in_trust_dir=False,
                used_by=[],
            )
        else:  # an unencrypted input key made by this script
            key = serialization.load_pem_private_key(data, None)
            canon = canonical_keyid(key.public_key())
            stored = f"{repo}/trust/private/{canon}.key"
            return dict(
                kind="plain-key",
                keyid=canon,
                passphrase=None,
                **_key_details(key.public_key()),
                pem_type=pem_type,
                stored_as=stored if (self.stage / stored).exists() else None,
            )


def build_manifest(stage: Path, rec: Recorder, generated_at: str, tools: dict) -> dict:
    fixtures = _Fixtures(stage, rec).all()

    # Targets, as the CLIs list them, for convenience.
    notary_targets = {
        TARGET_V1: ("targets", "notary/inputs/targets/v1.txt"),
        TARGET_SPECIAL: ("targets", "notary/inputs/targets/special.txt"),
        TARGET_SEPARATORS: ("targets", "notary/inputs/targets/separators.txt"),
        TARGET_RELEASED: ("targets/releases", "notary/inputs/targets/v2.txt"),
        TARGET_QA: ("targets/qa", "notary/inputs/targets/qa-build-1.txt"),
    }

    def target_table(table: dict[str, tuple[str, str]]) -> dict:
        return {
            name: {
                "role": role,
                "file": f,
                "sha256": hashlib.sha256((stage / f).read_bytes()).hexdigest(),
                "length": (stage / f).stat().st_size,
            }
            for name, (role, f) in table.items()
        }

    def root_versions(repo: str) -> int:
        return json.loads((stage / repo / "metadata" / "root.json").read_bytes())["signed"]["version"]

    def delegations(repo: str) -> dict[str, dict]:
        """Delegations as listed by the served targets.json (one level; no nested delegations)."""
        mdir = stage / repo / "metadata"
        signed = json.loads((mdir / "targets.json").read_bytes())["signed"]["delegations"]
        return {
            r["name"]: {
                "paths": r["paths"],
                "threshold": r["threshold"],
                "keyids": r["keyids"],
                "keytypes": sorted({signed["keys"][k]["keytype"] for k in r["keyids"]}),
                "published": (mdir / f"{r['name']}.json").exists(),
            }
            for r in signed["roles"]
        }

    def signed_into(repo: str, tag: str) -> list[str]:
        mdir = stage / repo / "metadata"
        roles = [f"targets/{p.stem}" for p in sorted((mdir / "targets").glob("*.json"))]
        return [r for r in roles if tag in json.loads((mdir / f"{r}.json").read_bytes())["signed"]["targets"]]

    def expiries(repo: str) -> dict[str, str]:
        return {
            e["path"].split("/metadata/", 1)[1]: e["expires"]
            for e in fixtures
            if e["kind"] == "metadata" and e["path"].startswith(f"{repo}/metadata/")
        }

    return {
        "schema_version": 1,
        "warning": TEST_FIXTURE_WARNING,
        "generated_at": generated_at,
        "generated_by": "python keys/regenerate.py",
        "tools": tools,
        "passphrases": {
            "root": peers.ROOT_PASSPHRASE,
            "repository": peers.REPO_PASSPHRASE,
            "note": "root keys use 'root'; every other key (targets, snapshot, delegation, docker signer) "
            "uses 'repository'",
        },
        "repositories": {
            "notary": {
                "gun": NOTARY_GUN,
                "trust_dir": "notary/trust",
                "metadata_dir": "notary/metadata",
                "root_versions": root_versions("notary"),
                "snapshot_signed_by": "client (local snapshot key in notary/trust/private)",
                "targets": target_table(notary_targets),
                "delegations": delegations("notary"),
                "expires": expiries("notary"),
            },
            "docker": {
                "gun": DOCKER_GUN,
                "docker_config": "docker",
                "trust_dir": "docker/trust",
                "metadata_dir": "docker/metadata",
                "root_versions": root_versions("docker"),
                "snapshot_signed_by": "server (server-managed snapshot key, see docker/metadata/snapshot.key)",
                "targets": target_table({DOCKER_TAG: ("targets/releases", "docker/inputs/v1-manifest.json")}),
                "tag_signed_into": signed_into("docker", DOCKER_TAG),
                "delegations": delegations("docker"),
                "expires": expiries("docker"),
            },
        },
        "kinds": {
            "key": "encrypted private key file exactly as the peer wrote it "
            "(PEM 'ENCRYPTED PRIVATE KEY' with role/gun headers)",
            "plain-key": "UNENCRYPTED input private key made by regenerate.py and given to `notary key import` / "
            "`docker trust key load`; stored_as = the peer's encrypted copy",
            "pub": "PUBLIC KEY PEM (keyid = canonical key ID)",
            "cert": "x509 certificate PEM (keyid = canonical ID of its public key, cert_keyid = ID of the x509 key)",
            "metadata": "a role file exactly as served by notary-server "
            "(GET /v2/<gun>/_trust/tuf/<role>.json or <n>.root.json)",
            "cache": "a role file in the CLI's trust_dir/tuf/<gun>/metadata cache, exactly as the CLI wrote it",
            "server-key": "the server's answer to GET .../<role>.key (its public timestamp/snapshot key)",
            "target": "a target's content (its sha256/length are what the target entry records)",
            "cli-output": "stdout of a CLI command",
        },
        "steps": rec.steps,
        "fixtures": fixtures,
    }


# --------------------------------------------------------------------------------------------
# README


def render_readme(manifest: dict) -> str:
    def visible(text: str) -> str:  # U+2028/U+2029 would break the Markdown line
        return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")

    steps = "\n".join(
        f"{s['step']:>2}. `{visible(s['command'])}`"
        + (f" (stdin: `{s['stdin'].strip()}`)" if "stdin" in s else "")
        + f"  \n    {s['effect']}"
        for s in manifest["steps"]
    )

    def table(repo: str) -> str:
        rows = [
            f"| `{e['path'].split('/metadata/', 1)[1]}` | {e['type']} | {e['version']} | {e['expires']} |"
            for e in manifest["fixtures"]
            if e["kind"] == "metadata" and e["path"].startswith(f"{repo}/metadata/")
        ]
        return "| file | _type | version | expires |\n|---|---|---|---|\n" + "\n".join(rows)

    keys = "\n".join(
        f"| `{e['path']}` | {e.get('role')} | {e.get('gun') or ''} | {e['algorithm']} | "
        f"{', '.join(e.get('used_by', [])) or '-'} |"
        for e in manifest["fixtures"]
        if e["kind"] == "key"
    )
    t = manifest["tools"]
    root_pass, repo_pass = manifest["passphrases"]["root"], manifest["passphrases"]["repository"]
    root_envs = "`NOTARY_ROOT_PASSPHRASE`, `DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE`"
    repo_envs = (
        "`NOTARY_TARGETS_PASSPHRASE`, `NOTARY_SNAPSHOT_PASSPHRASE`, `NOTARY_DELEGATION_PASSPHRASE`, "
        "`DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE`"
    )
    docker_gun = manifest["repositories"]["docker"]["gun"]

    def served(repo: str) -> str:
        names = [
            e["path"].split("/metadata/", 1)[1]
            for e in manifest["fixtures"]
            if e["kind"] in ("metadata", "server-key") and e["path"].startswith(f"{repo}/metadata/")
        ]
        lines, line = [], ""
        for n in names:
            if len(line) + len(n) > 70:
                lines.append(line.rstrip())
                line = ""
            line += n + ", "
        lines.append(line.rstrip(", "))
        return ("\n" + " " * 27).join(lines)

    return f"""# keys/ — golden fixtures written by the real peers

> **THESE ARE TEST FIXTURES, NOT SECRETS.** Every private key here was generated for trustkit's
> tests, and its passphrase is written below. Never use these keys, certificates or metadata for
> anything real, and never treat a leak-scanner hit on this directory as an incident. The key files
> are kept byte-for-byte as the peers wrote them; manifest.json marks each one `"test_fixture": true`.

Generated `{manifest["generated_at"]}` by `python keys/regenerate.py` with notary {t["notary"]},
docker CLI {t["docker"]}, {t["openssl"]} (checks only) and pyca/cryptography {t["cryptography"]}.
Regenerating replaces everything except `regenerate.py`; all keys, IDs, signatures and dates change.

## Passphrases

| keys | passphrase | env used when generating |
|---|---|---|
| root keys (`role: root`) | `{root_pass}` | {root_envs} |
| everything else (targets, snapshot, delegations, docker signers) | `{repo_pass}` | {repo_envs} |

The same constants are `ROOT_PASSPHRASE` / `REPO_PASSPHRASE` in `tests/peers.py`.

## Key store layout (notary and docker share it; wire spec §6)

* `<trust dir>/private/<canonical key ID>.key`, one PEM block per file. The file name is the key's
  *canonical* ID (sha256 of the canonical JSON of its `ecdsa`/`rsa` public key), also for root
  keys, whose ID in root.json is the *certificate* key ID (`metadata_keyids` in the manifest).
* PEM type `ENCRYPTED PRIVATE KEY`; RFC 1421 headers sorted by name, then an empty line:
  `gun: <GUN>` (only for targets/snapshot keys), `role: <role>` (root, targets, snapshot,
  targets/releases, ... or a docker signer name such as `alice`). Base64 lines of 64 characters.
* Encryption: PKCS#8 `EncryptedPrivateKeyInfo`, PBES2 with PBKDF2-HMAC-SHA1 (PRF omitted),
  8-byte salt, **2048 iterations**, AES-256-CBC with a 16-byte IV. The inner ECDSA PKCS#8 has
  version 1 (pyca/cryptography refuses it; OpenSSL and Go accept it). RSA keys: version 0.
* The peers write files 0600 and directories 0700. **Git does not keep these modes**: a checkout
  has 0644 files. Tests that check modes, or hand a file to `docker trust key load` (which refuses
  group/other-readable files), must copy it and `chmod 600` first.
* `<trust dir>/tuf/<GUN>/metadata/<role>.json` is the CLI's cache (exact bytes it downloaded or
  signed); `<trust dir>/tuf/<GUN>/changelist/` was empty at the end and is not kept.

## Tree

```
keys/
  regenerate.py            the script that made everything below
  manifest.json            machine-readable description of every file (schema below)
  notary/                  notary CLI repository {manifest["repositories"]["notary"]["gun"]}
    trust/private/*.key    the notary CLI's key store, as written
    trust/tuf/{manifest["repositories"]["notary"]["gun"]}/metadata/...   its metadata cache, as written
    metadata/              every role as served by notary-server (and its timestamp key):
                           {served("notary")}
    inputs/                handed to the CLI: target files, delegate keys (UNENCRYPTED) and cert
    generate-output/       `notary key generate ecdsa --role targets/releases -o ...` output
    list.txt               `notary list` output
  docker/                  a DOCKER_CONFIG made by the docker CLI, repository {docker_gun}
    alice.pub              `docker trust key generate alice --dir docker`
    trust/private/*.key    docker's key store (alice, carol, dave, root, targets)
    trust/tuf/{manifest["repositories"]["docker"]["gun"]}/metadata/...   docker's cache
    metadata/              as served (and the server's snapshot and timestamp keys):
                           {served("docker")}
    inputs/                `docker trust key load` inputs (UNENCRYPTED carol.pem EC SEC1,
                           dave.pem RSA PKCS#8), their .pub, the v1 target content
    inspect.json           `docker trust inspect` output (4-space indented JSON)
    inspect-pretty.txt     `docker trust inspect --pretty` output
```

## Dates: inject `now`

Root expires after 10 years, targets and delegations after 3 years, snapshot after 3 years,
**timestamp after 14 days**. A test that verifies these files must pass a `now` near
`generated_at` = `{manifest["generated_at"]}` (for example `generated_at + 1 hour`), never the wall
clock, or it starts failing two weeks after a regeneration. The delegate certificate
`notary/inputs/qa.crt` is valid for 10 years from generation.

### notary repository
{table("notary")}

### docker repository
{table("docker")}

## Private key files

| file | role | gun | algorithm | listed by (current metadata) |
|---|---|---|---|---|
{keys}

Notes: the first root key is superseded (still in the trust dir; it signed root v1 and v2). The
targets key created by `notary init` was deleted by `notary key rotate ... targets`, so it is not
here. `notary/generate-output/spare-key.pem` was written by notary but is not in any trust dir.

## Commands that produced the fixtures

Every notary command ran as `notary -c <client config> ...` with
`{{"trust_dir": ..., "remote_server": {{"url": "https://127.0.0.1:<port>", "root_ca": <ca>}}}}`;
every docker command with `DOCKER_CONFIG=docker`, `DOCKER_CONTENT_TRUST_SERVER=https://127.0.0.1:<port>`,
the server CA in `docker/tls/127.0.0.1:<port>/ca.crt` (removed afterwards), `DOCKER_HOST` pointing
at no daemon. Working directory: the root of this tree (paths are relative to `keys/`). U+2028/U+2029 in a
command are shown here as `\\u2028`/`\\u2029`; manifest.json has the exact characters. The server
was `notary-server` with memory storage and the local (in-memory Ed25519) signer, so the
timestamp (and docker's snapshot) keys died with it.

{steps}

Commands that were tried and are not used, and why:

* `notary key generate ed25519` / `rsa`: "Algorithm not allowed, possible values are: ECDSA".
* `notary key import` / `docker trust key load` of an RFC 8410 Ed25519 PKCS#8 key: "invalid key pem
  block". So there is no peer-written Ed25519 key file; the only Ed25519 keys are the server's
  (`metadata/timestamp.key`).
* `notary key import notary/generate-output/spare-key.pem`: "key may be encrypted and does not
  contain path header". notary cannot re-import its own `-o` output.
* `docker trust sign` of a new tag: needs the daemon to push the image. Step "bootstrap" above
  works around it; `docker trust sign` of an already-released tag needs no daemon.
* Observed in a manual run before this script: after `docker trust signer add` of a NEW signer
  to a repository whose tag was already signed, a following `docker trust sign` sometimes did not
  sign into the new signer's role (`docker -D` said "skipping targets/<name> because there is no
  checksum for it"). Here every signer is added before the first `docker trust sign`, and the
  manifest's `tag_signed_into` records where the tag really ended up.

## manifest.json schema (schema_version 1)

* `generated_at` (UTC ISO 8601), `tools`, `passphrases`, `warning`.
* `repositories.<notary|docker>`: `gun`, `trust_dir`, `metadata_dir`, `root_versions`, `targets`
  (name → role, input file, sha256 hex, length), `delegations` (name → paths, threshold, keyids,
  keytypes, published), `expires` (file → expires); docker adds `tag_signed_into`.
* `steps[]`: `step`, `command` (exact argv, relative paths), optional `stdin`, `effect`,
  `files_written`, `files_removed`.
* `kinds`: what each `kind` means.
* `fixtures[]`, one per file, sorted by `path` (relative to keys/). Always present (null when
  not applicable): `path`, `kind`, `sha256`, `length`, `role`, `gun` (for keys: the PEM `gun`
  header), `keyid`, `passphrase`, `algorithm`, `produced_by` (the command, or "GET <url path>"
  for downloaded metadata, or "keys/regenerate.py: ..." for inputs). Then by kind:
  * `key`: `role`, `keyid` (the canonical key ID; = the file name stem for files in a trust dir),
    `passphrase`, `algorithm` (`ecdsa`|`rsa`), `curve` or `bits`, `pem_type`, `pem_headers`,
    `in_trust_dir`, `metadata_keyids` (other IDs the same key has in metadata, e.g. the root
    certificate ID), `used_by` (`<repo>:<role>` that list it in the current metadata),
    `test_fixture: true`.
  * `plain-key`: `keyid`, `algorithm`, `pem_type`, `passphrase: null`, `stored_as` (the peer's
    encrypted copy), `test_fixture: true`.
  * `pub`: `role` (header, may be null), `keyid`, `algorithm`, `pem_headers`.
  * `cert`: `keyid`, `cert_keyid`, `subject`, `algorithm`.
  * `metadata` / `cache`: `role` (e.g. `root`, `targets/releases`), `type`, `version`, `expires`,
    `signatures` (`keyid`, `method`); `cache` adds `same_bytes_as` (the served file with identical
    bytes, or null).
  * `server-key`: `role`, `keytype`, `keyid`.

regenerate.py checks before writing: every `key` decrypts with its recorded passphrase (via
`openssl pkcs8`) and its file name equals its canonical key ID; `alice.pub` matches alice's key.
"""


# --------------------------------------------------------------------------------------------


def tool_versions() -> dict[str, str]:
    def out(*argv: str) -> str:
        r = subprocess.run(argv, capture_output=True, text=True, check=False)
        return (r.stdout or r.stderr).strip().splitlines()[0] if (r.stdout or r.stderr).strip() else "?"

    return {
        "notary": out("dpkg-query", "-W", "-f", "${Version} (Debian package notary)", "notary"),
        "docker": out(peers.require("docker"), "--version"),
        "openssl": out(peers.require("openssl"), "version"),
        "cryptography": dist_version("cryptography"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=KEYS_DIR, help="output directory (default: keys/)")
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()

    for binary in ("notary", "notary-server", "docker", "openssl"):
        peers.require(binary)
    generated_at = datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    tools = tool_versions()

    with tempfile.TemporaryDirectory(prefix="trustkit-keys-") as tmp:
        stage = Path(tmp) / "keys"
        stage.mkdir()
        rec = Recorder(stage)
        make_inputs(stage, rec)
        with peers.NotaryServer(Path(tmp) / "server") as server:
            notary_scenario(stage, rec, server)
            docker_scenario(stage, rec, server)
            download(server, NOTARY_GUN, stage / "notary" / "metadata", rec, server_snapshot=False)
            download(server, DOCKER_GUN, stage / "docker" / "metadata", rec, server_snapshot=True)
        # Empty changelist directories are not fixtures (git would drop them anyway).
        for d in sorted(stage.rglob("changelist"), reverse=True):
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()

        manifest = build_manifest(stage, rec, generated_at, tools)
        # Sanity: the docker-generated public key belongs to alice's private key.
        alice_pub = next(e for e in manifest["fixtures"] if e["path"] == "docker/alice.pub")
        if not (stage / "docker" / "trust" / "private" / f"{alice_pub['keyid']}.key").exists():
            raise SystemExit("docker/alice.pub does not match a private key in docker/trust/private")

        (stage / "manifest.json").write_text(
            json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        (stage / "README.md").write_text(render_readme(manifest), encoding="utf-8")

        out.mkdir(parents=True, exist_ok=True)
        for name in ("notary", "docker"):
            shutil.rmtree(out / name, ignore_errors=True)
            shutil.copytree(stage / name, out / name)  # copies modes too (0600/0700)
        for name in ("manifest.json", "README.md"):
            shutil.copyfile(stage / name, out / name)
    print(f"wrote {out} ({len(manifest['fixtures'])} fixtures, generated_at {generated_at})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
