"""
Log lines that a client cannot flood or forge.

Anything a client sent (a name, a message, a method name, an error text
holding one) goes into a log line only through L{cut}: at most a few
hundred characters, escaped with C{repr}, so a 64 KiB string is not copied
into every line and a newline or a terminal escape cannot make a line of
its own.  Warnings a client can cause at will go through a L{LogThrottle},
so that a flood of them is a few lines and a count, not one line a frame.
"""

from typing import Any, Callable

from twisted.logger import Logger

#: Characters of client text kept in a log line.
LOG_TEXT_LIMIT = 200


def cut(value: object, limit: int = LOG_TEXT_LIMIT) -> str:
    """
    C{value} as text for a log line: at most C{limit} characters of it,
    then how many more there were, all escaped as a Python literal (quotes,
    C{\\n}, C{\\x1b}, C{\\u202e}...).
    """
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        return repr(text[:limit]) + f"...(+{len(text) - limit} characters)"
    return repr(text)


class LogThrottle:
    """
    At most C{perInterval} lines of each kind in each C{interval} seconds;
    the next line after a quiet spell says how many were left out.

    @ivar suppressed: lines left out so far, by kind.
    """

    def __init__(self, clock: Callable[[], float], perInterval: int = 10,
                 interval: float = 10.0) -> None:
        self.clock = clock
        self.perInterval = perInterval
        self.interval = interval
        self._windows: dict[str, tuple[float, int]] = {}
        self.suppressed: dict[str, int] = {}

    def warn(self, log: Logger, kind: str, format: str, /, **fields: Any) -> bool:
        """
        Log C{format} with C{fields} as a warning unless C{kind} has had its
        lines for this interval; whether it was logged.
        """
        now = self.clock()
        start, count = self._windows.get(kind, (now, 0))
        if now - start >= self.interval:
            start, count = now, 0
        if count >= self.perInterval:
            self._windows[kind] = (start, count)
            self.suppressed[kind] = self.suppressed.get(kind, 0) + 1
            return False
        self._windows[kind] = (start, count + 1)
        left = self.suppressed.pop(kind, 0)
        if left:
            format += " ({left} more like this were not logged)"
            fields["left"] = left
        log.warn(format, **fields)
        return True
