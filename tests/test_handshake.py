"""
The handshake (hello, resume, adopt) as a module of its own with a narrow
seam, and frames decoded once into typed values (issue 13, item 4).

The unit tests drive L{Handshake} with a host that is not a factory (only
the four operations of L{SessionHost}) and a connection that is not a
socket; the last tests run the same handshake on a real server.
"""

import ast
import json
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from chatthing.live import LiveElement, LiveSettings, ProtocolError, _wire, expose
from chatthing.live._metrics import LiveMetrics
from chatthing.live._session import LiveSession
from conftest import eventually

LIVE = Path(__file__).resolve().parent.parent / "chatthing" / "live"


class Echo(LiveElement):
    jsClass = "Echo"

    @expose
    def echo(self, text: str) -> str:
        return text


class Host:
    """
    A L{SessionHost} that is not a factory: it makes L{Echo} elements and
    records what it was asked.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.sessions: dict[str, LiveSession] = {}
        self.pages: list[str] = []
        self.adopting: dict[str, Deferred] = {}

    def makeElement(self, page: str = "/") -> LiveElement | None:
        self.pages.append(page)
        return Echo()

    def showElement(self, element: LiveElement, render: bool = True) -> dict:
        return {"html": "<p>echo</p>" if render else None, "module": "/js/echo.js", "widget": "Echo"}

    def startSession(self, element: LiveElement, page: str = "/", ident: str | None = None) -> LiveSession:
        session = LiveSession(ident or f"s{len(self.sessions) + 1}", element, LiveSettings(),
                              self.clock, lambda s: self.sessions.pop(s.ident, None))
        session.page = page
        self.sessions[session.ident] = session
        return session

    def adoptSession(self, ident: str) -> Deferred:
        self.adopting[ident] = d = Deferred()
        return d


class Page:
    """
    A L{Greeted} that is not a socket: it keeps the frames sent and how it
    was refused or closed.
    """

    peer = "tcp4:127.0.0.1:5555"

    def __init__(self) -> None:
        self.session: LiveSession | None = None
        self.adopting = False
        self.open = True
        self.helloSeen = False
        self.frames: list[dict] = []
        self.refused: list[tuple[int | None, str]] = []
        self.closedWith: tuple[int, str] | None = None

    def isOpen(self) -> bool:
        return self.open

    def helloReceived(self) -> None:
        self.helloSeen = True

    def refuse(self, ident, error, quiet=False) -> None:
        self.refused.append((ident, str(error)))

    def closeWithCode(self, code: int, reason: str) -> None:
        self.closedWith = (code, reason)

    def sendPayload(self, payload: bytes) -> None:
        self.frames.append(json.loads(payload))

    def sendPrepared(self, message) -> None:
        pass

    def sendLiveFrame(self, frame: dict) -> None:
        self.frames.append(json.loads(_wire.encode(frame)))

    def replaced(self) -> None:
        self.open = False

    def expel(self, reason: str) -> None:
        self.open = False


def hello(**fields) -> "_wire.Frame":
    return _wire.fromObject({"type": "hello", "version": 1, **fields})


class HandshakeTests(SynchronousTestCase):
    def setUp(self) -> None:
        from chatthing.live._handshake import Handshake

        self.clock = Clock()
        self.host = Host(self.clock)
        self.metrics = LiveMetrics()
        self.handshake = Handshake(self.host, self.host.sessions, self.metrics,
                                   {"maxFrameBytes": 1234, "gracePeriod": 5.0})

    def outcomes(self) -> dict[str, float]:
        found = {}
        for line in self.metrics.render().decode().splitlines():
            if line.startswith("live_resumes_total{"):
                name, value = line.rsplit(" ", 1)
                found[name.split('"')[1]] = float(value)
        return found

    def test_newSessionWelcomed(self) -> None:
        """A hello with no resume gets a new element for its page and a welcome announcing the limits given."""
        page = Page()
        self.handshake.hello(page, hello(page="/room/x", render=False))
        self.assertEqual(self.host.pages, ["/room/x"])
        self.assertTrue(page.helloSeen)
        [welcome] = page.frames
        self.assertEqual(welcome["type"], "welcome")
        self.assertEqual(welcome["limits"], {"maxFrameBytes": 1234, "gracePeriod": 5.0})
        self.assertEqual(welcome["element"]["html"], None)
        self.assertIs(page.session, self.host.sessions[welcome["session"]])
        self.assertEqual(page.session.page, "/room/x")

    def test_resumesSessionKeptHere(self) -> None:
        """A hello resuming a session kept here gets "resumed" and that session, counted as resumed."""
        first = Page()
        self.handshake.hello(first, hello())
        ident = first.frames[0]["session"]
        again = Page()
        self.handshake.hello(again, hello(resume={"session": ident, "seq": 0}))
        self.assertEqual(again.frames[0]["type"], "resumed")
        self.assertIs(again.session, self.host.sessions[ident])
        self.assertFalse(first.open)  # replaced
        self.assertEqual(self.outcomes().get("resumed"), 1.0)

    def test_unknownSessionAskedOfTheStore(self) -> None:
        """A session not kept here is asked of the host; while it is taken over the page waits; none found: a welcome saying why."""
        page = Page()
        self.handshake.hello(page, hello(resume={"session": "elsewhere"}))
        self.assertEqual(list(self.host.adopting), ["elsewhere"])
        self.assertTrue(page.adopting)
        self.assertEqual(page.frames, [])
        self.host.adopting["elsewhere"].callback(None)
        self.assertFalse(page.adopting)
        [welcome] = page.frames
        self.assertEqual(welcome["type"], "welcome")
        self.assertIn("expired", welcome["expired"])
        self.assertEqual(self.outcomes().get("expired"), 1.0)

    def test_adoptedSessionResumed(self) -> None:
        """A session the host takes over from another process is resumed on the page (rerun), counted as resumed."""
        page = Page()
        self.handshake.hello(page, hello(resume={"session": "moved", "seq": 4}))
        session = self.host.startSession(Echo(), "/", "moved")
        session.adopted = True
        self.host.adopting["moved"].callback(session)
        self.assertIs(page.session, session)
        self.assertEqual(page.frames[0], {"type": "resumed", "session": "moved", "seq": 0, "rerun": True})
        self.assertEqual(self.outcomes().get("resumed"), 1.0)

    def test_pageGoneBeforeAdoption(self) -> None:
        """A page that closes while its session is taken over gets nothing; the session waits its grace period for it."""
        page = Page()
        self.handshake.hello(page, hello(resume={"session": "moved"}))
        page.open = False
        session = self.host.startSession(Echo(), "/", "moved")
        self.host.adopting["moved"].callback(session)
        self.assertEqual(page.frames, [])
        self.clock.advance(LiveSettings().gracePeriod + 1)
        self.assertTrue(session.ended)

    def test_firstFrameMustBeHello(self) -> None:
        """Any frame but hello first is a ProtocolError; a hello with a malformed resume is refused for that."""
        for frame in [{"type": "call", "id": 1, "method": "echo"}, {"type": "ack", "seq": 1},
                      {"type": "welcome"}, {"type": "call", "id": "x"}]:
            with self.assertRaises(ProtocolError) as e:
                self.handshake.hello(Page(), _wire.fromObject(frame))
            self.assertEqual(str(e.exception), 'the first frame must be "hello"')
        with self.assertRaises(ProtocolError) as e:
            self.handshake.hello(Page(), hello(resume={"session": 5}))
        self.assertIn('"resume" must be an object', str(e.exception))
        self.assertEqual(self.host.pages, [])

    def test_wrongVersionRefusedAndClosed(self) -> None:
        """A hello in another protocol version is refused and closed with 1002, its resume not even read."""
        page = Page()
        self.handshake.hello(page, _wire.fromObject({"type": "hello", "version": 2, "resume": "junk"}))
        self.assertEqual(page.closedWith, (_wire.CLOSE_PROTOCOL_ERROR, "unsupported protocol version"))
        self.assertIn("protocol version 2 is not supported", page.refused[0][1])
        self.assertFalse(page.helloSeen)
        self.assertIsNone(page.session)


def _attributes(path: Path) -> set[str]:
    return {node.attr for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Attribute)}


def _methods(path: Path, cls: str) -> set[str]:
    tree = ast.parse(path.read_text())
    [found] = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls]
    return {n.name for n in found.body if isinstance(n, ast.FunctionDef)}


def test_handshakeOutOfTheProtocol():
    """The connection's protocol keeps no handshake method; the handshake module never reaches for a factory or its settings."""
    assert not _methods(LIVE / "_protocol.py", "LiveServerProtocol") & {
        "_hello", "_adopted", "_notAdopted", "_resume", "_startSession"}
    assert {"hello", "_adopted", "_notAdopted", "_resume", "_start"} <= _methods(LIVE / "_handshake.py",
                                                                               "Handshake")
    assert not _attributes(LIVE / "_handshake.py") & {"factory", "settings", "sessions", "metrics"}


