"""
The Redis backplane in one test process: two L{RedisBackplane}s (standing
for two processes) on one real redis-server, their streams and rosters
watched directly.
"""

import ast
import json
from pathlib import Path

import pytest
import pytest_twisted
from cluster import redisServer  # noqa: F401 (a fixture)
from conftest import eventually
from test_live_units import preparedPayload
from twisted.internet.task import Clock

import chatthing.backplane
import chatthing.live
from chatthing.backplane import BackplaneDown, MemoryBackplane, NameTaken, Presence
from chatthing.backplane.redis import RedisBackplane
from chatthing.live._stream import runningCall


class Page:
    """
    A stream subscriber that decodes what it is sent.
    """

    def __init__(self) -> None:
        self.frames: list[dict] = []

    def deliverStream(self, stream, offset, message) -> None:
        self.frames.append(json.loads(preparedPayload(message)))

    def calls(self, stream: str = "room") -> list:
        return [(f["offset"], f["method"], f["args"]) for f in self.frames if f["stream"] == stream]


class Holder:
    """
    What the roster needs of an element: its session's id.
    """

    def __init__(self, sessionId: str) -> None:
        self.sessionId = sessionId


#: The terms an application gives its roster (the chat's are its widget's
#: methods): the backplane publishes these, and no words of its own.
#: Its name key makes a one stand for an l, as the chat's makes lookalikes
#: one name.
TERMS = Presence(changed="crowdMoved", nameKey=lambda name: name.casefold().replace("1", "l"))


async def startBackplane(redis, gracePeriod: float = 30.0) -> RedisBackplane:
    backplane = RedisBackplane(redis.url, gracePeriod=gracePeriod, presence=TERMS)
    backplane.startService()
    await eventually(lambda: backplane.connected, "the backplane to connect")
    return backplane


@pytest.fixture
def backplanes():
    started: list[RedisBackplane] = []
    yield started
    for backplane in started:
        if backplane.running:
            backplane.stopService()


async def openStream(backplane: RedisBackplane, key: str = "room:r") -> tuple:
    stream = backplane.stream(key, "room", 1000)
    await stream.ready()
    await eventually(lambda: stream.loaded, "the stream to load")
    page = Page()
    stream.subscribe(page)  # as a session does: the stream and its fallback
    stream.fallback.subscribe(page)
    return stream, page


@pytest_twisted.ensureDeferred
async def test_twoProcessesDeliverOneOrder(redisServer, backplanes):  # noqa: F811
    """Calls published by two processes at once reach both in one order, numbered alike."""
    a, b = await startBackplane(redisServer), await startBackplane(redisServer)
    backplanes += [a, b]
    (sa, pa), (sb, pb) = await openStream(a), await openStream(b)
    for i in range(20):
        sa.emit("said", "a", i)
        sb.emit("said", "b", i)
    await eventually(lambda: len(pa.calls()) == 40 and len(pb.calls()) == 40, "40 calls on each")
    assert pa.calls() == pb.calls()
    assert [offset for offset, _, _ in pa.calls()] == list(range(1, 41))
    assert sorted(args[1] for _, _, args in pa.calls() if args[0] == "a") == list(range(20))


@pytest_twisted.ensureDeferred
async def test_aCallRunTwiceIsPublishedOnce(redisServer, backplanes):  # noqa: F811
    """A page's call that runs again on another process (same session and seq) publishes once."""
    a, b = await startBackplane(redisServer), await startBackplane(redisServer)
    backplanes += [a, b]
    (sa, _), (sb, pb) = await openStream(a), await openStream(b)
    token = runningCall.set("session1:7")
    try:
        await sa.publish([("said", ["once"])])
        await sb.publish([("said", ["once"])])
    finally:
        runningCall.reset(token)
    await sa.publish([("said", ["after"])])
    await eventually(lambda: len(pb.calls()) == 2, "two calls")
    assert [args for _, _, args in pb.calls()] == [["once"], ["after"]]


