"""
Rooms over real WebSockets: each page's path names its room (C{/} the
lobby, C{/room/NAME} another), and rooms keep their messages, history,
presence and typing to themselves, while usernames and global alerts span
the whole server.

Every test runs a real server (C{roomServer}: a L{ChatRoom}'s C{makeChatter}
served as the element factory, as C{twistd -n chat-widget
--element=chatthing.chatterbox.chat} does) and talks to it with
L{LiveTestClient}; waits have deadlines, never fixed sleeps.
"""

import time

import pytest_twisted
from conftest import presenceOf, startChatServer
from test_chat_protocol import eventually
from twisted.internet import reactor
from twisted.web.client import Agent, readBody

from chatthing.chatterbox import ChatRoom
from chatthing.live import ILiveApplication, LiveApplication, LiveElement

#: Seconds a test waits for the server to reach a state before it fails.
DEADLINE = 10.0


async def startRooms(**chatRoomOptions):
    """
    A server of a fresh L{ChatRoom}, made with C{chatRoomOptions}; the
    L{ChatRoom} is its C{chatRoom} attribute.
    """
    chatRoom = ChatRoom(**chatRoomOptions)
    server = await startChatServer(elementFactory=chatRoom.makeChatter)
    server.chatRoom = chatRoom
    return server


@pytest_twisted.async_yield_fixture
async def roomServer():
    """
    A fresh L{ChatRoom} and its rooms, served on an ephemeral loopback port.
    """
    server = await startRooms()
    yield server
    await server.stop()


async def enter(server, page: str, name: str | None = None):
    """
    A page connection at path C{page}, logged in as C{name} if given.
    """
    client = await server.connect(hello={"page": page})
    if name is not None:
        answer = await client.call("setUsername", name)
        assert answer["type"] == "result", answer
    return client


async def result(client, method: str, *args):
    answer = await client.call(method, *args)
    assert answer["type"] == "result", answer
    return answer["value"]


async def refused(client, method: str, *args, name: str) -> str:
    answer = await client.call(method, *args)
    assert answer["type"] == "error", answer
    assert answer["error"]["name"] == name, answer
    return answer["error"]["message"]


def said(client) -> list:
    return client.calls("displayUserMessage")


async def get(server, path: str) -> tuple[int, bytes, object]:
    response = await Agent(reactor).request(b"GET", f"{server.url.rstrip('/')}{path}".encode())
    return response.code, await readBody(response), response.headers


@pytest_twisted.ensureDeferred
async def test_messagesStayInTheirRoom(roomServer):
    """A message reaches the pages of its own room (names compared case-insensitively) and no other."""
    alice = await enter(roomServer, "/", "alice")
    bob = await enter(roomServer, "/room/x", "bob")
    carol = await enter(roomServer, "/room/X", "carol")
    dave = await enter(roomServer, "/room/y", "dave")
    await result(bob, "say", "only room x")
    await carol.waitFor(lambda: ["bob", "only room x"] in said(carol), "bob's message in room x")
    await result(alice, "say", "lobby marker")
    await result(dave, "say", "room y marker")
    await alice.waitFor(lambda: ["alice", "lobby marker"] in said(alice))
    await dave.waitFor(lambda: ["dave", "room y marker"] in said(dave))
    assert said(alice) == [["alice", "lobby marker"]]
    assert said(dave) == [["dave", "room y marker"]]
    assert said(bob) == said(carol) == [["bob", "only room x"]]
    assert roomServer.chatRoom.rooms["x"].online() == ["bob", "carol"]
    assert " * user alice has joined the room" not in str(bob.calls("displayMessage"))


@pytest_twisted.ensureDeferred
async def test_wallReachesEveryRoom(roomServer):
    """A global alert (the operator's wall: the ILiveApplication's, as the plugin finds it) reaches every page of every room and counts them."""
    pages = [await enter(roomServer, path) for path in ("/", "/room/a", "/room/a", "/room/b")]
    wall = ILiveApplication(roomServer.chatRoom.makeChatter).wall
    assert wall == roomServer.chatRoom.wall
    assert wall("the server restarts soon") == 4
    for page in pages:
        await page.waitFor(lambda p=page: ["the server restarts soon"] in p.calls("displayMessage"),
                           "the alert")


@pytest_twisted.ensureDeferred
async def test_usernamesUniqueAcrossRooms(roomServer):
    """A name in use in one room is taken in every room (any case), by login and by /nick, until its owner leaves."""
    alice = await enter(roomServer, "/", "alice")
    other = await enter(roomServer, "/room/elsewhere")
    assert "taken" in await refused(other, "setUsername", "ALICE", name="UsernameTaken")
    assert await result(other, "setUsername", "bob") == "bob"
    assert "taken" in await refused(other, "say", "/nick Alice", name="UsernameTaken")
    alice.close()
    await eventually(lambda: not roomServer.chatRoom.rooms["lobby"].online(), "alice to leave")
    assert await result(other, "say", "/nick Alice") == "Alice"


