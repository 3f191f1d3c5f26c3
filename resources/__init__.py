"""Data package ``vdagent_bridge.resources``: the icons, .desktop file and AppStream metainfo.

setup.py maps this package to the top-level ``resources/`` directory so that the wheel,
an editable install and the PyInstaller bundle carry these files beside the code;
``vdagent_bridge.assets`` finds them (or, in a checkout, this directory). PNG renditions are
made by ``packaging/render_icons.py`` from the SVGs (the 16 px app icon from
``icons/small/``, a redrawing on whole pixels).
"""
