"""A plain native Wayland window of the tests' own, to hold keyboard focus (app_id
``vdb-focus``): foot would do on sway, but dies of SIGFPE under KWin --virtual."""

from __future__ import annotations

import sys

from PySide6.QtWidgets import QApplication, QLabel

app = QApplication(["vdb-focus"])
app.setDesktopFileName("vdb-focus")
label = QLabel("a Wayland window holding the keyboard focus")
label.setWindowTitle("vdb-focus")
label.resize(320, 200)
label.show()
sys.exit(app.exec())
