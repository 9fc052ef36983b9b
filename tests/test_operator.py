"""
What the operator sees: C{/healthz}, the Prometheus C{/metrics} and how its
numbers move as the chat runs, the application's own gauges, the log line
that ends each session, and JSON log lines from twistd.

Every wait has a deadline; nothing sleeps for a fixed time.
"""

import json
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest_twisted
from conftest import ChatServer, eventually, subprocessEnvironment, twistdScript
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import threads
from twisted.logger import LogLevel, formatEvent
from twisted.python.failure import Failure

from chatthing.live import LiveApplication, LiveElement, LiveSettings, LiveSite, Stream
from chatthing.live._metrics import LiveMetrics
from chatthing.logs import jsonLine, jsonLogObserver

# Helpers


def _httpGet(url: str) -> tuple[int, str, str]:
    """
    GET C{url} (blocking): its status, Content-Type and body.
    """
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers.get("content-type", ""), response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("content-type", ""), e.read().decode()


async def get(url: str) -> tuple[int, str, str]:
    """
    GET C{url}: its status, Content-Type and body.
    """
    return await threads.deferToThread(_httpGet, url)


def samples(text: str) -> list:
    """
    Every sample of a Prometheus text exposition (which must parse).
    """
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def value(text: str, name: str, **labels: str) -> float:
    """
    The value of sample C{name} with C{labels} in C{text}; 0 if absent.
    """
    for sample in samples(text):
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
            return sample.value
    return 0.0


async def metrics(server: ChatServer) -> str:
    status, contentType, body = await get(server.url + "metrics")
    assert status == 200, (status, body)
    assert contentType.startswith("text/plain"), contentType
    return body


@pytest_twisted.ensureDeferred
async def test_healthzOk(chatServer):
    """/healthz on the chat's own port answers 200 "ok" as plain text."""
    status, contentType, body = await get(chatServer.url + "healthz")
    assert (status, body) == (200, "ok")
    assert contentType.startswith("text/plain")


@pytest_twisted.ensureDeferred
async def test_healthzAsksItsChecks(chatServer):
    """A check that reports a problem, or raises, makes /healthz answer 503 "degraded" (the reason only on the operator's site)."""
    problem: list[str | None] = [None]
    chatServer.site.health.addCheck(lambda: problem[0])
    assert (await get(chatServer.url + "healthz"))[0] == 200
    problem[0] = "backplane unreachable"
    status, contentType, body = await get(chatServer.url + "healthz")
    assert (status, body) == (503, "degraded")
    assert contentType.startswith("text/plain")
    assert chatServer.site.health.problems() == ["backplane unreachable"]

    def broken():
        raise RuntimeError("boom")

    problem[0] = None
    chatServer.site.health.addCheck(broken)
    status, _, body = await get(chatServer.url + "healthz")
    assert (status, body) == (503, "degraded")
    assert chatServer.site.health.problems() == ["health check broken failed"]


# /metrics


@pytest_twisted.ensureDeferred
async def test_metricsPrivateByDefault(chatServer):
    """Without serveMetrics() (--metrics-public), the chat's port does not serve /metrics."""
    status, contentType, body = await get(chatServer.url + "metrics")
    assert "live_connections" not in body
    assert status != 200 or not contentType.startswith("text/plain")


