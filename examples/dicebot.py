"""
A dice bot for the chat: someone says "!roll 2d6", the bot says the result.

    python examples/dicebot.py --url ws://127.0.0.1:8080/live --name dicebot

It logs in under --name (in --room, if given), answers "!roll NdM" (N dice of
M sides, 1-20 dice of 2-1000 sides; "!roll" alone is 1d6) and "!roll help",
and stays on through drops and server restarts: chatthing.client reconnects
and resumes by itself.  Ctrl-C (or SIGTERM) makes it leave the chat.
"""

import argparse
import random
import re
import sys

from twisted.internet import defer, task
from twisted.logger import globalLogBeginner, textFileLogObserver

from chatthing.client import ChatClient

ROLL = re.compile(r"^\s*!roll(?:\s+(\d*)d(\d+))?\s*$", re.IGNORECASE)
MAX_DICE = 20
MAX_SIDES = 1000


def answer(username: str, text: str, roll=random.randint) -> str | None:
    """
    What the bot says when C{username} says C{text}, or L{None} (not for it).
    """
    if text.strip().lower() == "!roll help":
        return f"{username}: say !roll NdM to roll N dice of M sides, e.g. !roll 2d6"
    match = ROLL.match(text)
    if match is None:
        return None
    count = int(match.group(1) or 1)
    sides = int(match.group(2) or 6)
    if not (1 <= count <= MAX_DICE and 2 <= sides <= MAX_SIDES):
        return f"{username}: I roll 1 to {MAX_DICE} dice of 2 to {MAX_SIDES} sides"
    dice = [roll(1, sides) for _ in range(count)]
    shown = " + ".join(map(str, dice)) + (f" = {sum(dice)}" if count > 1 else "")
    return f"{username} rolled {count}d{sides}: {shown}"


class DiceBot(ChatClient):
    """
    A chat user that answers rolls.
    """

    def onMessage(self, username: str, text: str) -> None:
        if username == self.username:
            return
        reply = answer(username, text)
        if reply is not None:
            self.say(reply).addErrback(lambda failure: print(
                f"could not answer: {failure.getErrorMessage()}", file=sys.stderr))


async def main(reactor, argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="A dice bot for chatthing.")
    parser.add_argument("--url", default="ws://127.0.0.1:8080/live",
                        help="the chat's WebSocket (default: %(default)s)")
    parser.add_argument("--name", default="dicebot", help="the bot's username")
    parser.add_argument("--room", default=None, help="the room to join (default: the main one)")
    parser.add_argument("--verbose", action="store_true", help="log the client's reconnections")
    options = parser.parse_args(argv)
    if options.verbose:
        globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)])
    bot = await DiceBot.connect(options.url, options.name, options.room)
    print(f"{bot.username} is in the chat at {options.url}", flush=True)
    finished: defer.Deferred = defer.Deferred()
    # On Ctrl-C or SIGTERM, leave the chat before the reactor stops.
    reactor.addSystemEventTrigger("before", "shutdown", bot.close)
    await finished  # runs until the process is stopped


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, sys.argv[1:])))
