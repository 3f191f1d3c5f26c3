"""The one packaging fact pyproject.toml cannot say: the top-level ``resources/`` directory is
the data package ``vdagent_bridge.resources``.

pyproject's ``packages.find`` finds only what is under ``app/`` and cannot add a package that
lives elsewhere, so the package list and directory map are made here; everything else
(metadata, dependencies, package data, the version) is in pyproject.toml. Keeping
``resources/`` at the top level keeps it where the desktop-integration tools and the
PyInstaller spec look for it, while the wheel and an editable install carry it beside the code.
"""

from __future__ import annotations

from setuptools import find_namespace_packages, find_packages, setup

# The directories of resources/ are listed as (data-only) packages too: setuptools warns about
# package data in directories that are not packages, and says it may drop it one day.
RESOURCES = ["vdagent_bridge.resources"] + [
    f"vdagent_bridge.resources.{name}" for name in find_namespace_packages("resources")
]

setup(
    packages=[*find_packages("app"), *RESOURCES],
    package_dir={"": "app", "vdagent_bridge.resources": "resources"},
)
