"""
Where the project's C{templates/} and C{js/} folders are.

In a source checkout (or an editable install) they sit beside the
C{chatthing} package; C{pip install .} copies them into it as
C{chatthing/templates} and C{chatthing/js} (see C{setup.py}).
"""

from pathlib import Path

_package = Path(__file__).resolve().parent


def assetFolder(name: str) -> Path:
    """
    The folder holding the project's C{name} assets (C{"templates"} or
    C{"js"}), installed or in a checkout.
    """
    for candidate in (_package / name, _package.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"chatthing's {name}/ folder is missing from {_package}")
