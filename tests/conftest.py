"""
Fixtures shared by the tests: real servers on ephemeral loopback ports.

- C{chatServer}: the chat application served in this test process, on the
  reactor that pytest-twisted runs; for WebSocket tests.
- C{startTwistd}: starts C{twistd -n chat-widget ...} as a subprocess, exactly
  as README says, and finds its port in its log; for browser and command-line
  tests.
"""

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure

import chatthing

# In a checkout (editable install), the twistd plugin lives beside the
# package, not in site-packages: make twisted.plugins find it there too.
sys.path.append(str(Path(chatthing.__file__).resolve().parent.parent))

from chatthing.chat import Room
from chatthing.listening import ListeningService
from chatthing.live import LiveSettings, LiveSite
from chatthing.live.testing import LiveTestClient

#: Where the tests leave screenshots and server logs.
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


class LoopbackAddress:
    """
    Where a test's server or proxy listens: C{port} on C{127.0.0.1}; its
    page's and its WebSocket's URLs.
    """

    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def wsUrl(self) -> str:
        return f"ws://127.0.0.1:{self.port}/live"


@dataclass
class ChatServer(LoopbackAddress):
    """
    A chat server running in the test process.
    """

    room: Room
    site: LiveSite
    service: ListeningService
    port: int
    clients: list = field(default_factory=list)

    @property
    def connections(self) -> dict:
        """
        The server's open WebSocket connections.
        """
        return self.site.liveFactory.connections

    async def connect(self, **kwargs) -> LiveTestClient:
        """
        A new page connection, welcomed.
        """
        client = await LiveTestClient.connect(self.wsUrl, **kwargs)
        self.clients.append(client)
        return client

    async def login(self, username: str) -> LiveTestClient:
        """
        A new page connection, logged in as C{username}.
        """
        client = await self.connect()
        answer = await client.call("setUsername", username)
        assert answer["type"] == "result", answer
        return client

    def serverSide(self, client: LiveTestClient):
        """
        The server's protocol object for C{client}'s connection.
        """
        local = client.protocol.transport.getHost().port
        return next(c for c in self.connections if c.transport.getPeer().port == local)

    async def stop(self) -> None:
        """
        Close the clients, stop listening, and end every session still
        waiting for its page, so no timer outlives the test.
        """
        for client in self.clients:
            client.close()
        await self.service.stopService()
        for session in list(self.site.liveFactory.sessions.values()):
            session.end(Failure(ConnectionDone("the test is over")))


async def startChatServer(settings: LiveSettings = LiveSettings(), elementFactory=None,
                          description: str = "tcp:0:interface=127.0.0.1") -> ChatServer:
    """
    A fresh chat room (or C{elementFactory}'s elements) served with
    C{settings} on an ephemeral loopback port (or the endpoint
    C{description}, an C{ssl:} one for TLS).
    """
    room = Room()
    site = LiveSite(elementFactory or room.makeChatter, settings=settings)
    service = ListeningService(description, site, "test chat")
    service.startService()
    await service._listening
    return ChatServer(room, site, service, service.port.getHost().port)


@pytest_twisted.async_yield_fixture
async def chatServer():
    """
    A fresh chat room served on an ephemeral loopback port.
    """
    server = await startChatServer()
    yield server
    await server.stop()


#: Seconds a test waits for a condition before it fails.
DEADLINE = 10.0


async def eventually(condition, what: str, deadline: float = DEADLINE):
    """
    Wait until C{condition()} (state the test cannot be told about, such as
    the server's) is true, checking every few milliseconds; its value, or
    C{TimeoutError} after C{deadline} seconds.
    """
    end = reactor.seconds() + deadline
    while True:
        value = condition()
        if value:
            return value
        if reactor.seconds() > end:
            raise TimeoutError(f"waited {deadline}s for {what}")
        await task.deferLater(reactor, 0.01, lambda: None)


async def withDeadline(d: Deferred, deadline: float = DEADLINE):
    """
    The result of C{d}, or C{TimeoutError} (a cancelled Deferred) after
    C{deadline} seconds.
    """
    d.addTimeout(deadline, reactor)
    return await d


@pytest.fixture
def serverLog():
    """
    Every log event emitted while the test runs.
    """
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def logLines(events: list[dict], *words: str) -> list[str]:
    """
    The formatted log lines holding every one of C{words}.
    """
    lines = [formatEvent(e) or "" for e in events]
    return [line for line in lines if all(word in line for word in words)]


