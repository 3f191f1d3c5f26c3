"""Entry script of the PyInstaller bundle: the ``vdagent-bridge`` command, as the wheel's."""

from __future__ import annotations

import sys

from vdagent_bridge.cli import main

if __name__ == "__main__":
    sys.exit(main())
