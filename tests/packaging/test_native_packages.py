"""The .deb and .rpm (packaging/build-deb.sh, build-rpm.sh): built, installed with apt-get on
this machine, run, validated, and purged without a trace; the rpm holds the deb's files.

Two sizes:

- **Always** (a CI-sized check, about a minute): the bundle is built from this checkout into
  a scratch directory (``VDAGENT_BRIDGE_DIST``), then both packages with quick compression
  (``VDAGENT_BRIDGE_FAST=1``: gzip -1 and zstd -3 instead of xz, which alone takes about a
  minute per package on 2 cores). Everything else is the release build's code path.
- **On request** (``VDAGENT_BRIDGE_PACKAGES=1``): the release packages with exactly the
  documented commands into ``dist/``, and lintian and rpmlint on them; every tag they report
  must be one that packaging/README.md explains.

Installing needs root (apt-get); as another user those tests skip and say so. The install is
undone in a ``finally`` even when a test fails: ``apt-get purge`` of the package and of any
dependency the install pulled in. The rpm is built where rpmbuild is (tests/run.sh installs
the Debian package rpm).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.xvfb import clean_display_env, private_xvfb
from vdagent_bridge import __version__, assets

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
APP_ID = assets.APP_ID
RELEASE = os.environ.get("VDAGENT_BRIDGE_PACKAGES") == "1"
IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="installing the .deb needs root "
                                "(apt-get install ./vdagent-bridge_*.deb); run as root")
needs_rpmbuild = pytest.mark.skipif(shutil.which("rpmbuild") is None,
                                    reason="rpmbuild is missing: apt-get install rpm")

#: What the package puts outside its own directory, and what its triggers rewrite: the trees
#: compared before the install and after the purge.
WATCHED = ["/usr/bin", "/usr/share/applications", "/usr/share/icons/hicolor",
           "/usr/share/metainfo", "/usr/share/doc/vdagent-bridge", "/usr/lib/vdagent-bridge"]


def run(*command: str | Path, timeout: float = 600, env: dict[str, str] | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True,
                            timeout=timeout, cwd=REPO, env=env)
    if check:
        assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"
    return result


def program(name: str, package: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is missing: install the Debian package {package} (tests/run.sh does)"
    return path


@dataclass
class Built:
    deb: Path
    rpm: Path | None
    seconds: float


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    start = time.monotonic()
    env = dict(os.environ)
    if RELEASE:
        dist = REPO / "dist"
        run("bash", "packaging/build-pyinstaller.sh", env=env)  # this checkout, not a stale one
    else:
        dist = tmp_path_factory.mktemp("dist")
        env.update(VDAGENT_BRIDGE_DIST=str(dist), VDAGENT_BRIDGE_FAST="1")
    run("bash", "packaging/build-deb.sh", env=env)
    if shutil.which("rpmbuild"):
        run("bash", "packaging/build-rpm.sh", env=env)
    deb = dist / f"vdagent-bridge_{__version__}_amd64.deb"
    rpm = dist / f"vdagent-bridge-{__version__}-1.x86_64.rpm"
    assert deb.is_file()
    return Built(deb, rpm if rpm.is_file() else None, time.monotonic() - start)


def deb_field(deb: Path, name: str) -> str:
    return run("dpkg-deb", "--field", deb, name).stdout.strip()


def deb_paths(deb: Path) -> dict[str, str]:
    """Installed path -> kind ("d", "-", "l") and mode, from the archive's listing."""
    paths = {}
    for line in run("dpkg-deb", "--contents", deb).stdout.splitlines():
        mode, _, _, _, _, name = line.split(None, 5)
        name = name.split(" -> ")[0].removeprefix(".")
        if name != "/":
            paths[name.rstrip("/")] = mode
    return paths


def pyproject_urls() -> dict[str, str]:
    urls: dict[str, str] = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["urls"]
    return urls


# ---------------------------------------------------------------- the .deb as built


def test_the_deb_is_named_and_versioned_from_the_package(built: Built) -> None:
    assert deb_field(built.deb, "Package") == "vdagent-bridge"
    assert deb_field(built.deb, "Version") == __version__
    assert deb_field(built.deb, "Architecture") == "amd64"
    assert deb_field(built.deb, "Homepage") == pyproject_urls()["Homepage"]


