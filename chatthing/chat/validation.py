"""
What the chat accepts from a page: usernames, messages and room names, and
the errors that refuse the rest (each one a L{CallRefused}, so the page is
told why and the log gets one line).
"""

import re

from ..live import CallRefused
from .names import nameProblem

#: Longest username, in characters, after trimming.
MAX_USERNAME_LENGTH = 32

#: Longest chat message, in characters, after trimming.
MAX_MESSAGE_LENGTH = 2000

#: Characters that change the order in which the text around them is laid
#: out (embeddings, overrides and isolates, and the implicit marks): taken
#: out of messages, so "pay \u202e0001$ ot eciv" cannot show as "pay vice
#: to $1000".  The page lays each message out on its own (CSS
#: C{unicode-bidi: plaintext}), so right-to-left text still reads right.
BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")

#: A room's name: 1-32 letters, digits, "-" or "_" (compared case-insensitively).
ROOM_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")

#: The room at C{/}.
LOBBY = "lobby"

#: Where the other rooms are: C{/room/NAME}.
ROOM_PREFIX = "/room/"


class InvalidUsername(CallRefused):
    """
    The name is empty, too long, holds characters that do not print or do
    not show, or mixes alphabets (see L{chatthing.chat.names.nameProblem}).
    """


class UsernameTaken(CallRefused):
    """
    Someone online, in any room, already has that name, or one that looks
    like it (compared by L{chatthing.chat.names.nameKey}: case, width, accents
    written apart and lookalike letters do not count).
    """


class AlreadyLoggedIn(CallRefused):
    """
    This page has already chosen its name.
    """


class NotLoggedIn(CallRefused):
    """
    The page tried to speak before choosing a name.
    """


class InvalidMessage(CallRefused):
    """
    The message is empty, blank, or longer than L{MAX_MESSAGE_LENGTH}.
    """


class UnknownCommand(CallRefused):
    """
    The message starts with a slash command the chat does not know.
    """


def tooLong(what: str, limit: int, text: str) -> str | None:
    """
    What to say if C{text} is longer than C{limit} characters, else
    L{None}: one sentence for names and messages, the one the page says
    before sending (C{tooLong} in C{js/userText.js}).
    """
    if len(text) <= limit:
        return None
    return f"{what} are at most {limit} characters long (this one has {len(text)})."


def normalizeUsername(username: str) -> str:
    """
    C{username} trimmed, if it is a valid name.

    @raise InvalidUsername: saying what is wrong with it.
    """
    name = username.strip()
    if not name:
        raise InvalidUsername("Please choose a username.")
    problem = tooLong("Usernames", MAX_USERNAME_LENGTH, name) or nameProblem(name)
    if problem is not None:
        raise InvalidUsername(problem)
    return name


def checkMessage(text: str) -> str:
    """
    C{text} trimmed and without bidi controls (L{BIDI_CONTROLS}), if it
    can be said.

    @raise InvalidMessage: saying what is wrong with it.
    """
    message = BIDI_CONTROLS.sub("", text).strip()
    if not message:
        raise InvalidMessage("Messages cannot be empty.")
    problem = tooLong("Messages", MAX_MESSAGE_LENGTH, message)
    if problem is not None:
        raise InvalidMessage(problem)
    return message


def roomForPath(path: str) -> str | None:
    """
    The name of the room whose page is at C{path} (lower case), or L{None}
    if no room is there: C{/} is the lobby, C{/room/NAME} the room NAME.
    """
    if path == "/":
        return LOBBY
    if path.startswith(ROOM_PREFIX):
        name = path[len(ROOM_PREFIX):]
        if ROOM_NAME.fullmatch(name):
            return name.lower()
    return None
