"""
Sessions and the Redis store, held to bounds (issue 12, "also"): resuming
does not restart the grace period forever; a refused resume closes the
session's old connection; Redis's own error text stays in the log; the
keys that publish a call once are kept only as long as a resume needs.

Real servers on ephemeral loopback ports (the C{serve} fixture), real
WebSocket clients, a real redis-server for the Redis rows (tests/cluster.py);
the grace budget's arithmetic also on a fake clock.
"""

import re

import pytest_twisted
from bystander import Bystander
from cluster import redisServer  # noqa: F401 (a fixture)
from conftest import eventually, logLines
from test_live_units import FakeConnection
from twisted.internet import reactor, task
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from chatthing.backplane.redis import RedisBackplane
from chatthing.chatterbox import ChatRoom
from chatthing.live import LiveElement, LiveSettings
from chatthing.live._session import LiveSession
from chatthing.live.testing import LiveTestClient


class GraceBudgetTests(SynchronousTestCase):
    """
    The grace period is a budget that time away spends and time connected
    pays back, on a fake clock.
    """

    def setUp(self) -> None:
        self.clock, self.ended = Clock(), []
        self.session = LiveSession("s", LiveElement(), LiveSettings(gracePeriod=10.0), self.clock,
                                   self.ended.append)
        self.session.attach(FakeConnection())

    def drop(self) -> None:
        self.session.connectionLost(self.session.connection, Failure(ConnectionLost("drop")), False)

    def test_resumingDoesNotRestartTheGracePeriod(self):
        """Away 6 s, back for an instant, away again: the session ends 10 s after the first drop, in time away."""
        self.drop()
        self.clock.advance(6)
        self.session.attach(FakeConnection())
        self.drop()
        self.clock.advance(3.9)
        self.assertFalse(self.session.ended)
        self.clock.advance(0.2)  # old code: 4 s more
        self.assertTrue(self.session.ended)

    def test_timeConnectedPaysItBack(self):
        """Away 6 s, then connected 6 s: the next drop has the whole grace period again."""
        self.drop()
        self.clock.advance(6)
        self.session.attach(FakeConnection())
        self.clock.advance(6)
        self.drop()
        self.clock.advance(9.9)
        self.assertFalse(self.session.ended)
        self.clock.advance(0.2)
        self.assertTrue(self.session.ended)

    def test_cyclingEndsAtTheBound(self):
        """Dropped and resumed 100 times, connected 0.1 s and away 1 s each time: ended after about 11 cycles."""
        for cycle in range(100):
            self.drop()
            self.clock.advance(1)
            if self.session.ended:
                break
            self.session.attach(FakeConnection())
            self.clock.advance(0.1)
        self.assertTrue(self.session.ended)
        self.assertLessEqual(cycle, 12)


def pause(seconds: float):
    return task.deferLater(reactor, seconds, lambda: None)


@pytest_twisted.ensureDeferred
async def test_resumeCyclingEndsTheSession(serve, serverLog):
    """A page that drops and resumes every second, never staying, loses its session once a 3 s grace period is spent."""
    server = await serve(LiveSettings(gracePeriod=3.0))
    page = await server.login("cycler")
    first = page.session
    resumed, refused = 0, None
    for cycle in range(8):  # 8 s away in all; old code resumes every time
        page.drop()
        await page.closed()
        await pause(1.0)
        frame = await page.resume()
        if frame["type"] == "welcome":
            refused = cycle
            break
        resumed += 1
    print(f"resumed {resumed} times, refused at cycle {refused}")
    assert resumed >= 1, "an honest resume within the grace period must work"
    assert refused is not None and refused <= 5, (resumed, refused)
    assert "expired" in page.welcome
    assert first not in server.site.liveFactory.sessions
    assert logLines(serverLog, "grace period", "used up")


@pytest_twisted.ensureDeferred
async def test_refusedResumeClosesTheOldConnection(serve, serverLog):
    """A resume refused as unreplayable ends the session, and its old connection is closed (4001) instead of speaking for it."""
    server = await serve()
    alice = await server.login("alice")
    bob = await server.login("bob")
    request = dict(alice.ledger.resumeRequest(), seq=10 ** 6)  # never sent: unreplayable
    other = await LiveTestClient.connect(server.wsUrl, hello={"resume": request})
    server.clients.append(other)
    assert other.welcome is not None and "not one this session can replay" in other.welcome["expired"]
    assert await alice.closed() == 4001  # old code: still open, its calls still run
    await eventually(lambda: "alice" not in server.room.online(), "alice to be gone")
    assert 'outcome="unreplayable"' in server.site.liveFactory.metrics.render().decode()
    assert not bob.isClosed


async def redisChatRoom(serve, redis, gracePeriod: float = 5.0):
    """
    A L{ChatRoom} on a L{RedisBackplane} to C{redis}, served; the server and
    the backplane (stopped by the caller).
    """
    backplane = RedisBackplane(redis.url, gracePeriod=gracePeriod)
    chatRoom = ChatRoom(backplane=backplane)
    backplane.startService()
    await eventually(lambda: backplane.connected, "the backplane to connect")
    server = await serve(elementFactory=chatRoom.makeChatter)
    return server, backplane


@pytest_twisted.ensureDeferred
async def test_redisErrorsAreNotShownToPages(serve, redisServer, serverLog):  # noqa: F811
    """Redis answering a login with an error: the page gets a generic BackplaneDown, the log gets Redis's words."""
    server, backplane = await redisChatRoom(serve, redisServer)
    try:
        assert b"OK" in redisServer.command("SET", "chatthing:names", "not-a-hash")
        page = await server.connect()
        answer = await page.call("setUsername", "alice")
        assert answer["type"] == "error", answer
        error = answer["error"]
        # Old code: ResponseError, "Error running script ... WRONGTYPE Operation against a key...".
        assert error == {"name": "BackplaneDown", "message":
                         "The server could not reach its store; please try again in a moment."}
        assert logLines(serverLog, "could not hold a name in Redis", "WRONGTYPE")
        assert 'kind="BackplaneDown"' in server.site.liveFactory.metrics.render().decode()
    finally:
        backplane.stopService()


@pytest_twisted.ensureDeferred
async def test_dedupeKeysLastWhatAResumeNeeds(serve, redisServer):  # noqa: F811
    """The key that publishes a page's call once lives the grace period plus a minute, not an hour."""
    server, backplane = await redisChatRoom(serve, redisServer, gracePeriod=5.0)
    try:
        bystander = await Bystander.start(server.wsUrl)
        await bystander.probe(3)
        reply = redisServer.command("KEYS", "chatthing:dedupe:*").decode()
        keys = re.findall(r"chatthing:dedupe:\S+", reply)
        assert keys, reply
        ttls = [int(redisServer.command("TTL", key).decode().strip(":\r\n")) for key in keys]
        print(f"{len(keys)} dedupe keys, TTL {min(ttls)}-{max(ttls)} s")
        assert all(0 < ttl <= 5 + 60 for ttl in ttls), ttls  # old code: 3600
        await bystander.stop()
    finally:
        backplane.stopService()
