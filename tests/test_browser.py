"""
The chat in a real browser: headless Debian Chromium driven by Playwright's
sync API, against C{twistd -n chat-widget --element=chatthing.chatterbox.chat}
run as a subprocess (the C{startTwistd} fixture).

Every wait is for a condition with a deadline (Playwright's C{expect} and
C{wait_for_*}), never a sleep.

Playwright's sync API and pytest-twisted both use greenlets, and they get
along: pytest-twisted runs each test function inside its reactor greenlet
(fixtures run in the main one), and every Playwright call switches to
Playwright's dispatcher greenlet and back to whichever greenlet made the
call.  The reactor is simply blocked while a browser test runs, which is
fine because the server is another process.  Two limits: this needs
pytest-twisted's default reactor (under C{--reactor=asyncio} an asyncio loop
is running and the sync API refuses to start), and a pytest-timeout that
fires inside a Playwright call leaves the reactor greenlet suspended, so
later tests in that run are unreliable (the per-call deadlines below are
far shorter than the run's timeout).
"""

import asyncio
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Error as PlaywrightError,
    Page,
    expect,
    sync_playwright,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

#: Milliseconds any one condition may take, generous for a loaded 2-core box.
DEADLINE = 20_000

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT = ROOT / "docs" / "screenshot.png"
ARTIFACTS = ROOT / "test-artifacts"

expect.set_options(timeout=DEADLINE)


@pytest.fixture(scope="module")
def browser():
    """
    One headless Chromium for the module; each test gets fresh contexts.

    Playwright's sync API sets its asyncio loop as the thread's running loop
    between calls; it is stopped (and the loop cleared) when this module's
    tests are done, so tests in other modules never see it.
    """
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000
        )
        try:
            yield chromium
        finally:
            chromium.close()
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:  # pragma: no cover - would break asyncio users in later modules
        raise AssertionError("Playwright left an asyncio loop marked as running")


@dataclass
class ChatPage:
    """
    One browser tab on the chat, with the errors its console reported.
    """

    page: Page
    errors: list = field(default_factory=list)

    @property
    def scrollArea(self):
        return self.page.locator('[name="scrollArea"]')

    @property
    def lines(self):
        return self.scrollArea.locator(".message")

    def login(self, name: str) -> None:
        """
        Log in as C{name} and wait until the page says so.
        """
        self.tryName(name)
        expect(self.page.locator('[name="loggedInAs"]')).to_have_text(f"Logged in as {name}")
        expect(self.page.locator('[name="userMessage"]')).to_be_visible()

    def tryName(self, name: str) -> None:
        """
        Submit C{name} in the login box, without waiting for the answer.
        """
        self.page.fill('[name="username"]', name)
        self.page.click('[name="GO"]')

    def say(self, text: str) -> None:
        """
        Send C{text}; the field is cleared as soon as it is sent.
        """
        field_ = self.page.locator('[name="userMessage"]')
        field_.fill(text)
        field_.press("Enter")
        expect(field_).to_have_value("")

    def expectLine(self, text: str | re.Pattern) -> None:
        """
        Wait until a line of the scroll area shows C{text}.
        """
        expect(self.lines.filter(has_text=text)).to_have_count(1)


@pytest.fixture
def server(startTwistd):
    """
    The tutorial's chat, served by twistd in a subprocess.
    """
    return startTwistd()


@pytest.fixture
def openChat(browser: Browser, server):
    """
    Open the chat in a new browser context (a separate "user"); every tab
    collects its console errors and uncaught exceptions.
    """
    contexts = []

    def open(width: int = 900, height: int = 600, scale: float = 1) -> ChatPage:
        context = browser.new_context(
            viewport={"width": width, "height": height}, device_scale_factor=scale
        )
        context.set_default_timeout(DEADLINE)
        contexts.append(context)
        page = context.new_page()
        chat = ChatPage(page)

        def onConsole(message: ConsoleMessage) -> None:
            if message.type in ("error", "warning"):
                chat.errors.append(f"console.{message.type}: {message.text}")

        page.on("console", onConsole)
        page.on("pageerror", lambda error: chat.errors.append(f"pageerror: {error}"))
        page.goto(server.url)
        page.wait_for_selector('html[data-live-ready="true"]')
        return chat

    yield open
    for context in contexts:
        try:
            context.close()
        except PlaywrightError:
            pass


