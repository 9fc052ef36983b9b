"""
Apps of one's own: an element class finds its template, widget and
stylesheets beside the module that defines it, as the Athena tutorial's
C{template.html} sat beside C{chatterbox.py}.

For an element class defined in a module in folder C{D}:

  - C{template = "x.html"} is looked up in C{D/templates/} first, then in the
    runtime's own C{templates/} (so C{page.html} and the built-in apps'
    templates still resolve);
  - a bare C{jsModule = "x.js"} (no leading C{/}) is served from C{D/js/} at
    C{/apps/<module>/js/x.js}, where C{<module>} is the dotted name of the
    class's module: stable across restarts, and beside, never under, the
    runtime's C{/js/}, so C{import ... from "/js/live/index.js"} still finds
    the runtime.  C{D/css/} is served at C{/apps/<module>/css/}; templates
    see that prefix as C{app}.  A C{jsModule} with a leading C{/} is a URL
    of the site, as before;
  - only modules whose elements the server has made (or checked at
    start-up) are served under C{/apps/}, and L{StaticFolder} refuses any
    path that climbs out of C{D/js/} or C{D/css/}.

What can be known before the first page (a template or module missing, a
template that does not compile) is checked at start-up by
L{chatthing.live._appcheck.checkElementModule}, so that twistd refuses to start with a one-line
reason; a template that fails only when drawn for a page is the factory's
to report (L{chatthing.live._factory.LiveServerFactory.showElement}).
"""

import re
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import BaseLoader, ChoiceLoader, Environment, FileSystemLoader

from ._errors import LiveError

#: The URL folder under which apps' own files are served.
APPS_PATH = "apps"

#: What a bare C{jsModule} may be: relative path segments, no C{..}.
_RELATIVE = re.compile(r"^(?!.*(?:^|/)\.\.?(?:/|$))[A-Za-z0-9_.\-]+(?:/[A-Za-z0-9_.\-]+)*$")


class ElementUnavailable(LiveError):
    """
    The element cannot be shown on its page: its template is missing or
    failed to render, or its widget module is not where it says.  The page
    is told once and does not retry (close code
    L{chatthing.live._wire.CLOSE_ELEMENT_UNAVAILABLE}).
    """


def appFolder(cls: type) -> Path | None:
    """
    The folder of the module defining C{cls}; L{None} if it has no file (a
    class made in an interactive session).
    """
    module = sys.modules.get(cls.__module__)
    filename = getattr(module, "__file__", None)
    if not filename:
        return None
    return Path(filename).resolve().parent


def appKey(cls: type) -> str:
    """
    The name that C{cls}'s files are served under: its module's dotted name.
    """
    return cls.__module__


def appURL(cls: type) -> str:
    """
    The URL prefix of C{cls}'s own files, C{/apps/<module>}, as templates
    see it (C{{{ app }}/css/x.css}).
    """
    return f"/{APPS_PATH}/{appKey(cls)}"


def isBare(jsModule: str) -> bool:
    """
    Whether C{jsModule} names a file of the app's own C{js/} folder rather
    than a URL of the site.
    """
    return not jsModule.startswith("/")


def widgetModule(cls: Any) -> str | None:
    """
    The URL the page imports C{cls}'s widget module from.

    @raise ElementUnavailable: a bare C{jsModule} that climbs out of its
        folder or is not a plain relative path.
    """
    jsModule = cls.jsModule
    if jsModule is None or not isBare(jsModule):
        return jsModule
    if not _RELATIVE.match(jsModule):
        raise ElementUnavailable(f"jsModule {jsModule[:80]!r} of {cls.__name__} is not a file name "
                                 "under its js/ folder")
    return f"{appURL(cls)}/js/{jsModule}"


class AppFolders:
    """
    The apps whose files this server serves under C{/apps/}: by L{appKey},
    the folder of their module.  An app is added when one of its elements
    is made, so nothing else under C{/apps/} answers.
    """

    def __init__(self) -> None:
        self.folders: dict[str, Path] = {}

    def register(self, cls: type) -> None:
        """
        Serve the files of C{cls}'s folder (if it has one) from now on.
        """
        key = appKey(cls)
        if key not in self.folders:
            folder = appFolder(cls)
            if folder is not None:
                self.folders[key] = folder

    def folder(self, key: str) -> Path | None:
        """
        The folder served under C{/apps/<key>/}, or L{None}.
        """
        return self.folders.get(key)


@lru_cache(maxsize=64)
def _environmentFor(folder: Path, fallback: Environment) -> Environment:
    loaders: list[BaseLoader] = [FileSystemLoader(str(folder / "templates"))]
    if fallback.loader is not None:
        loaders.append(fallback.loader)
    return fallback.overlay(loader=ChoiceLoader(loaders))


def templatesFor(cls: type, fallback: Environment) -> Environment:
    """
    The Jinja2 environment that C{cls}'s template is found in: its own
    folder's C{templates/} first, then C{fallback}'s (the runtime's).
    """
    folder = appFolder(cls)
    if folder is None or not (folder / "templates").is_dir():
        return fallback
    return _environmentFor(folder, fallback)