@pytest_twisted.ensureDeferred
async def test_metricsMoveAsTheChatRuns(serve):
    """Connections, sessions, calls, deliveries, errors by kind, resumes and the fan-out histogram count what happens."""
    server = await serve(LiveSettings(gracePeriod=30), publicMetrics=True)
    before = await metrics(server)
    assert value(before, "live_connections") == 0
    assert value(before, "live_sessions") == 0
    assert value(before, "live_calls_received_total") == 0
    names = {s.name for s in samples(before)}
    assert {"live_deliveries_total", "live_resumes_total", "live_slow_consumer_cutoffs_total",
            "live_stream_fanout_seconds_count"} <= names, names

    alice = await server.login("alice")
    bob = await server.login("bob")
    loggedIn = await metrics(server)
    assert value(loggedIn, "live_connections") == 2
    assert value(loggedIn, "live_sessions") == 2
    assert value(loggedIn, "live_calls_received_total", method="setUsername") == 2
    assert value(loggedIn, "live_deliveries_total", kind="direct") >= 2  # the two results

    # Three things said, each heard by both pages.
    for i in range(3):
        assert (await alice.call("say", f"hello {i}"))["type"] == "result"
    await eventually(lambda: len(bob.calls("displayUserMessage")) == 3, "bob to hear all three")
    said = await metrics(server)
    assert value(said, "live_calls_received_total", method="say") == 3
    emits = (value(said, "live_stream_fanout_seconds_count")
             - value(loggedIn, "live_stream_fanout_seconds_count"))
    assert emits >= 3
    assert (value(said, "live_deliveries_total", kind="stream")
            - value(loggedIn, "live_deliveries_total", kind="stream")) == 2 * emits
    assert value(said, "live_stream_fanout_seconds_sum") > 0

    # Bad input of several kinds: each counted by its error's class name.
    bob.sendRaw(b"this is not JSON")
    await eventually(lambda: bob.errors(), "an error reply to the bad frame")
    assert (await bob.call("noSuchThing"))["error"]["name"] == "NoSuchMethod"
    assert (await bob.call("say"))["error"]["name"] == "BadArguments"
    assert (await bob.call("setUsername", "Alice"))["error"]["name"] == "AlreadyLoggedIn"
    refused = await metrics(server)
    for kind in ("ProtocolError", "NoSuchMethod", "BadArguments", "AlreadyLoggedIn"):
        assert value(refused, "live_errors_total", kind=kind) == 1, kind
    assert value(refused, "live_calls_received_total", method="other") == 1
    assert value(refused, "live_calls_received_total", method="noSuchThing") == 0

    # Bob drops and comes back; a stranger tries to resume a session that
    # never was, and gets a new one.
    bob.drop()
    await eventually(lambda: len(server.connections) == 1, "the server to see bob's drop")
    away = await metrics(server)
    assert value(away, "live_connections") == 1
    assert value(away, "live_sessions") == 2  # bob's waits for him
    assert (await bob.resume())["type"] == "resumed"
    stranger = await server.connect(hello={"resume": {"session": "nope", "seq": 0, "streams": {}}})
    assert stranger.welcome.get("expired")
    resumed = await metrics(server)
    assert value(resumed, "live_resumes_total", outcome="resumed") == 1
    assert value(resumed, "live_resumes_total", outcome="expired") == 1
    assert value(resumed, "live_connections") == 3
    assert value(resumed, "live_sessions") == 3
    assert value(resumed, "live_slow_consumer_cutoffs_total") == 0

    # A page that leaves on purpose ends its session at once.
    stranger.close()
    await eventually(lambda: len(server.site.liveFactory.sessions) == 2, "the stranger's session to end")
    assert value(await metrics(server), "live_sessions") == 2


@pytest_twisted.ensureDeferred
async def test_sitesCountApart(serve):
    """Two sites in one process have registries of their own: one's pages do not show in the other's numbers."""
    one = await serve(publicMetrics=True)
    other = await serve(publicMetrics=True)
    await one.login("carol")
    assert value(await metrics(one), "live_connections") == 1
    assert value(await metrics(other), "live_connections") == 0
    assert one.site.metrics.registry is not other.site.metrics.registry


class CountingRoom(LiveApplication):
    """
    A stand-in application with numbers of its own, offered the site's
    metrics through its ILiveApplication registerMetrics().
    """

    def __init__(self) -> None:
        self.pages = 0
        self.offered: list[LiveMetrics] = []

    def registerMetrics(self, metrics: LiveMetrics) -> None:
        self.offered.append(metrics)
        metrics.addGauge("demo_pages_made", "Pages this room has made.", lambda: self.pages)

    def makeElement(self, page: str) -> LiveElement:
        self.pages += 1
        return LiveElement()


@pytest_twisted.ensureDeferred
async def test_applicationGauges(serve):
    """An application's registerMetrics() adds gauges to the site's /metrics, read when scraped."""
    room = CountingRoom()
    server = await serve(elementFactory=room, publicMetrics=True)
    assert room.offered == [server.site.metrics]
    assert value(await metrics(server), "demo_pages_made") == 0
    await server.connect()
    await server.connect()
    text = await metrics(server)
    assert value(text, "demo_pages_made") == 2
    assert value(text, "live_connections") == 2
    # And directly, for an application that holds the site.
    server.site.metrics.addGauge("demo_answer", "The answer.", lambda: 42)
    assert value(await metrics(server), "demo_answer") == 42


class UndeclaredRoom:
    """
    Has a registerMetrics() but does not declare ILiveApplication: the
    runtime must not guess it is one.
    """

    def registerMetrics(self, metrics: LiveMetrics) -> None:
        raise AssertionError("an undeclared registerMetrics() was called")

    def makePage(self) -> LiveElement:
        return LiveElement()


def test_plainFactoriesOfferNoMetrics():
    """A plain factory (a function, a class, a bound method of an undeclared object) adds no metrics: nothing is sniffed."""
    for factory in (lambda: LiveElement(), LiveElement, UndeclaredRoom().makePage):
        site = LiveSite(factory)
        names = {s.name for s in samples(site.metrics.render().decode())}
        assert "live_connections" in names and not any(n.startswith("demo_") for n in names)


def test_streamOutsideASiteCountsNothing():
    """A stream no site's session has subscribed to emits without metrics."""
    stream = Stream("alone")
    assert stream.emit("hello") == 1


# Logs


