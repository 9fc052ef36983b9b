"""
Where the project's C{templates/} and C{js/} folders are.

In a source checkout (or an editable install) they sit beside the
C{chatthing} package; C{pip install .} copies them into it as
C{chatthing/templates} and C{chatthing/js} (see C{setup.py}).

The runtime serves its own widget modules (C{js/live/}) and the default
page shell from there, so it finds them itself: it imports nothing else of
chatthing.  Apps and the shell find the same folders through the public
L{chatthing.live.assetFolder}.
"""

from pathlib import Path

#: The C{chatthing} package folder (this module is in C{chatthing/live/}).
_package = Path(__file__).resolve().parent.parent


def assetFolder(name: str) -> Path:
    """
    The folder holding the project's C{name} assets (C{"templates"} or
    C{"js"}), installed or in a checkout.
    """
    for candidate in (_package / name, _package.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"chatthing's {name}/ folder is missing from {_package}")
