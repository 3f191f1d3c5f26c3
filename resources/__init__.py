"""Data package ``vdagent_bridge.resources``: the icons, .desktop file and AppStream metainfo.

pyproject.toml maps this package to the top-level ``resources/`` directory so that the wheel,
an editable install and the PyInstaller bundle carry these files beside the code;
``vdagent_bridge.assets`` finds them (or, in a checkout, this directory). PNG renditions are
made by ``packaging/render_icons.py`` from the SVGs.
"""
