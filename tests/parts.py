"""Real parts for the slow tier, started by the tests themselves on loopback: a container
registry (Debian's docker-registry) and an offline Python base image (mmdebstrap + buildah).
`.ci/run` installs them; where one is missing the test skips, which fails on CI."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

# buildah here needs chroot isolation (the default fails on this kernel's cgroups) and a
# storage driver that works inside a container; both are read from the environment.
BUILDAH_ENV = {"BUILDAH_ISOLATION": "chroot", "STORAGE_DRIVER": "vfs"}
BASE_IMAGE = "localhost/ml-template-python-base:3.11"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def need(*tools: str) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (apt-get install them; CI does)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def in_use(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


@contextmanager
def listening(port: int) -> Iterator[None]:
    """Something listening on 127.0.0.1:`port` meanwhile (a port another program holds)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        yield


@contextmanager
def registry(workdir: Path) -> Iterator[str]:
    """A plain-HTTP registry on 127.0.0.1; yields its host:port."""
    need("docker-registry")
    port = free_port()
    config = workdir / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        f"storage:\n  filesystem:\n    rootdirectory: {workdir / 'registry-data'}\n"
        # Deletes by digest, as Artifact Registry allows them (retention's `inv gc`).
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n")
    server = subprocess.Popen(["docker-registry", "serve", str(config)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert server.poll() is None, "docker-registry exited"
                assert time.monotonic() < deadline, "registry did not start"
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def buildah(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["buildah", *args], capture_output=True, text=True,
                            env={**os.environ, **BUILDAH_ENV})
    if check and result.returncode != 0:
        raise AssertionError(f"buildah {' '.join(args)}: {result.stderr[-2000:]}")
    return result


def python_base_image(cache: Path) -> str:
    """A Debian + Python 3.11 image made offline (no Docker Hub here), cached as a rootfs."""
    need("mmdebstrap", "buildah")
    if buildah("inspect", "--type", "image", BASE_IMAGE, check=False).returncode == 0:
        return BASE_IMAGE
    rootfs = cache / "python-base.tar"
    if not rootfs.exists():
        hooks = Path("/usr/share/mmdebstrap/hooks")
        subprocess.run(["mmdebstrap", "--quiet", "--variant=essential",
                        f"--hook-dir={hooks / 'merged-usr'}", f"--hook-dir={hooks / 'eatmydata'}",
                        "--include=python3,python3-venv,python3-pip,ca-certificates",
                        "bookworm", str(rootfs)], check=True, capture_output=True)
    container = buildah("from", "scratch").stdout.strip()
    buildah("add", container, str(rootfs), "/")
    # This machine reaches PyPI through a proxy whose CA is in the host's bundle: the build
    # stage's pip needs it. (A real base image from a registry needs nothing of the kind.)
    buildah("copy", container, str(HOST_CA_BUNDLE), "/etc/ssl/certs/ca-certificates.crt")
    buildah("config", "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--env", "PIP_CERT=/etc/ssl/certs/ca-certificates.crt", container)
    buildah("run", container, "--", "sh", "-c", "rm -f /usr/lib/python3*/EXTERNALLY-MANAGED")
    buildah("commit", "--rm", "-q", container, BASE_IMAGE)
    return BASE_IMAGE
