"""
Sends confirmed by replicas (C{--redis-replicas 1}) delivered only once
durable (L{chatthing.backplane.redis.durable}), tested as a black box: a
real C{redis-server} primary and replica, two real C{twistd chat-widget}
processes, real L{ChatClient} users, all on loopback ports chosen at run
time.

- A replica that lags (frozen with SIGSTOP for less than the bound): the
  says meanwhile are held, neither answered nor shown, then, once it has
  them, sent and shown once each; none refused.

Every process is stopped by its PID; every wait is for a condition, with
a deadline; the only pauses pace the simulated users and are the fault's
length.
"""

import pytest_twisted
from cluster import Cluster, RedisServer, needRedis, pause
from conftest import eventually, withDeadline
from test_sentinel import Tally, shownAfterRefused, syncedReplica
from twisted.internet import threads
from twisted.internet.defer import ensureDeferred

#: Seconds the replica is frozen: several of --redis-replica-wait (0.5 s),
#: well under the bound (10 s).
FROZEN = 3.0


@pytest_twisted.ensureDeferred
async def test_laggingReplicaDelaysSaysThenEachIsSentAndShownOnce(startTwistd, tmp_path):
    """A replica frozen for 3 s under traffic: says wait (none answered while it is frozen), then every one is
    acknowledged and heard once by every user, in one order; none refused, none refused-but-heard."""
    needRedis()
    primary = RedisServer(tmp_path / "primary")
    primary.start()
    replica = await threads.deferToThread(syncedReplica, primary, tmp_path / "replica")
    group = Cluster(primary, startTwistd, tmp_path)
    try:
        a, b = group.start(2, "--redis-replicas", "1")
        for server in (a, b):
            server.waitForLog("connected to Redis at")
        users = [await group.chatClient(server, f"user{n}") for n, server in enumerate((a, b, a, b))]
        tally = Tally()
        talking = [ensureDeferred(tally.talk(user)) for user in users]
        try:
            await eventually(lambda: len(tally.acked) >= 20, "the chat to be under way", 20)
            replica.pause()
            try:
                stopped = len(tally.acked)
                await pause(FROZEN)
                duringFreeze = len(tally.acked) - stopped
            finally:
                replica.resume()
            await eventually(lambda: len(tally.acked) >= stopped + 40, "the chat to carry on", 20)
        finally:
            tally.stop = True
            for d in talking:
                await withDeadline(d, 20)
        total = len(tally.acked)
        await eventually(lambda: all(len(u.heard.messages) >= total for u in users),
                         f"every user to hear the {total} acknowledged messages", 10)
        counts = tally.check(users)
        print(f"lagging replica: {counts}, acked while frozen {duringFreeze}")
        assert counts["refused"] == 0 and counts["refusedHeard"] == 0 and counts["errors"] == 0, counts
        assert counts["lost"] == 0 and counts["doubled"] == 0 and counts["outOfOrder"] == 0, counts
        # Four users, one say each in flight: at most those the replica had before it stopped.
        assert duringFreeze <= len(users), duringFreeze
        assert not shownAfterRefused((a, b))
    finally:
        await group.stop()
        replica.stop()
        primary.stop()
