"""The sdist and wheel as a user gets them: built with ``python -m build`` (the wheel from the
sdist), installed into a fresh virtual environment, run from outside the checkout.

Dependencies come from the package index (pip's cache makes it quick after the first run).
Builds with the test interpreter's ``build`` (the test extra has it), else with one installed
into a scratch environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import venv
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from vdagent_bridge import __version__, assets

REPO = Path(__file__).resolve().parents[2]
APP_ID = assets.APP_ID


def run(*command: str | Path, cwd: Path, env: dict[str, str] | None = None,
        timeout: float = 240) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"
    return result


def clean_env(**extra: str) -> dict[str, str]:
    """The environment minus a display, a Qt platform and any path into the checkout."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM", "PYTHONPATH"}}
    env.update(extra)
    return env


def make_venv(path: Path) -> Path:
    venv.EnvBuilder(with_pip=True, clear=True).create(path)
    return path / "bin" / "python"


@dataclass
class Built:
    wheel: Path
    sdist: Path
    python: Path  # of the fresh environment the wheel is installed in
    scratch: Path  # a directory outside the checkout


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    tmp = tmp_path_factory.mktemp("wheel")
    dist = tmp / "dist"
    # Asked from outside the checkout: its build/ directory would pass for the module here.
    has_build = subprocess.run([sys.executable, "-m", "build", "--version"], cwd=tmp,
                               env=clean_env(), capture_output=True).returncode == 0
    if has_build:
        builder = Path(sys.executable)
    else:
        builder = make_venv(tmp / "build-tool")
        run(builder, "-m", "pip", "install", "-q", "build", cwd=tmp)
    run(builder, "-m", "build", "--outdir", dist, REPO, cwd=tmp, env=clean_env())
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    python = make_venv(tmp / "venv")
    run(python, "-m", "pip", "install", "-q", wheel, cwd=tmp, env=clean_env())
    yield Built(wheel, sdist, python, tmp)


def test_the_version_comes_from_the_package(built: Built) -> None:
    assert built.wheel.name == f"vdagent_bridge-{__version__}-py3-none-any.whl"
    assert built.sdist.name == f"vdagent_bridge-{__version__}.tar.gz"
    result = run(built.python.parent / "vdagent-bridge", "--version", cwd=built.scratch,
                 env=clean_env())
    assert result.stdout == f"vdagent-bridge {__version__}\n"


def test_help_runs_from_the_installed_wheel_without_a_display(built: Built) -> None:
    result = run(built.python.parent / "vdagent-bridge", "--help", cwd=built.scratch,
                 env=clean_env())
    assert result.stdout.startswith("usage: vdagent-bridge")
    assert "--install-desktop-files" in result.stdout and result.stderr == ""


def test_the_wheel_carries_the_code_icons_entry_and_metainfo(built: Built) -> None:
    names = set(zipfile.ZipFile(built.wheel).namelist())
    resources = {f"vdagent_bridge/resources/{p.relative_to(REPO / 'resources')}"
                 for p in (REPO / "resources").rglob("*")
                 if p.is_file() and "__pycache__" not in p.parts}
    code = {str(p.relative_to(REPO / "app")) for p in (REPO / "app").rglob("*.py")}
    assert resources <= names and code <= names
    assert f"vdagent_bridge/resources/{APP_ID}.metainfo.xml" in names
    assert not [n for n in names if n.startswith(("tests/", "docs/", "packaging/"))]


def test_the_sdist_carries_what_it_takes_to_test_and_rebuild(built: Built) -> None:
    with tarfile.open(built.sdist) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    for required in ("README.md", "pyproject.toml", "setup.py", "MANIFEST.in",
                     f"resources/{APP_ID}.desktop", "resources/status/16x16/error.png",
                     "tests/run.sh", "tests/packaging/test_wheel.py",
                     "packaging/vdagent-bridge.spec", "packaging/render_icons.py",
                     "benchmarks/engine.py", "docs/screenshots/window.png",
                     "app/vdagent_bridge/cli.py"):
        assert required in names, required
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_the_installed_wheel_finds_and_draws_its_own_icons(built: Built) -> None:
    script = (
        "from PySide6.QtWidgets import QApplication\n"
        "app = QApplication([])\n"
        "from vdagent_bridge.assets import resource_dir\n"
        "from vdagent_bridge.ui.icons import app_icon, status_icon\n"
        "from vdagent_bridge.ui.model import IconState\n"
        "print(resource_dir())\n"
        "assert not app_icon().isNull()\n"
        "for state in IconState:\n"
        "    assert status_icon(state).pixmap(22, 22).width() == 22\n"
    )
    result = run(built.python, "-c", script, cwd=built.scratch,
                 env=clean_env(QT_QPA_PLATFORM="offscreen"))
    where = Path(result.stdout.strip())
    assert where.is_relative_to(built.python.parent.parent) and where.name == "resources"


def test_the_installed_wheel_installs_and_uninstalls_its_desktop_files(built: Built) -> None:
    share = built.scratch / "share"
    env = clean_env(XDG_DATA_HOME=str(share))
    launcher = built.python.parent / "vdagent-bridge"
    written = run(launcher, "--install-desktop-files", cwd=built.scratch, env=env)
    assert len(written.stdout.splitlines()) == len(assets.APP_ICON_SIZES) + 4
    entry = (share / "applications" / f"{APP_ID}.desktop").read_text()
    assert f"\nExec={launcher}\n" in entry  # the venv's launcher: no PATH needed
    svg = share / "icons" / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg"
    assert svg.read_bytes() == (REPO / "resources" / "icons" / "hicolor" / "scalable" / "apps"
                                / f"{APP_ID}.svg").read_bytes()
    run(launcher, "--uninstall-desktop-files", cwd=built.scratch, env=env)
    assert list(share.rglob("*")) == []


def test_an_editable_install_finds_the_checkouts_resources(built: Built) -> None:
    # Last: it replaces the wheel in the environment.
    run(built.python, "-m", "pip", "install", "-q", "--no-deps", "-e", REPO, cwd=built.scratch,
        env=clean_env())
    result = run(built.python, "-c",
                 "from vdagent_bridge.assets import resource_dir; print(resource_dir())",
                 cwd=built.scratch, env=clean_env())
    assert Path(result.stdout.strip()) == REPO / "resources"
