"""
Bad input from one page, over real WebSockets: each bad frame gets one clear
error frame and one log line, the sender's connection stays open and usable,
and other users' chat goes on untouched.  Only the hard WebSocket limits
close the connection, with the documented close code.
"""

import itertools
import json
from dataclasses import dataclass

import pytest
import pytest_twisted
from conftest import eventually
from twisted.internet import reactor, task

from chatthing.live.testing import LiveTestClient

_counter = itertools.count()


def refusals(events: list[dict]) -> list[dict]:
    return [e for e in events if "refused input" in (e.get("log_format") or "")]


def failures(events: list[dict]) -> list[dict]:
    """
    Events that carry a traceback: crashes, which bad input must never cause.
    """
    return [e for e in events if "log_failure" in e or e.get("isError")]


async def bystanders(chatServer) -> tuple[LiveTestClient, LiveTestClient]:
    return await chatServer.login("alice"), await chatServer.login("bob")


async def say(speaker: LiveTestClient, name: str, listeners, text: str | None = None) -> None:
    """
    C{speaker} (logged in as C{name}) says something, which every one of
    C{listeners} receives.
    """
    text = text or f"{name} still chatting #{next(_counter)}"
    answer = await speaker.call("say", text)
    assert answer["type"] == "result", answer
    for client in listeners:
        await client.waitFor(lambda c=client: [name, text] in c.calls("displayUserMessage"),
                             f"{name}'s message {text[:30]!r}")


async def stillChatting(alice: LiveTestClient, bob: LiveTestClient, *others) -> None:
    """
    Alice and bob still talk to each other (and to C{others}).
    """
    await say(alice, "alice", (alice, bob, *others))
    await say(bob, "bob", (alice, bob, *others))


def patientClose(chatServer) -> None:
    """
    Give pages 10 s, not Autobahn's default 1 s, to answer the server's close
    frame, so a close code is seen even on a loaded machine (else the server
    drops the TCP connection and the client sees 1006).  While the server
    closes for an oversized message, for instance, the client is
    still pushing the rest of that megabyte through; on a loaded machine it
    can take over a second to reply, and the server then drops the TCP
    connection (the client sees 1006, and the 1009 close frame is lost).
    """
    chatServer.site.liveFactory.setProtocolOptions(closeHandshakeTimeout=10)


def raw(frame) -> bytes:
    return json.dumps(frame).encode("utf-8")


@dataclass
class Bad:
    """
    One kind of bad frame and the error it must get.
    """

    id: str
    payload: bytes
    name: str  # the error's name
    says: str  # in the error's message
    replyId: int | None = None  # the error frame's id
    binary: bool = False
    loggedIn: bool = True  # whether the sender has logged in first


def call(ident, method, *args) -> bytes:
    return raw({"type": "call", "id": ident, "method": method, "args": list(args)})


