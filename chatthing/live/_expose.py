"""
The allow-list of methods a browser may call, and the checking of its
arguments.

Only functions marked with L{expose} can be called from the page: a page is
untrusted input, so the default for every attribute of an element is "no".
An exposed method's signature and simple annotations (C{str}, C{int},
C{float}, C{bool}, C{list}, C{dict}) are checked before it runs, so
application code never sees a call with the wrong shape.
"""

import inspect
import typing
from types import MethodType
from typing import Any, Callable, TypeVar

from ._errors import BadArguments

F = TypeVar("F", bound=Callable[..., Any])

_EXPOSED = "__chatthing_exposed__"

#: Annotations the runtime checks, and the name used in the error message.
_CHECKED_TYPES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a list",
    dict: "an object",
}


def expose(function: F) -> F:
    """
    Let the browser call C{function}, as a method of its element.

    Usable as a decorator, or Athena-style: C{say = expose(say)}.
    """
    setattr(function, _EXPOSED, ArgumentChecker(function))
    return function


def exposedMethod(element: object, name: str) -> MethodType | None:
    """
    The bound method C{name} of C{element} if it is exposed, else L{None}.
    """
    if not isinstance(name, str) or name.startswith("_"):
        return None
    function = inspect.getattr_static(type(element), name, None)
    if getattr(function, _EXPOSED, None) is None:
        return None
    return getattr(element, name)


def checkArguments(method: MethodType, args: list) -> None:
    """
    Raise L{BadArguments} unless C{args} fit the exposed bound C{method}.
    """
    getattr(method.__func__, _EXPOSED).check(args)


def _matches(value: object, annotation: type) -> bool:
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation)


class ArgumentChecker:
    """
    Checks positional arguments against one function's signature, worked out
    once when the function is exposed.
    """

    def __init__(self, function: Callable[..., Any]) -> None:
        self.name = function.__name__
        signature = inspect.signature(function)
        parameters = list(signature.parameters.values())[1:]  # drop self
        self.signature = signature.replace(parameters=parameters)
        try:
            hints = typing.get_type_hints(function)
        except Exception:
            hints = {}
        self.types = {
            p.name: hints[p.name]
            for p in parameters
            if hints.get(p.name) in _CHECKED_TYPES
        }

    def check(self, args: list) -> None:
        try:
            bound = self.signature.bind(*args)
        except TypeError as e:
            raise BadArguments(f"{self.name}(): {e}") from None
        for name, annotation in self.types.items():
            if name in bound.arguments and not _matches(
                bound.arguments[name], annotation
            ):
                raise BadArguments(
                    f"{self.name}(): argument {name!r} must be "
                    f"{_CHECKED_TYPES[annotation]}"
                )
