"""
Property-based fuzzing of the live protocol (Hypothesis): one page sends
thousands of random and malformed frames while two logged-in pages chat.

The property, for every frame the fuzzer sends:

- the server answers it, in order: an C{error} reply for a bad frame, a
  C{result} or the application's own error for a valid call of an exposed
  method with valid arguments, and nothing only where the protocol says so
  (a valid C{ack}, the C{welcome} to a valid C{hello}, a numbered frame
  whose number was already run: it is taken for a re-sent one);
- the fuzzer's connection stays open, unless the frame closes it by design
  (over 1 MiB: 1009; invalid UTF-8: 1007; a first C{hello} of another
  version: 1002; C{leave}: 1000); then a new fuzzer connects and carries on;
- the server logs no failure (no traceback: nothing it did not expect).

And for the whole run: the two chatters' transcripts are complete and
identical, every message they sent exactly once in the order it was sent,
nothing sent twice, every call answered; and a new page can still join and
be heard.

A L{Fuzzer} models the server's state (has the page said hello? the
highest frame number run) to know what each frame must get, and checks the
replies at a checkpoint after each batch: a frame of an unknown type whose
error reply, being answered in order, comes after every other reply.

How Hypothesis and pytest-twisted fit: the test function runs in the
reactor's greenlet, so it cannot block, while Hypothesis calls the property
synchronously, once per example.  The test therefore runs Hypothesis in a
child greenlet, and the property waits for each batch's Deferred with
L{GreenletBridge.wait}, which switches back to the reactor greenlet until
the Deferred fires (the way C{pytest_twisted.blockon} serves fixtures).  So
every example is a real @given example, generated deterministically
(C{derandomize=True}, no example database) and checked against the live
server.  There is no shrinking: the server's state moves on between runs of
an example, so a failure reports the batch and the exact frame instead.
"""

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

import greenlet
import pytest_twisted
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python.failure import Failure

from chatthing.chat import Room
from chatthing.listening import ListeningService
from chatthing.live import LiveSettings, LiveSite
from chatthing.live.testing import LiveTestClient

#: Batches Hypothesis generates (plus the explicit examples); with up to
#: L{MAX_BATCH} frames each, thousands of frames in ~20-40 s.
EXAMPLES = 250
MAX_BATCH = 60

#: Seconds any one condition may take (a loaded 2-core machine included).
DEADLINE = 15.0

#: Seconds the whole Hypothesis run may take before the test fails.
RUN_DEADLINE = 200.0

SOFT_LIMIT = 64 * 1024  # answered with FrameTooLarge
HARD_LIMIT = 1024 * 1024  # closed with 1009

#: What a frame must be answered with.
REFUSED = "refused"  # an error reply from the runtime
ANSWERED = "answered"  # a result, or the application's own refusal

RUNTIME_ERRORS = {"ProtocolError", "FrameTooLarge", "NoSuchMethod", "BadArguments"}
APPLICATION_ERRORS = {"InvalidUsername", "UsernameTaken", "AlreadyLoggedIn", "NotLoggedIn",
                      "InvalidMessage"}

#: Method names to call: the exposed ones, and real attributes that are not.
METHOD_NAMES = [
    "say", "setUsername", "wall", "hear", "room", "username", "render", "connected",
    "disconnected", "callRemote", "notifyRemote", "subscribe", "notifyOnDisconnect", "template", "jsModule",
    "jsClass", "maxUsernameLength", "maxMessageLength", "_liveSession", "_liveAttach",
    "_liveDetach", "_liveRunHook", "__class__", "__init__", "__dict__", "__getattribute__",
    "__reduce_ex__", "__del__", "constructor", "toString", "", " say", "say ", "SAY",
    "setusername", "say\x00", "displayMessage",
]

FRAME_TYPES = ["call", "result", "error", "ack", "hello", "leave", "emit", "welcome",
               "resumed", "", "CALL", "call ", "Call", "__proto__", "null"]


# What Hypothesis generates: a batch of operations.

@dataclass(frozen=True)
class Raw:
    """
    These bytes, as a text frame (or a binary one).
    """

    payload: bytes
    binary: bool = False


@dataclass(frozen=True)
class Frame:
    """
    A JSON object; a C{seq} of L{NEXT} becomes the next number the server
    will run.  Encoded with non-ASCII characters escaped, or raw (then a lone
    surrogate makes it invalid UTF-8).
    """

    fields: tuple  # of (name, value) pairs: hashable, and ordered as generated
    ascii: bool = True


