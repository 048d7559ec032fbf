"""The main job end to end on a throw-away setup: ``./dev demo``.

trustkit's own trust server runs on loopback with TLS and its built-in SQLite storage, and
trustkit, configured the way docker users configure content trust, generates a signer key,
initialises a repository, delegates to the signer, signs tags (as the owner and as the
signer), verifies them, shows them as `docker trust inspect` would, and revokes one.  Nothing
prompts: passphrases come from the environment, as in CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import peers  # noqa: E402

DIGEST = "sha256:" + "5e" * 32


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="trustkit-demo-"))
    docker_config = work / "docker"
    with peers.TrustkitServer(work / "server") as server:
        # Docker's conventions: the CA at $DOCKER_CONFIG/tls/<host:port>/ca.crt, the server in
        # DOCKER_CONTENT_TRUST_SERVER, passphrases in the DOCKER_CONTENT_TRUST_* variables.
        (docker_config / "tls" / server.host_port).mkdir(parents=True)
        shutil.copyfile(server.ca_path, docker_config / "tls" / server.host_port / "ca.crt")
        env = {**os.environ, "DOCKER_CONFIG": str(docker_config), "DOCKER_CONTENT_TRUST_SERVER": server.url,
               "DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE": "demo-root-passphrase",
               "DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE": "demo-repo-passphrase"}
        repo = f"{server.host_port}/demo/app"

        def trustkit(*args: str, ok: tuple[int, ...] = (0,)) -> None:
            print(f"\n$ trustkit {' '.join(args)}", flush=True)
            code = subprocess.run([sys.executable, "-m", "trustkit", *args], env=env,
                                  stdin=subprocess.DEVNULL).returncode
            if code not in ok:
                sys.exit(f"demo failed: exit status {code}")
            if code:
                print(f"(exit status {code}, as expected)")

        trustkit("key", "generate", "alice", "--dir", str(work))
        trustkit("init", repo)
        trustkit("sign", f"{repo}:v1", f"{repo}:latest", "--digest", DIGEST, "--size", "1530")
        trustkit("signer", "add", "alice", repo, "--key", str(work / "alice.pub"))
        trustkit("sign", f"{repo}:v2", "--digest", DIGEST, "--size", "1530")
        trustkit("verify", f"{repo}:v1", "--digest", DIGEST)
        trustkit("inspect", repo, "--pretty")
        trustkit("revoke", f"{repo}:latest")
        trustkit("verify", f"{repo}:latest", ok=(3,))
        trustkit("key", "list")
    print(f"\nDemo files are in {work}")


if __name__ == "__main__":
    main()