BAD_FRAMES = [
    # Not a frame at all
    Bad("not-json", b"hello there", "ProtocolError", "not valid JSON"),
    Bad("truncated-json", b'{"type": "call", "id": 1, "method": "say"', "ProtocolError", "not valid JSON"),
    Bad("empty-text", b"", "ProtocolError", "not valid JSON"),
    Bad("deeply-nested-json", b"[" * 60_000, "ProtocolError", "not valid JSON"),
    Bad("json-list", raw([{"type": "call", "id": 1, "method": "say", "args": ["x"]}]),
        "ProtocolError", "JSON object"),
    Bad("json-number", b"42", "ProtocolError", "JSON object"),
    Bad("json-string", b'"call"', "ProtocolError", "JSON object"),
    Bad("json-null", b"null", "ProtocolError", "JSON object"),
    Bad("json-true", b"true", "ProtocolError", "JSON object"),
    Bad("binary", call(1, "say", "x"), "ProtocolError", "binary frames", binary=True),
    Bad("no-type", raw({"id": 3, "method": "say", "args": ["x"]}), "ProtocolError", '"type"'),
    Bad("type-not-string", raw({"type": ["call"], "id": 3}), "ProtocolError", '"type"'),
    # Only a call's id is echoed: any other frame's id could be one of the
    # server's own calls, which the page would mistake for one of its own.
    Bad("unknown-type", raw({"type": "shout", "id": 3}), "ProtocolError", 'unknown frame type "shout"'),
    Bad("welcome-from-client", raw({"type": "welcome"}), "ProtocolError", 'unknown frame type "welcome"'),
    # Calls of the wrong shape
    Bad("call-without-id", raw({"type": "call", "method": "say", "args": ["x"]}), "ProtocolError", '"id"'),
    Bad("call-string-id", call("7", "say", "x"), "ProtocolError", '"id"'),
    Bad("call-float-id", call(7.5, "say", "x"), "ProtocolError", '"id"'),
    Bad("call-negative-id", call(-1, "say", "x"), "ProtocolError", '"id"'),
    Bad("call-boolean-id", call(True, "say", "x"), "ProtocolError", '"id"'),
    Bad("call-null-id", call(None, "say", "x"), "ProtocolError", '"id"'),
    Bad("call-method-number", call(7, 5, "x"), "ProtocolError", '"method" string', 7),
    Bad("call-method-null", call(7, None, "x"), "ProtocolError", '"method" string', 7),
    Bad("call-without-method", raw({"type": "call", "id": 7, "args": ["x"]}),
        "ProtocolError", '"method" string', 7),
    Bad("call-args-string", raw({"type": "call", "id": 7, "method": "say", "args": "x"}),
        "ProtocolError", '"args" must be a list', 7),
    Bad("call-args-object", raw({"type": "call", "id": 7, "method": "say", "args": {"message": "x"}}),
        "ProtocolError", '"args" must be a list', 7),
    # Methods that are not there, or not exposed
    Bad("unknown-method", call(7, "shout", "x"), "NoSuchMethod", "'shout'", 7),
    Bad("empty-method", call(7, ""), "NoSuchMethod", "no exposed method", 7),
    *[
        Bad(f"unexposed-{name}", call(7, name, "x"), "NoSuchMethod", f"no exposed method {name!r}", 7)
        for name in ["wall", "hear", "room", "__init__", "_liveSession", "callRemote", "render",
                     "notifyOnDisconnect", "notifyRemote", "connected", "disconnected", "username",
                     "maxMessageLength", "__class__", "_liveAttach", "_liveDetach", "template"]
    ],
    # Wrong arguments
    Bad("say-no-arguments", call(7, "say"), "BadArguments", "say()", 7),
    Bad("say-two-arguments", call(7, "say", "a", "b"), "BadArguments", "say()", 7),
    Bad("setUsername-no-arguments", call(7, "setUsername"), "BadArguments", "setUsername()", 7,
        loggedIn=False),
    Bad("setUsername-two-arguments", call(7, "setUsername", "a", "b"), "BadArguments",
        "setUsername()", 7, loggedIn=False),
    Bad("setUsername-null", call(7, "setUsername", None), "BadArguments", "must be a string", 7,
        loggedIn=False),
    Bad("setUsername-number", call(7, "setUsername", 42), "BadArguments", "must be a string", 7,
        loggedIn=False),
    Bad("say-number", call(7, "say", 5), "BadArguments", "must be a string", 7),
    Bad("say-list", call(7, "say", ["x"]), "BadArguments", "must be a string", 7),
    Bad("say-null", call(7, "say", None), "BadArguments", "must be a string", 7),
    Bad("say-boolean", call(7, "say", True), "BadArguments", "must be a string", 7),
    Bad("say-object", call(7, "say", {"text": "x"}), "BadArguments", "must be a string", 7),
    # The application's refusals
    Bad("say-before-login", call(7, "say", "hello?"), "NotLoggedIn", "username", 7, loggedIn=False),
    Bad("say-empty", call(7, "say", ""), "InvalidMessage", "empty", 7),
    Bad("say-whitespace", call(7, "say", "  \n\t "), "InvalidMessage", "empty", 7),
    Bad("say-2001-characters", call(7, "say", "y" * 2001), "InvalidMessage", "at most 2000", 7),
    Bad("say-2001-after-trimming", call(7, "say", " " + "y" * 2001 + " "), "InvalidMessage",
        "at most 2000", 7),
    # Answers to calls the server never made
    Bad("result-unknown-id", raw({"type": "result", "id": 999, "value": None}),
        "ProtocolError", "no call with id 999"),
    Bad("error-unknown-id", raw({"type": "error", "id": 999, "error": {"name": "E", "message": "m"}}),
        "ProtocolError", "no call with id 999"),
    Bad("result-without-id", raw({"type": "result", "value": None}), "ProtocolError", '"id"'),
    Bad("error-null-id", raw({"type": "error", "id": None, "error": {"name": "E", "message": "m"}}),
        "ProtocolError", '"id"'),
    # Sequence numbers and acknowledgements
    Bad("call-seq-string", raw({"type": "call", "seq": "9", "id": 7, "method": "say", "args": ["x"]}),
        "ProtocolError", '"seq" must be an integer', 7),
    Bad("call-seq-negative", raw({"type": "call", "seq": -1, "id": 7, "method": "say", "args": ["x"]}),
        "ProtocolError", '"seq" must be an integer', 7),
    Bad("call-seq-float", raw({"type": "call", "seq": 9.5, "id": 7, "method": "say", "args": ["x"]}),
        "ProtocolError", '"seq" must be an integer', 7),
    Bad("call-seq-boolean", raw({"type": "call", "seq": True, "id": 7, "method": "say", "args": ["x"]}),
        "ProtocolError", '"seq" must be an integer', 7),
    Bad("ack-without-seq", raw({"type": "ack"}), "ProtocolError", '"ack" frame needs a "seq"'),
    Bad("ack-seq-string", raw({"type": "ack", "seq": "3"}), "ProtocolError", '"seq" must be an integer'),
    Bad("ack-seq-negative", raw({"type": "ack", "seq": -3}), "ProtocolError", '"seq" must be an integer'),
    # Session
    Bad("second-hello", raw({"type": "hello", "version": 1, "render": False}),
        "ProtocolError", "already received"),
    Bad("second-hello-resuming", raw({"type": "hello", "version": 1, "resume": {"session": "x"}}),
        "ProtocolError", "already received"),
    Bad("resumed-from-client", raw({"type": "resumed", "session": "x", "seq": 1}),
        "ProtocolError", 'unknown frame type "resumed"'),
    Bad("emit-from-client", raw({"type": "emit", "stream": "room", "offset": 1, "method": "say",
                                 "args": ["x"]}),
        "ProtocolError", 'unknown frame type "emit"'),
    # Size
    Bad("frame-over-64KiB", call(7, "say", "z" * 70_000), "FrameTooLarge", "65536"),
    Bad("frame-just-over-64KiB", b" " * (65_536 - len(call(7, "say", "z"))) + call(7, "say", "z") + b" ",
        "FrameTooLarge", "65537 bytes exceeds the limit of 65536"),
    # A frame of exactly 64 KiB is read: this one's message is just too long.
    Bad("frame-of-64KiB", b" " * (65_536 - len(call(7, "say", "z" * 2001))) + call(7, "say", "z" * 2001),
        "InvalidMessage", "at most 2000", 7),
]


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("bad", BAD_FRAMES, ids=[b.id for b in BAD_FRAMES])
async def test_badFrame(chatServer, serverLog, bad):
    """A bad frame gets one error frame naming what is wrong and one log line; the sender and others chat on."""
    alice, bob = await bystanders(chatServer)
    if bad.loggedIn:
        mallory = await chatServer.login("mallory")
    else:
        mallory = await chatServer.connect()
    before = len(mallory.frames)
    del serverLog[:]

    mallory.sendRaw(bad.payload, isBinary=bad.binary)
    error = await mallory.nextFrame(lambda f: f["type"] == "error", "the error reply")

    assert error["id"] == bad.replyId, error
    assert error["error"]["name"] == bad.name, error
    message = error["error"]["message"]
    assert bad.says in message, error
    assert "Traceback" not in message and len(message) < 300, error
    [logged] = refusals(serverLog)
    assert logged["kind"] == bad.name
    assert failures(serverLog) == []

    # The sender's connection is open and works.
    if not bad.loggedIn:
        answer = await mallory.call("setUsername", "mallory")
        assert answer["type"] == "result", answer
    await stillChatting(alice, bob, mallory)
    await say(mallory, "mallory", (alice, bob, mallory))
    assert not mallory.isClosed
    # Exactly one error was sent, and one line logged, for the bad frame.
    assert [f for f in mallory.frames[before:] if f["type"] == "error"] == [error]
    assert len(refusals(serverLog)) == 1
    assert failures(serverLog) == []
    assert not alice.errors() and not bob.errors()