@pytest_twisted.ensureDeferred
async def test_aLateProcessReadsHistoryAndResumesFromIt(redisServer, backplanes):  # noqa: F811
    """A process that opens a stream later reads its last calls from Redis, and can replay them."""
    a = await startBackplane(redisServer)
    backplanes.append(a)
    sa, pa = await openStream(a)
    for i in range(5):
        await sa.publish([("said", [i])])
    b = await startBackplane(redisServer)
    backplanes.append(b)
    sb, pb = await openStream(b)
    assert sb.offset == 5 and pb.calls() == []
    assert [json.loads(preparedPayload(m))["args"] for m in sb.since(2)] == [[2], [3], [4]]


@pytest_twisted.ensureDeferred
async def test_numberingGoesOnAfterRedisRestartsEmpty(redisServer, backplanes):  # noqa: F811
    """Redis restarting with nothing kept: offsets go on after those delivered, not from 1; health says so meanwhile."""
    a = await startBackplane(redisServer)
    backplanes.append(a)
    notices = []
    a.onStatusChange(notices.append)
    sa, pa = await openStream(a)
    for i in range(3):
        await sa.publish([("said", [i])])
    await eventually(lambda: len(pa.calls()) == 3, "three calls")
    redisServer.stop()
    await eventually(lambda: not a.connected, "the backplane to notice")
    assert a.problem().startswith("backplane unreachable")
    with pytest.raises(BackplaneDown):  # refused, not delivered here only
        await sa.publish([("said", ["alone"])])
    assert pa.calls()[-1][2] == [2] and pa.calls("room.here") == []
    redisServer.start()
    await eventually(lambda: a.connected, "the backplane to come back", deadline=20)
    assert notices == [False, True] and a.problem() is None
    await sa.publish([("said", ["back"])])
    await eventually(lambda: pa.calls()[-1][2] == ["back"], "the call after the restart")
    assert pa.calls()[-1][0] > 3


@pytest_twisted.ensureDeferred
async def test_namesAreUniqueAcrossProcesses(redisServer, backplanes):  # noqa: F811
    """A name held on one process is refused on another (by the application's key) until it is
    released; joins and leaves are published in batches, in the application's terms, and the
    group's list changes with them."""
    a, b = await startBackplane(redisServer), await startBackplane(redisServer)
    backplanes += [a, b]
    (sa, _), (sb, pb) = await openStream(a), await openStream(b)
    alice = Holder("s-alice")
    await a.roster.hold(alice, "Alice", "r", sa, [("left", ["Alice"])])
    with pytest.raises(NameTaken):
        await b.roster.hold(Holder("s-other"), "ALICE", "r", sb, [])
    with pytest.raises(NameTaken):  # the same name by the application's key
        await b.roster.hold(Holder("s-other"), "A1ice", "r", sb, [])
    assert await b.roster.members("r", sb) == ([], sb.offset)  # held, not shown yet
    await a.roster.publishChanges("r", sa, [("joined", ["Alice"])], ["Alice"], [])
    await eventually(lambda: [(m, x) for _, m, x in pb.calls()] ==
                     [("joined", ["Alice"]), ("crowdMoved", [["Alice"], []])],
                     "the batch on the other process")
    assert await b.roster.members("r", sb) == (["Alice"], sb.offset)
    await a.roster.release(alice)
    await b.roster.hold(Holder("s-other"), "ALICE", "r", sb, [])
    await b.roster.publishChanges("r", sb, [], ["ALICE"], [])
    await a.roster.publishChanges("r", sa, [], [], ["Alice"])
    await eventually(lambda: pb.calls()[-1][1:] == ("crowdMoved", [[], ["Alice"]]), "the leave")
    assert await b.roster.members("r", sb) == (["ALICE"], sb.offset)