def test_the_deb_holds_the_bundle_launcher_entry_icons_metainfo_and_copyright(
    built: Built,
) -> None:
    paths = deb_paths(built.deb)
    share = "/usr/share"
    for required in ("/usr/lib/vdagent-bridge/vdagent-bridge",
                     "/usr/lib/vdagent-bridge/_internal/libpython3.11.so.1.0",
                     "/usr/bin/vdagent-bridge",
                     f"{share}/applications/{APP_ID}.desktop",
                     f"{share}/metainfo/{APP_ID}.metainfo.xml",
                     f"{share}/icons/hicolor/scalable/apps/{APP_ID}.svg",
                     f"{share}/doc/vdagent-bridge/copyright",
                     f"{share}/doc/vdagent-bridge/changelog.gz"):
        assert required in paths, required
    for size in assets.APP_ICON_SIZES:
        assert f"{share}/icons/hicolor/{size}x{size}/apps/{APP_ID}.png" in paths
    # Nothing else outside its own directory, and no maintainer scripts (the triggers of
    # hicolor-icon-theme and desktop-file-utils refresh the caches).
    outside = {p for p in paths if not p.startswith("/usr/lib/vdagent-bridge")}
    assert all(p.startswith(("/usr/bin", f"{share}/applications", f"{share}/metainfo",
                             f"{share}/icons/hicolor", f"{share}/doc/vdagent-bridge"))
               or p in ("/usr", "/usr/lib", share, f"{share}/icons", f"{share}/doc")
               for p in outside), sorted(outside)
    members = run("sh", "-c", f"dpkg-deb --ctrl-tarfile {built.deb} | tar -t").stdout.split()
    assert sorted(members) == ["./", "./control", "./md5sums"]


def test_shared_objects_are_not_executable_and_the_program_is(built: Built) -> None:
    paths = deb_paths(built.deb)
    assert paths["/usr/lib/vdagent-bridge/vdagent-bridge"] == "-rwxr-xr-x"
    objects = {p: m for p, m in paths.items() if re.search(r"\.so(\.[\d.]+)?$", p)}
    assert len(objects) > 100 and all(m in ("-rw-r--r--", "lrwxrwxrwx")
                                      for m in objects.values())


def is_elf(path: Path) -> bool:
    if path.is_symlink() or not path.is_file():
        return False
    with path.open("rb") as file:
        return file.read(4) == b"\x7fELF"


def needed_and_carried(root: Path) -> tuple[dict[str, set[str]], set[str]]:
    """The NEEDED sonames of the extracted tree's ELF files (soname -> users), and the names
    of the files the tree carries."""
    elves = [p for p in root.rglob("*") if is_elf(p)]
    needed: dict[str, set[str]] = {}
    for path in elves:
        dynamic = run("readelf", "-d", path).stdout
        for soname in re.findall(r"\(NEEDED\).*\[(.+)\]", dynamic):
            needed.setdefault(soname, set()).add(path.name)
    return needed, {p.name for p in root.rglob("*")}


def test_depends_names_the_packages_of_exactly_the_libraries_the_bundle_lacks(
    built: Built, tmp_path: Path
) -> None:
    run("dpkg-deb", "--extract", built.deb, tmp_path)
    needed, carried = needed_and_carried(tmp_path)
    missing = {soname for soname in needed if soname not in carried}
    # The system's side of a PyInstaller bundle: glibc, the GL/EGL dispatchers, libxcb and
    # the Wayland client libraries (PyInstaller leaves them out on purpose) …
    assert {"libc.so.6", "libGL.so.1", "libxcb.so.1", "libwayland-client.so.0"} <= missing
    # … and each comes from a package in Depends, and each package in Depends is needed.
    depends = {entry.split()[0] for entry in deb_field(built.deb, "Depends").split(", ")}
    owners = set()
    for soname in missing:
        where = run("sh", "-c", f"/sbin/ldconfig -p | grep -m1 -F '{soname} (libc6,x86-64)'")
        path = Path(where.stdout.split(" => ")[1].strip()).resolve()
        owner = run("dpkg-query", "--search", f"*/{path.name}").stdout.split(":")[0]
        owners.add(owner)
    assert owners == depends, (sorted(owners), sorted(depends))
    assert re.search(r"libc6 \(>= 2\.\d+\)", deb_field(built.deb, "Depends"))