@pytest_twisted.ensureDeferred
async def test_messageOf2000CharactersIsDelivered(chatServer):
    """A message of exactly 2000 characters (after trimming) is delivered whole to everyone."""
    alice, bob = await bystanders(chatServer)
    text = "".join(chr(ord("a") + i % 26) for i in range(2000))
    await say(alice, "alice", (alice, bob), text)
    answer = await alice.call("say", f"\n  {text}  \t")
    assert answer["type"] == "result", answer
    await bob.waitFor(lambda: bob.calls("displayUserMessage").count(["alice", text]) == 2)


@pytest_twisted.ensureDeferred
async def test_nonAsciiMessagesCountCharacters(chatServer):
    """The 2000 limit counts characters, not bytes: 2000 four-byte characters are delivered."""
    alice, bob = await bystanders(chatServer)
    text = "\U0001f600" * 2000
    await say(alice, "alice", (alice, bob), text)


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("first", [
    {"type": "call", "id": 4, "method": "setUsername", "args": ["mallory"]},
    {"type": "result", "id": 5, "value": None},
    {"type": "welcome"},
    {"type": "ack", "seq": 1},
    {"type": "leave"},
    {"type": "call", "seq": 1, "id": 6, "method": "setUsername", "args": ["mallory"]},
])
async def test_firstFrameNotHello(chatServer, serverLog, first):
    """A frame before hello gets ProtocolError and makes no element; a hello afterwards still works."""
    alice, bob = await bystanders(chatServer)
    mallory = await chatServer.connect(hello=False)
    del serverLog[:]
    mallory.send(first)
    error = await mallory.nextFrame(lambda f: f["type"] == "error")
    assert error["error"] == {"name": "ProtocolError", "message": 'the first frame must be "hello"'}
    assert error["id"] == (first.get("id") if first.get("type") == "call" else None)
    assert "seq" not in error  # no session yet: not numbered
    assert len(refusals(serverLog)) == 1
    assert len(chatServer.room.chatters) == 2
    mallory.send({"type": "hello", "version": 1, "render": False})
    await mallory.nextFrame(lambda f: f["type"] == "welcome")
    answer = await mallory.call("setUsername", "mallory")
    assert answer == {"type": "result", "seq": 2, "id": 0, "value": "mallory"}
    await stillChatting(alice, bob, mallory)
    assert len(refusals(serverLog)) == 1
    assert failures(serverLog) == []


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("version", [2, 0, "1", None, True, 1.0, "missing"])
async def test_unsupportedVersion(chatServer, serverLog, version):
    """A hello with another protocol version gets ProtocolError naming the versions, then a 1002 close."""
    patientClose(chatServer)
    alice, bob = await bystanders(chatServer)
    mallory = await chatServer.connect(hello=False)
    del serverLog[:]
    hello = {"type": "hello", "render": False}
    if version != "missing":
        hello["version"] = version
    mallory.send(hello)
    error = await mallory.nextFrame(lambda f: f["type"] == "error")
    assert error["id"] is None
    assert error["error"]["name"] == "ProtocolError"
    assert "not supported" in error["error"]["message"]
    assert "version 1" in error["error"]["message"]
    assert await mallory.closed() == 1002
    assert not any(f["type"] == "welcome" for f in mallory.frames)
    assert len(refusals(serverLog)) == 1
    assert failures(serverLog) == []
    assert len(chatServer.room.chatters) == 2
    await stillChatting(alice, bob)


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("loggedIn", [True, False])
async def test_frameOver1MiBClosesWith1009(chatServer, serverLog, loggedIn):
    """A frame over 1 MiB closes only its sender's connection, with 1009; a logged-in sender's leave is announced."""
    alice, bob = await bystanders(chatServer)
    patientClose(chatServer)
    mallory = await (chatServer.login("mallory") if loggedIn else chatServer.connect())
    del serverLog[:]
    mallory.send({"type": "call", "id": 7, "method": "say", "args": ["w" * (1024 * 1024)]})
    assert await mallory.closed() == 1009
    await eventually(lambda: len(chatServer.room.chatters) == 2, "mallory's page to be dropped")
    await stillChatting(alice, bob)
    left = [" * user mallory has left the room"]
    assert (left in bob.calls("displayMessage")) == loggedIn
    assert refusals(serverLog) == []  # refused by the WebSocket layer, which logs it itself
    assert failures(serverLog) == []
    assert chatServer.room.online() == ["alice", "bob"]


