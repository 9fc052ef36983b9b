"""
The examples: the dice bot (examples/dicebot.py) run as a program against a
real chat server, and the Athena tutorial's echo element
(chatthing.examples.echobox) over WebSockets, under twistd exactly as the
docs say, and in a browser.  Waits have deadlines, never fixed sleeps.
"""

import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest_twisted
from conftest import eventually, startChatServer, subprocessEnvironment
from playwright.sync_api import expect
from test_browser import CHROMIUM, CHROMIUM_ARGS, DEADLINE, browser  # noqa: F401 (fixture)

from chatthing.examples.echobox import EchoElement
from chatthing.live import LiveElement, Stream, expose
from chatthing.live.testing import LiveTestClient

ROOT = Path(__file__).resolve().parent.parent
DICEBOT = ROOT / "examples" / "dicebot.py"

#: Seconds a test waits for a condition before it fails.
WAIT = 20.0

sys.path.insert(0, str(DICEBOT.parent))
import dicebot

ECHO = "chatthing.examples.echobox.EchoElement"


# The dice bot


def test_diceAnswers():
    """!roll NdM rolls N dice of M sides; plain !roll is 1d6; anything else is not for the bot."""
    fixed = lambda low, high: high
    assert dicebot.answer("alice", "!roll 2d6", fixed) == "alice rolled 2d6: 6 + 6 = 12"
    assert dicebot.answer("alice", " !ROLL d20 ", fixed) == "alice rolled 1d20: 20"
    assert dicebot.answer("alice", "!roll", fixed) == "alice rolled 1d6: 6"
    assert "1 to 20 dice" in dicebot.answer("alice", "!roll 99d6", fixed)
    assert "!roll NdM" in dicebot.answer("alice", "!roll help", fixed)
    for text in ("hello", "roll 2d6", "!roll 2d6 please", "!rolling"):
        assert dicebot.answer("alice", text, fixed) is None