@pytest_twisted.async_yield_fixture
async def serve():
    """
    Start chat servers: C{await serve(settings, elementFactory=None,
    publicMetrics=False)}, the chat room's element by default.  All are
    stopped after the test, their connections cut and sessions ended.
    """
    servers: list[ChatServer] = []

    async def start(settings: LiveSettings = LiveSettings(), elementFactory=None,
                    publicMetrics: bool = False) -> ChatServer:
        server = await startChatServer(settings, elementFactory)
        if publicMetrics:
            server.site.serveMetrics()
        servers.append(server)
        return server

    yield start
    await stopServers(servers)


async def stopServers(servers: list[ChatServer]) -> None:
    """
    Stop C{servers}: their clients dropped, their connections cut, their
    sessions ended.
    """
    for server in servers:
        for client in server.clients:
            client.drop()
        for connection in list(server.connections):
            connection.transport.abortConnection()
        await server.stop()
        await eventually(lambda: not server.connections, "the connections to close")


def sourceRoot() -> Path:
    """
    The folder that holds the C{chatthing} package being tested (the checkout,
    or site-packages): a subprocess with it on C{PYTHONPATH} finds the same
    package and its twistd plugin.
    """
    return Path(chatthing.__file__).resolve().parent.parent


@dataclass
class TwistdServer(LoopbackAddress):
    process: subprocess.Popen
    port: int
    logLines: list

    def log(self) -> str:
        return "".join(self.logLines)

    def waitForLog(self, pattern: str, deadline: float = 15.0) -> re.Match:
        """
        Wait until a log line matches C{pattern}; the match.
        """
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            for line in list(self.logLines):
                match = re.search(pattern, line)
                if match:
                    return match
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no log line matched {pattern!r}; log:\n{self.log()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def subprocessEnvironment() -> dict[str, str]:
    """
    The environment for commands the tests run: this one, with the package
    under test on C{PYTHONPATH}.
    """
    return dict(os.environ, PYTHONPATH=str(sourceRoot()), PYTHONUNBUFFERED="1")


def twistdScript() -> str:
    """
    The C{twistd} command installed beside this test run's Python.
    """
    script = Path(sys.executable).parent / "twistd"
    assert script.exists(), f"twistd is not installed beside {sys.executable}"
    return str(script)


def runTwistd(args: list[str], cwd: Path) -> subprocess.Popen:
    """
    Start C{twistd -n ARGS} with this test run's Python, its log on stdout.
    """
    return subprocess.Popen(
        [twistdScript(), "-n", "--pidfile=", "--logfile=-", *args],
        cwd=cwd, env=subprocessEnvironment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _collectLines(process: subprocess.Popen, lines: list[str]) -> None:
    for line in process.stdout:
        lines.append(line)


@pytest.fixture
def startTwistd(tmp_path):
    """
    Start C{twistd -n chat-widget EXTRA...} on an ephemeral loopback port;
    stopped after the test.
    """
    started = []

    def start(*extra: str, element: str = "chatthing.chatterbox.chat") -> TwistdServer:
        process = runTwistd(
            ["chat-widget", f"--element={element}", "--listen", "tcp:0:interface=127.0.0.1", *extra],
            tmp_path,
        )
        lines: list[str] = []
        threading.Thread(target=_collectLines, args=(process, lines), daemon=True).start()
        server = TwistdServer(process, 0, lines)
        started.append(server)
        match = server.waitForLog(r"chat listening on http://127\.0\.0\.1:(\d+)/")
        server.port = int(match.group(1))
        return server

    yield start
    for server in started:
        server.stop()


def presenceShown(calls: list[tuple[str, list]]) -> list[str] | None:
    """
    The presence list a chat page shows after the calls C{(method, args)}
    it received, in order, as C{js/ChatThing.js} keeps it: a whole list
    (C{updatePresence}), then batches of who joined and left
    (C{presenceChanged}).  L{None} before any.
    """
    shown: dict[str, str] | None = None
    for method, args in calls:
        if method == "updatePresence":
            shown = {name.casefold(): name for name in args[0]}
        elif method == "presenceChanged" and shown is not None:
            joined, left = args[0], args[1]  # (and a big room's count)
            for name in left:
                if shown.get(name.casefold()) == name:
                    del shown[name.casefold()]
            for name in joined:
                shown[name.casefold()] = name
    if shown is None:
        return None
    return sorted(shown.values(), key=lambda name: (name.casefold(), name))


def presenceOf(client) -> list[str] | None:
    """
    L{presenceShown} for a L{LiveTestClient}'s page.
    """
    return presenceShown([(f["method"], f["args"]) for f in client.frames
                          if f["type"] in ("call", "emit")])


@pytest.fixture(autouse=True)
def collectorAsBefore():
    """
    The garbage collector's thresholds put back after each test: a test
    that starts the plugin's top service (L{chatthing.startup}) raises the
    young one for the whole process, as the server does.
    """
    import gc

    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)
