"""
The start-up check of an app's own files (see L{chatthing.live._apps}):
what can be known before any page connects, said in one line so that
twistd refuses to start instead of serving pages that cannot be drawn.
"""

import importlib
import inspect
from pathlib import Path
from typing import Any

from jinja2 import Environment, TemplateError, TemplateNotFound
from twisted.python.usage import UsageError

from ._assets import assetFolder
from ._apps import ElementUnavailable, appFolder, isBare, templatesFor, widgetModule
from ._element import LiveElement
from ._web import templateEnvironment


class AppCheckFailed(UsageError):
    """
    What start-up found wrong with an app's files: twistd prints it as one
    line and exits 1, as for any other bad option.
    """


def elementClasses(module: Any) -> list[type]:
    """
    The element classes C{module} defines (not those it imports).
    """
    return [value for value in vars(module).values()
            if inspect.isclass(value) and issubclass(value, LiveElement) and value is not LiveElement
            and value.__module__ == module.__name__]


def problemsOf(cls: Any, fallback: Environment, runtimeJS: Path) -> list[str]:
    """
    What is wrong with C{cls}'s files, as far as can be told without an
    element: its template is missing or does not compile; its widget
    module is not a file.  Empty if nothing is.
    """
    problems = []
    name = f"{cls.__module__}.{cls.__qualname__}"
    if cls.template is not None:
        environment = templatesFor(cls, fallback)
        try:
            environment.get_template(cls.template)
        except TemplateNotFound:
            folder = appFolder(cls)
            where = f"{folder / 'templates'} or " if folder is not None else ""
            problems.append(f"{name}.template {cls.template!r} is not in {where}the built-in templates")
        except TemplateError as e:
            problems.append(f"{name}.template {cls.template!r} does not compile: "
                            f"{type(e).__name__}: {e}")
    if cls.jsModule is not None:
        if isBare(cls.jsModule):
            folder = appFolder(cls)
            try:
                widgetModule(cls)
            except ElementUnavailable as e:
                problems.append(str(e))
            else:
                if folder is None or not (folder / "js" / cls.jsModule).is_file():
                    problems.append(f"{name}.jsModule {cls.jsModule!r} is not a file in "
                                    f"{(folder or Path('?')) / 'js'}")
        elif cls.jsModule.startswith("/js/"):
            if not (runtimeJS / cls.jsModule[len("/js/"):]).is_file():
                problems.append(f"{name}.jsModule {cls.jsModule!r} is not a file in {runtimeJS}")
    return problems


def checkElementModule(dottedName: str, fallback: Environment | None = None,
                       runtimeJS: Path | None = None) -> None:
    """
    Check, at start-up, the files of every element class defined in the
    module that C{--element=dottedName} comes from (and of the class itself,
    if it names one): see L{problemsOf}.  A name that cannot be imported is
    left to the option's own check.

    @raise AppCheckFailed: naming the first problem, in one line.
    """
    fallback = fallback if fallback is not None else templateEnvironment()
    runtimeJS = runtimeJS if runtimeJS is not None else assetFolder("js")
    moduleName, _, attribute = dottedName.rpartition(".")
    try:
        module = importlib.import_module(moduleName)
    except Exception:
        return
    classes = elementClasses(module)
    named = getattr(module, attribute, None)
    if inspect.isclass(named) and named not in classes and hasattr(named, "jsModule"):
        classes.append(named)
    for cls in classes:
        problems = problemsOf(cls, fallback, runtimeJS)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise AppCheckFailed(f"--element {dottedName!r}: {problems[0]}{more}".replace("\n", " "))
