"""
Log lines as JSON, for log collectors: one object per line on standard
output.  twistd's own C{--logger} option takes the observer factory (before
the plugin's name)::

    twistd --logger chatthing.logs.jsonLogObserver -n chat-widget --element=chatthing.chatterbox.chat

Each line has C{time} (ISO 8601, UTC), C{level} (C{debug}, C{info},
C{warn}, C{error}, C{critical}), C{namespace} (the logging module or
class), C{text} (the event formatted as the plain log shows it), C{system}
when there is one, C{traceback} for a logged failure, and each of the
event's own fields (C{peer}, C{session}...) whose value JSON can carry as
it is (strings, numbers, booleans, null, and lists and objects of them).
"""

import json
import sys
from datetime import datetime, timezone
from typing import IO, Any

import twisted.logger._file as _twistedFileLog
from twisted.logger import ILogObserver, formatEvent, formatTime, timeFormatRFC3339
from zope.interface import provider

#: Keys every line has, which an event's own fields do not replace.
FIXED_KEYS = ("time", "level", "namespace", "text", "system", "traceback")

#: Keys of events from the legacy C{twisted.python.log}, already in C{text}.
LEGACY_KEYS = ("format", "message", "isError", "failure", "why")


def jsonLine(event: dict[str, Any]) -> str:
    """
    The JSON line for one C{twisted.logger} event (without its newline).
    """
    when = event.get("log_time")
    level = event.get("log_level")
    line: dict[str, Any] = {
        "time": (datetime.fromtimestamp(when, timezone.utc).isoformat(timespec="milliseconds")
                 .replace("+00:00", "Z") if isinstance(when, (int, float)) else None),
        "level": getattr(level, "name", "info"),
        "namespace": event.get("log_namespace"),
        "text": formatEvent(event),
    }
    system = event.get("log_system")
    if system and system != "-":
        line["system"] = system
    failure = event.get("log_failure")
    if failure is not None:
        try:
            line["traceback"] = failure.getTraceback()
        except Exception:
            line["traceback"] = repr(failure)
    for key, value in event.items():
        if key.startswith("log_") or key in FIXED_KEYS or key in LEGACY_KEYS:
            continue
        if isinstance(key, str) and _plain(value):
            line[key] = value
    return json.dumps(line, ensure_ascii=False, allow_nan=False, default=str)


def _plain(value: Any, depth: int = 0) -> bool:
    """
    Whether JSON carries C{value} as it is.
    """
    if value is None or isinstance(value, (str, bool, int)):
        return True
    if isinstance(value, float):
        return value == value and value not in (float("inf"), float("-inf"))
    if depth > 4:
        return False
    if isinstance(value, (list, tuple)):
        return all(_plain(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v, depth + 1) for k, v in value.items())
    return False


def jsonLogObserver(outFile: IO[str] | None = None) -> ILogObserver:
    """
    A log observer that writes each event to C{outFile} (standard output as
    it is when this is called: twistd calls it before it sends C{print} and
    C{sys.stdout} to the log) as one JSON line.
    """
    out = outFile if outFile is not None else sys.stdout

    @provider(ILogObserver)
    def observe(event: dict[str, Any]) -> None:
        try:
            text = jsonLine(event)
        except Exception as e:  # never lose a line: say what could not be written
            text = json.dumps({"time": None, "level": "error", "namespace": __name__,
                               "text": f"cannot write a log event as JSON: {e!r}"})
        out.write(text + "\n")
        out.flush()

    return observe


class SecondTimes:
    """
    Twisted's L{formatTime}, each text made once a second.

    twistd's text log observer (C{textFileLogObserver}) formats the time of
    every line with the local time zone, worked out again for each line
    (C{FixedOffsetTimeZone.fromLocalTimeStamp}): some 8 µs a line, most of
    what the "joined" line of a login cost (docs/performance.md).  Its
    format (C{%Y-%m-%dT%H:%M:%S%z}) names whole seconds, and a zone's
    offset changes only on a whole second, so every line of one second has
    the same text: this keeps the last second's.  The text is Twisted's
    own, made by L{formatTime}; a format with C{%f}, a time before 1970 or
    one a microsecond short of the next second (which C{datetime} may
    round up) is formatted afresh each time.
    """

    def __init__(self) -> None:
        self._second = -1
        self._format: str | None = None
        self._text = ""

    def __call__(self, when: float | None, timeFormat: str | None = timeFormatRFC3339,
                 default: str = "-") -> str:
        if when is None or timeFormat is None or when < 0 or "%f" in timeFormat:
            return formatTime(when, timeFormat, default)
        second = int(when)
        if when - second >= 0.999999:
            return formatTime(when, timeFormat, default)
        if second != self._second or timeFormat != self._format:
            self._text = formatTime(when, timeFormat, default)
            self._second, self._format = second, timeFormat
        return self._text


def useSecondTimes() -> None:
    """
    Have twistd's text log observer (C{twisted.logger.textFileLogObserver},
    which looks C{formatTime} up in its module for every line) format each
    second's time once (L{SecondTimes}); the lines say what they said.
    Called as the server starts (L{chatthing.startup.StartupService}).
    """
    if getattr(_twistedFileLog, "formatTime", None) is formatTime:
        setattr(_twistedFileLog, "formatTime", SecondTimes())
