"""The guest image builder's first-use path, without the network: unpacking a kernel .deb.

The kernel is downloaded and unpacked only when the cache does not have it yet, so this path
runs on a fresh machine alone; these tests run it every time, on small .debs built here with
``dpkg-deb --build``, good and bad. The suite turns warnings into errors, so a pipe or a
process left open on any path fails them.
"""

from __future__ import annotations

import lzma
import shutil
import subprocess
from pathlib import Path

import pytest
from guest_image import VIRTIO_MODULES, ImageBuildError, _extract_kernel


def make_deb(tmp_path: Path, *, vmlinuz: bool = True, modules: tuple[str, ...] = VIRTIO_MODULES,
             builtin: tuple[str, ...] = ()) -> Path:
    if shutil.which("dpkg-deb") is None:
        pytest.fail("dpkg-deb missing (Debian's dpkg)", pytrace=False)
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        "Package: linux-image-test\nVersion: 1\nArchitecture: all\n"
        "Maintainer: tests <t@example.org>\nDescription: test kernel\n"
    )
    if vmlinuz:
        (root / "boot").mkdir()
        (root / "boot" / "vmlinuz-6.1.0-test").write_bytes(b"kernel image")
    kernel = root / "usr" / "lib" / "modules" / "6.1.0-test"
    (kernel / "kernel" / "drivers").mkdir(parents=True)
    for name in modules:
        (kernel / "kernel" / "drivers" / f"{name}.ko.xz").write_bytes(
            lzma.compress(f"module {name}".encode())
        )
    (kernel / "modules.builtin").write_text(
        "".join(f"kernel/drivers/{name}.ko\n" for name in builtin)
    )
    deb = tmp_path / "linux-image-test_1_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(deb)],
                   check=True, capture_output=True)
    return deb


def output(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    (out / "modules").mkdir(parents=True)
    return out


def test_a_kernel_package_gives_vmlinuz_and_the_virtio_modules_in_load_order(
    tmp_path: Path,
) -> None:
    out = output(tmp_path)
    _extract_kernel(make_deb(tmp_path), out)
    assert (out / "vmlinuz").read_bytes() == b"kernel image"
    assert (out / "modules" / "order").read_text().split() == list(VIRTIO_MODULES)
    assert (out / "modules" / "virtio_console.ko").read_bytes() == b"module virtio_console"


def test_modules_built_into_the_kernel_are_left_out_of_the_load_order(tmp_path: Path) -> None:
    out = output(tmp_path)
    _extract_kernel(make_deb(tmp_path, modules=VIRTIO_MODULES[2:],
                             builtin=VIRTIO_MODULES[:2]), out)
    assert (out / "modules" / "order").read_text().split() == list(VIRTIO_MODULES[2:])


def test_a_missing_module_is_a_readable_error(tmp_path: Path) -> None:
    with pytest.raises(ImageBuildError, match="virtio_console neither shipped nor built in"):
        _extract_kernel(make_deb(tmp_path, modules=VIRTIO_MODULES[:-1]), output(tmp_path))


def test_a_package_without_a_kernel_is_a_readable_error(tmp_path: Path) -> None:
    with pytest.raises(ImageBuildError, match="holds no /boot/vmlinuz"):
        _extract_kernel(make_deb(tmp_path, vmlinuz=False), output(tmp_path))


def test_a_file_that_is_not_a_package_is_a_readable_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.deb"
    bad.write_bytes(b"not an ar archive at all\n" * 100)
    with pytest.raises(ImageBuildError, match="bad.deb"):
        _extract_kernel(bad, output(tmp_path))


def test_a_truncated_download_is_a_readable_error(tmp_path: Path) -> None:
    deb = make_deb(tmp_path)
    cut = tmp_path / "cut.deb"
    cut.write_bytes(deb.read_bytes()[: deb.stat().st_size * 2 // 3])
    with pytest.raises(ImageBuildError, match="cut.deb"):
        _extract_kernel(cut, output(tmp_path))