def test_sessionHostIsNarrow():
    """The seam the handshake has into the factory is four operations, and the factory satisfies it (mypy checks it too)."""
    from chatthing.live._factory import LiveServerFactory
    from chatthing.live._handshake import SessionHost

    operations = {name for name in vars(SessionHost) if not name.startswith("_")}
    assert operations == {"makeElement", "showElement", "startSession", "adoptSession"}
    assert all(callable(getattr(LiveServerFactory, name)) for name in operations)


# Frames decoded once

@pytest.mark.parametrize("payload, frame", [
    (b'{"type":"call","id":3,"method":"say","args":["hi"],"seq":2}', lambda: _wire.Call(3, "say", ["hi"], 2)),
    (b'{"type":"call","id":0,"method":"m"}', lambda: _wire.Call(0, "m", [], None)),
    (b'{"type":"ack","seq":9}', lambda: _wire.Ack(9)),
    (b'{"type":"result","id":4,"value":[1]}', lambda: _wire.Result(4, [1], None)),
    (b'{"type":"error","id":4,"error":{"name":"E","message":"m"},"seq":1}', lambda: _wire.ErrorReply(4, "E", "m", 1)),
    (b'{"type":"error","id":4,"error":{}}', lambda: _wire.ErrorReply(4, "Error", "", None)),
    (b'{"type":"leave"}', lambda: _wire.Leave()),
    (b'{"type":"welcome"}', lambda: _wire.Unexpected("welcome")),
    (b'{"type":"hello","version":1}', lambda: _wire.Hello(1, "/", True, None)),
    (b'{"type":"hello","version":1,"page":5,"render":false,"resume":{"session":"s","seq":3,"streams":{"r":2}}}',
     lambda: _wire.Hello(1, "/", False, _wire.Resume("s", 3, {"r": 2}))),
])
def test_decodeGivesTypedFrames(payload, frame):
    """decode turns a frame's bytes into the typed value of its kind, every field read and checked there."""
    assert _wire.decode(payload, False) == frame()