@pytest_twisted.ensureDeferred
async def test_historyOnJoin():
    """A joining page is shown its room's last N messages and actions, in order, dated, as displayHistory; other rooms' are not."""
    server = await startRooms(history=3)
    try:
        alice = await enter(server, "/room/hist", "alice")
        before = time.time() * 1000
        for text in ["one", "two", "/me waves", "three"]:
            await result(alice, "say", text)
        after = time.time() * 1000
        elsewhere = await enter(server, "/room/other")
        late = await enter(server, "/room/hist")
        await late.waitFor(lambda: late.calls("displayHistory"), "the history")
        [[entries]] = late.calls("displayHistory")
        assert [entry[:3] for entry in entries] == [
            ["message", "alice", "two"], ["action", "alice", "waves"], ["message", "alice", "three"]]
        stamps = [entry[3] for entry in entries]
        assert stamps == sorted(stamps)
        assert all(before - 1000 <= stamp <= after + 1000 for stamp in stamps), (before, stamps, after)
        await result(alice, "say", "four")
        await late.waitFor(lambda: ["alice", "four"] in said(late))
        assert said(late) == [["alice", "four"]]  # the history is not repeated live
        # Live lines are dated too: the room sends its time before a line,
        # once a second at most.
        [[first], *_] = alice.calls("messageTime")
        assert before - 1000 <= first <= after + 1000
        assert elsewhere.calls("displayHistory") == []
    finally:
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_presenceUpdates(roomServer):
    """Who is in the room goes to its pages on every join, rename and leave; other rooms do not hear of it."""
    watcher = await enter(roomServer, "/room/p", "watcher")
    outsider = await enter(roomServer, "/", "outsider")
    zed = await enter(roomServer, "/room/P", "zed")
    await watcher.waitFor(lambda: presenceOf(watcher) == ["watcher", "zed"])
    amy = await enter(roomServer, "/room/p", "Amy")
    await watcher.waitFor(lambda: presenceOf(watcher) == ["Amy", "watcher", "zed"])
    assert await result(zed, "say", "/nick bea") == "bea"
    await watcher.waitFor(lambda: presenceOf(watcher) == ["Amy", "bea", "watcher"])
    assert [" * user zed is now known as bea"] in watcher.calls("displayMessage")
    amy.close()
    await watcher.waitFor(lambda: presenceOf(watcher) == ["bea", "watcher"])
    assert presenceOf(outsider) == ["outsider"]
    # Changes, not whole lists: one whole list, when the page opened the room.
    assert len(watcher.calls("updatePresence")) == 1
    assert watcher.calls("presenceChanged")[-2:] == [[["bea"], ["zed"]], [[], ["Amy"]]]


@pytest_twisted.ensureDeferred
async def test_typingReachesTheRoomOnlyAndIsThrottled():
    """"typing" reaches the other pages of the room only, at most once per interval however often it is called, and is never replayed."""
    server = await startRooms(typingInterval=60.0)
    try:
        bob = await enter(server, "/room/t", "bob")
        carol = await enter(server, "/room/t", "carol")
        away = await enter(server, "/room/t", "away")
        alice = await enter(server, "/", "alice")
        for _ in range(5):
            assert await result(bob, "typing") is None
        await carol.waitFor(lambda: carol.calls("showTyping"), "bob typing")
        away.drop()
        await away.closed()
        await result(bob, "say", "done")
        await result(alice, "typing")
        await result(alice, "say", "lobby marker")
        await carol.waitFor(lambda: ["bob", "done"] in said(carol))
        await alice.waitFor(lambda: ["alice", "lobby marker"] in said(alice))
        assert carol.calls("showTyping") == [["bob"]]
        assert alice.calls("showTyping") == [["alice"]]  # its own, which the widget ignores
        assert "bob" not in str(alice.calls("showTyping"))
        assert "NotLoggedIn" in str(await (await enter(server, "/room/t")).call("typing"))
        # A page that comes back gets the messages it missed, not the typing.
        resumed = await away.resume()
        assert resumed["type"] == "resumed", resumed
        await away.waitFor(lambda: ["bob", "done"] in said(away))
        assert away.calls("showTyping") == [["bob"]]
        assert said(away).count(["bob", "done"]) == 1
    finally:
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_slashCommands(roomServer):
    """/me is an action shown to the room; /who and /help answer the asker only; // escapes; unknown commands list the known ones."""
    alice = await enter(roomServer, "/room/cmd", "alice")
    bob = await enter(roomServer, "/room/cmd", "bob")
    assert await result(alice, "say", "/me waves") is None
    await bob.waitFor(lambda: ["alice", "waves"] in bob.calls("displayAction"))
    assert await result(alice, "say", "/who") is None
    await alice.waitFor(lambda: any("alice, bob" in m for [m] in alice.calls("displayMessage")))
    assert any("In #cmd (2 online): alice, bob" == m for [m] in alice.calls("displayMessage"))
    assert await result(alice, "say", "/help") is None
    await alice.waitFor(lambda: any(m.startswith("Commands:") for [m] in alice.calls("displayMessage")))
    help_ = next(m for [m] in alice.calls("displayMessage") if m.startswith("Commands:"))
    for command in ("/help", "/me", "/nick", "/who"):
        assert command in help_
    message = await refused(alice, "say", "/dance now", name="UnknownCommand")
    assert "/dance" in message and "/help, /me, /nick, /who" in message
    assert "Usage" in await refused(alice, "say", "/me", name="InvalidMessage")
    await result(alice, "say", "//not a command")
    await bob.waitFor(lambda: ["alice", "/not a command"] in said(bob))
    assert not [m for [m] in bob.calls("displayMessage") if "Commands:" in m or "In #cmd" in m]
    assert bob.calls("displayAction") == [["alice", "waves"]]


