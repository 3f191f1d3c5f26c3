"""The .deb and .rpm of the PyInstaller one-folder bundle (run by build-deb.sh and build-rpm.sh).

    python3 packaging/native_packages.py deb|rpm BUNDLE OUTDIR [--fast]

Both packages hold the same tree (``stage``), built from the bundle and nothing else, so the
package installs exactly what the bundle carries:

    /usr/lib/vdagent-bridge/                 the bundle (vdagent-bridge and _internal/)
    /usr/bin/vdagent-bridge                  -> ../lib/vdagent-bridge/vdagent-bridge
    /usr/share/applications/<id>.desktop     the bundle's copies of resources/
    /usr/share/metainfo/<id>.metainfo.xml
    /usr/share/icons/hicolor/{NxN,scalable}/apps/<id>.{png,svg}
    /usr/share/doc/vdagent-bridge/{copyright,changelog.gz}     (deb)
    /usr/share/licenses/vdagent-bridge/copyright               (rpm: %license)

What the package needs from the system is read off the bundle, not written down by hand:
every ELF file's NEEDED entries (``readelf -d``) that no file of the bundle satisfies. For the
.deb each of those sonames is found where the dynamic linker finds it (``ldconfig -p``), the
Debian package holding that file (``dpkg-query -S``), and the dependency that package declares
for binaries linked against it (its shlibs file, else the header of its symbols file: the
data dpkg-shlibdeps uses). For the .rpm, rpmbuild's own ELF dependency generator writes the
requirements, told to leave out the sonames the bundle carries and to provide nothing from
the private directory.

No maintainer scripts: the icon cache and the desktop database are refreshed by the file
triggers of the packages that own those caches (Debian: hicolor-icon-theme and
desktop-file-utils declare ``interest-noawait`` on /usr/share/icons/hicolor and
/usr/share/applications; Fedora: the same packages' %transfiletriggerin).

The version is ``vdagent_bridge.__version__``; the homepage, summary, description and
changelog come from pyproject.toml and the AppStream metainfo. Errors are one line on stderr
and exit status 1.
"""

from __future__ import annotations

import argparse
import email.utils
import gzip
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
NAME = "vdagent-bridge"
#: Where the bundle goes: a private directory under /usr/lib (FHS: "object files, libraries
#: and internal binaries that are not intended to be executed directly by users").
PRIVATE = Path("usr/lib") / NAME
DEB_ARCH, RPM_ARCH = "amd64", "x86_64"
ELF_MAGIC = b"\x7fELF"


class PackagingError(Exception):
    """A one-line reason the package cannot be built."""


# ---------------------------------------------------------------- what the project says


@dataclass(frozen=True)
class Project:
    version: str
    app_id: str
    homepage: str
    issues: str
    license: str
    maintainer: str  # "Name <address>"
    summary: str  # the metainfo's <summary>: one line, no final period
    description: list[str]  # the metainfo's <description> as paragraphs and "- " items
    releases: list[tuple[str, str, str]]  # (version, date, text), newest first


def project() -> Project:
    """The facts the packages carry, each read from the one place the project keeps it."""
    sys.path.insert(0, str(REPO / "app"))
    from vdagent_bridge import __version__, assets

    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    (maintainer,) = meta["maintainers"]
    component = ET.parse(REPO / "resources" / f"{assets.APP_ID}.metainfo.xml").getroot()
    description: list[str] = []
    for element in component.find("description") or []:
        if element.tag == "p":
            description.append(" ".join((element.text or "").split()))
        else:
            description += [f"- {' '.join((li.text or '').split())}" for li in element]
    releases = [(r.get("version", ""), r.get("date", ""),
                 " ".join(" ".join(p.itertext()) for p in r.iter("p")).strip())
                for r in component.iter("release")]
    return Project(
        version=__version__,
        app_id=assets.APP_ID,
        homepage=meta["urls"]["Homepage"],
        issues=meta["urls"]["Issues"],
        license=meta["license"],
        maintainer=f"{maintainer['name']} <{maintainer['email']}>",
        summary=component.findtext("summary", "").strip(),
        description=description,
        releases=releases,
    )


# ---------------------------------------------------------------- the tree both packages hold


def is_elf(path: Path) -> bool:
    if path.is_symlink() or not path.is_file():
        return False
    with path.open("rb") as file:
        return file.read(4) == ELF_MAGIC