def test_no_search_path_points_out_of_the_bundle(built: Built, tmp_path: Path) -> None:
    run("dpkg-deb", "--extract", built.deb, tmp_path)
    for path in (tmp_path / "usr/lib/vdagent-bridge").rglob("*.so*"):
        if not is_elf(path):
            continue
        for entry in re.findall(r"R(?:UN)?PATH\).*\[(.*)\]", run("readelf", "-d", path).stdout):
            assert all(p.startswith("$ORIGIN") for p in entry.split(":")), (path, entry)


def test_the_changelog_is_the_metainfos_releases(built: Built, tmp_path: Path) -> None:
    run("dpkg-deb", "--extract", built.deb, tmp_path)
    changelog = gzip.decompress(
        (tmp_path / "usr/share/doc/vdagent-bridge/changelog.gz").read_bytes()).decode()
    assert changelog.startswith(f"vdagent-bridge ({__version__}) unstable; urgency=medium\n")
    assert "First release" in changelog
    copyright_text = (tmp_path / "usr/share/doc/vdagent-bridge/copyright").read_text()
    assert f"Source: {pyproject_urls()['Homepage']}\n" in copyright_text


# ---------------------------------------------------------------- installed with apt-get


def snapshot() -> dict[str, str]:
    """Every path under the watched trees -> its kind and content digest (a symlink: its
    target)."""
    result = {}
    for top in WATCHED:
        base = Path(top)
        if not base.exists():
            continue
        for path in [base, *base.rglob("*")]:
            if path.is_symlink():
                result[str(path)] = f"l {os.readlink(path)}"
            elif path.is_dir():
                result[str(path)] = "d"
            elif path.is_file():
                result[str(path)] = "f " + hashlib.sha256(path.read_bytes()).hexdigest()
    for info in Path("/var/lib/dpkg/info").glob("vdagent-bridge*"):
        result[str(info)] = "dpkg info"
    return result


def installed_packages() -> set[str]:
    listing = run("dpkg-query", "--show", "--showformat",
                  "${Package}:${Architecture} ${db:Status-Status}\n").stdout
    return {line.split()[0] for line in listing.splitlines() if line.endswith(" installed")}


