"""The main job on the built-in defaults, end to end, in a throw-away trust directory.

Today (foundation): generate docker-compatible keys, build and sign a repository's root and
targets metadata exactly as notary writes them, and check them the way notary reads them.
Run it with ``./dev demo``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

from trustkit.encoding import format_expires
from trustkit.keys import CryptoSigner, EnvPassphrases, KeyStore, generate
from trustkit.keys.certs import root_key_for
from trustkit.metadata import BASE_ROLES, FileMeta, Metadata, RoleKeys, Root, Targets

GUN = "localhost:5000/demo/app"
PASSPHRASES = {"DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE": "demo-root-passphrase",
               "DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE": "demo-repo-passphrase"}


def trustkit(*args: str, env: dict[str, str]) -> None:
    print(f"$ trustkit {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, "-m", "trustkit", *args], check=True, env=env, stdin=subprocess.DEVNULL)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="trustkit-demo-"))
    env = {**os.environ, **PASSPHRASES, "DOCKER_CONFIG": str(work / "docker")}
    trust_dir = work / "docker" / "trust"

    # 1. A signer key, as `docker trust key generate alice` would make it.
    trustkit("key", "generate", "alice", "--dir", str(work), env=env)

    # 2. Root and targets keys for the repository, in the same encrypted store.
    store = KeyStore(trust_dir, EnvPassphrases(env))
    root_private, targets_private = generate("ecdsa"), generate("ecdsa")
    store.add(root_private, role="root")
    store.add(targets_private, role="targets", gun=GUN)
    trustkit("key", "list", env=env)

    # 3. Signed metadata, byte-for-byte in notary's format.
    now = datetime.now(timezone.utc)
    root_key = root_key_for(root_private, GUN)
    targets_key = CryptoSigner(targets_private)
    root = Root(expires=format_expires(now + timedelta(days=3650)), version=1,
                keys={root_key.keyid: root_key, targets_key.public_key.keyid: targets_key.public_key},
                roles={role: RoleKeys([root_key.keyid if role == "root" else targets_key.public_key.keyid])
                       for role in BASE_ROLES})
    root_file, targets_file = work / "root.json", work / "targets.json"
    root_file.write_bytes(Metadata(root).sign([(CryptoSigner(root_private), root_key.keyid)]))
    targets = Targets(expires=format_expires(now + timedelta(days=1095)), version=1,
                      targets={"v1": FileMeta.for_digest("a" * 64, 528)})
    targets_file.write_bytes(Metadata(targets).sign([(targets_key, targets_key.public_key.keyid)]))

    # 4. Read them back as a notary client would: strict parse, same bytes, valid signatures.
    trustkit("metadata", "check", str(root_file), env=env)
    trustkit("metadata", "check", str(targets_file), "--root", str(root_file), env=env)
    print(f"\nDemo files are in {work}")


if __name__ == "__main__":
    main()
