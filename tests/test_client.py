"""
The Python chat client (L{chatthing.client.ChatClient}) and the live client
under it, against a real server in this process: login, saying, hearing,
alerts, other widget calls, and resuming after drops with a transcript that
has no gaps and no duplicates.  Waits have deadlines, never fixed sleeps.
"""

import socket
import subprocess
import sys

import pytest
import pytest_twisted
from conftest import eventually, subprocessEnvironment, withDeadline
from twisted.python.failure import Failure

from chatthing.client import ChatClient, pagePath
from chatthing.live import RemoteError
from chatthing.live.client import Backoff, ConnectionLost, LiveClient, State

#: Seconds a test waits for a condition before it fails.
DEADLINE = 15.0


class Recorder:
    """
    The callbacks of one L{ChatClient}, recording what it heard.
    """

    def __init__(self) -> None:
        self.messages: list[tuple[str, str]] = []
        self.alerts: list[str] = []
        self.calls: list[tuple[str, list]] = []
        self.answer = None

    def callbacks(self) -> dict:
        return {"onMessage": lambda who, text: self.messages.append((who, text)),
                "onAlert": self.alerts.append,
                "onCall": self.onCall}

    def onCall(self, method: str, args: list):
        self.calls.append((method, args))
        return self.answer


class NeverBackoff(Backoff):
    """
    A back-off so long that the test decides when to reconnect (C{retryNow}).
    """

    def next(self) -> float:
        return 3600.0


@pytest.fixture
def chatClients(chatServer):
    """
    Connect L{ChatClient}s to C{chatServer}; they are closed after the test.
    """
    clients = []

    async def connect(username: str, recorder: Recorder | None = None, **kwargs) -> ChatClient:
        callbacks = recorder.callbacks() if recorder else {}
        client = await withDeadline(
            ChatClient.connect(chatServer.wsUrl, username, **callbacks, **kwargs))
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()


@pytest_twisted.ensureDeferred
async def test_loginSayAndHear(chatServer, chatClients):
    """A ChatClient logs in, hears others and itself through onMessage, and others hear what it says."""
    heard = Recorder()
    robot = await chatClients("  robot ", heard)
    assert robot.username == "robot"
    assert robot.connected
    assert chatServer.room.online() == ["robot"]
    bob = await chatServer.login("bob")
    await bob.call("say", "hello robot")
    await eventually(lambda: ("bob", "hello robot") in heard.messages, "bob's message")
    assert await withDeadline(robot.say("hello bob")) is None
    await bob.waitFor(lambda: ["robot", "hello bob"] in bob.calls("displayUserMessage"))
    await eventually(lambda: ("robot", "hello bob") in heard.messages, "its own message")
    assert heard.messages == [("bob", "hello robot"), ("robot", "hello bob")]


@pytest_twisted.ensureDeferred
async def test_alerts(chatServer, chatClients):
    """Joins, leaves and operator alerts come to onAlert."""
    heard = Recorder()
    await chatClients("robot", heard)
    bob = await chatServer.login("bob")
    chatServer.room.wall("Server restarts soon")
    bob.close()
    await eventually(lambda: " * user bob has left the room" in heard.alerts, "bob's leave")
    assert heard.alerts == [
        " * user robot has joined the room",
        " * user bob has joined the room",
        "Server restarts soon",
        " * user bob has left the room",
    ]
    assert heard.messages == []


@pytest_twisted.ensureDeferred
async def test_presenceIsKeptFromTheBatches(chatServer, chatClients):
    """A ChatClient keeps who is in the room from the first list and the batches of changes (joins,
    a rename, a leave), and still passes them to onCall."""
    heard = Recorder()
    robot = await chatClients("robot", heard)
    await eventually(lambda: robot.presence == ["robot"], "robot listed")
    bob, carol = await chatServer.login("bob"), await chatServer.login("Carol")
    await eventually(lambda: robot.presence == ["bob", "Carol", "robot"], "bob and Carol listed")
    assert (await bob.call("say", "/nick Bob"))["value"] == "Bob"
    carol.close()
    await eventually(lambda: robot.presence == ["Bob", "robot"], "the rename and the leave")
    assert [method for method, _ in heard.calls if "resence" in method][0] == "updatePresence"
    assert "presenceChanged" in [method for method, _ in heard.calls]