@pytest_twisted.ensureDeferred
async def test_diceBotAnswersInTheChat(chatServer):
    """The bot, run as a program, logs in, answers a user's roll in the room, and leaves when stopped."""
    bot = subprocess.Popen(
        [sys.executable, str(DICEBOT), "--url", chatServer.wsUrl, "--name", "dicebot"],
        env=subprocessEnvironment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        await eventually(lambda: "dicebot" in chatServer.room.online() or bot.poll() is not None,
                         "the bot to log in")
        assert bot.poll() is None, bot.stdout.read()
        alice = await chatServer.login("alice")
        await alice.call("say", "!roll 3d6")
        rolled = re.compile(r"^alice rolled 3d6: ([1-6]) \+ ([1-6]) \+ ([1-6]) = (\d+)$")
        reply = await alice.waitFor(
            lambda: next((args[1] for args in alice.calls("displayUserMessage")
                          if args[0] == "dicebot" and rolled.match(args[1])), None),
            "the bot's answer", WAIT)
        dice = [int(n) for n in rolled.match(reply).groups()]
        assert sum(dice[:3]) == dice[3]
        await alice.call("say", "just chatting")
        await alice.call("say", "!roll 1d2")
        await alice.waitFor(
            lambda: sum(1 for args in alice.calls("displayUserMessage") if args[0] == "dicebot") == 2,
            "the second answer", WAIT)
        bot.send_signal(signal.SIGTERM)
        await alice.waitFor(lambda: [" * user dicebot has left the room"] in alice.calls("displayMessage"),
                            "the bot to leave", WAIT)
    finally:
        if bot.poll() is None:
            bot.kill()
        output = bot.communicate(timeout=WAIT)[0]
    assert "dicebot is in the chat" in output


# The echo element


@pytest_twisted.async_yield_fixture
async def echoServer():
    """
    The echo example served in this process on an ephemeral loopback port.
    """
    server = await startChatServer(elementFactory=EchoElement)
    yield server
    await server.stop()


@pytest_twisted.ensureDeferred
async def test_echoOverTheProtocol(echoServer):
    """say(message) is answered, and the message comes back to that page only, through addText."""
    page = await echoServer.connect()
    other = await echoServer.connect()
    assert page.welcome["element"]["module"] == "/js/EchoThing.js"
    assert page.welcome["element"]["widget"] == "EchoWidget"
    for text in ("hello", "<b>tags</b> & all", "hello"):
        answer = await page.call("say", text)
        assert answer["type"] == "result" and answer["value"] is None, answer
    await page.waitFor(lambda: len(page.calls("addText")) == 3, "three echoes")
    assert page.calls("addText") == [["hello"], ["<b>tags</b> & all"], ["hello"]]
    assert [f["type"] for f in page.frames if f.get("method") == "addText"] == ["call"] * 3
    assert other.calls() == []
    answer = await page.call("shout", "x")
    assert answer["error"]["name"] == "NoSuchMethod"


@pytest_twisted.ensureDeferred
async def test_echoMarkup(echoServer):
    """The echo element draws the tutorial's form, with no inline script or style."""
    page = await echoServer.connect(hello={"render": True})
    html = page.welcome["element"]["html"]
    for name in ("echoBox", "scrollArea", "message"):
        assert f'name="{name}"' in html
    assert "<script" not in html and "style=" not in html and "<style" not in html


@pytest_twisted.ensureDeferred
async def test_echoUnderTwistd(startTwistd):
    """twistd -n chat-widget --element=chatthing.examples.echobox.EchoElement serves the echo page, its assets and its socket."""
    server = startTwistd(element=ECHO)
    for path, kind in (("/", "text/html"), ("/js/EchoThing.js", "javascript"),
                       ("/css/echobox.css", "text/css")):
        with urllib.request.urlopen(server.url + path.lstrip("/"), timeout=WAIT) as response:
            assert response.status == 200
            assert kind in response.headers["Content-Type"]
    page = await LiveTestClient.connect(f"ws://127.0.0.1:{server.port}/live")
    try:
        answer = await page.call("say", "over twistd")
        assert answer["type"] == "result", answer
        await page.waitFor(lambda: ["over twistd"] in page.calls("addText"), "the echo")
    finally:
        page.close()
        await page.closed()


def test_echoInTheBrowser(startTwistd, browser):
    """In a browser, what is typed into the echo page comes back as a line, shown as text."""
    server = startTwistd(element=ECHO)
    context = browser.new_context()
    context.set_default_timeout(DEADLINE)
    errors = []
    try:
        page = context.new_page()
        page.on("console", lambda m: m.type in ("error", "warning") and errors.append(m.text))
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(server.url)
        page.wait_for_selector('html[data-live-ready="true"]')
        lines = page.locator('[name="scrollArea"] .echo-line')
        page.fill('[name="message"]', "hello, echo")
        page.click('[name="send"]')
        expect(lines).to_have_text(["hello, echo"])
        expect(page.locator('[name="message"]')).to_have_value("")
        page.fill('[name="message"]', "<b>not bold</b>")
        page.press('[name="message"]', "Enter")
        expect(lines).to_have_text(["hello, echo", "<b>not bold</b>"])
        assert page.locator('[name="scrollArea"] b').count() == 0
        assert errors == []
    finally:
        context.close()


# The broadcast example of docs/writing-an-element.md

board = Stream("board")


class BoardElement(LiveElement):
    """
    The docs' shared board: the echo page, with what is said sent to every page.
    """

    template = "echobox.html"
    jsModule = "/js/EchoThing.js"
    jsClass = "EchoWidget"

    def connected(self) -> None:
        self.subscribe(board)

    @expose
    def say(self, message: str) -> None:
        board.emit("addText", message)


@pytest_twisted.ensureDeferred
async def test_boardFromTheDocs():
    """The docs' Stream example works: what one page says reaches every page, in one order."""
    server = await startChatServer(elementFactory=BoardElement)
    try:
        pages = [await server.connect() for _ in range(3)]
        for n, page in enumerate(pages):
            await page.call("say", f"from page {n}")
        for page in pages:
            await page.waitFor(lambda p=page: len(p.calls("addText")) == 3, "every message")
        assert pages[0].calls("addText") == pages[1].calls("addText") == pages[2].calls("addText")
        assert {f["type"] for f in pages[0].frames if f.get("method") == "addText"} == {"emit"}
    finally:
        await server.stop()
