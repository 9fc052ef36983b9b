"""
The errors of the live runtime.

Each is a small named exception, as in L{twisted.words.ewords}: code catches the
one it means, and the browser sees the class name and message (never a
traceback), because that pair is what the wire protocol carries.
"""


class LiveError(Exception):
    """
    Base of every error the runtime itself raises.
    """


class CallRefused(LiveError):
    """
    Base for an application's own refusals ("that name is taken"): raise a
    subclass from an exposed method and the page gets its class name and
    message as the call's error, and the log one line with no traceback.
    """


class NoSuchMethod(LiveError):
    """
    The peer asked for a method that does not exist or is not exposed.
    """


class BadArguments(LiveError):
    """
    A call's arguments do not fit the method: wrong count or wrong types.
    """


class ProtocolError(LiveError):
    """
    A frame broke the wire protocol: not JSON, not an object, unknown type,
    missing or mistyped fields, or too large.
    """


class RemoteError(LiveError):
    """
    The browser's method raised.  C{name} and C{message} are the JavaScript
    error's own.
    """

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


class ElementDetached(LiveError):
    """
    The element's page has gone away; remote calls can no longer be made,
    and calls that were waiting for an answer will never get one.
    """


class RateLimited(LiveError):
    """
    The page sent frames faster than its rate limit allows: slow down.
    """


class TooManyPendingCalls(LiveError):
    """
    The page has as many calls running as it may; wait for their answers.
    """


class SessionMoved(Exception):
    """
    Why a session ended in this process: another process took it over (its
    page came back there).  The session goes on; an application should not
    treat its user as gone.
    """