@pytest_twisted.ensureDeferred
async def test_otherWidgetMethodsGoToOnCall(chatServer, chatClients):
    """Widget methods the client does not know go to onCall, by stream or by direct call, whose answer is onCall's."""
    heard = Recorder()
    await chatClients("robot", heard)
    chatServer.room.stream.emit("somethingNew", "bob", True)
    await eventually(lambda: ("somethingNew", ["bob", True]) in heard.calls, "the streamed call")
    heard.answer = {"ok": 1}
    element = next(c for c in chatServer.room.chatters if c.username == "robot")
    assert await withDeadline(element.callRemote("ping", 7)) == {"ok": 1}
    assert heard.calls[-1] == ("ping", [7])


@pytest_twisted.ensureDeferred
async def test_callbackErrorsAreReported(chatServer, chatClients):
    """A direct call whose callback raises is answered with an error named after the exception."""
    robot = await chatClients("robot", onCall=lambda method, args: 1 / 0)
    element = next(c for c in chatServer.room.chatters if c.username == robot.username)
    with pytest.raises(RemoteError) as caught:
        await withDeadline(element.callRemote("explode"))
    assert caught.value.name == "ZeroDivisionError"


@pytest_twisted.ensureDeferred
async def test_refusalsAreRemoteErrors(chatServer, chatClients):
    """A taken name fails connect with UsernameTaken, and an empty message fails say with InvalidMessage."""
    robot = await chatClients("robot")
    with pytest.raises(RemoteError) as caught:
        await withDeadline(ChatClient.connect(chatServer.wsUrl, "ROBOT"))
    assert caught.value.name == "UsernameTaken"
    with pytest.raises(RemoteError) as caught:
        await withDeadline(robot.say("   "))
    assert caught.value.name == "InvalidMessage"
    assert len(chatServer.room.chatters) == 1  # the refused one has left


@pytest_twisted.ensureDeferred
async def test_noServer():
    """Connecting where nothing listens fails with ConnectionError, and leaves no retry behind."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    client = LiveClient(f"ws://127.0.0.1:{port}/live")
    with pytest.raises(ConnectionError):
        await withDeadline(client.connect())
    assert client.state == State.DISCONNECTED
    assert client._retry is None


@pytest_twisted.ensureDeferred
async def test_closeLeavesAtOnce(chatServer, chatClients):
    """close() leaves the chat at once: the others see the leave and the name is free again."""
    robot = await chatClients("robot")
    bob = await chatServer.login("bob")
    await withDeadline(robot.close())
    assert robot.live.state == State.DISCONNECTED
    await bob.waitFor(lambda: [" * user robot has left the room"] in bob.calls("displayMessage"))
    assert chatServer.room.online() == ["bob"]
    with pytest.raises(ConnectionLost):
        await robot.say("too late")


@pytest_twisted.ensureDeferred
async def test_resumesAfterDropsWithoutGapsOrDuplicates(chatServer, chatClients):
    """Dropped again and again while bob talks and it talks, the client resumes each time: every message heard once, in order."""
    heard = Recorder()
    robot = await chatClients("robot", heard, backoff=Backoff(base=0.05, cap=0.2))
    session = robot.live.session
    bob = await chatServer.login("bob")
    expected = []
    mine = []
    for round_ in range(5):
        robot.live.drop()
        for n in range(4):
            text = f"bob {round_}.{n}"
            bob.startCall("say", text)
            expected.append(("bob", text))
        mine.append(robot.say(f"robot {round_}"))  # sent while down, or as it comes back
        await eventually(lambda: robot.connected, "the client to come back")
        await bob.waitFor(
            lambda r=round_: ["robot", f"robot {r}"] in bob.calls("displayUserMessage"),
            f"robot's message {round_}")
        expected.append(("robot", f"robot {round_}"))
    for d in mine:
        assert await withDeadline(d) is None
    await eventually(lambda: len(heard.messages) >= len(expected), "every message")
    # Bob's calls and the robot's may interleave differently on the server
    # than in this list; each speaker's own order, and the whole, must hold.
    assert sorted(heard.messages) == sorted(expected)
    assert len(heard.messages) == len(set(heard.messages))
    for who in ("bob", "robot"):
        assert [m for m in heard.messages if m[0] == who] == [m for m in expected if m[0] == who]
    serverOrder = [tuple(args) for args in bob.calls("displayUserMessage")]
    assert heard.messages == serverOrder
    assert robot.live.session == session
    assert " * user robot has left the room" not in heard.alerts
    assert bob.calls("displayUserMessage").count(["robot", "robot 0"]) == 1


@pytest_twisted.ensureDeferred
async def test_logsInAgainWhenTheSessionExpired(chatServer, chatClients):
    """Back after its session has ended, the client gets a new session and logs in again under its name."""
    heard = Recorder()
    robot = await chatClients("robot", heard, backoff=NeverBackoff())
    session = robot.live.session
    bob = await chatServer.login("bob")
    robot.live.drop()
    await eventually(lambda: robot.live.state == State.RECONNECTING, "the client to notice")
    for serverSession in list(chatServer.site.liveFactory.sessions.values()):
        if serverSession.ident == session:
            serverSession.end(Failure(ConnectionLost("expired for the test")))
    await bob.waitFor(lambda: [" * user robot has left the room"] in bob.calls("displayMessage"))
    robot.live.retryNow()
    # Bob joined after the robot's first login: this join is its second.
    await bob.waitFor(lambda: [" * user robot has joined the room"] in bob.calls("displayMessage"),
                      "robot's second join")
    assert robot.live.session != session
    assert robot.live.welcome.get("expired")
    await withDeadline(robot.say("back"))
    await eventually(lambda: ("robot", "back") in heard.messages, "its message")


@pytest_twisted.ensureDeferred
async def test_room(chatServer, chatClients):
    """A room's name goes to the server as the page path /room/NAME."""
    assert pagePath(None) == "/"
    assert pagePath("tea & cake") == "/room/tea%20%26%20cake"
    robot = await chatClients("robot", room="lobby")
    assert robot.live.page == "/room/lobby"


