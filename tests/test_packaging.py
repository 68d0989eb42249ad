"""Packaging smoke test: build the sdist and wheel, install each into an empty venv.

This proves that what we would publish to PyPI is self-contained: the console
script entry point resolves, every runtime dependency is declared, and the tap
can describe itself (``--about``) without the development environment around it.
It needs uv on PATH (``./scripts/test`` guarantees that) and access to a
package index for the runtime dependencies.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_SECONDS = 900


def _uv() -> str:
    # ``uv run`` exports the path of the running uv binary as $UV.
    uv = os.environ.get("UV") or shutil.which("uv")
    if not uv:
        pytest.fail("uv is required for the packaging tests but was not found on PATH")
    return uv


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # Do not let the project's dev environment leak into the throwaway venvs.
    for name in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "UV_PROJECT_ENVIRONMENT"):
        env.pop(name, None)
    env["UV_NO_PROGRESS"] = "1"
    return env


def _run(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        args,
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            f"command failed with exit code {result.returncode}: {' '.join(args)}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
        )
    return result


@pytest.fixture(scope="module")
def dist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out_dir = tmp_path_factory.mktemp("dist")
    _run([_uv(), "build", "--out-dir", str(out_dir)], cwd=PROJECT_ROOT)
    return out_dir


def _single(dist_dir: Path, pattern: str) -> Path:
    matches = sorted(dist_dir.glob(pattern))
    assert len(matches) == 1, f"expected exactly one {pattern} in {dist_dir}, found {matches}"
    return matches[0]


def test_build_produces_sdist_and_wheel(dist_dir: Path) -> None:
    sdist = _single(dist_dir, "tap_optico-*.tar.gz")
    wheel = _single(dist_dir, "tap_optico-*-py3-none-any.whl")
    assert sdist.stat().st_size > 0
    assert wheel.stat().st_size > 0


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_installed_distribution_runs_about(kind: str, dist_dir: Path, tmp_path: Path) -> None:
    pattern = "tap_optico-*-py3-none-any.whl" if kind == "wheel" else "tap_optico-*.tar.gz"
    artifact = _single(dist_dir, pattern)

    venv = tmp_path / "venv"
    uv = _uv()
    _run([uv, "venv", str(venv), "--python", sys.executable])
    bin_dir = venv / ("Scripts" if sys.platform == "win32" else "bin")
    venv_python = bin_dir / ("python.exe" if sys.platform == "win32" else "python")
    _run([uv, "pip", "install", "--python", str(venv_python), str(artifact)])

    tap = bin_dir / ("tap-optico.exe" if sys.platform == "win32" else "tap-optico")
    assert tap.exists(), f"console script missing from the {kind} install: {tap}"

    result = _run([str(tap), "--about", "--format", "json"], cwd=tmp_path)
    about: dict[str, Any] = json.loads(result.stdout)
    assert about["name"] == "tap-optico"
    settings = about["settings"]
    assert "api_key" in settings["properties"]


def test_wheel_holds_only_the_tap(dist_dir: Path) -> None:
    """The sandbox is its own distribution: no module of it ships in the tap's wheel."""
    wheel = _single(dist_dir, "tap_optico-*-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as archive:
        packages = {name.split("/")[0] for name in archive.namelist()}
        entry_points = archive.read(
            next(n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt"))
        ).decode()
    assert packages == {"tap_optico", wheel.name.split("-py3")[0] + ".dist-info"}
    assert "optico-sandbox" not in entry_points
    assert not any("sandbox" in name for name in packages)