def test_twoUsersChat(openChat):
    """Two users log in, see the join alerts, and see every message, attributed, in the same order."""
    alice = openChat()
    alice.login("alice")
    alice.expectLine("user alice has joined the room")
    bob = openChat()
    bob.login("bob")
    for chat in (alice, bob):
        chat.expectLine("user bob has joined the room")

    # A conversation: each speaker waits to see the line before answering.
    said = [("alice", "hello bob"), ("bob", "hi alice!"), ("alice", "how are you?"),
            ("bob", "fine, thanks"), ("bob", "and you?")]
    pages = {"alice": alice, "bob": bob}
    for who, text in said:
        pages[who].say(text)
        pages[who].expectLine(f"{who}: {text}")
    conversation = [f"{who}: {text}" for who, text in said]
    for chat in (alice, bob):
        expect(chat.scrollArea.locator(".message.user")).to_have_text(conversation)

    # Both talking at once: whatever order the server saw, both pages show it.
    for n in range(6):
        alice.say(f"alice burst {n}")
        bob.say(f"bob burst {n}")
    total = len(conversation) + 12
    for chat in (alice, bob):
        expect(chat.scrollArea.locator(".message.user")).to_have_count(total)
    seen = [chat.scrollArea.locator(".message.user").all_inner_texts() for chat in (alice, bob)]
    assert seen[0] == seen[1]
    for who in pages:
        assert [line for line in seen[0] if line.startswith(f"{who}: {who} burst")] == [
            f"{who}: {who} burst {n}" for n in range(6)
        ]
    assert alice.errors == bob.errors == []


def test_htmlShowsAsText(openChat):
    """HTML in messages and names is shown literally, never turned into elements."""
    alice = openChat()
    alice.login("<i>alice</i>")
    markup = '<img src=x onerror="document.title=\'pwned\'"><b>bold</b>'
    alice.say(markup)
    alice.expectLine(f"<i>alice</i>: {markup}")
    found = alice.page.evaluate(
        """() => {
            const area = document.querySelector('[name="scrollArea"]');
            return {
                elements: area.querySelectorAll("b, img, i").length,
                title: document.title,
                who: document.querySelector('[name="loggedInAs"]').querySelectorAll("i").length,
            };
        }"""
    )
    assert found == {"elements": 0, "title": "chatthing", "who": 0}
    assert alice.errors == []


def test_takenNameThenAnother(openChat):
    """A name taken case-insensitively is refused under the login box; another name then works."""
    alice = openChat()
    alice.login("alice")
    other = openChat()
    other.tryName("Alice")
    error = other.page.locator('[name="loginError"]')
    expect(error).to_contain_text("taken")
    expect(error).to_be_visible()
    expect(other.page.locator('[name="chooseBox"]')).to_be_visible()
    expect(other.page.locator('[name="sendLine"]')).to_be_hidden()
    other.login("carol")
    expect(error).to_be_hidden()
    for chat in (alice, other):
        chat.expectLine("user carol has joined the room")
    assert not alice.lines.filter(has_text=re.compile("user Alice has joined")).count()
    assert alice.errors == other.errors == []


def test_invalidName(openChat):
    """A name of only spaces is refused with an error, and the user stays logged out."""
    chat = openChat()
    expect(chat.page.locator('[name="username"]')).to_be_focused()
    chat.tryName("     ")
    error = chat.page.locator('[name="loginError"]')
    expect(error).to_have_text("Please choose a username.")
    expect(chat.page.locator('[name="loggedInAs"]')).to_be_hidden()
    expect(chat.page.locator('[name="sendLine"]')).to_be_hidden()
    assert chat.errors == []


def test_leaveAlert(openChat):
    """Closing a page tells the others that its user has left."""
    alice = openChat()
    alice.login("alice")
    bob = openChat()
    bob.login("bob")
    alice.expectLine("user bob has joined the room")
    bob.page.close()
    alice.expectLine("user bob has left the room")
    assert alice.errors == []


