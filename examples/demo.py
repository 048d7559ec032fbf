"""The main job end to end on a throw-away setup: ``./dev demo``.

trustkit's own trust server runs on loopback with TLS and its built-in SQLite storage, next
to a local registry (Debian's docker-registry).  trustkit, configured the way docker users
configure content trust, pushes a freshly built image with DOCKER_CONTENT_TRUST=1 (signed
before the command reports success), pushes it again (nothing re-uploaded), delegates to a
signer, tags and signs as that signer, verifies, shows the result as `docker trust inspect`
would, and revokes a tag.  Nothing prompts: passphrases come from the environment, as in CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import images
import peers


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="trustkit-demo-"))
    docker_config = work / "docker"
    image = images.build_oci_layout(work / "image", ref="v1", layers=4)
    with peers.TrustkitServer(work / "server") as server, peers.Registry() as registry:
        # Docker's conventions: the CA at $DOCKER_CONFIG/tls/<host:port>/ca.crt, the server in
        # DOCKER_CONTENT_TRUST_SERVER, passphrases in the DOCKER_CONTENT_TRUST_* variables.
        (docker_config / "tls" / server.host_port).mkdir(parents=True)
        shutil.copyfile(server.ca_path, docker_config / "tls" / server.host_port / "ca.crt")
        env = {
            **os.environ,
            "DOCKER_CONFIG": str(docker_config),
            "DOCKER_CONTENT_TRUST_SERVER": server.url,
            "DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE": "demo-root-passphrase",
            "DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE": "demo-repo-passphrase",
        }
        repo = f"{registry.host_port}/demo/app"

        def trustkit(*args: str, ok: tuple[int, ...] = (0,), extra: dict[str, str] | None = None) -> None:
            shown = " ".join(f"{k}={v}" for k, v in (extra or {}).items())
            print(f"\n$ {shown + ' ' if shown else ''}trustkit {' '.join(args)}", flush=True)
            code = subprocess.run(
                [sys.executable, "-m", "trustkit", *args],
                env={**env, **(extra or {})},
                stdin=subprocess.DEVNULL,
                check=False,
            ).returncode  # `ok` says which codes pass
            if code not in ok:
                sys.exit(f"demo failed: exit status {code}")
            if code:
                print(f"(exit status {code}, as expected)")

        trust_on = {"DOCKER_CONTENT_TRUST": "1"}
        trustkit("push", f"oci:{image.layout}:v1", f"{repo}:v1", extra=trust_on)
        trustkit("push", f"oci:{image.layout}:v1", f"{repo}:v1", "--format", "json", extra=trust_on)
        trustkit("key", "generate", "alice", "--dir", str(work))
        trustkit("signer", "add", "alice", repo, "--key", str(work / "alice.pub"))
        trustkit("tag", f"{repo}:v1", f"{repo}:latest", extra=trust_on)  # signed as alice too
        trustkit("verify", f"{repo}:latest", "--digest", image.digest)
        trustkit("inspect", repo, "--pretty")
        trustkit("revoke", f"{repo}:latest")
        trustkit("verify", f"{repo}:latest", ok=(3,))
        trustkit("key", "list")
    print(f"\nDemo files are in {work}")


if __name__ == "__main__":
    main()