@pytest_twisted.ensureDeferred
async def test_aStaleLeaveIsLeftOut(redisServer, backplanes):  # noqa: F811
    """A leave published after someone took exactly that name again in the group (through another
    process) is left out of the batch: the name stays in the list."""
    a, b = await startBackplane(redisServer), await startBackplane(redisServer)
    backplanes += [a, b]
    (sa, _), (sb, pb) = await openStream(a), await openStream(b)
    first, second = Holder("s-first"), Holder("s-second")
    await a.roster.hold(first, "ann", "r", sa, [])
    await a.roster.publishChanges("r", sa, [], ["ann"], [])
    await a.roster.release(first)
    await b.roster.hold(second, "ann", "r", sb, [])
    await b.roster.publishChanges("r", sb, [], ["ann"], [])
    await a.roster.publishChanges("r", sa, [("gone", ["ann"])], [], ["ann"])  # late
    await eventually(lambda: [(m, x) for _, m, x in pb.calls()][-2:] ==
                     [("gone", ["ann"]), ("crowdMoved", [[], []])], "the late batch")
    assert await a.roster.members("r", sa) == (["ann"], sa.offset)


async def aProcessDies(backplanes, redisServer, names: list[str], shown: list[str],
                       presence: Presence = TERMS, meanwhile=None, gone: list[str] | None = None) -> tuple:
    """
    Process a holds C{names} in group r (C{shown} of them shown), each with
    an onLeave line, does C{meanwhile(a, stream)} if given, then stops
    beating; once process b has ended its sessions, and told that C{gone}
    (by default C{shown}) left: b, and what b's page of the room got.
    """
    a = await startBackplane(redisServer, gracePeriod=0.5)
    b = await startBackplane(redisServer, gracePeriod=0.5)
    backplanes += [a, b]
    a.roster.usePresence(presence)
    a.deadAfter = b.deadAfter = 1.0
    (sa, _), (sb, pb) = await openStream(a), await openStream(b)

    def session(ident: str, name: str):
        return type("Session", (), {"ident": ident, "page": "/room/r", "element": type(
            "E", (), {"sessionState": lambda self: {"username": name}})()})()

    for name in names:
        a.sessions.save(session(f"s-{name}", name))
        await a.roster.hold(Holder(f"s-{name}"), name, "r", sa, [("displayMessage", [f" * {name} left"])])
    await a.roster.publishChanges("r", sa, [], shown, [])
    if meanwhile is not None:
        await meanwhile(a, sa)
    a._heartbeat.stop()  # the process freezes: no more heartbeats
    gone = shown if gone is None else gone
    await eventually(lambda: [c[1:] for c in pb.calls()[-1:]] == [("crowdMoved", [[], gone])],
                     "the leaves announced by the other process", deadline=15)
    assert len([m for _, m, _ in pb.calls() if m == "crowdMoved"]) == 2
    assert await b.roster.members("r", sb) == ([], sb.offset)
    return b, pb


@pytest_twisted.ensureDeferred
async def test_aDeadProcessesNamesAreReleasedAfterTheGracePeriod(redisServer, backplanes):  # noqa: F811
    """When a process stops beating, another ends its sessions after the grace period: their
    leaves are announced, with one presence batch for all of them."""
    b, pb = await aProcessDies(backplanes, redisServer, ["bob", "ann", "cy"], ["ann", "bob"])
    told = [x for _, m, x in pb.calls() if m == "displayMessage"]
    assert sorted(told) == [[" * ann left"], [" * bob left"]]  # cy was not shown yet
    assert await b.sessions.adopt("s-bob") is None


@pytest_twisted.ensureDeferred
async def test_leavesADeadProcessHadNotPublishedAreTold(redisServer, backplanes):  # noqa: F811
    """Names a process let go of (a leave, a rename) whose batch it had not published when it died
    are told as leaving by the process that reaps it, in the same one batch."""
    async def meanwhile(a, stream):
        await a.roster.release(Holder("s-ann"))
        await a.roster.hold(Holder("s-bob"), "rob", "r", stream, [("displayMessage", [" * rob left"])])

    b, pb = await aProcessDies(backplanes, redisServer, ["ann", "bob", "cy"], ["ann", "bob", "cy"],
                               meanwhile=meanwhile)
    told = sorted(x for _, m, x in pb.calls() if m == "displayMessage")
    assert told == [[" * ann left"], [" * bob left"], [" * cy left"]]


