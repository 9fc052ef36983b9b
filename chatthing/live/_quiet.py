"""
Autobahn's debug lines, formatted for nothing.

Autobahn formats the arguments of its debug lines before it knows whether
anyone reads them: on every connection the C{pprint} of its 29 options
(190 µs), and on every read from a socket and every write not coalesced
the coloured name of the method and the peer (C{hltype}, C{hlval}: three
C{click.style} calls and an C{inspect} check, some 10 µs a frame; 46 of
them for one page to connect and log in, profiled with cProfile).
L{withoutDebugFormatting} runs a method with those formatters swapped for
one that returns a constant string, unless debug lines are wanted
(txaio's log level is C{debug} or C{trace}).  The reactor runs one thing
at a time, so nothing else sees the swap; a method run inside another
(C{sendData} inside C{dataReceived}) finds it made already.
"""

from functools import wraps
from typing import Any, Callable, TypeVar

import autobahn.twisted.websocket as _autobahnTwisted
import autobahn.websocket.protocol as _autobahnProtocol
import txaio

_Method = TypeVar("_Method", bound=Callable[..., Any])

#: The formatters swapped: (module, name).
_FORMATTERS = (
    (_autobahnProtocol, "pformat"),
    (_autobahnProtocol, "hltype"),
    (_autobahnProtocol, "hlval"),
    (_autobahnTwisted, "hltype"),
    (_autobahnTwisted, "hlval"),
)


def _unformatted(object: object, *args: Any, **kwargs: Any) -> str:
    return "(not formatted)"


def _debugWanted() -> bool:
    # (txaio's stubs do not declare it; it is in its __all__.)
    return txaio.get_global_log_level() in ("debug", "trace")  # type: ignore[attr-defined]


def withoutDebugFormatting(method: _Method) -> _Method:
    """
    C{method}, run with Autobahn's debug formatters swapped for
    L{_unformatted} (see above).
    """
    @wraps(method)
    def quietly(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _autobahnProtocol.hltype is _unformatted or _debugWanted():
            return method(self, *args, **kwargs)
        formatters = [getattr(module, name) for module, name in _FORMATTERS]
        for module, name in _FORMATTERS:
            setattr(module, name, _unformatted)
        try:
            return method(self, *args, **kwargs)
        finally:
            for (module, name), formatter in zip(_FORMATTERS, formatters):
                setattr(module, name, formatter)
    return quietly  # type: ignore[return-value]