def stage(bundle: Path, root: Path, info: Project) -> None:
    """Lay out the installed tree under ``root`` (see the module docstring), with the modes
    a package must have: directories and executables 0755, everything else 0644."""
    if not (bundle / NAME).is_file() or not (bundle / "_internal").is_dir():
        raise PackagingError(f"{bundle} is not the PyInstaller bundle (no {NAME}, _internal)")
    private = root / PRIVATE
    shutil.copytree(bundle, private, symlinks=True)
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin" / NAME).symlink_to(Path("..") / "lib" / NAME / NAME)

    resources = private / "_internal" / "vdagent_bridge" / "resources"
    share = root / "usr/share"
    copies = {
        resources / f"{info.app_id}.desktop": share / "applications" / f"{info.app_id}.desktop",
        resources / f"{info.app_id}.metainfo.xml":
            share / "metainfo" / f"{info.app_id}.metainfo.xml",
    }
    icons = resources / "icons" / "hicolor"
    for icon in sorted(icons.glob(f"*/apps/{info.app_id}.*")):
        copies[icon] = share / "icons" / "hicolor" / icon.relative_to(icons)
    for source, target in copies.items():
        if not source.is_file():
            raise PackagingError(f"the bundle lacks {source.relative_to(private)}")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)

    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        # Shared objects are mapped, not executed: no execute bit (Debian policy 8.1).
        executable = path.is_dir() or (path.stat().st_mode & stat.S_IXUSR
                                       and not is_shared_object(path))
        path.chmod(0o755 if executable else 0o644)
    fix_binaries(private)


def is_shared_object(path: Path) -> bool:
    return re.search(r"\.so(\.[\d.]+)?$", path.name) is not None


def fix_binaries(private: Path) -> None:
    """Make the bundle's shared objects what a distribution ships, as dh_strip and Debian
    policy 10.2 would (the bundle itself, for check-pyinstaller.sh, is left as built):

    - strip them (``strip --strip-unneeded``, and the .comment and .note sections): the
      build machine's Python (pyenv here) carries its symbol tables and debug information;
    - drop search paths that point out of the bundle (``patchelf``): such a Python's
      extension modules have RUNPATH set to its own lib directory, a directory that on the
      user's machine may not exist, or may hold other libraries. ``$ORIGIN`` paths stay.

    The bootloader (the ``vdagent-bridge`` executable) is not touched: PyInstaller finds its
    archive through the file's own layout.
    """
    objects = sorted(p for p in private.rglob("*") if is_shared_object(p) and is_elf(p))
    for start in range(0, len(objects), 200):
        run("strip", "--strip-unneeded", "--remove-section=.comment",
            "--remove-section=.note", *map(str, objects[start:start + 200]))
    for path in objects:
        dynamic = run("readelf", "--dynamic", "--wide", str(path))
        match = re.search(r"\((?:RUNPATH|RPATH)\)\s+Library r(?:un)?path: \[(.*)\]", dynamic)
        if match is None:
            continue
        entries = match[1].split(":")
        kept = [entry for entry in entries if entry.startswith("$ORIGIN")]
        if kept == entries:
            continue
        if shutil.which("patchelf") is None:
            raise PackagingError(f"patchelf is missing (apt-get install patchelf): "
                                 f"{path.name} has RUNPATH {match[1]}")
        if kept:
            run("patchelf", "--set-rpath", ":".join(kept), str(path))
        else:
            run("patchelf", "--remove-rpath", str(path))


def bundled_sonames(root: Path) -> set[str]:
    """The library names the bundle satisfies: its files' names (symlinks included)."""
    return {path.name for path in (root / PRIVATE).rglob("*") if ".so" in path.name}


def needed(files: list[Path]) -> dict[str, set[Path]]:
    """soname -> the files whose dynamic section names it (NEEDED), from ``readelf -d``."""
    result: dict[str, set[Path]] = {}
    for start in range(0, len(files), 200):
        chunk = files[start:start + 200]
        output = run("readelf", "--dynamic", "--wide", *map(str, chunk))
        current: Path | None = None if len(chunk) > 1 else chunk[0]
        for line in output.splitlines():
            if line.startswith("File: "):
                current = Path(line[len("File: "):])
            match = re.search(r"\(NEEDED\)\s+Shared library: \[(.+)\]", line)
            if match and current is not None:
                result.setdefault(match[1], set()).add(current)
    return result