@pytest_twisted.ensureDeferred
async def test_manyNamesOfADeadProcessLeaveInOneLine(redisServer, backplanes):  # noqa: F811
    """When more than the application's threshold of a dead process's names leave a group, one
    line (the application's) tells them all, and one batch lists them."""
    names = [f"u{i}" for i in range(5)]
    many = Presence(changed="crowdMoved", nameKey=TERMS.nameKey,
                    manyLeft=("gone", "{first}, {second} and {others} more"), manyAbove=3)
    b, pb = await aProcessDies(backplanes, redisServer, names, names, many)
    assert [(m, x) for _, m, x in pb.calls()][-2:] == [
        ("gone", ["u0, u1 and 3 more"]), ("crowdMoved", [[], names])]
    assert [m for _, m, _ in pb.calls()].count("displayMessage") == 0


def test_downBackplaneRefusesNamesAfterAWhile():
    """Without Redis, a name waits a little for it (a process starting, a blip), then is refused:
    BackplaneDown, with a message for the user."""
    clock = Clock()
    backplane = RedisBackplane("redis://127.0.0.1:1/0", gracePeriod=1, reactor=clock)
    held = backplane.roster.hold(Holder("s"), "x", "r", backplane.stream("k", "room", 10), [])
    error = []
    held.addErrback(lambda f: error.append(f.value))
    clock.advance(backplane.roster.loginWait - 0.1)
    assert error == []
    clock.advance(0.2)
    assert isinstance(error[0], BackplaneDown) and "try again" in str(error[0])


def test_subscriberDeliversAReadInOneTurn():
    """Every pub/sub message of one read reaches the backplane at once, not one per reactor turn (see _Subscriber)."""
    from twisted.internet.protocol import Factory
    from twisted.internet.testing import StringTransport

    from chatthing.backplane.redis import _Subscriber

    heard = []
    factory = Factory()
    factory.connection = type("Connection", (), {"messageReceived": lambda self, c, m: heard.append((c, m))})()
    subscriber = _Subscriber()
    subscriber.factory = factory
    subscriber.makeConnection(StringTransport())

    def message(channel: str, text: str) -> bytes:
        parts = [b"message", channel.encode(), text.encode()]
        return b"*3\r\n" + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)

    subscriber.dataReceived(b"".join(message("room", f"{n} origin call") for n in range(3)))
    assert heard == [("room", f"{n} origin call") for n in range(3)]


# The backplane's package: what it imports, and how its parts hold together.

BACKPLANE = Path(chatthing.backplane.__file__).parent


def backplaneModules() -> dict[str, Path]:
    """
    Every module of chatthing.backplane by its dotted name.
    """
    modules = {}
    for path in sorted(BACKPLANE.rglob("*.py")):
        parts = ["chatthing", *path.relative_to(BACKPLANE.parent).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def importsOf(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, list[str]]]:
    """
    What a module imports, anywhere in it (under C{if TYPE_CHECKING:} and in
    functions too): C{(module, names)}, a name that is a module of the
    package counting as that module.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            module = node.module if not node.level else ".".join(filter(None, [base, node.module]))
            names = [alias.name for alias in node.names]
            submodules = [f"{module}.{n}" for n in names if f"{module}.{n}" in modules]
            found += [(sub, []) for sub in submodules]
            rest = [n for n in names if f"{module}.{n}" not in modules]
            if rest or not submodules:
                found.append((module, rest))
    return found


def test_backplaneImportsOnlyTheRuntimesPublicNames():
    """chatthing.backplane imports nothing of chatthing but itself and chatthing.live's public names."""
    modules = backplaneModules()
    assert "chatthing.backplane.redis.connection" in modules  # the walk found the parts
    wrong = []
    for name, path in modules.items():
        for module, names in importsOf(name, path, modules):
            if module == "chatthing.live":
                wrong += [f"{name}: chatthing.live.{n}" for n in names
                          if n not in chatthing.live.__all__]
            elif module.split(".")[0] == "chatthing" and module not in modules:
                wrong.append(f"{name}: {module}")
    assert wrong == []