@pytest_twisted.ensureDeferred
async def test_fragmentedMessageOver1MiBClosesWith1009(chatServer, serverLog):
    """A message over 1 MiB sent in small fragments is closed with 1009 too."""
    patientClose(chatServer)
    alice, bob = await bystanders(chatServer)
    mallory = await chatServer.login("mallory")
    del serverLog[:]
    mallory.protocol.sendMessage(call(7, "say", "w" * (1024 * 1024 + 10)), fragmentSize=16 * 1024)
    assert await mallory.closed() == 1009
    await bob.waitFor(lambda: [" * user mallory has left the room"] in bob.calls("displayMessage"))
    await stillChatting(alice, bob)
    assert failures(serverLog) == []


@pytest_twisted.ensureDeferred
async def test_invalidUtf8ClosesWith1007(chatServer, serverLog):
    """A text frame that is not UTF-8 closes its sender's connection with 1007; others chat on."""
    patientClose(chatServer)
    alice, bob = await bystanders(chatServer)
    mallory = await chatServer.login("mallory")
    del serverLog[:]
    mallory.sendRaw(b'{"type": "call", "id": 7, "method": "say", "args": ["\xff\xfe"]}')
    assert await mallory.closed() == 1007
    await bob.waitFor(lambda: [" * user mallory has left the room"] in bob.calls("displayMessage"))
    await stillChatting(alice, bob)
    assert failures(serverLog) == []