def external_sonames(root: Path) -> dict[str, set[Path]]:
    """The sonames the bundle's ELF files need and the bundle does not carry."""
    elves = sorted(path for path in (root / PRIVATE).rglob("*") if is_elf(path))
    inside = bundled_sonames(root)
    return {soname: users for soname, users in needed(elves).items() if soname not in inside}


def run(*command: str, input: str | None = None) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, input=input)
    except FileNotFoundError as err:
        raise PackagingError(f"{command[0]} is missing") from err
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip().splitlines()
        raise PackagingError(f"{' '.join(command[:2])} failed: "
                             f"{message[-1] if message else result.returncode}")
    return result.stdout


# ---------------------------------------------------------------- .deb


def ld_cache() -> dict[str, Path]:
    """soname -> file, for x86-64, as the dynamic linker finds it (``ldconfig -p``)."""
    cache: dict[str, Path] = {}
    for line in run("/sbin/ldconfig", "-p").splitlines()[1:]:
        match = re.match(r"\s*(\S+) \(([^)]*)\) => (\S+)$", line)
        if match and "x86-64" in match[2]:
            cache.setdefault(match[1], Path(match[3]))
    return cache


def owning_package(path: Path) -> str:
    """The Debian package (``name:arch``) that ships ``path``, under any of its names (merged
    /usr: /lib/… and /usr/lib/… are one file, but dpkg knows one of them)."""
    candidates = [path, path.resolve()]
    for candidate in list(candidates):
        text = str(candidate)
        candidates.append(Path(text[4:] if text.startswith("/usr/") else "/usr" + text))
    for candidate in candidates:
        result = subprocess.run(["dpkg-query", "--search", str(candidate)],
                                capture_output=True, text=True)
        if result.returncode == 0:
            package = result.stdout.split(": ", 1)[0]
            if ", " not in package:
                return package
    raise PackagingError(f"no Debian package ships {path}")


def declared_dependency(package: str, soname: str) -> str:
    """The dependency ``package`` declares for binaries linked against ``soname``: its shlibs
    line for the library, else the header of its symbols file (without #MINVER#)."""
    match = re.match(r"(.+)\.so\.(.+)$", soname) or re.match(r"(.+)-(\d[\d.]*)\.so$", soname)
    if not match:
        raise PackagingError(f"cannot read the library name and version of {soname}")
    name, soversion = match[1], match[2]
    shlibs = subprocess.run(["dpkg-query", "--control-show", package, "shlibs"],
                            capture_output=True, text=True).stdout
    for line in shlibs.splitlines():
        fields = line.split(None, 2)
        if len(fields) == 3 and fields[0] == name and fields[1] == soversion:
            return fields[2].strip()
    symbols = subprocess.run(["dpkg-query", "--control-show", package, "symbols"],
                             capture_output=True, text=True).stdout
    for line in symbols.splitlines():
        if line.startswith(f"{soname} "):
            return line.split(None, 1)[1].replace("#MINVER#", "").strip()
    raise PackagingError(f"{package} declares no dependency for {soname} (no shlibs, symbols)")


def deb_depends(root: Path) -> list[str]:
    """The Depends of the .deb: one entry per library package, sorted."""
    cache = ld_cache()
    depends: set[str] = set()
    for soname, users in sorted(external_sonames(root).items()):
        if soname not in cache:
            user = sorted(users)[0].relative_to(root)
            raise PackagingError(f"{soname} (needed by /{user}) is not installed here")
        depends.add(declared_dependency(owning_package(cache[soname]), soname))
    return sorted(depends)


def copyright_file(info: Project) -> str:
    """A machine-readable debian/copyright (DEP-5) for the installed files."""
    return textwrap.dedent(f"""\
        Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
        Upstream-Name: {NAME}
        Upstream-Contact: {info.issues}
        Source: {info.homepage}

        Files: *
        Copyright: 2026 vdagent-bridge developers
        License: GPL-3+

        Files: usr/lib/{NAME}/_internal/*
        Copyright: the authors of each bundled component
        License: various
         The PyInstaller bundle carries, besides vdagent-bridge itself, the Python
         interpreter and standard library (PSF-2.0), PySide6 and shiboken6 with Qt 6
         (LGPL-3), qasync (BSD-2-Clause), construct (MIT), platformdirs (MIT),
         qemu.qmp (LGPL-2+ / GPL-2+), and shared libraries from Debian 12 packages
         (GTK 3, GLib, ICU, OpenSSL, X11/xcb and others), each under its own licence;
         see https://github.com/pyinstaller/pyinstaller for the bootloader (GPL-2+ with
         an exception for bundled programs).

        License: GPL-3+
         This program is free software: you can redistribute it and/or modify it under
         the terms of the GNU General Public License as published by the Free Software
         Foundation, either version 3 of the License, or (at your option) any later
         version.
         .
         On Debian systems, the complete text of the GNU General Public License
         version 3 can be found in "/usr/share/common-licenses/GPL-3".
        """)


