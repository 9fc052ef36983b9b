"""
What was said in a room, typed: L{Said} (a message or a C{/me} action, who,
what, when), and the one place that turns it into the widget's calls and
back.

A room's history is kept from what its stream delivers (so that it is the
same on every process sharing the room), and a page that joins is shown
it with one C{displayHistory} call: both directions live here, beside the
typed form, instead of method names matched wherever a call is read.
"""

from dataclasses import dataclass
from typing import Any, Literal

from . import widget

#: The kinds of line a history keeps.
MESSAGE: Literal["message"] = "message"
ACTION: Literal["action"] = "action"

Kind = Literal["message", "action"]

_METHOD_OF: dict[str, str] = {MESSAGE: widget.DISPLAY_USER_MESSAGE, ACTION: widget.DISPLAY_ACTION}
_KIND_OF: dict[str, Kind] = {widget.DISPLAY_USER_MESSAGE: MESSAGE, widget.DISPLAY_ACTION: ACTION}


@dataclass(frozen=True, slots=True)
class Said:
    """
    One line of a room's history.

    @ivar kind: L{MESSAGE} or L{ACTION}.
    @ivar who: the speaker's username.
    @ivar text: what was said (checked already).
    @ivar time: when, in milliseconds since the epoch (the room's last
        C{messageTime}; 0 if none came yet).
    """

    kind: Kind
    who: str
    text: str
    time: int = 0

    def call(self) -> tuple[str, list[Any]]:
        """
        The widget call that shows it live: C{displayUserMessage} or
        C{displayAction}, with the speaker and the text.
        """
        return _METHOD_OF[self.kind], [self.who, self.text]

    def entry(self) -> list[Any]:
        """
        Its entry in C{displayHistory}: C{[kind, who, text, time]}, as the
        widget reads it.
        """
        return [self.kind, self.who, self.text, self.time]

    @classmethod
    def fromCall(cls, method: str, args: list[Any], time: int) -> "Said | None":
        """
        The line a call delivered by a room's stream shows, said at C{time};
        L{None} if the call shows no line of the history.
        """
        kind = _KIND_OF.get(method)
        if kind is None or len(args) != 2 or not all(isinstance(arg, str) for arg in args):
            return None
        return cls(kind, args[0], args[1], time)


def historyCall(lines: "list[Said]") -> tuple[str, list[Any]]:
    """
    The one C{displayHistory} call that shows a joining page C{lines}.
    """
    return widget.DISPLAY_HISTORY, [[said.entry() for said in lines]]