def test_backplaneImportGraphHasNoCycle():
    """No two modules of chatthing.backplane import each other, even through others or only for types."""
    modules = backplaneModules()
    edges = {name: {module for module, _ in importsOf(name, path, modules) if module in modules}
             for name, path in modules.items()}
    cycles = []

    def visit(name: str, trail: list[str]) -> None:
        for target in sorted(edges[name]):
            if target in trail:
                cycles.append(" -> ".join([*trail[trail.index(target):], target]))
            elif target not in done:
                visit(target, [*trail, target])
        done.add(name)

    done: set[str] = set()
    for name in sorted(modules):
        if name not in done:
            visit(name, [name])
    assert cycles == []


#: Methods of the chat's widget: the chat app's words, not the backplane's.
WIDGET_METHODS = ("presenceChanged", "updatePresence", "displayMessage",
                  "displayUserMessage", "displayAction", "showTyping", "messageTime")


def test_backplaneWritesNoWidgetMethodName():
    """No method of the chat's widget is named in chatthing.backplane's code."""
    named = [f"{path.name}: {method}" for path in backplaneModules().values()
             for method in WIDGET_METHODS if method in path.read_text()]
    assert named == []


def test_memoryRosterSpeaksTheApplicationsTerms():
    """A roster holds names by the application's key, publishes nothing when a name is held or
    let go, and publishes batches with the application's method, keeping the group's list."""
    backplane = MemoryBackplane()
    backplane.roster.usePresence(TERMS)
    stream = backplane.stream("room:r", "room", 100)
    heard: list = []
    stream.observe(lambda method, args: heard.append((method, args)))
    alice, other = Holder("s-alice"), Holder("s-other")
    backplane.roster.hold(alice, "Alice", "r", stream, [])
    failure = backplane.roster.hold(other, "A1ICE", "r", stream, [])
    errors: list = []
    failure.addErrback(lambda f: errors.append(f.value))
    assert isinstance(errors[0], NameTaken)
    backplane.roster.publishChanges("r", stream, [], ["Alice"], [])
    backplane.roster.hold(alice, "Ally", "r", stream, [])
    backplane.roster.publishChanges("r", stream, [("renamed", [])], ["Ally"], ["Alice"])
    assert heard == [("crowdMoved", [["Alice"], []]), ("renamed", []), ("crowdMoved", [["Ally"], ["Alice"]])]
    members: list = []
    backplane.roster.members("r", stream).addCallback(members.append)
    assert members == [(["Ally"], stream.offset)]
    backplane.roster.release(alice)
    assert len(heard) == 3


def test_redisPartsShareOneConnection():
    """The Redis backplane's streams, roster and sessions use one connection object and hold no
    reference to the backplane; each module of the package stays under 300 lines."""
    backplane = RedisBackplane("redis://127.0.0.1:1/0", gracePeriod=1, reactor=Clock())
    parts = [backplane.roster, backplane.sessions, backplane.stream("k", "room", 10),
             backplane.passingStream("t", "typing")]
    assert all(part.connection is backplane.connection for part in parts)
    assert [part for part in parts if backplane in vars(part).values()] == []
    assert "backplane" not in [name.rpartition(".")[2] for name in
                               {type(v).__module__ for part in parts for v in vars(part).values()}]
    long = {name: lines for name, path in backplaneModules().items()
            if (lines := len(path.read_text().splitlines())) > 300}
    assert long == {}
