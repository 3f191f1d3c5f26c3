"""A host application's copy that wl-copy cannot make: several MIME types at once, from one
client (KeePassXC's password copy: the text plus ``x-kde-passwordManagerHint`` = ``secret``).

``copier.py [--primary] MIME=VALUE...`` copies stdin's text with those extra types and keeps
serving until it is stopped. It runs on Qt's Wayland backend with Qt's data-control
(``QT_WAYLAND_USE_DATA_CONTROL=1``, set by the caller) so that it may copy without focus, as
a password manager's auto-type or a clipboard tool does.
"""

from __future__ import annotations

import sys

from PySide6.QtCore import QByteArray, QMimeData
from PySide6.QtGui import QClipboard, QGuiApplication

app = QGuiApplication(["vdb-copier"])
args = sys.argv[1:]
mode = QClipboard.Mode.Selection if "--primary" in args else QClipboard.Mode.Clipboard
mime = QMimeData()
mime.setText(sys.stdin.read())
for pair in (a for a in args if "=" in a):
    name, value = pair.split("=", 1)
    mime.setData(name, QByteArray(value.encode()))
app.clipboard().setMimeData(mime, mode)
sys.exit(app.exec())
