"""
The declared seam between an application and the runtime/plugin
(L{chatthing.live.ILiveApplication}), and the card's shape of
C{chatthing.chatterbox}: a module-level C{ChatRoom} whose C{makeChatter},
C{chat}, builds and tracks each page's C{ChatterElement}.
"""

import subprocess
import sys

import pytest
import pytest_twisted
from conftest import startChatServer, subprocessEnvironment
from twisted.internet import reactor
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.web.client import Agent, readBody
from zope.interface.verify import verifyObject

import chatthing.chatterbox as chatterbox
from chatthing.chatterbox import ChatRoom, ChatterElement, Room, chat
from chatthing.examples.echobox import EchoElement
from chatthing.live import CallableApplication, ILiveApplication, LiveApplication, LiveElement
from chatthing.live._metrics import LiveMetrics


def test_cardShape():
    """The card's one-liner shows a module-level ChatRoom and the ChatterElement its chat() makes."""
    code = "import chatthing.chatterbox as c; print(c.chat.__self__, c.chat())"
    out = subprocess.run([sys.executable, "-c", code], env=subprocessEnvironment(), capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("<ChatRoom: 1 room(s) open, 0 user(s) logged in> <ChatterElement "), out.stdout


def test_chatRoomBuildsAndTracksChatters():
    """chat is the module-level ChatRoom's makeChatter; chat() with no argument makes a tracked ChatterElement in the lobby."""
    assert chat.__self__ is chatterbox.chatRoom and isinstance(chatterbox.chatRoom, ChatRoom)
    assert chat.__func__ is ChatRoom.makeChatter
    element = chat()
    try:
        assert isinstance(element, ChatterElement)
        assert isinstance(element.room, Room) and element.room is chatterbox.chatRoom.rooms["lobby"]
        assert element in element.room.chatters
    finally:
        element.disconnected(Failure(ConnectionDone("the page closed")))
    assert element not in element.room.chatters


def test_chatRoomProvidesTheInterface():
    """The chat's ChatRoom declares ILiveApplication, and its bound makeChatter adapts to it, not to a wrapper."""
    room = ChatRoom()
    assert verifyObject(ILiveApplication, room)
    assert ILiveApplication(room) is room
    assert ILiveApplication(room.makeChatter) is room
    assert ILiveApplication(chat) is chat.__self__
    assert room.pageExists("/room/kitchen") and not room.pageExists("/nope")
    assert room.wall("hello") == 0


def test_otherMethodsOfAnApplicationAreRefused():
    """A bound method of an application that is not its makeElement (its wall) is no element factory."""
    with pytest.raises(TypeError, match="not its makeElement"):
        ILiveApplication(ChatRoom().wall)


@pytest.mark.parametrize("factory", [EchoElement, lambda: EchoElement(), Room().makeChatter],
                         ids=["class", "function", "undeclared bound method"])
def test_plainCallableIsAdapted(factory):
    """A plain factory becomes a CallableApplication: called with no arguments, only /, no alerts, no backplane."""
    application = ILiveApplication(factory)
    assert isinstance(application, CallableApplication) and application.factory is factory
    assert verifyObject(ILiveApplication, application)
    assert isinstance(application.makeElement("/"), LiveElement)
    assert application.pageExists("/") and not application.pageExists("/room/x")
    assert application.wall is None
    assert application.useBackplane(object()) is False
    application.setRoomLimits(maxRooms=1, roomBytes=1, totalBytes=1)
    metrics = LiveMetrics()
    application.registerMetrics(metrics)


@pytest.mark.parametrize("thing, reason", [
    (42, "is not callable"),
    (ChatRoom, "is a class, but not a LiveElement"),
    (ChatterElement, "must be callable with no arguments"),
    (lambda page: LiveElement(), "must be callable with no arguments"),
])
def test_unusableThingsAreRefused(thing, reason):
    """What cannot make elements with no arguments is refused once, when adapted, with the reason."""
    with pytest.raises(TypeError, match=reason):
        ILiveApplication(thing)


def test_liveApplicationBase():
    """A LiveApplication subclass that defines makeElement provides the interface, with defaults for the rest."""
    class Mine(LiveApplication):
        def makeElement(self, page):
            return LiveElement()

    mine = Mine()
    assert verifyObject(ILiveApplication, mine) and ILiveApplication(mine) is mine
    assert ILiveApplication(mine.makeElement) is mine
    assert mine.wall is None and mine.pageExists("/") and not mine.pageExists("/x")


class Rooms(LiveApplication):
    """
    An application of its own on a real server: pages at C{/} and
    C{/custom}, an element per page that remembers its path, and a gauge.
    """

    def __init__(self):
        self.made = []

    def pageExists(self, path):
        return path in ("/", "/custom")

    def makeElement(self, page):
        self.made.append(page)
        return LiveElement()

    def registerMetrics(self, metrics):
        metrics.addGauge("demo_made", "Elements made.", lambda: len(self.made))


@pytest_twisted.ensureDeferred
async def test_applicationOnARealServer():
    """A server given an ILiveApplication asks it, not the factory's signature, for pages, elements and metrics."""
    application = Rooms()
    server = await startChatServer(elementFactory=application)
    try:
        agent = Agent(reactor)
        codes = {}
        for path in ("/", "/custom", "/other"):
            response = await agent.request(b"GET", f"http://127.0.0.1:{server.port}{path}".encode())
            await readBody(response)
            codes[path] = response.code
        assert codes == {"/": 200, "/custom": 200, "/other": 404}
        await server.connect(hello={"page": "/custom"})
        assert application.made == ["/custom"]
        assert b"demo_made 1.0" in server.site.metrics.render()
    finally:
        await server.stop()
