"""
Draining a stopping process (SIGTERM): each of its own pages is told it is
restarting, on its own connection, just before that connection closes with
1012 "service restart"; the closes are spread over C{--drain-seconds}; the
sessions wait for their pages, which resume (here, or on another process of
the cluster); the pages of the other processes are told nothing.
"""

import signal
from collections import Counter

import cluster as harness
import pytest
import pytest_twisted
from cluster import backend, needRedis, pause
from conftest import eventually
from test_cluster import Transcript, allOf
from twisted.internet import task, threads

from chatthing.chat import RESTART_ALERT
from chatthing.live import LiveSettings

cluster = harness.cluster
redisServer = harness.redisServer


@pytest_twisted.ensureDeferred
async def test_drainTellsEachPageThenClosesSpread(serve):
    """Each page gets the notice, then a 1012 close; the closes are spread evenly over the window on the server's clock."""
    server = await serve(LiveSettings(gracePeriod=30))
    pages = [await server.login(f"user{n}") for n in range(5)]
    clock = task.Clock()
    drained = server.site.liveFactory.shutDown(spread=2.0, clock=clock)
    # The first closes at once; the others one by one as the server's
    # clock passes each fifth of the window, and not before.
    closedAt: dict[int, float] = {}
    for n, page in enumerate(pages):
        if n:
            await eventually(lambda: len(server.connections) == len(pages) - n, "the earlier closes")
            assert all(not later.isClosed for later in pages[n:])
            clock.advance(0.4)
        assert await page.closed() == 1012
        closedAt[n] = clock.seconds()
        # The notice came on this page's own connection, before its close.
        assert page.calls("displayMessage")[-1] == [RESTART_ALERT]
    assert [closedAt[n] for n in range(5)] == pytest.approx([0, 0.4, 0.8, 1.2, 1.6])
    assert max(closedAt.values()) - min(closedAt.values()) > 0.5 * 2.0
    await drained
    # 1012 is not the end of the session: each page resumes, still logged
    # in, and the notice is not shown again.
    for n, page in enumerate(pages):
        assert (await page.resume())["type"] == "resumed"
        assert (await page.call("say", f"back {n}"))["type"] == "result"
        assert page.calls("displayMessage").count([RESTART_ALERT]) == 1
    await eventually(lambda: all(["user4", "back 4"] in p.calls("displayUserMessage") for p in pages),
                     "the resumed pages' messages")


@pytest_twisted.ensureDeferred
async def test_drainWithNoWindowClosesAtOnce(serve):
    """With a window of 0 every page is told and closed at once."""
    server = await serve()
    pages = [await server.login(f"user{n}") for n in range(3)]
    await server.site.liveFactory.shutDown(spread=0)
    for page in pages:
        assert await page.closed() == 1012
        assert page.calls("displayMessage")[-1] == [RESTART_ALERT]


@pytest_twisted.ensureDeferred
async def test_sigtermTellsOnlyItsOwnPages(cluster):
    """
    Two processes on one Redis behind a balancer: SIGTERM one.  Every page
    of the stopped process is told once (and closed with 1012), no page of
    the other process is told; the moved pages resume their sessions on
    the other process, same name, nothing said lost (messages said before,
    during and after the drain are heard once by everyone, in one order).
    """
    needRedis()
    servers = cluster.start(2, "--drain-seconds", "1")
    proxy = await cluster.proxy(servers)
    names = [f"user{n}" for n in range(8)]
    clients = [await cluster.chatClient(proxy, name) for name in names]
    victim, survivor = servers
    onVictim = [c for c in clients if proxy.backendFor(c) == backend(victim)]
    onSurvivor = [c for c in clients if proxy.backendFor(c) == backend(survivor)]
    assert len(onVictim) == len(onSurvivor) == 4, proxy.routes
    # A low-level page on each, to see the close code.
    direct = await cluster.page(victim, "direct")
    other = await cluster.page(survivor, "other")
    sessions = {c.username: c.live.session for c in clients}
    await allOf(clients, lambda c: c.heard.presence == sorted(names + ["direct", "other"]),
                "everyone in presence")

    transcript = Transcript(clients)
    everyoneSays = transcript.everyoneSays
    for n in range(3):
        everyoneSays(f"before {n}")
        await pause(0.1)
    everyoneSays("just before")  # in flight as the drain begins
    victim.process.send_signal(signal.SIGTERM)
    # Said during the drain: by pages still on the stopping process, by
    # pages moving, and by the other process's.
    for n in range(4):
        await pause(0.2)
        everyoneSays(f"during {n}")
    code = await threads.deferToThread(victim.process.wait, 20)
    assert code in (0, -signal.SIGTERM), victim.log()
    victim.waitForLog(r"shutting down: telling 5 page\(s\)")
    everyoneSays("after")

    await transcript.heardByAll(20)
    told = Counter(c.username for c in clients for alert in c.heard.alerts if alert == RESTART_ALERT)
    assert {c.username: told[c.username] for c in onVictim} == {c.username: 1 for c in onVictim}
    assert {c.username: told[c.username] for c in onSurvivor} == {c.username: 0 for c in onSurvivor}, (
        "false notices on the other process")
    assert other.calls("displayMessage").count([RESTART_ALERT]) == 0
    assert await direct.closed() == 1012
    assert direct.calls("displayMessage").count([RESTART_ALERT]) == 1
    for client in clients:
        assert client.connected and proxy.backendFor(client) == backend(survivor), proxy.routes
        assert client.heard.newSessions == [], (client.username, client.heard.newSessions)
        assert client.live.session == sessions[client.username]
        assert client.username in names
        # Only the low-level page that did not come back may be said to leave.
        left = [a for a in client.heard.alertsWith("has left") if "direct" not in a]
        assert left == [], (client.username, client.heard.alerts)


def test_backplaneStopsAfterTheDrain():
    """The plugin's top service stops the backplane (which the drain holds) only once the drain is done; the listeners at once."""
    from twisted.application.service import Service
    from twisted.internet.defer import Deferred

    from chatthing.shutdown import GracefulShutdown
    from chatthing.startup import StartupService

    class Recorder(Service):
        def __init__(self, name, stops):
            self.name, self.stops = name, stops

        def stopService(self):
            self.stops.append(self.name)
            return super().stopService()

    class Site:
        liveFactory = type("Factory", (), {"connections": {}})()
        drained: Deferred = Deferred()

        def shutDown(self, spread):
            return self.drained

    stops: list[str] = []
    top = StartupService()
    backplane = Recorder("backplane", stops)
    backplane.setServiceParent(top)
    Recorder("listener", stops).setServiceParent(top)
    site = Site()
    GracefulShutdown(site, holds=[backplane]).setServiceParent(top)
    top.startService()
    stopped = top.stopService()
    assert stops == ["listener"] and not stopped.called
    site.drained.callback(None)
    assert stops == ["listener", "backplane"] and stopped.called
