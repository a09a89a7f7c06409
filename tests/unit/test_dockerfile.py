"""The Dockerfile, read statically (no docker engine here).

What matters for the image: every base pinned to an exact Python release (no ``latest``,
no floating ``3.11-slim``), a build from this repository's package (pyproject.toml and
operator/) installed with pip from the built wheel, a numeric non-root user that matches
the Deployment's ``runAsUser``, and ``unthrottle run -A`` as entrypoint and command (the
agent's DaemonSet runs the same image with ``unthrottle agent``).
"""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

# python:MAJOR.MINOR.PATCH-slim-DEBIAN, optionally also pinned by digest.
PINNED_PYTHON = re.compile(
    r"^python:(?P<version>3\.\d+\.\d+)-slim-(bookworm|bullseye|trixie)(@sha256:[0-9a-f]{64})?$"
)


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [a for k, a in self.instructions if k == keyword]


def _instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction: comments dropped, continuations joined."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        result.append((keyword.upper(), " ".join(args.split())))
    assert not pending, "the Dockerfile ends inside a continued line"
    return result


def _stages() -> list[Stage]:
    stages: list[Stage] = []
    for keyword, args in _instructions(DOCKERFILE.read_text()):
        if keyword == "FROM":
            words = args.split()
            words = [w for w in words if not w.startswith("--platform")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            assert len(words) in (1, 3), f"FROM {args}"
            stages.append(Stage(base=words[0], name=name))
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append((keyword, args))
    return stages


def _pyproject() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def test_multi_stage_on_one_pinned_python_base() -> None:
    stages = _stages()
    assert len(stages) >= 2
    for stage in stages:
        if stage.base in {s.name for s in stages}:
            continue  # FROM an earlier stage
        assert "latest" not in stage.base
        match = PINNED_PYTHON.match(stage.base)
        assert match, f"FROM {stage.base}: pin an exact python:X.Y.Z-slim-<debian> image"
    assert len({s.base for s in stages}) == 1, "builder and final share the same base"
    assert "latest" not in DOCKERFILE.read_text()


def test_base_python_satisfies_requires_python() -> None:
    match = PINNED_PYTHON.match(_stages()[-1].base)
    assert match
    major, minor, _ = (int(x) for x in match["version"].split("."))
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    required = re.fullmatch(r">=\s*(\d+)\.(\d+)", project["requires-python"])
    assert required, project["requires-python"]
    assert (major, minor) >= (int(required[1]), int(required[2]))


def test_builder_builds_the_wheel_from_this_repository() -> None:
    builder = _stages()[0]
    copied = " ".join(builder.args("COPY"))
    for needed in ("pyproject.toml", "README.md", "operator"):  # readme: pyproject needs it
        assert needed in copied, f"the builder does not COPY {needed}"
    runs = builder.args("RUN")
    assert any(re.search(r"\bpip wheel\b.*--wheel-dir[ =]/wheels\b.* \.$", r) for r in runs), runs


def test_final_stage_pip_installs_the_built_wheel() -> None:
    stages = _stages()
    final = stages[-1]
    builder_name = stages[0].name
    assert builder_name
    assert f"--from={builder_name} /wheels /wheels" in final.args("COPY")
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    installs = [r for r in final.args("RUN") if "pip install" in r]
    assert len(installs) == 1
    install = installs[0]
    assert "--no-index" in install and "--find-links=/wheels" in install
    assert re.search(rf"\b{project['name']}\b", install)
    assert " -e " not in install and "--editable" not in install
    # The final stage has no source tree: only the wheels are copied in.
    assert all(c.startswith("--from=") for c in final.args("COPY"))


def test_runs_as_a_numeric_non_root_user_matching_the_deployment() -> None:
    final = _stages()[-1]
    users = final.args("USER")
    assert users, "no USER in the final stage"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, f"USER {users[-1]}: numeric, non-root"
    assert not gid or (gid.isdigit() and int(gid) != 0)
    # Nothing after USER runs as root again or installs anything.
    last_user = max(i for i, (k, _) in enumerate(final.instructions) if k == "USER")
    assert not [k for k, _ in final.instructions[last_user + 1 :] if k == "RUN"]
    deployment = yaml.safe_load((ROOT / "manifests" / "deployment.yaml").read_text())
    context = deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    assert context["runAsUser"] == int(uid)


def test_entrypoint_is_the_console_script_running_the_operator() -> None:
    final = _stages()[-1]
    (entrypoint,) = final.args("ENTRYPOINT")
    (cmd,) = final.args("CMD")
    assert json.loads(entrypoint) == ["unthrottle"]  # exec form: signals reach the process
    assert json.loads(cmd) == ["run", "-A"]
    scripts = _pyproject()["project"]
    assert isinstance(scripts, dict)
    assert "unthrottle" in scripts["scripts"]


def test_the_same_image_runs_the_node_agent() -> None:
    # manifests/agent's DaemonSet: the operator's image, the console script, `agent`.
    daemonset = yaml.safe_load((ROOT / "manifests" / "agent" / "daemonset.yaml").read_text())
    deployment = yaml.safe_load((ROOT / "manifests" / "deployment.yaml").read_text())
    (agent,) = daemonset["spec"]["template"]["spec"]["containers"]
    (operator,) = deployment["spec"]["template"]["spec"]["containers"]
    assert agent["image"] == operator["image"]
    assert agent["command"][:2] == ["unthrottle", "agent"]


def test_python_environment() -> None:
    env = " ".join(_stages()[-1].args("ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "PYTHONUNBUFFERED=1" in env


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, simplified: the last matching pattern wins; ``!`` re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pat) for p in prefixes) or (
            pat.startswith("**/") and any(fnmatch.fnmatch(p, pat[3:]) for p in parts)
        ):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_the_context_to_the_package() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for kept in ("pyproject.toml", "README.md", "operator/unthrottle/__init__.py"):
        assert not _ignored(kept, patterns), kept
    for dropped in (
        ".git/HEAD",
        ".venv/bin/python",
        "tests/unit/test_dockerfile.py",
        "operator/unthrottle.egg-info/PKG-INFO",
        "operator/unthrottle/__pycache__/x.pyc",
        "Dockerfile",
    ):
        assert _ignored(dropped, patterns), dropped
