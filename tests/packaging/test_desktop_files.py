"""The shipped .desktop entry and AppStream metainfo, and ``--install-desktop-files`` /
``--uninstall-desktop-files``.

The validators are the Debian packages ``desktop-file-utils`` and ``appstream``; tests/run.sh
installs both, so a missing one fails these tests rather than skipping them.
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from vdagent_bridge import __version__, assets, desktop_files
from vdagent_bridge.cli import main

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
APP_ID = assets.APP_ID


def tool(name: str, package: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is missing: install the Debian package {package} (tests/run.sh does)"
    return path


def desktop_entry(path: Path) -> dict[str, str]:
    parser = configparser.RawConfigParser(interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read(path, encoding="utf-8")
    return dict(parser["Desktop Entry"])


def tree(root: Path) -> dict[str, tuple[str, bytes, int]]:
    """Everything under ``root``: path → (kind, content, mode)."""
    result = {}
    for path in sorted(root.rglob("*")):
        mode = stat.S_IMODE(path.lstat().st_mode)
        relative = str(path.relative_to(root))
        if path.is_dir():
            result[relative] = ("dir", b"", mode)
        else:
            result[relative] = ("file", path.read_bytes(), mode)
    return result


# ---------------------------------------------------------------- the shipped files


def test_the_desktop_entry_passes_desktop_file_validate_without_a_hint() -> None:
    result = subprocess.run([tool("desktop-file-validate", "desktop-file-utils"),
                             str(assets.desktop_file())], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout + result.stderr == ""


def test_the_metainfo_passes_appstreamcli_validate_strict_and_pedantic_offline() -> None:
    result = subprocess.run([tool("appstreamcli", "appstream"), "validate", "--no-net",
                             "--strict", "--pedantic", str(assets.metainfo_file())],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    # Not a single info, warning or pedantic hint (they are printed as "X: id:line: tag").
    assert "Validation was successful." in result.stdout
    assert not [line for line in result.stdout.splitlines() if line[:2] in {"E:", "W:",
                                                                             "I:", "P:"}]


def test_one_application_id_names_the_entry_the_component_and_the_icon() -> None:
    assert assets.desktop_file().name == f"{APP_ID}.desktop"
    assert desktop_entry(assets.desktop_file())["Icon"] == APP_ID
    assert assets.app_icon_svg().name == f"{APP_ID}.svg"
    component = ET.parse(assets.metainfo_file()).getroot()
    assert component.get("type") == "desktop-application"
    assert component.findtext("id") == APP_ID
    launchable = component.find("launchable")
    assert launchable is not None and launchable.get("type") == "desktop-id"
    assert launchable.text == f"{APP_ID}.desktop"


def test_the_entry_runs_the_command_the_wheel_installs_and_names_its_window_class() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    (command,) = pyproject["project"]["gui-scripts"]
    entry = desktop_entry(assets.desktop_file())
    assert entry["Exec"] == command == "vdagent-bridge"
    # QApplication(["vdagent-bridge"]) makes "vdagent-bridge" the X11 WM_CLASS instance.
    assert entry["StartupWMClass"] == "vdagent-bridge"
    assert entry["Type"] == "Application" and entry["Terminal"] == "false"
    component = ET.parse(assets.metainfo_file()).getroot()
    assert component.findtext("provides/binary") == command


def test_the_metainfo_release_is_the_package_version() -> None:
    component = ET.parse(assets.metainfo_file()).getroot()
    newest = component.find("releases/release")
    assert newest is not None and newest.get("version") == __version__


def test_the_metainfo_says_licence_content_rating_and_screenshots() -> None:
    component = ET.parse(assets.metainfo_file()).getroot()
    assert component.findtext("project_license") == "GPL-3.0-or-later"
    assert component.findtext("metadata_license") == "CC0-1.0"
    assert component.find("content_rating") is not None
    images = [Path(image.text or "").name for image in component.iter("image")]
    # Every screenshot in docs/ is in the software centre's gallery; the tray menu leads.
    assert sorted(images) == sorted(p.name for p in (REPO / "docs" / "screenshots").glob("*.png"))
    default = component.find("screenshots/screenshot[@type='default']/image")
    assert default is not None and Path(default.text or "").name == "tray-menu.png"


# ---------------------------------------------------------------- install / uninstall

COMMAND = ["/opt/my apps/bin/vdagent-bridge"]


def expected_files(home: Path) -> set[Path]:
    files = {
        home / "applications" / f"{APP_ID}.desktop",
        home / "icons" / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg",
        home / "metainfo" / f"{APP_ID}.metainfo.xml",
        home / desktop_files.MANIFEST,
    }
    files |= {home / "icons" / "hicolor" / f"{n}x{n}" / "apps" / f"{APP_ID}.png"
              for n in assets.APP_ICON_SIZES}
    return files


def test_install_writes_the_entry_icons_and_metainfo_into_the_data_home(tmp_path: Path) -> None:
    written = desktop_files.install(tmp_path, COMMAND)
    assert set(written) == expected_files(tmp_path)
    entry_path = tmp_path / "applications" / f"{APP_ID}.desktop"
    assert desktop_entry(entry_path)["Exec"] == '"/opt/my apps/bin/vdagent-bridge"'
    assert (tmp_path / "metainfo" / f"{APP_ID}.metainfo.xml").read_bytes() == \
        assets.metainfo_file().read_bytes()
    for n in assets.APP_ICON_SIZES:
        installed = tmp_path / "icons" / "hicolor" / f"{n}x{n}" / "apps" / f"{APP_ID}.png"
        assert installed.read_bytes() == assets.app_icon_png(n).read_bytes()
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o644 for path in written)
    result = subprocess.run([tool("desktop-file-validate", "desktop-file-utils"),
                             str(entry_path)], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == ""


def test_the_installed_tree_passes_appstreamcli_validate_tree(tmp_path: Path) -> None:
    # validate-tree reads a root with usr/share: there the metainfo's launchable must name an
    # installed .desktop entry (and the entry must be valid).
    desktop_files.install(tmp_path / "usr" / "share", COMMAND)
    result = subprocess.run([tool("appstreamcli", "appstream"), "validate-tree", "--no-net",
                             "--strict", "--pedantic", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "✔ Validation was successful."


def test_uninstall_leaves_an_empty_data_home_empty(tmp_path: Path) -> None:
    home = tmp_path / "share"
    home.mkdir()
    desktop_files.install(home, COMMAND)
    assert set(desktop_files.uninstall(home)) == expected_files(home)
    assert tree(home) == {}


def test_install_then_uninstall_touches_nothing_else(tmp_path: Path) -> None:
    # A data home in use: other apps' files, an empty directory the user made, a foreign file
    # in a directory the install will also use.
    (tmp_path / "applications").mkdir()
    (tmp_path / "applications" / "other.desktop").write_text("[Desktop Entry]\n")
    (tmp_path / "icons" / "hicolor" / "16x16" / "apps").mkdir(parents=True)
    (tmp_path / "icons" / "hicolor" / "48x48" / "apps").mkdir(parents=True, mode=0o700)
    (tmp_path / "icons" / "hicolor" / "48x48" / "apps" / "other.png").write_bytes(b"png")
    (tmp_path / "vdagent-bridge").mkdir()
    (tmp_path / "vdagent-bridge" / "keep").write_text("the app's own data")
    before = tree(tmp_path)

    desktop_files.install(tmp_path, COMMAND)
    installed = tree(tmp_path)
    assert set(installed) > set(before)
    assert {k: v for k, v in installed.items() if k in before} == before
    desktop_files.uninstall(tmp_path)

    assert tree(tmp_path) == before


def test_installing_twice_is_the_same_as_once(tmp_path: Path) -> None:
    desktop_files.install(tmp_path, COMMAND)
    once = tree(tmp_path)
    desktop_files.install(tmp_path, COMMAND)
    assert tree(tmp_path) == once
    desktop_files.uninstall(tmp_path)
    assert tree(tmp_path) == {}


def test_a_directory_the_install_made_stays_if_someone_else_uses_it_now(tmp_path: Path) -> None:
    desktop_files.install(tmp_path, COMMAND)
    other = tmp_path / "icons" / "hicolor" / "scalable" / "apps" / "other.svg"
    other.write_text("<svg/>")
    desktop_files.uninstall(tmp_path)
    assert set(tree(tmp_path)) == {"icons", "icons/hicolor", "icons/hicolor/scalable",
                                   "icons/hicolor/scalable/apps",
                                   "icons/hicolor/scalable/apps/other.svg"}


def test_uninstall_without_a_manifest_removes_the_files_and_no_directory(tmp_path: Path) -> None:
    desktop_files.install(tmp_path, COMMAND)
    (tmp_path / desktop_files.MANIFEST).unlink()
    desktop_files.uninstall(tmp_path)
    assert all(kind == "dir" for kind, _, _ in tree(tmp_path).values())


def test_uninstall_never_follows_a_manifest_out_of_the_data_home(tmp_path: Path) -> None:
    home, outside = tmp_path / "share", tmp_path / "precious"
    outside.mkdir()
    (outside / "file").write_text("keep")
    desktop_files.install(home, COMMAND)
    (home / desktop_files.MANIFEST).write_text(
        f'{{"files": ["../precious/file", "{outside / "file"}"], '
        f'"dirs": ["../precious", "{outside}"]}}')
    desktop_files.uninstall(home)
    assert (outside / "file").read_text() == "keep"


def test_uninstalling_what_is_not_installed_is_fine(tmp_path: Path) -> None:
    assert desktop_files.uninstall(tmp_path) == []
    assert tree(tmp_path) == {}


def test_an_existing_icon_cache_is_refreshed_and_none_is_created(tmp_path: Path) -> None:
    tool("gtk-update-icon-cache", "gtk-update-icon-cache")
    desktop_files.install(tmp_path, COMMAND)
    assert not (tmp_path / "icons" / "hicolor" / "icon-theme.cache").exists()
    assert not (tmp_path / "applications" / "mimeinfo.cache").exists()
    cache = tmp_path / "icons" / "hicolor" / "icon-theme.cache"
    cache.write_bytes(b"stale")
    desktop_files.install(tmp_path, COMMAND)
    assert cache.read_bytes() != b"stale"


def test_the_data_home_follows_xdg_data_home(tmp_path: Path) -> None:
    home = Path(os.path.expanduser("~"))
    assert desktop_files.data_home({"XDG_DATA_HOME": str(tmp_path)}) == tmp_path
    assert desktop_files.data_home({}) == home / ".local" / "share"
    assert desktop_files.data_home({"XDG_DATA_HOME": "rel"}) == home / ".local" / "share"


def test_the_entry_runs_the_launcher_that_did_the_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    launcher = tmp_path / "bin" / "vdagent-bridge"
    launcher.parent.mkdir()
    launcher.write_text("#!/bin/sh\n")
    monkeypatch.setattr(sys, "argv", [str(launcher), "--install-desktop-files"])
    assert desktop_files.launcher_command() == [str(launcher)]
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", "/opt/bundle/vdagent-bridge")
    assert desktop_files.launcher_command() == ["/opt/bundle/vdagent-bridge"]


# ---------------------------------------------------------------- the command line


def test_the_command_line_installs_and_uninstalls_and_says_what_it_did(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert main(["--install-desktop-files"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert sorted(out) == sorted(f"wrote {path}" for path in expected_files(tmp_path))
    assert main(["--uninstall-desktop-files"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert sorted(out) == sorted(f"removed {path}" for path in expected_files(tmp_path))
    assert tree(tmp_path) == {}
    assert main(["--uninstall-desktop-files"]) == 0
    assert capsys.readouterr().out == f"no desktop files of vdagent-bridge under {tmp_path}\n"


def test_an_unwritable_data_home_is_one_line_and_status_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("XDG_DATA_HOME", str(blocker))
    assert main(["--install-desktop-files"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("vdagent-bridge: cannot install the desktop files: ")


def test_install_and_uninstall_together_are_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--install-desktop-files", "--uninstall-desktop-files"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_an_install_without_its_resources_says_so_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def missing() -> Path:
        raise assets.ResourcesNotFound("the vdagent_bridge.resources package is missing")

    monkeypatch.setattr(assets, "resource_dir", missing)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert main(["--install-desktop-files"]) == 1
    assert main(["--demo"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "vdagent-bridge: the shipped desktop files are missing: the vdagent_bridge.resources "
        "package is missing",
        "vdagent-bridge: the vdagent_bridge.resources package is missing",
    ]
    assert not (tmp_path / "share").exists()


def test_the_metainfo_urls_are_the_project_home_named_in_pyproject() -> None:
    urls = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["urls"]
    component = ET.parse(assets.metainfo_file()).getroot()
    assert component.findtext("url[@type='homepage']") == urls["Homepage"]
    assert component.findtext("url[@type='bugtracker']") == urls["Issues"]
    # The screenshots are the README's, from the same repository.
    owner_repo = urls["Homepage"].removeprefix("https://github.com/")
    readme_shots = set(re.findall(r"\]\((docs/screenshots/[^)]+\.png)\)",
                                  (REPO / "README.md").read_text()))
    images = {image.text for image in component.iter("image")}
    assert readme_shots and {f"https://raw.githubusercontent.com/{owner_repo}/main/{shot}"
                             for shot in readme_shots} <= images
