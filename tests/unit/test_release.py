"""What a release builds, checked here because the release workflow runs only on a tag.

The wheel is built (``pip wheel --no-deps --no-build-isolation``: offline, with the
venv's setuptools) and opened; the image's build context is the files the Dockerfile
copies, which must exist and pass .dockerignore; the workflow must build both arches,
push, attach an SBOM and sign.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]


def test_the_wheel_builds_offline_and_carries_the_package(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(tmp_path), "--quiet", str(ROOT)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = tmp_path.glob("unthrottle-*.whl")
    assert wheel.name == f"unthrottle-{VERSION}-py3-none-any.whl"
    names = set(zipfile.ZipFile(wheel).namelist())
    for inside in (
        "unthrottle/cli/__init__.py",
        "unthrottle/py.typed",
        "unthrottle/sandbox/assets/kube-sandbox.sh",
        "unthrottle/sandbox/assets/rbac.yaml",
        "unthrottle/sandbox/assets/crds/throttlepolicy.yaml",
    ):
        assert inside in names, inside
    entry_points = zipfile.ZipFile(wheel).read(f"unthrottle-{VERSION}.dist-info/entry_points.txt")
    assert "unthrottle = unthrottle.cli:main" in entry_points.decode()


def test_every_file_the_dockerfile_copies_is_in_the_build_context() -> None:
    copies = [
        line.split()[1:-1]
        for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()
        if line.startswith("COPY ") and "--from=" not in line
    ]
    allowed = {
        line.lstrip("!").rstrip("/")
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.startswith("!")
    }
    sources = [s.rstrip("/") for sources in copies for s in sources]
    assert sources == ["pyproject.toml", "README.md", "operator"]
    for source in sources:
        assert (ROOT / source).exists(), source
        assert source in allowed, f"{source} is kept out of the context by .dockerignore"


def _steps() -> list[dict[str, Any]]:
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    # YAML 1.1 reads the key `on` as True.
    trigger = workflow.get("on", workflow.get(True))
    assert trigger == {"push": {"tags": ["v*.*.*"]}}
    assert workflow["permissions"]["id-token"] == "write"
    (job,) = workflow["jobs"].values()
    steps: list[dict[str, Any]] = job["steps"]
    return steps


def test_the_release_workflow_builds_pushes_and_signs_a_multi_arch_image() -> None:
    steps = _steps()
    uses = [s.get("uses", "").split("@")[0] for s in steps]
    for action in (
        "docker/setup-qemu-action",
        "docker/setup-buildx-action",
        "docker/login-action",
        "docker/build-push-action",
        "sigstore/cosign-installer",
        "anchore/sbom-action",
    ):
        assert action in uses, action
    build = next(s for s in steps if s.get("uses", "").startswith("docker/build-push-action"))
    assert build["with"]["platforms"] == "linux/amd64,linux/arm64"
    assert build["with"]["push"] is True and build["with"]["sbom"] is True
    runs = "\n".join(s.get("run", "") for s in steps)
    assert "cosign sign --yes" in runs
    assert ".ci/run" in runs  # the tests pass before anything is published
    assert "pip wheel --no-deps" in runs
