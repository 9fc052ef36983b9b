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
import selectors
import socket
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import LoopbackAddress, TwistdServer, _collectLines, runTwistd
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    expect,
    sync_playwright,
)
from playwright.sync_api import (
    Error as PlaywrightError,
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
        try:
            expect(field_).to_have_value("")
        except AssertionError as e:
            # The page puts the text back when the call fails: say why.
            why = self.page.locator('[name="sendError"]').text_content()
            raise AssertionError(f"{text!r} was not sent: {why!r}") from e

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
def openChat(browser: Browser, request):
    """
    Open the chat in a new browser context (a separate "user"); every tab
    collects its console errors and uncaught exceptions.  The chat is the
    C{server} fixture's, unless C{url} says otherwise.
    """
    contexts = []

    def open(width: int = 900, height: int = 600, scale: float = 1,
             url: str | None = None) -> ChatPage:
        if url is None:
            url = request.getfixturevalue("server").url
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
        page.goto(url)
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
                presence: document.querySelector('[name="presence"]').querySelectorAll("i").length,
            };
        }"""
    )
    # The title is the widget's: the room and how many are online.
    assert found == {"elements": 0, "title": "#lobby (1 online) · chatthing", "who": 0, "presence": 0}
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


def test_reconnectingIndicator(openChat, server):
    """Stopping the server shows a "reconnecting" indicator that stays while retries fail, and disables the inputs."""
    alice = openChat()
    status = alice.page.locator(".live-status")
    expect(status).to_have_attribute("data-live-status", "connected")
    expect(status).to_be_hidden()
    alice.login("alice")
    server.stop()
    alice.expectLine("The server is restarting. You will be reconnected.")
    expect(status).to_have_attribute("data-live-status", "reconnecting")
    expect(status).to_be_visible()
    expect(status).to_contain_text("Reconnecting")
    expect(alice.page.locator('[name="userMessage"]')).to_be_disabled()
    # Several attempts later, it is still trying, and still says so.
    alice.page.wait_for_function("() => globalThis.liveSocket.backoff.attempts >= 3")
    expect(status).to_have_attribute("data-live-status", "reconnecting")
    expect(status).to_be_visible()
    inputs = alice.page.locator("input")
    expect(inputs).to_have_count(4)
    for field_ in inputs.all():
        expect(field_).to_be_disabled()


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
    # Long lines, which wrap on a phone, so that few overflow the page:
    # each costs bob two frames (typing, then say), and 15 of them stay
    # within a page's burst of 40, however fast the browser types.
    for n in range(15):
        bob.say(f"line {n} " + "and some more words to wrap " * 4)
    alice.expectLine("bob: line 14 and some")
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


# Dropping and restarting.

def resetAndClose(sock: socket.socket) -> None:
    """
    Close C{sock} with a TCP reset: no FIN, no WebSocket closing handshake,
    as when a network fails.
    """
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class FlakyProxy(LoopbackAddress):
    """
    A TCP proxy on a loopback port to C{targetPort}, in a thread of its own
    (the reactor is blocked while a browser test runs), which can break every
    connection through it with a reset (L{cut}) and refuse new ones for a
    while (L{block}).  Every socket is handled by the proxy's thread, so a
    cut is a real reset, not a close racing a blocked C{recv}.
    """

    def __init__(self, targetPort: int) -> None:
        self.targetPort = targetPort
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.peers: dict[socket.socket, socket.socket] = {}
        self.blocked = False
        self.accepted = 0
        self.refused = 0
        self._commands: list = []
        self._lock = threading.Lock()
        self._running = True
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def cut(self) -> None:
        """
        Reset every connection through the proxy, now.
        """
        self._do(self._cut)

    def block(self, blocked: bool) -> None:
        """
        Reset new connections as soon as they arrive (or stop doing so).
        """
        self._do(lambda: setattr(self, "blocked", blocked))

    def stop(self) -> None:
        self._do(self._cut)
        self._running = False
        self._thread.join(5)
        self.listener.close()

    def _do(self, command, deadline: float = 5.0) -> None:
        done = threading.Event()
        with self._lock:
            self._commands.append((command, done))
        assert done.wait(deadline), "the proxy did not act in time"

    def _run(self) -> None:
        while self._running:
            with self._lock:
                commands, self._commands = self._commands, []
            for command, done in commands:
                command()
                done.set()
            for key, _ in self.selector.select(timeout=0.02):
                if key.fileobj is self.listener:
                    self._accept()
                else:
                    self._forward(key.fileobj)

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return
        if self.blocked:
            self.refused += 1
            resetAndClose(conn)
            return
        self.accepted += 1
        upstream = socket.create_connection(("127.0.0.1", self.targetPort), timeout=5)
        for sock in (conn, upstream):
            sock.setblocking(True)
            sock.settimeout(5)
            self.selector.register(sock, selectors.EVENT_READ)
        self.peers[conn], self.peers[upstream] = upstream, conn

    def _forward(self, sock: socket.socket) -> None:
        peer = self.peers.get(sock)
        if peer is None:
            return
        try:
            data = sock.recv(65536)
            if data:
                peer.sendall(data)
                return
        except OSError:
            pass
        self._close(sock, peer)

    def _close(self, *socks: socket.socket) -> None:
        for sock in socks:
            self.peers.pop(sock, None)
            try:
                self.selector.unregister(sock)
            except (KeyError, ValueError):
                pass
            resetAndClose(sock)

    def _cut(self) -> None:
        for sock in list(self.peers):
            self._close(sock)


@pytest.fixture
def flakyProxy(server):
    """
    A L{FlakyProxy} in front of the C{server} fixture's chat.
    """
    proxy = FlakyProxy(server.port)
    yield proxy
    proxy.stop()


def watchStates(chat: ChatPage) -> None:
    """
    Record the page's connection states from now on, in C{window.liveStates}.
    """
    chat.page.evaluate("""() => {
        window.liveStates = [];
        globalThis.liveSocket.onStateChange((state) => window.liveStates.push(state));
    }""")


def unexpectedErrors(chat: ChatPage) -> list[str]:
    """
    The page's console errors, but for the browser's own reports of failed
    WebSocket connections (expected while the server cannot be reached).
    """
    return [error for error in chat.errors if "WebSocket connection to" not in error]


def test_reconnectAfterDrop(openChat, flakyProxy):
    """A page whose connection breaks reconnects by itself, gets what it missed once and in order, and is still its user."""
    alice = openChat()
    alice.login("alice")
    bob = openChat(url=flakyProxy.url)
    bob.login("bob")
    alice.expectLine("user bob has joined the room")
    alice.say("before the drop")
    bob.expectLine("alice: before the drop")
    session = bob.page.evaluate("() => globalThis.liveSocket.session")
    watchStates(bob)
    status = bob.page.locator(".live-status")

    flakyProxy.block(True)
    flakyProxy.cut()
    expect(status).to_have_attribute("data-live-status", "reconnecting")
    expect(status).to_be_visible()
    expect(bob.page.locator('[name="userMessage"]')).to_be_disabled()
    missed = [f"while bob was away {n}" for n in range(5)]
    for text in missed:
        alice.say(text)
        alice.expectLine(f"alice: {text}")
    # Bob's page keeps knocking, and is refused, while alice talks.
    bob.page.wait_for_function("() => globalThis.liveSocket.backoff.attempts >= 2")
    assert bob.page.evaluate("() => globalThis.liveSocket.state") == "reconnecting"
    flakyProxy.block(False)

    expect(status).to_have_attribute("data-live-status", "connected")
    expect(status).to_be_hidden()
    conversation = [f"alice: {text}" for text in ["before the drop", *missed]]
    expect(bob.scrollArea.locator(".message.user")).to_have_text(conversation)
    states = bob.page.evaluate("() => window.liveStates")
    assert states[0] == "reconnecting" and states[-1] == "connected", states
    assert bob.page.evaluate("() => globalThis.liveSocket.session") == session
    assert flakyProxy.refused >= 1

    # Still bob, with no new login, and heard.
    expect(bob.page.locator('[name="loggedInAs"]')).to_have_text("Logged in as bob")
    expect(bob.page.locator('[name="chooseBox"]')).to_be_hidden()
    expect(bob.page.locator("[data-live-notice]")).to_be_hidden()
    expect(bob.page.locator('[name="userMessage"]')).to_be_enabled()
    bob.say("back again")
    alice.expectLine("bob: back again")
    expect(alice.scrollArea.locator(".message.user")).to_have_text(
        [*conversation, "bob: back again"])
    expect(bob.scrollArea.locator(".message.user")).to_have_text(
        [*conversation, "bob: back again"])
    # For alice, bob never left.
    expect(alice.lines.filter(has_text="user bob has left")).to_have_count(0)
    expect(alice.lines.filter(has_text="user bob has joined")).to_have_count(1)
    assert alice.errors == []
    assert unexpectedErrors(bob) == []


#: Milliseconds within which a page that leaves must be announced (a page
#: that drops gets a 30 s grace period instead).
LEAVE_PROMPTLY = 2_500


@pytest.mark.parametrize("how", ["reload", "navigate"])
def test_leavingPageIsAnnouncedPromptly(openChat, server, how):
    """A page reloaded or navigated away leaves at once: the others see the leave alert within about 2 s."""
    alice = openChat()
    alice.login("alice")
    bob = openChat()
    bob.login("bob")
    alice.expectLine("user bob has joined the room")
    left = alice.lines.filter(has_text="user bob has left the room")
    if how == "reload":
        bob.page.reload(wait_until="commit")
    else:
        bob.page.goto("about:blank", wait_until="commit")
    expect(left).to_have_count(1, timeout=LEAVE_PROMPTLY)
    if how == "reload":
        # The reloaded page is a new visitor: asked for a name, no notice.
        bob.page.wait_for_selector('html[data-live-ready="true"]')
        expect(bob.page.locator('[name="chooseBox"]')).to_be_visible()
        expect(bob.page.locator("[data-live-notice]")).to_be_hidden()
        bob.login("bob")
        expect(alice.lines.filter(has_text="user bob has joined the room")).to_have_count(2)
    assert alice.errors == []


class RestartableServer(LoopbackAddress):
    """
    The chat under twistd on one fixed loopback port, which can be stopped
    and started again there (as after a deployment).
    """

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        with socket.create_server(("127.0.0.1", 0)) as probe:
            self.port = probe.getsockname()[1]
        self.running: TwistdServer | None = None
        self.started: list[TwistdServer] = []

    def start(self) -> TwistdServer:
        process = runTwistd(
            ["chat-widget", "--element=chatthing.chatterbox.chat",
             "--listen", f"tcp:{self.port}:interface=127.0.0.1"],
            self.cwd,
        )
        lines: list[str] = []
        threading.Thread(target=_collectLines, args=(process, lines), daemon=True).start()
        server = TwistdServer(process, self.port, lines)
        self.started.append(server)
        server.waitForLog(rf"chat listening on http://127\.0\.0\.1:{self.port}/")
        self.running = server
        return server

    def stop(self) -> None:
        if self.running is not None:
            self.running.stop()
            self.running = None


@pytest.fixture
def restartableServer(tmp_path):
    server = RestartableServer(tmp_path)
    server.start()
    yield server
    for started in server.started:
        started.stop()


def test_serverRestartStartsFreshSession(openChat, restartableServer):
    """After the server restarts (no state file), the page reconnects by itself to a fresh session, keeps its transcript, logs in again as its name and says so (issue 15)."""
    alice = openChat(url=restartableServer.url)
    alice.login("alice")
    alice.say("before the restart")
    alice.expectLine("alice: before the restart")
    watchStates(alice)
    status = alice.page.locator(".live-status")
    notice = alice.page.locator("[data-live-notice]")
    expect(notice).to_be_hidden()

    restartableServer.stop()
    expect(status).to_have_attribute("data-live-status", "reconnecting")
    expect(status).to_be_visible()
    restartableServer.start()

    expect(status).to_have_attribute("data-live-status", "connected")
    expect(status).to_be_hidden()
    alice.expectLine("The server restarted; you are logged in again as alice.")
    expect(notice).to_be_hidden()
    expect(alice.page.locator('[name="chooseBox"]')).to_be_hidden()
    expect(alice.page.locator('[name="loggedInAs"]')).to_have_text("Logged in as alice")
    alice.expectLine("alice: before the restart")
    states = alice.page.evaluate("() => window.liveStates")
    assert states[0] == "reconnecting" and states[-1] == "connected", states
    # The new server knew nobody: the page took its name again, and chat works.
    alice.say("after the restart")
    alice.expectLine("alice: after the restart")
    assert unexpectedErrors(alice) == []