def test_backoff():
    """The back-off doubles from half a second with jitter in [d/2, d], caps at 15 s, and resets."""
    low = Backoff(random=lambda: 0.0)
    assert [low.next() for _ in range(7)] == [0.25, 0.5, 1.0, 2.0, 4.0, 7.5, 7.5]
    high = Backoff(random=lambda: 1.0)
    assert [high.next() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0]
    high.reset()
    assert high.next() == 0.5


ASYNCIO_BOT = """
import asyncio, sys
from twisted.internet import asyncioreactor
loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)
asyncioreactor.install(loop)
from chatthing.client import ChatClient

async def main(url):
    heard = loop.create_future()
    def onMessage(username, text):
        if not heard.done():
            heard.set_result((username, text))
    client = await ChatClient.connect(url, "asyncbot", onMessage=onMessage).asFuture(loop)
    await client.say("from asyncio").asFuture(loop)
    print(await asyncio.wait_for(heard, 20), flush=True)
    await client.close().asFuture(loop)

loop.run_until_complete(main(sys.argv[1]))
"""


@pytest_twisted.ensureDeferred
async def test_fromAsyncio(chatServer):
    """Under Twisted's asyncio reactor, an asyncio program awaits the client's Deferreds as futures."""
    process = subprocess.Popen([sys.executable, "-c", ASYNCIO_BOT, chatServer.wsUrl],
                               env=subprocessEnvironment(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        await eventually(lambda: process.poll() is not None, "the asyncio program to finish", 30)
    finally:
        if process.poll() is None:
            process.kill()
        output = process.communicate()[0]
    assert process.returncode == 0, output
    assert "('asyncbot', 'from asyncio')" in output


@pytest_twisted.ensureDeferred
async def test_closeWhileConnecting(chatServer):
    """Closed before its first welcome, the client gives up that connection and leaves no page behind."""
    client = LiveClient(chatServer.wsUrl)
    connecting = client.connect()
    await withDeadline(client.close())
    with pytest.raises(ConnectionLost):
        await withDeadline(connecting)
    await eventually(lambda: not chatServer.connections, "the server to see no connection")
    assert client.state == State.DISCONNECTED


@pytest_twisted.ensureDeferred
async def test_aListenerThatRaisesIsLoggedAndTheOthersAreTold(chatServer):
    """A welcome or state listener that raises is logged, each time, and the listeners after it are told all the same."""
    from twisted.logger import Logger, formatEvent

    client = LiveClient(chatServer.wsUrl)
    events: list[dict] = []
    client.log = Logger(observer=events.append)
    welcomes: list[dict] = []
    states: list[str] = []

    def broken(news) -> None:
        raise ValueError("a listener's own bug")

    client.onWelcome(broken)
    client.onWelcome(welcomes.append)
    client.onStateChange(broken)
    client.onStateChange(states.append)
    await withDeadline(client.connect())
    try:
        # connect() fires with the welcome before the listeners are told.
        await eventually(lambda: welcomes, "the welcome listener to be told")
        assert [welcome["session"] for welcome in welcomes] == [client.session]
        assert states == [State.CONNECTED]
        failed = [formatEvent(event).split(": ", 1)[1] for event in events if "log_failure" in event]
        assert sorted(failed) == ["state listener failed", "welcome listener failed"]
        assert all(event["log_failure"].check(ValueError) for event in events if "log_failure" in event)
    finally:
        await withDeadline(client.close())
    assert states == [State.CONNECTED, State.DISCONNECTED]