@dataclass(frozen=True)
class Huge:
    """
    A large or deeply nested frame, made when sent (Hypothesis draws only
    its shape): C{big} (over 64 KiB), C{edge} (exactly 64 KiB), C{deep}
    (nested C{depth} lists), C{hard} (over 1 MiB).
    """

    kind: str
    size: int


@dataclass(frozen=True)
class Reconnect:
    """
    Close this connection (cleanly, or by breaking it) and open a new one
    that has not said hello.
    """

    clean: bool


class _Next:
    def __repr__(self) -> str:
        return "NEXT"


NEXT = _Next()


def frame(ascii: bool = True, **fields: Any) -> Frame:
    return Frame(tuple(fields.items()), ascii)


texts = st.one_of(
    st.text(max_size=30),
    st.sampled_from(METHOD_NAMES),
    # Lone surrogates: JSON can escape them ("\\ud800"), UTF-8 cannot hold them.
    st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF) | st.characters(),
            min_size=1, max_size=6),
)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.integers(-3, 3),
    st.floats(allow_nan=True, allow_infinity=True), texts,
)
jsonValues = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(texts, children, max_size=4),
    max_leaves=10,
)
absent = st.just(None).map(lambda _: _ABSENT)
_ABSENT = object()
seqs = st.one_of(absent, st.just(NEXT), st.just(NEXT), st.none(),
                 st.integers(-3, 2**64), jsonValues)
ids = st.one_of(absent, st.integers(-3, 2**64), jsonValues)
asciiFlags = st.sampled_from([True] * 7 + [False])


def fields(**strategies: Any) -> st.SearchStrategy:
    """
    A L{Frame} whose fields are drawn from C{strategies}; fields drawn as
    absent are left out.
    """
    return st.builds(
        lambda values, ascii: Frame(
            tuple((k, v) for k, v in values.items() if v is not _ABSENT), ascii
        ),
        st.fixed_dictionaries(strategies),
        asciiFlags,
    )


calls = fields(
    type=st.just("call"), id=ids, seq=seqs,
    method=st.one_of(st.sampled_from(METHOD_NAMES), texts, jsonValues, absent),
    args=st.one_of(absent, st.lists(jsonValues, max_size=3), jsonValues,
                   st.lists(texts, min_size=1, max_size=1)),
)
validCalls = fields(
    type=st.just("call"), id=st.integers(0, 2**40), seq=st.sampled_from([NEXT, _ABSENT]),
    method=st.sampled_from(["say", "setUsername"]), args=st.lists(texts, min_size=1, max_size=1),
)
answers = fields(
    type=st.sampled_from(["result", "error"]), id=ids, seq=seqs,
    value=st.one_of(absent, jsonValues),
    error=st.one_of(absent, jsonValues,
                    st.fixed_dictionaries({"name": texts, "message": texts})),
)
acks = fields(type=st.just("ack"), seq=seqs)
hellos = fields(
    type=st.just("hello"),
    version=st.one_of(st.just(1), st.just(1), jsonValues, absent),
    render=st.one_of(absent, st.booleans(), jsonValues),
    resume=st.one_of(
        absent, absent, jsonValues,
        st.fixed_dictionaries({
            "session": st.one_of(texts, jsonValues),
            "seq": seqs.filter(lambda v: v is not NEXT and v is not _ABSENT),
            "streams": st.one_of(
                st.dictionaries(texts, st.integers(-2, 2**40), max_size=3), jsonValues),
        }),
    ),
)
anyTypes = fields(
    type=st.one_of(st.sampled_from(FRAME_TYPES), texts, jsonValues, absent),
    id=ids, seq=seqs, method=st.one_of(absent, texts), args=st.one_of(absent, jsonValues),
    extra=st.one_of(absent, jsonValues),
)
notObjects = st.builds(
    lambda value: Raw(json.dumps(value).encode("ascii")),
    jsonValues.filter(lambda v: not isinstance(v, dict)),
)
randomBytes = st.builds(Raw, st.binary(max_size=120), st.booleans())
randomText = st.builds(lambda text: Raw(text.encode("utf-8")), st.text(max_size=80))
brokenJson = st.builds(
    lambda frame_, cut: Raw(frame_[:cut]),
    st.sampled_from([b'{"type":"call","id":1,"method":"say","args":["hi"]}',
                     b'{"type": "ack", "seq": 1}', b'[{"type":"call"}]']),
    st.integers(0, 40),
)
huge = st.builds(
    Huge,
    st.sampled_from(["big"] * 4 + ["edge"] * 2 + ["deep"] * 4 + ["hard"]),
    st.sampled_from([1, 2, 50, 200, 20_000, 30_000, 100_000]),
)
reconnects = st.builds(Reconnect, st.booleans())

