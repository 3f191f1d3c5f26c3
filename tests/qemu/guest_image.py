"""Build (and cache) the guest for the QEMU live-migration tests: a kernel and an initramfs.

Why: the bridge must carry the agent conversation across a real QEMU live migration, so a few
tests run two real QEMUs with the real ``spice-vdagentd``/``spice-vdagent`` inside.  A disk
image would be slow to make and to boot under TCG; a Debian *cloud* kernel plus an initramfs
assembled from the host's own binaries boots to a ready agent in a few seconds.

The guest (see guest_init.sh, its /init) holds:

- ``busybox`` (static) for the shell and the small tools (``sha256sum``, ``base64``, ``dd`` ...);
- ``spice-vdagentd``, ``spice-vdagent``, ``Xvfb``, ``xkbcomp``, ``xclip``, ``evilwm`` (a tiny
  window manager: without one the session agent waits 0.9 s for it at every start) and
  ``xprop``/``xdpyinfo`` (x11-utils: wait for the window manager, read the screen size), with
  every shared library ``ldd`` lists for them;
- the virtio modules (cloud kernels build them as modules), loaded with ``insmod`` in order;
- the xkb data, the C.UTF-8 locale, a writable ``/var/lib/xkb``.

Everything is copied from the host, so the host must have the Debian packages in
:data:`HOST_PACKAGES`; the kernel package is downloaded with ``apt-get download`` (never
installed).  The result is cached under :func:`cache_dir`, keyed by a hash of every input
(this file, guest_init.sh, the kernel package version, and path/size/mtime of every host file
copied), so a rebuild happens only when something changed.

Plain stdlib; usable as a script: ``python tests/qemu/guest_image.py [--force]`` builds and prints
the paths; ``--packages`` prints :data:`HOST_PACKAGES` (for the test script's apt-get install).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import gzip
import hashlib
import io
import json
import lzma
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

HOST_PACKAGES: tuple[str, ...] = (
    "qemu-system-x86",
    "busybox-static",
    "spice-vdagent",
    "xvfb",
    "xclip",
    "x11-xkb-utils",
    "x11-utils",
    "evilwm",
)
"""Debian packages the host needs to build the guest and run the QEMU tests.  The guest kernel
(``linux-image-*-cloud-amd64``) is downloaded, not installed, so it is not listed."""

KERNEL_META_PACKAGE = "linux-image-cloud-amd64"
"""Debian meta package whose dependency names the current cloud kernel."""

AGENT_PORT_NAME = "com.redhat.spice.0"
"""The virtserialport name spice-vdagentd opens."""

CMD_PORT_NAME = "org.vdagent-bridge.cmd"
"""The virtserialport name of the test command channel (guest_init.sh ``cmd_loop``)."""

VIRTIO_MODULES: tuple[str, ...] = (
    "virtio_ring",
    "virtio",
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio_pci",
    "virtio_console",
)
"""Loaded in this order (no modules.dep in the guest).  Built-in ones are skipped."""

GUEST_PROGRAMS: dict[str, str] = {
    "/usr/bin/busybox": "busybox",
    "/usr/sbin/spice-vdagentd": "spice-vdagentd",
    "/usr/bin/spice-vdagent": "spice-vdagent",
    "/usr/bin/Xvfb": "Xvfb",
    "/usr/bin/xkbcomp": "xkbcomp",
    "/usr/bin/xclip": "xclip",
    "/usr/bin/xprop": "xprop",
    "/usr/bin/xdpyinfo": "xdpyinfo",
    "/usr/bin/evilwm": "evilwm",
}
"""Guest path -> host program name.  Xvfb runs ``/usr/bin/xkbcomp`` through ``/bin/sh``, so
the paths matter."""

GUEST_TREES: tuple[str, ...] = ("/usr/share/X11/xkb", "/usr/lib/locale/C.utf8")
"""Host directories copied whole."""

BUILD_TOOLS: tuple[str, ...] = ("apt-get", "apt-cache", "dpkg-deb", "ldd")
"""Host programs the build runs (besides the guest programs)."""

INIT_SCRIPT = Path(__file__).with_name("guest_init.sh")
FORMAT = 1  # bump to invalidate every cached image
_SEARCH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_KEEP_IMAGES = 3  # cached guest images kept (most recently used first)


class ImageBuildError(RuntimeError):
    """The guest image cannot be built (missing host tool, download failure, bad ldd...)."""


@dataclass(frozen=True)
class GuestImage:
    """A built guest: pass :attr:`kernel` to ``-kernel`` and :attr:`initrd` to ``-initrd``."""

    kernel: Path
    initrd: Path
    key: str
    """Hash of the inputs (the cache directory's name)."""
    kernel_package: str
    """``name=version`` of the Debian kernel package used."""
    built: bool
    """True if this call built it, False if it came from the cache."""
    seconds: float
    """Time this call took (build, or cache lookup)."""

    @property
    def initrd_size(self) -> int:
        return self.initrd.stat().st_size


# --------------------------------------------------------------------------- host look-ups
def find_program(name: str) -> str | None:
    """``name`` on PATH plus the sbin directories (spice-vdagentd is in /usr/sbin)."""
    path = os.environ.get("PATH", "")
    return shutil.which(name, path=f"{path}{os.pathsep}{_SEARCH_PATH}" if path else _SEARCH_PATH)


def missing_host_programs() -> list[str]:
    """Programs needed to build the guest that are not on this host."""
    names = [*GUEST_PROGRAMS.values(), *BUILD_TOOLS]
    missing = [name for name in names if find_program(name) is None]
    missing += [tree for tree in GUEST_TREES if not os.path.isdir(tree)]
    return missing


def cache_dir() -> Path:
    """``$VDAGENT_TEST_CACHE``, else ``vdagent-bridge-tests`` in ``$XDG_CACHE_HOME`` (an
    absolute path, as the XDG spec asks) or ``~/.cache``."""
    env = os.environ.get("VDAGENT_TEST_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "vdagent-bridge-tests"


def _run(argv: Sequence[str], *, cwd: Path | None = None, timeout: float = 300) -> str:
    try:
        result = subprocess.run(
            list(argv),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "LC_ALL": "C"},
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise ImageBuildError(f"{' '.join(argv)}: {err}") from err
    if result.returncode != 0:
        raise ImageBuildError(
            f"{' '.join(argv)} failed (rc={result.returncode}): "
            f"{result.stderr.decode(errors='replace').strip()[-2000:]}"
        )
    return result.stdout.decode(errors="replace")


# --------------------------------------------------------------------------- kernel
def resolve_kernel_package(cache: Path | None = None) -> tuple[str, str]:
    """(package, version) of the current Debian cloud kernel, from the apt lists.

    ``$VDAGENT_TEST_KERNEL_PACKAGE`` pins a package name (e.g.
    ``linux-image-6.1.0-56-cloud-amd64``).  Each ``apt-cache`` call costs ~1 s here (no
    pkgcache.bin), so with ``cache`` the answer is remembered until the apt lists change.
    """
    pinned = os.environ.get("VDAGENT_TEST_KERNEL_PACKAGE", "").strip()
    stamp = hashlib.sha256(pinned.encode())
    lists = Path("/var/lib/apt/lists")
    for entry in sorted(lists.glob("*_Packages*")) if lists.is_dir() else []:
        st = entry.stat()
        stamp.update(f"{entry.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    memo = cache / "kernels" / "resolved.json" if cache else None
    if memo is not None:
        try:
            saved = json.loads(memo.read_text())
            if saved["stamp"] == stamp.hexdigest():
                return str(saved["name"]), str(saved["version"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    if pinned:
        show = _run(["apt-cache", "show", "--no-all-versions", pinned])
        match = re.search(r"^Version:\s*(\S+)", show, re.M)
        if not match:
            raise ImageBuildError(f"apt-cache show {pinned}: no Version (run apt-get update?)")
        name, version = pinned, match.group(1)
    else:
        show = _run(["apt-cache", "show", "--no-all-versions", KERNEL_META_PACKAGE])
        match = re.search(
            r"^Depends:.*?\b(linux-image-\S+-cloud-amd64)\s*\(=\s*([^)\s]+)\s*\)", show, re.M
        )
        if not match:
            raise ImageBuildError(
                f"apt-cache knows no kernel for {KERNEL_META_PACKAGE} (run apt-get update?)"
            )
        name, version = match.group(1), match.group(2)
    if memo is not None:
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_suffix(".tmp")
        tmp.write_text(json.dumps({"stamp": stamp.hexdigest(), "name": name, "version": version}))
        os.replace(tmp, memo)
    return name, version


def _current_kernel(cache: Path) -> Path:
    """The current cloud kernel, downloaded on first use.

    Package lists older than the archive name a kernel the archive no longer has (Debian
    drops the previous kernel at a point release), so the first download on a machine with
    old lists fails; as root the lists are refreshed once and the download tried again."""
    name, version = resolve_kernel_package(cache)
    try:
        return fetch_kernel(cache, name, version)
    except ImageBuildError as first:
        if os.geteuid() != 0:
            raise
        try:
            _run(["apt-get", "update", "-qq"], timeout=600)
        except ImageBuildError as err:
            raise ImageBuildError(f"{first}; apt-get update did not help: {err}") from first
        name, version = resolve_kernel_package(cache)
        return fetch_kernel(cache, name, version)


def _cached_kernels(cache: Path) -> list[Path]:
    root = cache / "kernels"
    if not root.is_dir():
        return []
    found = [d for d in root.iterdir() if (d / "vmlinuz").is_file() and (d / "ok").is_file()]
    return sorted(found, key=lambda d: (d / "ok").stat().st_mtime, reverse=True)


def fetch_kernel(cache: Path, name: str, version: str) -> Path:
    """Directory with ``vmlinuz`` and ``modules/<name>.ko`` for the package, downloading and
    unpacking it (only the files needed) on first use."""
    safe = re.sub(r"[^A-Za-z0-9.+~-]", "_", f"{name}_{version}")
    target = cache / "kernels" / safe
    if (target / "ok").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".kernel-", dir=target.parent) as tmp:
        tmpdir = Path(tmp)
        argv = ["apt-get", "download", "-q"]
        if os.geteuid() == 0:
            # apt drops to the _apt user, which cannot write into our private temp dir.
            argv += ["-o", "APT::Sandbox::User=root"]
        _run([*argv, f"{name}={version}"], cwd=tmpdir, timeout=600)
        debs = list(tmpdir.glob("*.deb"))
        if len(debs) != 1:
            raise ImageBuildError(f"apt-get download {name}: expected one .deb, got {debs}")
        out = tmpdir / "out"
        (out / "modules").mkdir(parents=True)
        _extract_kernel(debs[0], out)
        (out / "ok").write_text(f"{name}={version}\n")
        try:
            os.rename(out, target)
        except OSError:
            if not (target / "ok").is_file():
                raise
    return target


def _extract_kernel(deb: Path, out: Path) -> None:
    """vmlinuz and the virtio modules (decompressed) out of a kernel .deb, via dpkg-deb.

    The pipe and the process are closed and reaped on every path (a bad archive, a failed
    read): the test suite turns a ResourceWarning into an error, and this runs only when the
    kernel is not cached yet, so a leak here shows on a fresh machine alone."""
    wanted = set(VIRTIO_MODULES)
    found: dict[str, bytes] = {}
    vmlinuz: bytes | None = None
    builtin = ""
    with (
        tempfile.TemporaryFile() as errors,
        subprocess.Popen(
            ["dpkg-deb", "--fsys-tarfile", str(deb)],
            stdout=subprocess.PIPE,
            stderr=errors,
            stdin=subprocess.DEVNULL,
        ) as proc,
    ):
        assert proc.stdout is not None
        try:
            with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                for member in tar:
                    base = os.path.basename(member.name)
                    if not member.isfile():
                        continue
                    if base.startswith("vmlinuz-") and "/boot/" in member.name:
                        vmlinuz = _read_member(tar, member)
                    elif base == "modules.builtin":
                        builtin = _read_member(tar, member).decode(errors="replace")
                    else:
                        mod = re.sub(r"\.ko(\.xz|\.gz)?$", "", base)
                        if mod in wanted and base != mod:
                            data = _read_member(tar, member)
                            if base.endswith(".xz"):
                                data = lzma.decompress(data)
                            elif base.endswith(".gz"):
                                data = gzip.decompress(data)
                            found[mod] = data
        except (tarfile.TarError, lzma.LZMAError, OSError, EOFError) as err:
            proc.kill()
            raise ImageBuildError(f"{deb.name}: cannot unpack: {err}") from err
        except BaseException:
            proc.kill()
            raise
        while proc.stdout.read(1 << 16):
            pass  # the archive's padding: dpkg-deb exits with SIGPIPE if it cannot write it
        proc.stdout.close()
        returncode = proc.wait()
        errors.seek(0)
        said = errors.read().decode(errors="replace").strip()
    if returncode != 0:
        raise ImageBuildError(f"dpkg-deb --fsys-tarfile {deb} failed (rc={returncode}): {said}")
    if vmlinuz is None:
        raise ImageBuildError(f"{deb.name} holds no /boot/vmlinuz-*")
    (out / "vmlinuz").write_bytes(vmlinuz)
    order = []
    for mod in VIRTIO_MODULES:
        if mod in found:
            (out / "modules" / f"{mod}.ko").write_bytes(found[mod])
            order.append(mod)
        elif not re.search(rf"/{re.escape(mod)}\.ko\b", builtin):
            raise ImageBuildError(f"{deb.name}: module {mod} neither shipped nor built in")
    (out / "modules" / "order").write_text("\n".join(order) + "\n")


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(member)
    if handle is None:
        raise ImageBuildError(f"cannot read {member.name}")
    return handle.read()


# --------------------------------------------------------------------------- file list
@dataclass
class _Entry:
    kind: str  # "dir" | "file" | "symlink" | "chr"
    mode: int = 0o755
    source: str | None = None  # host file (for kind file)
    data: bytes | None = None  # literal content (for kind file)
    target: str = ""  # symlink target
    rdev: tuple[int, int] = (0, 0)


class _Tree:
    """The guest's file system, in the order it is written to the cpio."""

    def __init__(self) -> None:
        self.entries: dict[str, _Entry] = {}

    def mkdir(self, path: str, mode: int = 0o755) -> None:
        path = path.rstrip("/") or "/"
        if path == "/" or path in self.entries:
            return
        self.mkdir(os.path.dirname(path))
        self.entries[path] = _Entry("dir", mode)

    def add(self, path: str, entry: _Entry) -> None:
        self.mkdir(os.path.dirname(path))
        self.entries.setdefault(path, entry)

    def file(self, path: str, source: str) -> None:
        mode = stat.S_IMODE(os.stat(source).st_mode)
        self.add(path, _Entry("file", mode, source=source))

    def data(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self.add(path, _Entry("file", mode, data=data))

    def symlink(self, path: str, target: str) -> None:
        self.add(path, _Entry("symlink", 0o777, target=target))

    def copy_tree(self, root: str) -> None:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            self.mkdir(dirpath)
            for name in sorted(filenames) + [
                d for d in dirnames if os.path.islink(os.path.join(dirpath, d))
            ]:
                path = os.path.join(dirpath, name)
                if os.path.islink(path):
                    self.symlink(path, os.readlink(path))
                elif os.path.isfile(path):
                    self.file(path, path)

    def host_sources(self) -> list[str]:
        return sorted(e.source for e in self.entries.values() if e.source)


def _guest_location(host_path: str) -> tuple[str, str]:
    """(guest path, host file to read) for a library path as ldd prints it.

    The guest is usr-merged like Debian 12 (/lib -> usr/lib ...), so the directory is
    canonicalised; the file name is kept (sonames are often symlinks on the host)."""
    directory = os.path.realpath(os.path.dirname(host_path))
    return os.path.join(directory, os.path.basename(host_path)), os.path.realpath(host_path)


def _ldd_closure(program: str) -> list[str]:
    """Library paths ``ldd`` lists for ``program`` (empty for a static binary)."""
    try:
        result = subprocess.run(
            ["ldd", program],
            capture_output=True,
            timeout=60,
            check=False,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "LC_ALL": "C"},
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise ImageBuildError(f"ldd {program}: {err}") from err
    text = result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
    if "not a dynamic executable" in text or "statically linked" in text:
        return []
    if result.returncode != 0:
        raise ImageBuildError(f"ldd {program} failed: {text.strip()}")
    libs = []
    for line in text.splitlines():
        line = line.strip()
        if "not found" in line:
            raise ImageBuildError(f"ldd {program}: {line}")
        match = re.match(r"\S+\s+=>\s+(/\S+)", line) or re.match(r"(/\S+)\s+\(", line)
        if match:
            libs.append(match.group(1))
    return libs


def _guest_tree(kernel_dir: Path) -> _Tree:
    tree = _Tree()
    for name in (
        "dev",
        "proc",
        "sys",
        "tmp",
        "run",
        "root",
        "etc/vdb",
        "var/lib/xkb",
        "usr/bin",
        "usr/sbin",
        "usr/lib/modules",
        "usr/lib64",
    ):
        tree.mkdir("/" + name)
    for link, target in (
        ("/bin", "usr/bin"),
        ("/sbin", "usr/sbin"),
        ("/lib", "usr/lib"),
        ("/lib64", "usr/lib64"),
    ):
        tree.symlink(link, target)
    tree.add("/dev/console", _Entry("chr", 0o600, rdev=(5, 1)))
    tree.add("/dev/null", _Entry("chr", 0o666, rdev=(1, 3)))

    libs: dict[str, str] = {}
    for guest_path, name in GUEST_PROGRAMS.items():
        host = find_program(name)
        if host is None:
            raise ImageBuildError(
                f"{name} not found on the host (apt-get install {' '.join(HOST_PACKAGES)})"
            )
        tree.file(guest_path, os.path.realpath(host))
        for lib in _ldd_closure(host):
            guest_lib, source = _guest_location(lib)
            libs[guest_lib] = source
    for guest_lib in sorted(libs):
        tree.file(guest_lib, libs[guest_lib])

    busybox = find_program("busybox")
    assert busybox is not None
    for applet in _run([busybox, "--list"]).split():
        if applet and "/" not in applet and applet != "busybox":
            path = f"/usr/bin/{applet}"
            if path not in tree.entries:
                tree.symlink(path, "busybox")

    for root in GUEST_TREES:
        tree.copy_tree(root)

    order = (kernel_dir / "modules" / "order").read_text().split()
    for mod in order:
        tree.file(f"/usr/lib/modules/vdb/{mod}.ko", str(kernel_dir / "modules" / f"{mod}.ko"))
    tree.data("/etc/vdb/modules", ("\n".join(order) + "\n").encode())
    tree.data("/etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    tree.data("/etc/group", b"root:x:0:\n")
    init = (
        INIT_SCRIPT.read_text()
        .replace("@AGENT_PORT@", AGENT_PORT_NAME)
        .replace("@CMD_PORT@", CMD_PORT_NAME)
    )
    tree.data("/init", init.encode(), 0o755)
    return tree


# --------------------------------------------------------------------------- cpio
def _write_cpio(tree: _Tree, out: io.BufferedIOBase) -> None:
    """A ``newc`` cpio of ``tree`` (uid/gid 0, mtime 0: reproducible)."""

    def header(ino: int, mode: int, size: int, name: str, rdev: tuple[int, int] = (0, 0)) -> None:
        encoded = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, size, 0, 0, rdev[0], rdev[1], len(encoded), 0)
        out.write(b"070701" + b"".join(b"%08X" % f for f in fields) + encoded)
        out.write(b"\0" * (-(110 + len(encoded)) % 4))

    ino = 0
    for path, entry in tree.entries.items():
        ino += 1
        name = path.lstrip("/")
        if entry.kind == "dir":
            header(ino, stat.S_IFDIR | entry.mode, 0, name)
        elif entry.kind == "symlink":
            target = entry.target.encode()
            header(ino, stat.S_IFLNK | 0o777, len(target), name)
            out.write(target + b"\0" * (-len(target) % 4))
        elif entry.kind == "chr":
            header(ino, stat.S_IFCHR | entry.mode, 0, name, entry.rdev)
        else:
            data = entry.data
            if data is None:
                assert entry.source is not None
                with open(entry.source, "rb") as handle:
                    data = handle.read()
            header(ino, stat.S_IFREG | entry.mode, len(data), name)
            out.write(data)
            out.write(b"\0" * (-len(data) % 4))
    header(0, 0, 0, "TRAILER!!!")


# --------------------------------------------------------------------------- cache key
def _input_key(tree: _Tree, kernel_package: str) -> str:
    digest = hashlib.sha256()
    digest.update(f"format={FORMAT}\nkernel={kernel_package}\n".encode())
    digest.update(Path(__file__).read_bytes())
    digest.update(INIT_SCRIPT.read_bytes())
    for path, entry in tree.entries.items():
        digest.update(f"{path}\0{entry.kind}\0{entry.mode:o}\0{entry.target}\0".encode())
        if entry.source:
            st = os.stat(entry.source)
            digest.update(f"{entry.source}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        elif entry.data is not None:
            digest.update(hashlib.sha256(entry.data).digest())
    return digest.hexdigest()[:20]


@contextlib.contextmanager
def _locked(cache: Path) -> Iterator[None]:
    """One builder at a time per cache (parallel pytest workers wait for the first)."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _prune(cache: Path, keep: Path) -> None:
    images = sorted(
        (d for d in cache.glob("guest-*") if d.is_dir() and d != keep),
        key=lambda d: d.stat().st_mtime,
        reverse=True,
    )
    for old in images[_KEEP_IMAGES - 1 :]:
        shutil.rmtree(old, ignore_errors=True)


def build_guest_image(
    cache: Path | None = None, *, force: bool = False, compresslevel: int = 6
) -> GuestImage:
    """Return the cached guest image, building it first if any input changed.

    Needs network (the Debian archive) only when the kernel package is not cached yet.  If
    ``apt-cache`` cannot name a kernel (no apt lists), the most recent cached kernel is used.
    Raises :class:`ImageBuildError` with a readable reason.
    """
    started = time.monotonic()
    cache = cache or cache_dir()
    missing = missing_host_programs()
    if missing:
        raise ImageBuildError(
            f"missing on the host: {', '.join(missing)} (apt-get install {' '.join(HOST_PACKAGES)})"
        )
    with _locked(cache):
        try:
            kernel_dir = _current_kernel(cache)
        except ImageBuildError:
            cached = _cached_kernels(cache)
            if not cached:
                raise
            kernel_dir = cached[0]
        kernel_package = (kernel_dir / "ok").read_text().strip()
        tree = _guest_tree(kernel_dir)
        key = _input_key(tree, kernel_package)
        final = cache / f"guest-{key}"
        built = False
        if force and final.exists():
            shutil.rmtree(final)
        if not (final / "manifest.json").is_file():
            tmp = Path(tempfile.mkdtemp(prefix=".guest-", dir=cache))
            try:
                shutil.copyfile(kernel_dir / "vmlinuz", tmp / "vmlinuz")
                with (
                    open(tmp / "initramfs.cpio.gz", "wb") as raw,
                    gzip.GzipFile(
                        filename="", mode="wb", fileobj=raw, compresslevel=compresslevel, mtime=0
                    ) as gz,
                ):
                    _write_cpio(tree, gz)
                manifest = {
                    "key": key,
                    "kernel_package": kernel_package,
                    "files": len(tree.entries),
                    "host_files": tree.host_sources(),
                }
                (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
                if final.exists():
                    shutil.rmtree(final)
                os.rename(tmp, final)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            built = True
        os.utime(final)  # most recently used: kept by _prune
        _prune(cache, final)
    return GuestImage(
        kernel=final / "vmlinuz",
        initrd=final / "initramfs.cpio.gz",
        key=key,
        kernel_package=kernel_package,
        built=built,
        seconds=time.monotonic() - started,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    parser.add_argument("--cache", type=Path, help=f"cache directory (default {cache_dir()})")
    parser.add_argument(
        "--packages", action="store_true", help="print HOST_PACKAGES, one a line, and exit"
    )
    args = parser.parse_args(argv)
    if args.packages:
        print("\n".join(HOST_PACKAGES))
        return 0
    try:
        image = build_guest_image(args.cache, force=args.force)
    except ImageBuildError as err:
        print(f"guest_image: {err}", file=sys.stderr)
        return 1
    print(f"kernel  {image.kernel}  ({image.kernel_package})")
    print(f"initrd  {image.initrd}  ({image.initrd_size / 1e6:.1f} MB)")
    print(f"{'built' if image.built else 'cached'} in {image.seconds:.2f} s, key {image.key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