async def fullBucket() -> None:
    """
    Wait long enough for a page's rate-limit bucket, emptied by a few frames
    just sent, to be full again (20 tokens a second).
    """
    await task.deferLater(reactor, 0.25, lambda: None)


@pytest_twisted.ensureDeferred
async def test_floodOfBadFrames(chatServer, serverLog):
    """200 bad frames sent at once get 200 error replies, in order: the first 40 (a burst) their own error, later ones RateLimited past the rate; each refusal is logged, but the flood of RateLimited only once; others chat on."""
    settings = chatServer.site.liveFactory.settings
    alice, bob = await bystanders(chatServer)
    mallory = await chatServer.login("mallory")
    await fullBucket()
    del serverLog[:]
    kinds = [b for b in BAD_FRAMES if b.loggedIn]
    sent = [kinds[i % len(kinds)] for i in range(200)]
    start = reactor.seconds()
    for bad in sent:
        mallory.sendRaw(bad.payload, isBinary=bad.binary)
    await stillChatting(alice, bob)
    await mallory.waitFor(lambda: len(mallory.errors()) >= len(sent), "200 error replies")
    elapsed = reactor.seconds() - start
    names = [e["error"]["name"] for e in mallory.errors()]
    assert len(names) == len(sent)
    assert names[:settings.frameBurst] == [b.name for b in sent[:settings.frameBurst]]
    for name, bad in zip(names, sent):
        assert name in (bad.name, "RateLimited")
    accepted = len([n for n in names if n != "RateLimited"])
    assert accepted <= settings.frameBurst + settings.frameRate * elapsed + 1, (accepted, elapsed)
    limited = [e for e in mallory.errors() if e["error"]["name"] == "RateLimited"]
    assert limited and all("slow down" in e["error"]["message"] for e in limited)
    logged = refusals(serverLog)
    # Each kind of refusal is logged, up to the log throttle's lines a kind
    # (issue 12, row 9: in-limit bad frames cannot write a line each).
    refused = [n for n in names if n != "RateLimited"]
    for kind in set(refused):
        assert len([e for e in logged if e["kind"] == kind]) == min(refused.count(kind), 10), kind
    # The flood is logged once: tokens that come back during it do not start another.
    assert len([e for e in logged if e["kind"] == "RateLimited"]) == 1
    assert failures(serverLog) == []
    await fullBucket()
    await stillChatting(alice, bob, mallory)
    await say(mallory, "mallory", (alice, bob))


