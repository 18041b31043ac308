"""`make push` against a real OCI registry on loopback (Debian's docker-registry, the
Distribution registry): the images built here and the chart arrive under the chart's
version, and what arrived can be pulled back (image manifests by tag, the chart by helm)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from localworld.helm import CHART, ROOT, helm
from localworld.procs import free_port
from localworld.real_node import images

pytestmark = pytest.mark.e2e
MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
)


@contextlib.contextmanager
def loopback_registry(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.fail("docker-registry is missing: run scripts/setup.sh", pytrace=False)
    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "version": 0.1,
                "log": {"level": "warn"},
                "storage": {"filesystem": {"rootdirectory": str(tmp_path / "storage")}},
                "http": {"addr": f"127.0.0.1:{port}"},
            }
        )
    )
    log = (tmp_path / "registry.log").open("wb")
    process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2).close()
                break
            assert time.monotonic() < deadline, (tmp_path / "registry.log").read_text()
            time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def tags(registry: str, repository: str) -> list[str]:
    with urllib.request.urlopen(f"http://{registry}/v2/{repository}/tags/list", timeout=5) as r:
        return list(json.load(r)["tags"])


def test_push_to_a_loopback_registry(tmp_path: Path) -> None:
    built = images()
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
    with loopback_registry(tmp_path) as registry:
        result = subprocess.run(
            ["bash", str(ROOT / "scripts" / "push.sh")],
            env={**os.environ, "REGISTRY": registry, "PLAIN_HTTP": "1"},
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"{registry} {version}"
        assert version in tags(registry, "siesta")
        assert version in tags(registry, "siesta-server")
        # The CUDA server goes along whenever it has been built here (make images VARIANT=cuda).
        cuda = built.get("SIESTA_SERVER_CUDA_IMAGE", "localhost/siesta-server:dev-cuda")
        if subprocess.run(["podman", "image", "exists", cuda], check=False).returncode == 0:
            assert f"{version}-cuda" in tags(registry, "siesta-server")
        else:
            assert "no CUDA server image here" in result.stderr
        # The pushed server image is the one built here (same config digest).
        request = urllib.request.Request(
            f"http://{registry}/v2/siesta-server/manifests/{version}",
            headers={"Accept": ", ".join(MANIFEST_TYPES)},
        )
        with urllib.request.urlopen(request, timeout=5) as reply:
            pushed_config = json.load(reply)["config"]["digest"]
        local = subprocess.run(
            ["podman", "image", "inspect", "--format", "{{.ID}}", built["SIESTA_SERVER_IMAGE"]],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert pushed_config == f"sha256:{local.stdout.strip()}"
        pulled = helm(
            "show", "chart", "--plain-http", f"oci://{registry}/charts/siesta",
            "--version", version,
        )  # fmt: skip
        assert yaml.safe_load(pulled.stdout)["version"] == version
