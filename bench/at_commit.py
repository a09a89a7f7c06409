"""Run a benchmark against the package as committed, not as the working tree has it.

The benchmarks measure ``unthrottle``; while the working tree is being edited, the package
it imports may be half-changed. This wrapper extracts ``operator/`` of a commit (default
``HEAD``) with ``git archive`` into a temporary directory, runs the given script with
that directory first on ``PYTHONPATH`` (ahead of the editable install) and
``UNTHROTTLE_BENCH_COMMIT`` set to the commit's hash (the scripts record it), and removes
the directory afterwards. It changes nothing in the repository. :func:`snapshot` and
:func:`environment` do the same for a script that runs several commits side by side.

    .venv/bin/python bench/at_commit.py [--commit REV] bench/report_scale.py [ARGS...]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def snapshot(commit: str = "HEAD") -> Iterator[tuple[str, Path]]:
    """``operator/`` of ``commit`` extracted into a temporary directory, removed on exit:
    (the commit's full hash, the directory to put first on ``PYTHONPATH``)."""
    sha = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--verify", f"{commit}^{{commit}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    root = Path(tempfile.mkdtemp(prefix=f"unthrottle-{sha[:12]}-"))
    try:
        archive = subprocess.Popen(
            ["git", "-C", str(REPO), "archive", sha, "operator"], stdout=subprocess.PIPE
        )
        subprocess.run(["tar", "-x", "-C", str(root)], stdin=archive.stdout, check=True)
        if archive.wait() != 0:
            raise SystemExit(f"git archive {sha} failed")
        # Bytecode, as an installed package has it (pip compiles at install): without it,
        # and with PYTHONDONTWRITEBYTECODE set or a read-only tree, every command measured
        # would compile the whole package again (0.2 to 0.3 s of each report here).
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", str(root / "operator")], check=True
        )
        yield sha, root / "operator"
    finally:
        shutil.rmtree(root, ignore_errors=True)


def environment(sha: str, package_root: Path) -> dict[str, str]:
    """This process's environment with ``package_root`` first on ``PYTHONPATH`` (ahead of
    the editable install) and ``UNTHROTTLE_BENCH_COMMIT`` set (the scripts record it)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(package_root), env.get("PYTHONPATH")) if p)
    env["UNTHROTTLE_BENCH_COMMIT"] = sha
    return env


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--commit", default="HEAD", help="a git revision (default HEAD)")
    parser.add_argument("script", type=Path)
    parser.add_argument("args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    with snapshot(args.commit) as (sha, package_root):
        print(f"at_commit: {sha[:12]} in {package_root}", file=sys.stderr, flush=True)
        return subprocess.run(
            [sys.executable, str(args.script), *args.args],
            env=environment(sha, package_root),
            check=False,
        ).returncode


if __name__ == "__main__":
    sys.exit(main())