operations = st.one_of(
    calls, calls, validCalls, answers, acks, hellos, anyTypes, anyTypes, notObjects,
    randomBytes, randomText, brokenJson, huge, reconnects,
)
batches = st.lists(operations, min_size=10, max_size=MAX_BATCH)


def isIndex(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# Running Hypothesis beside the reactor.

class GreenletBridge:
    """
    Lets code in a child greenlet wait for Deferreds, while the reactor runs
    in the greenlet that made the bridge.
    """

    def __init__(self) -> None:
        self.reactorGreenlet = greenlet.getcurrent()

    def run(self, function: Any) -> Deferred:
        """
        Start C{function()} in a child greenlet; fires with its result.
        """
        finished: Deferred = Deferred()

        def main() -> None:
            try:
                result = function()
            except BaseException:
                outcome = Failure()
                reactor.callLater(0, finished.errback, outcome)
            else:
                reactor.callLater(0, finished.callback, result)

        greenlet.greenlet(main).switch()
        return finished

    def wait(self, d: Deferred) -> Any:
        """
        The result of C{d}, letting the reactor run until it fires.
        """
        me = greenlet.getcurrent()
        assert me is not self.reactorGreenlet, "wait() would block the reactor"
        result: list = []

        def fired(value: Any) -> None:
            result.append(value)
            if greenlet.getcurrent() is not me:
                me.switch()

        d.addBoth(fired)
        if not result:
            self.reactorGreenlet.switch()
        if isinstance(result[0], Failure):
            result[0].raiseException()
        return result[0]


# The fuzzer.

class Fuzzer:
    """
    One hostile page, reconnecting when closed by design, that knows what
    the server owes it for each frame.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.client: LiveTestClient | None = None
        self.hasSession = False
        self.receivedSeq = 0
        self.expected: list[tuple[str, bytes]] = []
        self.expectExpired = False
        self.checkpoints = 0
        self.stats: Counter = Counter()
        self.failure: BaseException | None = None

    async def connect(self, hello: bool = True) -> None:
        self.client = await LiveTestClient.connect(self.url, hello=None if hello else False)
        self.hasSession = hello
        self.receivedSeq = 0
        self.expected = []
        self.expectExpired = False
        self.stats["connections"] += 1

    async def run(self, batch: list) -> None:
        if self.client is None:
            await self.connect()
        for operation in batch:
            if isinstance(operation, Reconnect):
                await self.checkpoint()
                await self.reconnect(operation.clean)
                continue
            payload, binary = self.encode(operation)
            replies, closeCode = self.expect(payload, binary)
            if self.client.isClosed or self.client.protocol is None:
                raise AssertionError(
                    f"the fuzzer's connection closed unexpectedly "
                    f"(code {self.client.closeCode}, {self.client.closeReason!r}); "
                    f"last frames: {self.expected[-3:]!r}"
                )
            self.client.sendRaw(payload, isBinary=binary)
            self.stats["frames"] += 1
            self.stats[replies[0] if replies else "unanswered"] += 1
            self.expected += [(kind, payload[:300]) for kind in replies]
            if closeCode is not None:
                await self.closedWith(closeCode, payload)
                await self.connect()
        await self.checkpoint()

    def encode(self, operation: Any) -> tuple[bytes, bool]:
        if isinstance(operation, Raw):
            return operation.payload, operation.binary
        if isinstance(operation, Huge):
            return hugePayload(operation), False
        values = {
            name: (self.receivedSeq + 1 if value is NEXT else value)
            for name, value in operation.fields
        }
        text = json.dumps(values, ensure_ascii=operation.ascii, allow_nan=True)
        return text.encode("utf-8", "surrogatepass"), False

    # The model: what the server owes the page for one frame.

    def expect(self, payload: bytes, binary: bool) -> tuple[list[str], int | None]:
        """
        The replies C{payload} must get (in order), and the close code it
        must get instead of more frames, if any.  Updates the model.
        """
        if len(payload) > HARD_LIMIT:
            return [], 1009
        if not binary:
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError:
                return [], 1007
        if binary or len(payload) > SOFT_LIMIT:
            return [REFUSED], None
        try:
            frame_ = json.loads(payload)
        except (ValueError, RecursionError):
            return [REFUSED], None
        if not isinstance(frame_, dict) or not isinstance(frame_.get("type"), str):
            return [REFUSED], None
        if not self.hasSession:
            return self.expectHello(frame_)
        return self.expectInSession(frame_)

    def expectHello(self, frame_: dict) -> tuple[list[str], int | None]:
        if frame_["type"] != "hello":
            return [REFUSED], None
        version = frame_.get("version")
        if type(version) is not int or version != 1:
            return [REFUSED], 1002
        resume = frame_.get("resume")
        if resume is not None:
            if not isinstance(resume, dict) or not isinstance(resume.get("session"), str):
                return [REFUSED], None
            seq = resume.get("seq")
            if seq is not None and not isIndex(seq):
                return [REFUSED], None
            streams = resume.get("streams", {})
            if not isinstance(streams, dict) or not all(isIndex(v) for v in streams.values()):
                return [REFUSED], None
            # A made-up session: the server starts a new one, saying why.
            self.expectExpired = True
        self.hasSession = True
        return [], None

    def expectInSession(self, frame_: dict) -> tuple[list[str], int | None]:
        kind = frame_["type"]
        if kind == "ack":
            seq = frame_.get("seq")
            return ([], None) if seq is not None and isIndex(seq) else ([REFUSED], None)
        if kind == "leave":
            return [], 1000
        if kind not in ("call", "result", "error"):
            return [REFUSED], None
        seq = frame_.get("seq")
        if seq is not None:
            if not isIndex(seq):
                return [REFUSED], None
            if seq <= self.receivedSeq:
                return [], None  # taken for a frame re-sent after a reconnection
            self.receivedSeq = seq
        if kind != "call":
            return [REFUSED], None  # the server is waiting for no answer from this page
        method, args = frame_.get("method"), frame_.get("args", [])
        if not isIndex(frame_.get("id")) or not isinstance(method, str) or not isinstance(args, list):
            return [REFUSED], None
        if method in ("say", "setUsername") and len(args) == 1 and isinstance(args[0], str):
            return [ANSWERED], None
        return [REFUSED], None

    # Checking what came back

    def replies(self) -> list[dict]:
        return [f for f in self.client.frames if f["type"] in ("result", "error")]

    def checkReplies(self) -> None:
        replies = self.replies()
        assert len(replies) == len(self.expected), (
            f"{len(self.expected)} replies were owed, {len(replies)} came: "
            + describeMismatch(self.expected, replies)
        )
        for (kind, payload), reply in zip(self.expected, replies):
            if kind == REFUSED:
                ok = reply["type"] == "error" and reply["error"]["name"] in RUNTIME_ERRORS
            else:
                ok = reply["type"] == "result" or reply["error"]["name"] in APPLICATION_ERRORS
            assert ok, f"frame {payload!r} should have been {kind}, got {reply!r}"
            if reply["type"] == "error":
                assert isinstance(reply["error"]["message"], str)
        self.stats["replies"] += len(replies)

    async def checkpoint(self) -> None:
        """
        Make sure the page has a session, then send a frame of an unknown
        type: its error reply is the last one owed; check them all.
        """
        if not self.hasSession:
            self.client.send({"type": "hello", "version": 1, "render": False})
            self.hasSession = True
        self.checkpoints += 1
        marker = f"checkpoint {self.checkpoints}"
        client = self.client
        start = len(client.frames)
        client.send({"type": marker})
        self.expected.append((REFUSED, marker.encode()))
        await client.waitFor(
            lambda: client.isClosed or any(
                f["type"] == "error" and marker in f["error"]["message"]
                for f in client.frames[start:]
            ),
            f"the reply to {marker}", DEADLINE,
        )
        assert not client.isClosed, (
            f"the fuzzer's connection closed unexpectedly (code {client.closeCode}, "
            f"{client.closeReason!r}); last frames: {self.expected[-4:]!r}"
        )
        self.checkReplies()
        welcomes = [f for f in client.frames if f["type"] == "welcome"]
        assert len(welcomes) == 1, welcomes
        assert ("expired" in welcomes[0]) == self.expectExpired, welcomes[0]
        # Counted once: start afresh from here on this connection.
        del client.frames[:]
        client.frames.append(welcomes[0])
        self.expected = []

    async def closedWith(self, code: int, payload: bytes) -> None:
        closeCode = await self.client.closed(DEADLINE)
        assert closeCode == code, (
            f"frame {payload[:200]!r} should have closed the connection with {code}, "
            f"not {closeCode} ({self.client.closeReason!r})"
        )
        self.checkReplies()
        self.stats[f"closed {code}"] += 1

    async def reconnect(self, clean: bool) -> None:
        if clean:
            self.client.close()
        else:
            self.client.drop()
        await self.client.closed(DEADLINE)
        await self.connect(hello=False)


def hugePayload(huge: Huge) -> bytes:
    if huge.kind == "big":
        return json.dumps({"type": "call", "id": 1, "method": "say",
                           "args": ["x" * (SOFT_LIMIT + huge.size)]}).encode()
    if huge.kind == "edge":
        # Exactly at the limit: allowed (and too long a message for the chat).
        head = b'{"type":"call","id":2,"method":"say","args":["'
        tail = b'"]}'
        return head + b"y" * (SOFT_LIMIT - len(head) - len(tail)) + tail
    if huge.kind == "deep":
        depth = min(huge.size, 30_000)  # nests shallow (<= 200), or far too deep
        return (b'{"type":"call","id":3,"method":"say","args":'
                + b"[" * depth + b"]" * depth + b"}")
    return b"z" * (HARD_LIMIT + huge.size)


def describeMismatch(expected: list, replies: list) -> str:
    for n, ((kind, payload), reply) in enumerate(zip(expected, replies)):
        if (kind == REFUSED) != (reply["type"] == "error" and reply["error"]["name"] in RUNTIME_ERRORS):
            return f"first difference at reply {n}: frame {payload!r} ({kind}) got {reply!r}"
    if len(expected) > len(replies):
        return f"unanswered: {[p for _, p in expected[len(replies):]][:5]!r}"
    return f"extra replies: {replies[len(expected):][:5]!r}"


# The chatters.

class Chatter:
    """
    A logged-in page that keeps talking until told to stop.
    """

    def __init__(self, name: str, client: LiveTestClient) -> None:
        self.name = name
        self.client = client
        self.said: list[str] = []
        self.callIds: list[int] = []
        self.talking = True

    async def talk(self) -> None:
        while self.talking:
            text = f"{self.name} line {len(self.said)}"
            self.callIds.append(self.client.startCall("say", text))
            self.said.append(text)
            await task.deferLater(reactor, 0.03, lambda: None)  # pacing, not a wait

    def transcript(self) -> list[tuple[str, str]]:
        return [tuple(args) for args in self.client.calls("displayUserMessage")]


@pytest_twisted.async_yield_fixture
async def fuzzServer():
    """
    A chat server whose rate limit is out of reach, so that every frame is
    judged on its content.
    """
    room = Room()
    settings_ = LiveSettings(frameRate=1e9, frameBurst=10**9)
    site = LiveSite(room.makeChatter, settings=settings_)
    # See the close codes even if the fuzzer is slow to answer a close frame.
    site.liveFactory.setProtocolOptions(closeHandshakeTimeout=DEADLINE)
    service = ListeningService("tcp:0:interface=127.0.0.1", site, "fuzz")
    service.startService()
    await service._listening
    yield f"ws://127.0.0.1:{service.port.getHost().port}/live", room
    await service.stopService()


@pytest_twisted.async_yield_fixture
async def serverFailures():
    """
    Log events that carry a failure, or are errors, while the test runs.
    """
    events: list = []

    def observe(event: dict) -> None:
        if event.get("log_failure") is not None or event.get("log_level") in (
            LogLevel.error, LogLevel.critical,
        ):
            events.append(event)

    globalLogPublisher.addObserver(observe)
    yield events
    globalLogPublisher.removeObserver(observe)


def describe(event: dict) -> str:
    failure = event.get("log_failure")
    return f"{event.get('log_format')!r}: {failure.getTraceback() if failure else ''}"


@pytest_twisted.ensureDeferred
async def test_fuzzFramesWhileOthersChat(fuzzServer, serverFailures):
    """Thousands of random and malformed frames each get their answer, while two others chat unharmed."""
    url, room = fuzzServer
    chatters = []
    for name in ("alice", "bob"):
        client = await LiveTestClient.connect(url)
        assert (await client.call("setUsername", name))["type"] == "result"
        chatters.append(Chatter(name, client))
    talking = [ensureDeferred(chatter.talk()) for chatter in chatters]
    fuzzer = Fuzzer(url)
    bridge = GreenletBridge()

    @settings(
        max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
        phases=[Phase.explicit, Phase.generate], suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                               HealthCheck.filter_too_much, HealthCheck.large_base_example],
        report_multiple_bugs=False, print_blob=False,
    )
    @given(batch=batches)
    @example(batch=[Huge("hard", 1), frame(type="call", id=1, method="say", args=["after"])])
    @example(batch=[Raw(b'{"type":"call","id":1,"method":"say","args":["\xff"]}')])
    @example(batch=[Reconnect(clean=True), frame(type="hello", version=2)])
    @example(batch=[Reconnect(clean=False), frame(type="ack", seq=0), frame(type="hello", version=1.0)])
    @example(batch=[frame(type="leave"), frame(type="call", id=0, method="say", args=["x"])])
    @example(batch=[frame(type="call", id=n, method=name, args=["x"], seq=NEXT)
                    for n, name in enumerate(["wall", "room", "_liveSession", "__class__",
                                              "hear", "username", "setUsername", "say"])])
    @example(batch=[frame(type="\ud800"), frame(type="call", id=1, method="setUsername",
                                                args=["m\udfff"]),
                    frame(type="call", id=2, method="setUsername", args=["mallory"]),
                    frame(type="call", id=3, method="say", args=["lone \ud800 surrogate"]),
                    frame(ascii=False, type="call", id=4, method="say", args=["\udc00"])])
    @example(batch=[Raw(b"\x00\x01", binary=True), Huge("edge", 0), Huge("big", 1),
                    Huge("deep", 30_000), Huge("deep", 200)])
    @example(batch=[frame(type="call", id=1, method="say", args=["a"], seq=2**64),
                    frame(type="call", id=2, method="say", args=["b"], seq=5),
                    frame(type="ack", seq=2**70), frame(type="ack", seq=-1)])
    def fuzzBatch(batch: list) -> None:
        if fuzzer.failure is not None:
            raise fuzzer.failure  # the server has moved on: report the first failure
        try:
            bridge.wait(ensureDeferred(fuzzer.run(batch)))
        except BaseException as e:
            fuzzer.failure = e
            raise

    run = bridge.run(fuzzBatch)
    run.addTimeout(RUN_DEADLINE, reactor)
    try:
        await run
    finally:
        for chatter in chatters:
            chatter.talking = False
    for d in talking:
        await d

    print(f"fuzzer: {dict(fuzzer.stats)}")
    stats = fuzzer.stats
    assert stats["frames"] >= 2000, stats
    assert stats["replies"] == stats[REFUSED] + stats[ANSWERED] + fuzzer.checkpoints, stats
    for code in (1000, 1002, 1007, 1009):
        assert stats[f"closed {code}"] >= 1, stats

    # The server still takes new pages, and serves everyone.
    carol = await LiveTestClient.connect(url)
    assert (await carol.call("setUsername", "carol the checker"))["type"] == "result"
    assert (await carol.call("say", "still standing?"))["type"] == "result"

    # The chatters heard each other completely, once, in order.
    total = sum(len(chatter.said) for chatter in chatters)
    for chatter in chatters:
        client = chatter.client
        for ident in chatter.callIds:
            answer = await client.answerTo(ident, f"{chatter.name}'s call {ident}", DEADLINE)
            assert answer["type"] == "result", answer
        await client.waitFor(
            lambda chatter=chatter: ("carol the checker", "still standing?") in chatter.transcript(),
            f"{chatter.name} to hear carol", DEADLINE,
        )
    heard = [
        [line for line in chatter.transcript() if line[0] in ("alice", "bob")]
        for chatter in chatters
    ]
    assert len(heard[0]) == total, (len(heard[0]), total)
    assert heard[0] == heard[1]
    assert chatters[0].transcript() == chatters[1].transcript()
    for chatter in chatters:
        assert [text for who, text in heard[0] if who == chatter.name] == chatter.said
        assert chatter.client.duplicates == 0
        assert not chatter.client.isClosed
        assert chatter.client.errors() == []
    assert sorted(name for name in room.online() if name in ("alice", "bob", "carol the checker")) == [
        "alice", "bob", "carol the checker"]
    assert serverFailures == [], "\n".join(describe(event) for event in serverFailures)
    for client in [carol] + [chatter.client for chatter in chatters]:
        client.close()
    if fuzzer.client is not None:
        fuzzer.client.close()