@pytest_twisted.ensureDeferred
async def test_sessionEndsLogged(serve, serverLog):
    """A session's end is one info line with its reason: leaving at once, or not back within the grace period."""
    server = await serve(LiveSettings(gracePeriod=0.2), publicMetrics=True)
    leaver = await server.login("dave")
    leaver.close()
    # Only this test's pages: sessions of earlier tests' servers may end meanwhile.
    def mine(words):
        return [e for e in serverLog
                if all(word in (formatEvent(e) or "") for word in words)]

    ended = await eventually(lambda: mine([" ended: ", "dave"]), "the end of dave's session")
    assert len(ended) == 1 and ended[0]["log_level"] == LogLevel.info
    assert "code=1000" in formatEvent(ended[0])

    dropper = await server.login("erin")
    dropper.drop()
    expired = await eventually(lambda: mine(["grace period", "erin"]), "erin's session to expire")
    assert len(expired) == 1
    assert "ended: not back within the 0.2s grace period" in formatEvent(expired[0])
    lines = [formatEvent(e) for e in serverLog]
    assert len(mine([" ended: ", "dave"])) + len(mine([" ended: ", "erin"])) == 2
    assert len([line for line in lines if "dave left" in line]) == 1


def test_jsonLine():
    """A JSON line has time, level, namespace, the text, a failure's traceback, and the plain fields only."""
    try:
        1 / 0
    except ZeroDivisionError:
        failure = Failure()
    event = {
        "log_time": 0.25, "log_level": LogLevel.warn, "log_namespace": "demo",
        "log_format": "{who} said {what!r}", "log_failure": failure, "log_system": "-",
        "who": "fred", "what": "hi", "count": 3, "object": object(), "nested": {"a": [1, 2.5, None]},
        "text": "not the text",
    }
    line = json.loads(jsonLine(event))
    assert line["time"] == "1970-01-01T00:00:00.250Z"
    assert line["level"] == "warn"
    assert line["namespace"] == "demo"
    assert line["text"] == "fred said 'hi'"
    assert "ZeroDivisionError" in line["traceback"]
    assert line["who"] == "fred" and line["count"] == 3 and line["nested"] == {"a": [1, 2.5, None]}
    assert "object" not in line and "system" not in line


def test_jsonLogObserverWritesLines(tmp_path):
    """The observer writes one JSON line per event to the file it was given."""
    path = tmp_path / "log.jsonl"
    with path.open("w") as out:
        observe = jsonLogObserver(out)
        observe({"log_time": time.time(), "log_level": LogLevel.info, "log_namespace": "x",
                 "log_format": "one {n}", "n": 1})
        observe({"log_time": time.time(), "log_level": LogLevel.error, "log_namespace": "x",
                 "log_format": "two\nlines"})
    lines = path.read_text().splitlines()
    assert [json.loads(line)["text"] for line in lines] == ["one 1", "two\nlines"]


def test_twistdJsonLogsAndMetricsListener(tmp_path):
    """twistd --logger chatthing.logs.jsonLogObserver writes only JSON lines; --metrics-listen serves /metrics and /healthz."""
    process = subprocess.Popen(
        [twistdScript(), "--logger", "chatthing.logs.jsonLogObserver", "-n", "--pidfile=",
         "chat-widget", "--element=chatthing.chatterbox.chat",
         "--listen", "tcp:0:interface=127.0.0.1", "--metrics-listen", "tcp:0:interface=127.0.0.1"],
        cwd=tmp_path, env=subprocessEnvironment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        def listening(label: str) -> dict | None:
            for line in list(lines):
                event = json.loads(line)
                if re.match(rf"{label} listening on http://", event["text"]):
                    return event
            return None

        end = time.monotonic() + 15
        while not (listening("chat") and listening("metrics")):
            assert process.poll() is None and time.monotonic() < end, "".join(lines) + process.stderr.read()
            time.sleep(0.05)
        chat, operator = listening("chat"), listening("metrics")
        assert chat["level"] == "info" and chat["namespace"] == "chatthing.listening.ListeningService"
        assert chat["label"] == "chat" and isinstance(chat["port"], int)
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", chat["time"])

        base = f"http://127.0.0.1:{operator['port']}/"
        status, _, body = _httpGet(base + "metrics")
        assert status == 200 and value(body, "live_connections") == 0
        assert _httpGet(base + "healthz")[::2] == (200, "ok")
        assert _httpGet(base + "other")[0] == 404
        chatBase = f"http://127.0.0.1:{chat['port']}/"
        assert _httpGet(chatBase + "healthz")[::2] == (200, "ok")
        assert "live_connections" not in _httpGet(chatBase + "metrics")[2]
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(5)
    events = [json.loads(line) for line in lines]  # every line is JSON
    assert all({"time", "level", "namespace", "text"} <= set(e) for e in events)
    assert any(e["text"].startswith("shutting down:") for e in events), "".join(lines)


@pytest_twisted.ensureDeferred
async def test_chatGauges(serve):
    """The chat's own gauges, users logged in and rooms open, move as pages log in and open rooms."""
    from chatthing.chatterbox import ChatRoom

    chatRoom = ChatRoom()
    server = await serve(elementFactory=chatRoom.makeChatter, publicMetrics=True)
    before = await metrics(server)
    assert value(before, "chat_users") == 0 and value(before, "chat_rooms") == 1
    await server.login("alice")
    bob = await server.connect(hello={"page": "/room/kitchen"})
    assert (await bob.call("setUsername", "bob"))["type"] == "result"
    after = await metrics(server)
    assert value(after, "chat_users") == 2 and value(after, "chat_rooms") == 2