@pytest.mark.parametrize("obj, seq, ident, says", [
    ({"type": "call", "id": 7, "method": "m", "args": {}}, None, 7, '"args" must be a list'),
    ({"type": "call", "id": 7, "seq": True, "method": "m"}, None, 7, '"seq" must be an integer'),
    ({"type": "call", "seq": 2, "method": "m"}, 2, None, 'needs an integer "id"'),
    ({"type": "result", "seq": 3}, 3, None, '"result" frame needs an integer "id"'),
    ({"type": "error", "id": 1, "error": "x"}, None, 1, 'needs an "error" object'),
    ({"type": "ack"}, None, None, '"ack" frame needs a "seq"'),
    ({"type": "hello", "version": 1, "resume": {"session": "s", "streams": {"r": -1}}}, None, None,
     '"resume.streams"'),
])
def test_malformedFramesSayWhy(obj, seq, ident, says):
    """A frame of a known kind with wrong fields decodes to a Malformed saying why, keeping its seq and id where they are right."""
    frame = _wire.fromObject(obj)
    assert isinstance(frame, _wire.Malformed)
    assert (frame.type, frame.seq, frame.id) == (obj["type"], seq, ident)
    assert says in str(frame.error)


def test_noFieldReadTwice():
    """The helpers that re-read a frame's fields downstream are gone: a frame's fields are read in decode only."""
    for name in ("isAck", "callId", "requireCallId", "parseCall", "parseError", "optionalSeq", "parseResume"):
        assert not hasattr(_wire, name), name
    readers = {"_protocol.py": {"onMessage"}, "_handshake.py": None,
               "_session.py": {"receiveFrame", "_answer", "_runCall"}}
    for module, names in readers.items():
        source = (LIVE / module).read_text()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef) and (names is None or node.name in names):
                body = ast.get_source_segment(source, node)
                assert "frame[" not in body and "frame.get(" not in body, (module, node.name)


def test_resentMalformedFrameDroppedUnread():
    """A numbered frame re-sent after a reconnection is dropped unread even if malformed; a new malformed one is refused, naming its call."""
    from test_live_units import newSession

    session, connection, clock, ended = newSession(Echo())
    session.receiveFrame(_wire.fromObject({"type": "call", "id": 1, "method": "echo", "args": ["a"], "seq": 1}))
    assert connection.frames[-1]["type"] == "result"
    before = len(connection.frames)
    session.receive({"type": "call", "id": 1, "method": 5, "seq": 1})
    assert len(connection.frames) == before
    with pytest.raises(ProtocolError, match='"method" string'):
        session.receiveFrame(_wire.fromObject({"type": "call", "id": 2, "method": 5, "seq": 2}))


# The same, on a real server

@pytest_twisted.ensureDeferred
async def test_realServerHandshake(chatServer):
    """On a real server: the welcome announces the limits, a dropped page resumes its session, and a malformed call is refused naming its id."""
    page = await chatServer.connect()
    factory = chatServer.site.liveFactory
    ident = page.session
    assert ident in factory.sessions
    assert page.welcome["limits"] == {"maxFrameBytes": factory.settings.maxFrameBytes,
                                      "gracePeriod": factory.settings.gracePeriod}
    page.drop()
    await eventually(lambda: factory.sessions[ident].connection is None, "the server to notice the drop")
    resumed = await page.resume()
    assert resumed["type"] == "resumed" and resumed["session"] == ident
    page.send({"type": "call", "id": 41, "method": "say", "args": "not a list"})
    error = await page.nextFrame(lambda f: f["type"] == "error")
    assert error["id"] == 41 and error["error"]["name"] == "ProtocolError"
    assert (await page.call("setUsername", "alice"))["type"] == "result"