@pytest_twisted.ensureDeferred
async def test_floodOfCallsIsRateLimited(chatServer, serverLog):
    """A page sending 60 says at once has the first 40 run and the rest refused with RateLimited, each answered exactly once; a flood is logged once; after a pause it chats again."""
    alice, bob = await bystanders(chatServer)
    mallory = await chatServer.login("mallory")
    await fullBucket()
    del serverLog[:]
    start = reactor.seconds()
    idents = [mallory.startCall("say", f"flood {i}") for i in range(60)]
    answers = [await mallory.answerTo(ident) for ident in idents]
    elapsed = reactor.seconds() - start
    ran = [f"flood {i}" for i, a in enumerate(answers) if a["type"] == "result"]
    limited = [a for a in answers if a["type"] == "error"]
    assert ran[:40] == [f"flood {i}" for i in range(40)]
    assert len(ran) <= 40 + 20 * elapsed + 1, (len(ran), elapsed)
    assert all(a["error"]["name"] == "RateLimited" for a in limited)
    assert limited
    # Exactly the says that ran reach the room, in order, once.
    await say(alice, "alice", (alice, bob, mallory), "after the flood")
    for client in (alice, bob, mallory):
        assert [t for s, t in client.calls("displayUserMessage") if s == "mallory"] == ran
    assert mallory.duplicates == 0
    assert [e["kind"] for e in refusals(serverLog)] == ["RateLimited"]
    assert failures(serverLog) == []
    assert not mallory.isClosed
    await fullBucket()
    await say(mallory, "mallory", (alice, bob, mallory))


@pytest_twisted.ensureDeferred
async def test_acksAreNotRateLimited(chatServer, serverLog):
    """300 acknowledgements at once get no error replies (those over the ack rate are dropped unanswered), and calls after them are not limited."""
    alice, bob = await bystanders(chatServer)
    mallory = await chatServer.login("mallory")
    await fullBucket()
    del serverLog[:]
    for _ in range(300):
        mallory.send({"type": "ack", "seq": 1})
    await say(mallory, "mallory", (alice, bob, mallory))
    assert not mallory.errors()
    assert refusals(serverLog) == []


@pytest_twisted.ensureDeferred
async def test_garbageBeforeHelloIsRateLimited(chatServer, serverLog):
    """Frames before hello count against the rate limit too, and each is answered without a number."""
    alice, bob = await bystanders(chatServer)
    mallory = await chatServer.connect(hello=False)
    del serverLog[:]
    for _ in range(100):
        mallory.sendRaw(b"not json")
    await mallory.waitFor(lambda: len(mallory.errors()) >= 100, "100 error replies")
    names = [e["error"]["name"] for e in mallory.errors()]
    assert names[:40] == ["ProtocolError"] * 40
    assert "RateLimited" in names
    assert set(names) == {"ProtocolError", "RateLimited"}
    assert not any("seq" in e for e in mallory.errors())
    # One line each, up to the log throttle's 10 a kind (issue 12, row 9).
    assert len(refusals(serverLog)) == min(names.count("ProtocolError"), 10) + 1
    await stillChatting(alice, bob)


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("resume, says", [
    ("not an object", '"resume" must be an object'),
    ({"seq": 1}, '"session" string'),
    ({"session": 5}, '"session" string'),
    ({"session": "x", "seq": "1"}, '"seq" must be an integer'),
    ({"session": "x", "streams": ["room"]}, '"resume.streams"'),
    ({"session": "x", "streams": {"room": -1}}, '"resume.streams"'),
    ({"session": "x", "streams": {"room": "1"}}, '"resume.streams"'),
])
async def test_malformedResume(chatServer, serverLog, resume, says):
    """A hello with a malformed resume gets one ProtocolError, unnumbered, and no session; a good hello afterwards works."""
    alice, bob = await bystanders(chatServer)
    mallory = await chatServer.connect(hello=False)
    del serverLog[:]
    mallory.send({"type": "hello", "version": 1, "render": False, "resume": resume})
    error = await mallory.nextFrame(lambda f: f["type"] == "error")
    assert error["id"] is None and "seq" not in error
    assert error["error"]["name"] == "ProtocolError"
    assert says in error["error"]["message"], error
    assert len(chatServer.room.chatters) == 2
    mallory.send({"type": "hello", "version": 1, "render": False})
    await mallory.nextFrame(lambda f: f["type"] == "welcome")
    assert (await mallory.call("setUsername", "mallory"))["type"] == "result"
    await stillChatting(alice, bob, mallory)
    assert len(refusals(serverLog)) == 1
    assert failures(serverLog) == []
