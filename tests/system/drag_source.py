"""A file manager's part in a drag and drop: a window that drags the files named on its
command line (as ``text/uri-list``) when the mouse is pressed on it.

The end-to-end tests run it on the host display and drive a real XDND drag with xdotool
(press here, move onto the pointer surface, release), so the surface receives the drop the
way it would from Nautilus or Dolphin. It prints ``ready`` once shown and ``dropped ACTION``
when the drag ends.
"""

from __future__ import annotations

import sys

from PySide6.QtCore import QMimeData, Qt, QUrl
from PySide6.QtGui import QDrag, QMouseEvent
from PySide6.QtWidgets import QApplication, QLabel


class DragSource(QLabel):
    def __init__(self, paths: list[str]) -> None:
        super().__init__("drag the files from here")
        self.paths = paths
        self.setWindowTitle("drag source")
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.resize(160, 120)

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt's name)
        mime = QMimeData()
        mime.setUrls([QUrl.fromLocalFile(path) for path in self.paths])
        drag = QDrag(self)
        drag.setMimeData(mime)
        action = drag.exec(Qt.DropAction.CopyAction)
        print(f"dropped {action.name}", flush=True)


def main() -> None:
    app = QApplication(["drag-source"])
    window = DragSource(sys.argv[1:])
    window.move(0, 0)
    window.show()
    print("ready", flush=True)
    app.exec()


if __name__ == "__main__":
    main()