@pytest_twisted.ensureDeferred
async def test_roomPagesAndInvalidPaths(roomServer):
    """The page shell is served at / and /room/NAME; an invalid room path is an HTTP 404."""
    for path in ("/", "/room/ok", "/room/Mixed-Case_1", "/room/" + "x" * 32):
        code, body, headers = await get(roomServer, path)
        assert code == 200, path
        assert b"/js/live/boot.js" in body
        assert headers.getRawHeaders(b"content-security-policy")
    for path in ("/room/", "/room/bad!name", "/room/a/b", "/room/" + "x" * 33, "/room", "/rooms/x",
                 "/room/%41", "/room/x/"):
        code, body, _ = await get(roomServer, path)
        assert code == 404, path


@pytest_twisted.ensureDeferred
async def test_helloForNoRoomIsRefused(roomServer):
    """A hello naming a path where no room is gets a NoSuchRoom error and close code 1011; the server goes on."""
    client = await roomServer.connect(hello=False)
    client.send({"type": "hello", "version": 1, "page": "/room/no way", "render": False})
    assert await client.closed() == 1011
    [error] = client.errors()
    assert error["error"]["name"] == "NoSuchRoom" and "/room/no way" in error["error"]["message"]
    assert await result(await enter(roomServer, "/room/fine"), "setUsername", "ok") == "ok"


@pytest_twisted.ensureDeferred
async def test_zeroArgumentFactoryStillWorks():
    """A factory that takes no argument (LiveElement itself) is called without the page; only / is a page."""
    server = await startChatServer(elementFactory=LiveElement)
    try:
        client = await server.connect(hello={"page": "/room/x"})
        assert client.welcome["type"] == "welcome"
        assert (await get(server, "/"))[0] == 200
        assert (await get(server, "/room/x"))[0] == 404
    finally:
        await server.stop()


class PagesApplication(LiveApplication):
    """
    An application of its own (a L{LiveApplication} provides
    L{ILiveApplication}): it records the page each element is made for.
    """

    def __init__(self):
        self.pages = []

    def makeElement(self, page):
        self.pages.append(page)
        return LiveElement()


@pytest_twisted.ensureDeferred
async def test_pageGoesToTheApplication():
    """An application's makeElement is given the hello's page ("/" if it names none)."""
    application = PagesApplication()
    server = await startChatServer(elementFactory=application)
    try:
        await server.connect(hello={"page": "/somewhere"})
        await server.connect()
        await server.connect(hello={"page": 42})
        assert application.pages == ["/somewhere", "/", "/"]
    finally:
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_resumeInARoomGetsMissedMessagesOnce(roomServer):
    """A page of a room that drops and resumes gets what its room said meanwhile exactly once, and nothing of other rooms."""
    alice = await enter(roomServer, "/room/r", "alice")
    bob = await enter(roomServer, "/room/r", "bob")
    lobby = await enter(roomServer, "/", "carol")
    bob.drop()
    await bob.closed()
    for text in ("missed 1", "missed 2"):
        await result(alice, "say", text)
    await result(lobby, "say", "other room")
    assert (await bob.resume())["type"] == "resumed"
    await result(alice, "say", "after")
    await bob.waitFor(lambda: ["alice", "after"] in said(bob))
    assert said(bob) == [["alice", "missed 1"], ["alice", "missed 2"], ["alice", "after"]]
