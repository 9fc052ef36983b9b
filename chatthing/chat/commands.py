"""
Slash commands: what C{say} does with a message that starts with C{/}.

C{/me ACTION} shows "* alice ACTION" to the room; C{/nick NAME} renames the
user; C{/who} and C{/help} answer the asker only.  A message starting with
C{//} is said as it is, less one slash.
"""

import re
from typing import Any, Callable

from twisted.internet.defer import Deferred

from .parts import Chatter
from .validation import InvalidMessage, InvalidUsername, UnknownCommand, checkMessage

_COMMAND = re.compile(r"/(\S*)\s*(.*)", re.DOTALL)


def run(chatter: Chatter, text: str) -> Any:
    """
    Say C{text} as C{chatter}, or run the command it is.

    @return: the new username, for C{/nick}; else L{None}; or a L{Deferred}
        firing with it once the room's backplane has taken what was said.
    @raise InvalidMessage: if C{text} cannot be said.
    @raise UnknownCommand: if C{text} is a command the chat does not know.
    """
    message = checkMessage(text)
    if not message.startswith("/"):
        return chatter.room.tellEverybody(chatter, message)
    if message.startswith("//"):
        return chatter.room.tellEverybody(chatter, message[1:])
    match = _COMMAND.fullmatch(message)
    assert match is not None
    word, rest = match.group(1), match.group(2).strip()
    command = COMMANDS.get(word.lower())
    if command is None:
        shown = word if len(word) <= 20 and word.isprintable() else "that"
        raise UnknownCommand(
            f"Unknown command /{shown}. Commands: {commandList()} "
            "(start with // to say something that begins with /)."
        )
    return command[0](chatter, rest)


def me(chatter: Chatter, rest: str) -> Any:
    if not rest:
        raise InvalidMessage("Usage: /me ACTION, for example /me waves")
    return chatter.room.act(chatter, rest)


def nick(chatter: Chatter, rest: str) -> Deferred:
    """
    Rename C{chatter} to C{rest}: a L{Deferred} firing with the name as
    stored, once the roster has it.
    """
    if not rest:
        raise InvalidUsername("Usage: /nick NEWNAME")
    return chatter.room.rename(chatter, rest)


def who(chatter: Chatter, rest: str) -> Deferred | None:
    """
    C{/who}: who is in the room (past C{--presence-list-max}, the names
    listed and how many more); C{/who NAME}: whether NAME is, looked up in
    the room's shared list, so a name outside the listed window is found
    too.
    """
    room = chatter.room
    if rest:
        def found(name: str | None) -> None:
            chatter.tell(f"{name} is in #{room.name}." if name is not None
                         else f"No one called {rest} is in #{room.name}.")

        def failed(failure: Any) -> None:
            chatter.tell(f"Could not look {rest} up right now; try again in a moment.")

        return room.lookup(rest).addCallbacks(found, failed)
    here, count = room.presence(), room.presenceCount()
    more = f" and {count - len(here)} more" if count > len(here) else ""
    chatter.tell(f"In #{room.name} ({count} online): {', '.join(here)}{more}")
    return None


def help(chatter: Chatter, rest: str) -> None:
    lines = [f"{usage} \u2014 {what}" for _, usage, what in COMMANDS.values()]
    chatter.tell("Commands:\n" + "\n".join(lines))


#: Each command: what runs it, its usage, and what it does.
COMMANDS: dict[str, tuple[Callable[[Chatter, str], Any], str, str]] = {
    "help": (help, "/help", "list the commands (only you see it)"),
    "me": (me, "/me ACTION", "show an action, like * alice waves"),
    "nick": (nick, "/nick NEWNAME", "change your username"),
    "who": (who, "/who [NAME]", "list who is in this room, or say whether NAME is (only you see it)"),
}


def commandList() -> str:
    return ", ".join(f"/{name}" for name in COMMANDS)