def apt_get(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return run("apt-get", "-y", "-q", *args, env=env, timeout=300)


@dataclass
class Installed:
    before: dict[str, str]
    listed: list[str]  # dpkg -L vdagent-bridge
    existed: set[str]  # the package's paths that were there before (/usr, /usr/share, …)
    pulled_in: set[str]  # dependencies the install added


@pytest.fixture(scope="module")
def installed(built: Built) -> Iterator[Installed]:
    if not IS_ROOT:
        pytest.skip("installing the .deb needs root (apt-get install ./vdagent-bridge_*.deb)")
    assert "vdagent-bridge:amd64" not in installed_packages(), \
        "vdagent-bridge is installed already: apt-get purge vdagent-bridge first"
    packages, before = installed_packages(), snapshot()
    existed = {path for path in deb_paths(built.deb) if os.path.lexists(path)}
    pulled_in: set[str] = set()
    try:
        apt_get("install", "--no-install-recommends", str(built.deb))
        pulled_in = installed_packages() - packages - {"vdagent-bridge:amd64"}
        listed = run("dpkg-query", "--listfiles", "vdagent-bridge").stdout.splitlines()
        yield Installed(before, listed, existed, pulled_in)
    finally:
        still = installed_packages() & ({"vdagent-bridge:amd64"} | pulled_in)
        if still:
            apt_get("purge", *sorted(still))


@needs_root
def test_apt_installs_a_launcher_on_the_path_that_runs_without_a_display(
    installed: Installed, tmp_path: Path
) -> None:
    assert shutil.which("vdagent-bridge") == "/usr/bin/vdagent-bridge"
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(HOME=str(tmp_path))
    assert run("vdagent-bridge", "--version", env=env).stdout == f"vdagent-bridge {__version__}\n"
    assert run("vdagent-bridge", "--help", env=env).stdout.startswith("usage: vdagent-bridge")
    assert "/usr/lib/vdagent-bridge/vdagent-bridge" in installed.listed


@needs_root
def test_the_installed_entry_and_metainfo_validate(installed: Installed) -> None:
    entry = f"/usr/share/applications/{APP_ID}.desktop"
    metainfo = f"/usr/share/metainfo/{APP_ID}.metainfo.xml"
    assert entry in installed.listed and metainfo in installed.listed
    result = run(program("desktop-file-validate", "desktop-file-utils"), entry)
    assert result.stdout + result.stderr == ""
    result = run(program("appstreamcli", "appstream"), "validate", "--no-net", "--strict",
                 "--pedantic", metainfo)
    assert "Validation was successful." in result.stdout
    assert "\nExec=vdagent-bridge\n" in Path(entry).read_text()  # /usr/bin, by the PATH


@needs_root
def test_the_icon_cache_trigger_ran(installed: Installed) -> None:
    cache = Path("/usr/share/icons/hicolor/icon-theme.cache")
    assert cache.is_file() and APP_ID.encode() in cache.read_bytes()


@needs_root
def test_the_installed_app_shows_its_windows_under_xvfb(
    installed: Installed, tmp_path: Path
) -> None:
    xdotool = program("xdotool", "xdotool")
    with private_xvfb(tmp_path, "1280x800x24", program("Xvfb", "xvfb")) as display:
        env = clean_display_env(display, HOME=str(tmp_path / "home"),
                                XDG_CONFIG_HOME=str(tmp_path / "config"),
                                XDG_STATE_HOME=str(tmp_path / "state"),
                                XDG_RUNTIME_DIR=str(tmp_path / "run"))
        (tmp_path / "run").mkdir(mode=0o700)
        app = subprocess.Popen(["vdagent-bridge", "--demo", "--seconds", "10"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            windows: list[str] = []
            deadline = time.monotonic() + 30
            while len(windows) < 2 and time.monotonic() < deadline and app.poll() is None:
                time.sleep(0.2)
                windows = run(xdotool, "search", "--onlyvisible", "--pid", str(app.pid),
                              env=env, check=False).stdout.split()
            if len(windows) != 2:
                if app.poll() is None:
                    app.kill()
                output, _ = app.communicate(timeout=10)
                raise AssertionError(f"the window and the demo guest's did not show ({windows}; "
                                     f"exit status {app.returncode}):\n{output}")
            titles = set()
            x = 0
            for window in windows:  # no window manager: side by side for the screenshot
                titles.add(run(xdotool, "getwindowname", window, env=env).stdout.strip())
                run(xdotool, "windowmove", window, str(x), "0", env=env)
                geometry = run(xdotool, "getwindowgeometry", "--shell", window, env=env).stdout
                x += int(re.search(r"WIDTH=(\d+)", geometry)[1]) + 10  # type: ignore[index]
            time.sleep(1.5)
            screenshot = tmp_path / "screenshot.png"
            run(program("import", "imagemagick"), "-window", "root", screenshot, env=env)
            assert screenshot.stat().st_size > 10_000
            assert titles == {"vdagent-bridge", "Demo guest — vdagent-bridge"}
            output, _ = app.communicate(timeout=40)
            assert app.returncode == 0, output
        finally:
            if app.poll() is None:
                app.kill()
                app.wait()
            if app.stdout is not None:
                app.stdout.close()
    keep = os.environ.get("VDAGENT_BRIDGE_PACKAGES_SCREENSHOT")
    if keep:  # where to keep the screenshot, to look at it
        shutil.copyfile(screenshot, keep)


@needs_root
def test_apt_get_purge_leaves_nothing_of_it_on_disk(installed: Installed) -> None:
    apt_get("purge", "vdagent-bridge", *sorted(installed.pulled_in))
    after = snapshot()
    assert after == installed.before, {
        "left": sorted(set(after) - set(installed.before)),
        "gone": sorted(set(installed.before) - set(after)),
        "changed": sorted(p for p in after.keys() & installed.before.keys()
                          if after[p] != installed.before[p]),
    }
    assert not [path for path in installed.listed
                if path.rstrip("/.") and path not in installed.existed
                and os.path.lexists(path)]


# ---------------------------------------------------------------- the .rpm


def rpm_query(rpm: Path, *query: str) -> list[str]:
    return run("rpm", "--query", "--package", *query, rpm).stdout.splitlines()


@needs_rpmbuild
def test_the_rpm_holds_the_files_of_the_deb(built: Built) -> None:
    assert built.rpm is not None
    deb = {path for path, mode in deb_paths(built.deb).items() if not mode.startswith("d")}
    rpm = {line.split()[0] for line in rpm_query(built.rpm, "--dump")
           if not stat.S_ISDIR(int(line.split()[4], 8))}
    # The one difference: the copyright file is the rpm's %license, and the changelog is in
    # the rpm's header instead of a file.
    assert deb - {"/usr/share/doc/vdagent-bridge/copyright",
                  "/usr/share/doc/vdagent-bridge/changelog.gz"} == \
        rpm - {"/usr/share/licenses/vdagent-bridge/copyright"}
    assert rpm_query(built.rpm, "--licensefiles") == \
        ["/usr/share/licenses/vdagent-bridge/copyright"]
    # Same modes, path for path (rpm --dump: path size mtime digest mode …).
    deb_modes = deb_paths(built.deb)
    for line in rpm_query(built.rpm, "--dump"):
        path, _, _, _, mode = line.split()[:5]
        if path in deb_modes:
            kind = {"l": 0o120000, "d": 0o040000, "-": 0o100000}[deb_modes[path][0]]
            assert int(mode, 8) & 0o170000 == kind, path
            assert stat.filemode(int(mode, 8)) == deb_modes[path], path


@needs_rpmbuild
def test_the_rpm_requires_only_what_the_bundle_lacks_and_provides_only_itself(
    built: Built,
) -> None:
    assert built.rpm is not None
    assert rpm_query(built.rpm, "--queryformat", "%{NAME} %{VERSION} %{RELEASE} %{ARCH} "
                     "%{URL}\n") == [f"vdagent-bridge {__version__} 1 x86_64 "
                                     f"{pyproject_urls()['Homepage']}"]
    requires = {line.split()[0] for line in rpm_query(built.rpm, "--requires")
                if not line.startswith("rpmlib(")}
    sonames = {r.split("(")[0] for r in requires}
    assert {"libc.so.6", "libGL.so.1", "libxcb.so.1", "libwayland-client.so.0"} <= sonames
    carried = {Path(p).name for p in rpm_query(built.rpm, "--list") if ".so" in p}
    assert not sonames & carried, sorted(sonames & carried)
    provides = {line.split()[0] for line in rpm_query(built.rpm, "--provides")}
    # Besides itself, only what rpm's AppStream generators read off the desktop entry and
    # the metainfo (a software centre finds the app by them); nothing of the bundle's.
    appstream = {p for p in provides if p.startswith(("application(", "metainfo("))}
    assert provides - appstream == {"vdagent-bridge", "vdagent-bridge(x86-64)"}
    assert not {p for p in appstream if ".so" in p}


# ---------------------------------------------------------------- linters (release builds)


def explained_tags() -> set[str]:
    """The tags packaging/README.md explains: its "lintian and rpmlint" table's first
    column."""
    readme = (REPO / "packaging" / "README.md").read_text()
    return set(re.findall(r"^\| `([a-z0-9-]+)` \|", readme, re.MULTILINE))


@pytest.mark.skipif(not RELEASE, reason="on request: VDAGENT_BRIDGE_PACKAGES=1 (release "
                    "compression and about 30 s of lintian)")
def test_lintian_reports_only_the_tags_packaging_readme_explains(built: Built) -> None:
    result = run(program("lintian", "lintian"), "--pedantic", built.deb, check=False)
    tags = set(re.findall(r"^[EWIPX]: vdagent-bridge: ([a-z0-9-]+)", result.stdout,
                          re.MULTILINE))
    assert tags <= explained_tags(), sorted(tags - explained_tags())


@pytest.mark.skipif(not RELEASE, reason="on request: VDAGENT_BRIDGE_PACKAGES=1")
@needs_rpmbuild
def test_rpmlint_reports_only_the_tags_packaging_readme_explains(built: Built) -> None:
    assert built.rpm is not None
    result = run(program("rpmlint", "rpmlint"), built.rpm, check=False)
    tags = set(re.findall(r"^\S+: [EW]: ([a-z0-9-]+)", result.stdout, re.MULTILINE))
    assert tags <= explained_tags(), sorted(tags - explained_tags())
