"""What ``pyproject.toml`` cannot say: the icons live in the repository's top-level ``resources/icons``
(beside the package, with the desktop entry), and a wheel ships them inside the package as
``medseg_gui._resources``, where ``gui/resources.py`` looks first. Everything else is in pyproject.toml.
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=find_namespace_packages(include=["medseg_gui*"]) + ["medseg_gui._resources"],
    package_dir={"medseg_gui._resources": "resources/icons"},
    package_data={"medseg_gui": ["core/planning/calibration/*.json"],
                  "medseg_gui._resources": ["*.svg", "*.png"]},
)