def rfc2822(date: str) -> str:
    moment = datetime.strptime(date, "%Y-%m-%d").replace(tzinfo=timezone.utc)
    return email.utils.format_datetime(moment)


def debian_changelog(info: Project) -> str:
    entries = []
    for version, date, text in info.releases:
        body = textwrap.fill(text, width=76, initial_indent="  * ", subsequent_indent="    ")
        entries.append(f"{NAME} ({version}) unstable; urgency=medium\n\n{body}\n\n"
                       f" -- {info.maintainer}  {rfc2822(date)}\n")
    return "\n".join(entries)


def deb_description(info: Project) -> str:
    lines = [info.summary]
    for paragraph in info.description:
        if lines[1:] and not paragraph.startswith("- "):
            lines.append(" .")
        bullet = paragraph.startswith("- ")  # a list: indented, so it is shown verbatim
        lines += textwrap.wrap(paragraph, width=76, initial_indent="  " if bullet else " ",
                               subsequent_indent="    " if bullet else " ")
    return "\n".join(lines)


def build_deb(bundle: Path, outdir: Path, fast: bool) -> Path:
    info = project()
    with tempfile.TemporaryDirectory(prefix="vdagent-bridge-deb.") as scratch:
        root = Path(scratch) / "root"
        stage(bundle, root, info)
        doc = root / "usr/share/doc" / NAME
        doc.mkdir(parents=True)
        (doc / "copyright").write_text(copyright_file(info))
        with (doc / "changelog.gz").open("wb") as raw, \
                gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as out:
            out.write(debian_changelog(info).encode())
        for path in doc.iterdir():
            path.chmod(0o644)
        doc.chmod(0o755)
        doc.parent.chmod(0o755)

        control = root / "DEBIAN"
        control.mkdir(mode=0o755)
        files = sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()
                       and control not in p.parents)
        installed_kib = sum((p.stat().st_size + 1023) // 1024 for p in files)
        (control / "md5sums").write_text(md5sums(root, files))
        (control / "control").write_text(
            f"Package: {NAME}\n"
            f"Version: {info.version}\n"
            f"Architecture: {DEB_ARCH}\n"
            f"Maintainer: {info.maintainer}\n"
            f"Installed-Size: {installed_kib}\n"
            f"Depends: {', '.join(deb_depends(root))}\n"
            "Section: utils\n"
            "Priority: optional\n"
            f"Homepage: {info.homepage}\n"
            f"Description: {deb_description(info)}\n"
        )
        for path in control.iterdir():
            path.chmod(0o644)
        outdir.mkdir(parents=True, exist_ok=True)
        deb = outdir / f"{NAME}_{info.version}_{DEB_ARCH}.deb"
        # xz: what every dpkg reads (lintian calls a zstd member malformed); gzip -1 is the
        # quick build of the always-on test.
        compression = ["-Zgzip", "-z1"] if fast else ["-Zxz", "-z6"]
        run("dpkg-deb", "--root-owner-group", *compression, "--build", str(root), str(deb))
    return deb


def md5sums(root: Path, files: list[Path]) -> str:
    """DEBIAN/md5sums: one ``md5sum`` run over all files (paths relative to the root)."""
    relative = [str(p.relative_to(root)) for p in files]
    result = subprocess.run(["md5sum", "--", *relative], cwd=root, capture_output=True,
                            text=True, check=True)
    return result.stdout


# ---------------------------------------------------------------- .rpm


def rpm_changelog(info: Project) -> str:
    entries = []
    for version, date, text in info.releases:
        day = datetime.strptime(date, "%Y-%m-%d").strftime("%a %b %d %Y")
        body = textwrap.fill(text, width=76, initial_indent="- ", subsequent_indent="  ")
        entries.append(f"* {day} {info.maintainer} - {version}-1\n{body}\n")
    return "\n".join(entries)


def rpm_files(root: Path) -> str:
    """The %files list: every file and symlink of the tree, the directories the package
    owns (its private tree, its doc and licence directories), not the shared ones."""
    lines = []
    owned_dirs = [root / PRIVATE, root / "usr/share/licenses" / NAME]
    for path in sorted(root.rglob("*")):
        relative = "/" + str(path.relative_to(root))
        if path.is_dir() and not path.is_symlink():
            if any(path == d or d in path.parents for d in owned_dirs):
                lines.append(f"%dir \"{relative}\"")
        elif path.parent == root / "usr/share/licenses" / NAME:
            lines.append(f"%license \"{relative}\"")
        else:
            lines.append(f"\"{relative}\"")
    return "\n".join(lines)


def rpm_spec(info: Project, root: Path, fast: bool) -> str:
    # Requires written out, not rpm's automatic ones: rpm took a __requires_exclude of every
    # carried soname without effect (its macro expansion of the long regex), and would then
    # require the Qt libraries the bundle carries. Written from the same reading of the
    # bundle as the deb's Depends: the sonames its ELF files need and it does not carry.
    requires = "\n".join(f"Requires:       {soname}()(64bit)"
                          for soname in sorted(external_sonames(root)))
    payload = "w3T.zstdio" if fast else "w6T.xzdio"
    description = "\n\n".join(textwrap.fill(p, width=76) for p in info.description)
    return f"""\
# Generated by packaging/native_packages.py from the PyInstaller bundle.
# The bundle is built already: no %prep or %build, no stripping, byte-compiling or debug
# package (the brp scripts would rewrite PyInstaller's files).
%global __os_install_post %{{nil}}
%global __arch_install_post %{{nil}}
%global debug_package %{{nil}}
%global _build_id_links none
%global _binary_payload {payload}
# The bundle's own libraries satisfy each other: provide nothing from the private directory,
# require only what the bundle does not carry.
%global __provides_exclude_from ^/{PRIVATE}/.*$

Name:           {NAME}
Version:        {info.version}
Release:        1
Summary:        {info.summary}
License:        {info.license}
URL:            {info.homepage}
BugURL:         {info.issues}
Packager:       {info.maintainer}
AutoReq:        no
{requires}

%description
{description}

%install
cp -a "{root}/." "%{{buildroot}}/"

%files
{rpm_files(root)}

%changelog
{rpm_changelog(info)}"""


def build_rpm(bundle: Path, outdir: Path, fast: bool) -> Path:
    if shutil.which("rpmbuild") is None:
        raise PackagingError("rpmbuild is missing: install the Debian package rpm "
                             "(apt-get install rpm)")
    info = project()
    with tempfile.TemporaryDirectory(prefix="vdagent-bridge-rpm.") as scratch:
        root = Path(scratch) / "root"
        stage(bundle, root, info)
        licenses = root / "usr/share/licenses" / NAME
        licenses.mkdir(parents=True, mode=0o755)
        (licenses / "copyright").write_text(copyright_file(info))
        (licenses / "copyright").chmod(0o644)
        spec = Path(scratch) / f"{NAME}.spec"
        spec.write_text(rpm_spec(info, root, fast))
        top = Path(scratch) / "rpmbuild"
        run("rpmbuild", "-bb", "--target", RPM_ARCH, "--define", f"_topdir {top}",
            "--define", "_rpmfilename %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm",
            "--nodeps", str(spec))
        (built,) = (top / "RPMS").glob("*.rpm")
        outdir.mkdir(parents=True, exist_ok=True)
        rpm = outdir / f"{NAME}-{info.version}-1.{RPM_ARCH}.rpm"
        shutil.move(built, rpm)
    return rpm


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="native_packages.py", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["deb", "rpm"])
    parser.add_argument("bundle", type=Path, help="the one-folder bundle (dist/vdagent-bridge)")
    parser.add_argument("outdir", type=Path, help="where the package is written")
    parser.add_argument("--fast", action="store_true",
                        help="quick compression: gzip -1 / zstd -3 instead of xz -6 (the "
                             "always-on test's builds)")
    args = parser.parse_args(argv)
    try:
        build = build_deb if args.kind == "deb" else build_rpm
        print(build(args.bundle.resolve(), args.outdir.resolve(), args.fast))
    except PackagingError as err:
        print(f"build-{args.kind}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