def test_alertsLookDifferent(openChat):
    """Alerts have their own CSS class and a visibly different style from user messages."""
    alice = openChat()
    alice.login("alice")
    alice.say("an ordinary message")
    alert = alice.lines.filter(has_text="has joined")
    message = alice.lines.filter(has_text="an ordinary message")
    expect(alert).to_have_class(re.compile(r"\balert\b"))
    expect(message).to_have_class(re.compile(r"\buser\b"))
    expect(message).not_to_have_class(re.compile(r"\balert\b"))
    style = """(node) => {
        const s = getComputedStyle(node);
        return [s.color, s.fontStyle, s.backgroundColor, s.textAlign];
    }"""
    assert alert.evaluate(style) != message.evaluate(style)


def test_disconnectedIndicator(openChat, server):
    """Stopping the server shows a visible "disconnected" indicator and disables sending."""
    alice = openChat()
    status = alice.page.locator(".live-status")
    expect(status).to_have_attribute("data-live-status", "connected")
    expect(status).to_be_hidden()
    alice.login("alice")
    server.stop()
    expect(status).to_have_attribute("data-live-status", "disconnected")
    expect(status).to_be_visible()
    expect(status).to_contain_text("Disconnected")
    expect(alice.page.locator('[name="userMessage"]')).to_be_disabled()


def test_noConsoleErrors(openChat):
    """Loading, logging in, chatting and leaving log no console errors or CSP violations."""
    alice = openChat()
    bob = openChat()
    alice.login("alice")
    bob.login("bob")
    alice.say("hello")
    bob.expectLine("alice: hello")
    bob.page.close()
    alice.expectLine("user bob has left the room")
    alice.page.reload()
    alice.page.wait_for_selector('html[data-live-ready="true"]')
    assert alice.errors == bob.errors == []


def test_messagesScrollIntoView(openChat):
    """On a phone-sized page, the message area follows the newest line as others talk."""
    alice = openChat(width=390, height=844, scale=2)
    alice.login("alice")
    bob = openChat()
    bob.login("bob")
    for n in range(30):
        bob.say(f"line {n}")
    alice.expectLine("bob: line 29")
    expect(alice.lines.last).to_be_in_viewport()
    alice.page.wait_for_function(
        """() => {
            const area = document.querySelector('[name="scrollArea"]');
            return area.scrollHeight > area.clientHeight
                && area.scrollTop + area.clientHeight >= area.scrollHeight - 2;
        }""",
        timeout=DEADLINE,
    )
    expect(alice.lines.first).not_to_be_in_viewport()
    ARTIFACTS.mkdir(exist_ok=True)
    alice.page.screenshot(path=str(ARTIFACTS / "phone.png"))
    assert alice.errors == bob.errors == []


def test_screenshot(openChat):
    """A chat in progress (two users, messages, alerts) renders well; saved as docs/screenshot.png."""
    alice = openChat()
    alice.login("alice")
    bob = openChat()
    bob.login("bob")
    alice.expectLine("user bob has joined the room")
    conversation = [
        (alice, "alice", "Hi Bob! Is the chat server up?"),
        (bob, "bob", "Yes: twistd -n chat-widget --element=chatthing.chatterbox.chat"),
        (alice, "alice", "Nice. Every open page gets each message at once."),
        (bob, "bob", "And <b>markup</b> stays plain text, as it should."),
    ]
    for speaker, name, text in conversation:
        speaker.say(text)
        for chat in (alice, bob):
            chat.expectLine(f"{name}: {text}")
    carol = openChat()
    carol.login("carol")
    alice.expectLine("user carol has joined the room")
    carol.say("Morning, both! Just passing through.")
    alice.expectLine("carol: Morning, both!")
    carol.page.close()
    alice.expectLine("user carol has left the room")
    bob.say("See you at the standup, Carol.")
    alice.expectLine("bob: See you at the standup")
    alice.page.locator('[name="userMessage"]').fill("Shall we try it on a phone next?")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    alice.page.screenshot(path=str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 10_000
    assert alice.errors == bob.errors == carol.errors == []
