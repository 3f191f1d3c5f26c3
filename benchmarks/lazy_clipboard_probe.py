"""What a lazy QMimeData with a bounded wait does on a real X clipboard (Qt xcb, Xvfb).

The clipboard bridge fetches guest data eagerly; this probe records why not lazily. It owns
the CLIPBOARD with a QMimeData whose ``retrieveData`` waits 300 ms in a nested QEventLoop (as
it would wait for the guest's answer), then lets xclip paste it in three scenarios:

- ``one``: a single paste;
- ``two``: a second paste 50 ms into the first one's wait;
- ``takeover``: another application copies 100 ms into the wait.

It prints, for each call of ``retrieveData``: its nesting depth, how long it took, and whether
the QMimeData still existed when the wait ended. Measured (2026-11-25, PySide6 6.12, Xvfb):
``two`` runs the second ``retrieveData`` *inside* the first one's wait (depth 2; the first
paste is served after the second), and in ``takeover`` Qt deletes the QMimeData while its
``retrieveData`` is still running.

    python benchmarks/lazy_clipboard_probe.py      # needs Xvfb and xclip
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

_WAIT_MS = 300


def probe(scenario: str) -> None:
    import shiboken6
    from PySide6.QtCore import QByteArray, QEventLoop, QMimeData, QTimer
    from PySide6.QtGui import QGuiApplication

    calls: list[tuple[int, int, str]] = []

    class Lazy(QMimeData):
        depth = 0

        def formats(self) -> list[str]:
            return ["text/plain"]

        def hasFormat(self, mime: str) -> bool:  # noqa: N802 (Qt's name)
            return mime == "text/plain"

        def retrieveData(self, mime: str, kind: object) -> QByteArray:  # noqa: N802
            Lazy.depth += 1
            start = time.perf_counter()
            loop = QEventLoop()
            QTimer.singleShot(_WAIT_MS, loop.quit)  # stands for the guest's answer
            loop.exec()
            alive = "kept" if shiboken6.isValid(self) else "DELETED by Qt meanwhile"
            calls.append((Lazy.depth, round((time.perf_counter() - start) * 1000), alive))
            Lazy.depth -= 1
            return QByteArray(b"lazy data")

    app = QGuiApplication(sys.argv[:1])
    QGuiApplication.clipboard().setMimeData(Lazy())
    pastes: list[subprocess.Popen[bytes]] = []
    copies: list[subprocess.Popen[bytes]] = []

    def paste() -> None:
        pastes.append(subprocess.Popen(["xclip", "-selection", "clipboard", "-o"],
                                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL))

    def take_over() -> None:
        proc = subprocess.Popen(["xclip", "-selection", "clipboard", "-i", "-quiet"],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        assert proc.stdin is not None
        proc.stdin.write(b"another application")
        proc.stdin.close()
        copies.append(proc)

    paste()
    if scenario == "two":
        QTimer.singleShot(50, paste)
    if scenario == "takeover":
        QTimer.singleShot(100, take_over)
    QTimer.singleShot(2000, app.quit)
    app.exec()
    for proc in pastes:
        out, _ = proc.communicate(timeout=5)
        print(f"  {scenario}: a paste got {out!r}")
    for depth, ms, alive in calls:
        print(f"  {scenario}: retrieveData depth {depth}, {ms} ms, QMimeData {alive}")
    for proc in copies:
        proc.terminate()
        proc.wait(5)


def main() -> None:
    if len(sys.argv) > 1:
        probe(sys.argv[1])
        return
    read, write = os.pipe()
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-nolisten", "tcp"],
                            pass_fds=(write,), stderr=subprocess.DEVNULL)
    os.close(write)
    try:
        display = ":" + os.read(read, 16).decode().strip()
        env = dict(os.environ, DISPLAY=display, QT_QPA_PLATFORM="xcb")
        for scenario in ("one", "two", "takeover"):
            subprocess.run([sys.executable, __file__, scenario], env=env, check=True,
                           timeout=30)
    finally:
        os.close(read)
        xvfb.terminate()
        xvfb.wait(5)


if __name__ == "__main__":
    main()
