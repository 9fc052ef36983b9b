"""
The chat-widget plugin's options, parsed with no reactor, as twisted.web.tap's
tests do.
"""

import pytest
from twisted.application.service import IServiceMaker
from twisted.internet.error import ConnectionDone
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.python.failure import Failure

from zope.interface.verify import verifyObject

from chatthing import tap
from chatthing.backplane import MemoryBackplane
from chatthing.chatterbox import ChatterElement, chat, chatRoom
from chatthing.examples.echobox import EchoElement
from chatthing.listening import ListeningService
from chatthing.live import CallableApplication, ILiveApplication, LiveElement, LiveSite
from chatthing.live._health import HealthResource
from chatthing.live._metrics import MetricsResource
from chatthing.live._settings import LiveSettings
from chatthing.shutdown import DRAIN_SECONDS, GracefulShutdown


def parse(*args):
    options = tap.Options()
    options.parseOptions(list(args))
    return options


def test_pluginRegistered():
    """twistd finds a chat-widget plugin that points at chatthing.tap."""
    makers = {p.tapname: p for p in getPlugins(IServiceMaker)}
    assert makers["chat-widget"].module == "chatthing.tap"


def test_defaults():
    """The tutorial's command serves the chat on port 8080, with no admin endpoint."""
    options = parse("--element=chatthing.chatterbox.chat")
    assert options["application"] is chat.__self__ is chatRoom
    assert options["elementFactory"] == chat
    assert options["listen"] == ["tcp:8080"]
    assert options["adminToken"] is None


def test_port():
    """--port picks the TCP port."""
    assert parse("--element=chatthing.chatterbox.chat", "--port", "0")["listen"] == ["tcp:0"]


@pytest.mark.parametrize("port", ["-1", "65536", "http", ""])
def test_badPort(port):
    """A port outside 0-65535 or not a number is a usage error naming the value."""
    with pytest.raises(usage.UsageError, match="--port must be a number from 0 to 65535"):
        parse("--element=chatthing.chatterbox.chat", "--port", port)


def test_listenRepeatableOverridesPort():
    """--listen is repeatable and overrides --port."""
    options = parse("--element=chatthing.chatterbox.chat", "--port", "9",
                    "--listen", "tcp:8000:interface=127.0.0.1", "--listen", "unix:/tmp/chat.sock")
    assert options["listen"] == ["tcp:8000:interface=127.0.0.1", "unix:/tmp/chat.sock"]


@pytest.mark.parametrize("element, message", [
    (None, "--element is required"),
    ("chatthing.nothere.chat", "cannot be imported"),
    ("chatthing.chatterbox.nothing", "cannot be imported"),
    ("not a name", "cannot be imported"),
    ("chatthing.chatterbox.MAX_MESSAGE_LENGTH", "is not callable"),
    ("chatthing.chatterbox.ChatRoom", "is a class, but not a LiveElement"),
    ("chatthing.chatterbox.ChatterElement", "must be callable with no arguments"),
    ("chatthing.chatterbox.chatRoom.wall", "is a method of the application .* but not its makeElement"),
    ("test_tap.pageFactory", "must be callable with no arguments"),
])
def test_badElement(element, message):
    """A missing, unimportable or unusable --element is a one-line usage error."""
    args = [] if element is None else [f"--element={element}"]
    with pytest.raises(usage.UsageError, match=message) as e:
        parse(*args)
    assert "\n" not in str(e.value)


def test_elementClass():
    """A LiveElement subclass with a zero-argument constructor is a valid factory."""
    options = parse("--element=chatthing.live.LiveElement")
    assert options["application"].factory is LiveElement


def plainFactory():
    """A plain element factory, as a user's module would have one."""
    return EchoElement()


def pageFactory(page):
    """A plain function that wants the page: refused (an application takes pages by makeElement)."""
    return EchoElement()


class PlainRoom:
    """An object with a wall() that does not declare ILiveApplication: nothing of it is guessed."""

    def wall(self, message):
        raise AssertionError("an undeclared wall() was found")

    def makePage(self):
        return EchoElement()


plainRoom = PlainRoom()


@pytest.mark.parametrize("element, factory", [
    ("chatthing.examples.echobox.EchoElement", EchoElement),
    ("test_tap.plainFactory", plainFactory),
    ("test_tap.plainRoom.makePage", plainRoom.makePage),
], ids=["class", "function", "undeclared bound method"])
def test_elementPlainCallable(element, factory):
    """--element naming a plain factory: a CallableApplication with no alerts, no backplane, only /."""
    options = parse(f"--element={element}")
    application = options["application"]
    assert isinstance(application, CallableApplication) and application.factory == factory
    assert verifyObject(ILiveApplication, application)
    assert application.wall is None and not application.pageExists("/room/x")
    assert isinstance(options["elementFactory"]("/"), EchoElement)


@pytest.mark.parametrize("element", ["chatthing.chatterbox.chat", "chatthing.chatterbox.chatRoom"],
                         ids=["its makeElement", "the application"])
def test_elementApplication(element):
    """--element naming an ILiveApplication, or its bound makeElement, serves that application itself."""
    options = parse(f"--element={element}")
    assert options["application"] is chatRoom
    assert verifyObject(ILiveApplication, options["application"])


def test_plainFactoryCannotUseRedis():
    """--redis with an application that uses no backplane is a usage error naming it."""
    options = parse("--element=chatthing.examples.echobox.EchoElement", "--listen", "tcp:0",
                    "--redis", "redis://127.0.0.1:1/0")
    with pytest.raises(usage.UsageError, match="cannot use a backplane"):
        tap.makeService(options)


def test_adminToken(tmp_path):
    """--admin-token-file reads the token and finds the room's wall() for alerts."""
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    options = parse("--element=chatthing.chatterbox.chat", "--admin-token-file", str(token))
    assert options["adminToken"] == "s3cret"
    assert options["alertTarget"] == chatRoom.wall


@pytest.mark.parametrize("content, message", [(None, "cannot be read"), ("  \n", "is empty")])
def test_badAdminToken(tmp_path, content, message):
    """A missing or empty token file is a usage error."""
    token = tmp_path / "token"
    if content is not None:
        token.write_text(content)
    with pytest.raises(usage.UsageError, match=message):
        parse("--element=chatthing.chatterbox.chat", "--admin-token-file", str(token))


def test_adminNeedsWall(tmp_path):
    """Alerts need an application with a wall(): a bare LiveElement has none."""
    token = tmp_path / "token"
    token.write_text("t")
    with pytest.raises(usage.UsageError, match="no wall"):
        parse("--element=chatthing.live.LiveElement", "--admin-token-file", str(token))


def test_adminNeedsADeclaredWall(tmp_path):
    """A wall() on an object that does not declare ILiveApplication is not guessed at: alerts are refused."""
    token = tmp_path / "token"
    token.write_text("t")
    with pytest.raises(usage.UsageError, match="no wall"):
        parse("--element=test_tap.plainRoom.makePage", "--admin-token-file", str(token))


def serving(service):
    """
    The services of C{makeService}'s after the backplane, which comes first
    (so that it stops last).
    """
    children = list(service)
    assert isinstance(children[0], MemoryBackplane)
    return children[1:]


def test_makeService(tmp_path):
    """makeService listens once per --listen address, plus the admin endpoint if configured."""
    token = tmp_path / "token"
    token.write_text("t")
    options = parse("--element=chatthing.chatterbox.chat", "--listen", "tcp:0", "--listen", "tcp:1",
                    "--admin-token-file", str(token), "--admin-listen", "tcp:2")
    services = serving(tap.makeService(options))
    assert [(s.description, s.label) for s in services[:-1]] == [
        ("tcp:0", "chat"), ("tcp:1", "chat"), ("tcp:2", "admin")]
    assert all(isinstance(s, ListeningService) for s in services[:-1])
    assert isinstance(services[-1], GracefulShutdown)


def test_makeServiceSettingsAndShutdown():
    """The site gets the options' LiveSettings; the shutdown, added last (stopped first), drains the site."""
    options = parse("--element=chatthing.chatterbox.chat", "--listen", "tcp:0", "--rate", "5")
    top = tap.makeService(options)
    services = serving(top)
    site = services[0].factory
    assert isinstance(site, LiveSite)
    assert site.liveFactory.settings is options["settings"]
    assert site.liveFactory.settings.frameRate == 5
    shutdown = services[-1]
    assert isinstance(shutdown, GracefulShutdown)
    assert shutdown.site is site
    assert shutdown.drainSeconds == DRAIN_SECONDS == 2
    assert shutdown.holds == (list(top)[0],)  # the backplane stops once the drain is done


def test_limitDefaults():
    """With no limit options, the settings are LiveSettings' documented defaults."""
    settings = parse("--element=chatthing.chatterbox.chat")["settings"]
    assert settings == LiveSettings()
    assert (settings.gracePeriod, settings.maxConnections, settings.frameRate, settings.frameBurst,
            settings.maxPendingCalls, settings.maxFrameBytes, settings.maxOutgoingBytes,
            settings.pingInterval, settings.pingTimeout, settings.allowedOrigins) == (
        30, 10000, 20, 40, 16, 65536, 1048576, 15, 10, ())


def test_limitOptions():
    """Each limit option sets its LiveSettings field; --allowed-origin is repeatable."""
    settings = parse(
        "--element=chatthing.chatterbox.chat", "--grace-period", "2.5", "--max-connections", "3",
        "--rate", "0.5", "--burst", "7", "--max-pending-calls", "2", "--max-frame-bytes", "4096",
        "--max-outgoing-bytes", "65536",
        "--ping-interval", "0", "--ping-timeout", "1.5",
        "--allowed-origin", "https://chat.example.com/", "--allowed-origin", "http://localhost:3000",
    )["settings"]
    assert settings == LiveSettings(
        gracePeriod=2.5, maxConnections=3, frameRate=0.5, frameBurst=7, maxPendingCalls=2,
        maxFrameBytes=4096, maxOutgoingBytes=65536, pingInterval=0, pingTimeout=1.5,
        allowedOrigins=("https://chat.example.com", "http://localhost:3000"),
    )


@pytest.mark.parametrize("option, value, message", [
    ("grace-period", "-1", "a number of seconds, 0 or more"),
    ("grace-period", "soon", "a number of seconds, 0 or more"),
    ("grace-period", "nan", "a number of seconds, 0 or more"),
    ("max-connections", "0", "a whole number, 1 or more"),
    ("max-connections", "2.5", "a whole number, 1 or more"),
    ("rate", "0", "more than 0"),
    ("rate", "inf", "more than 0"),
    ("burst", "0", "a whole number, 1 or more"),
    ("max-pending-calls", "-3", "a whole number, 1 or more"),
    ("max-outgoing-bytes", "1M", "a whole number of bytes, 1 or more"),
    ("max-frame-bytes", "100", "a whole number of bytes, 1024 or more"),
    ("ping-interval", "-0.5", "0 (off) or more"),
    ("ping-timeout", "0", "more than 0"),
    ("ping-timeout", "", "more than 0"),
])
def test_badLimit(option, value, message):
    """A limit out of range or not a number is a one-line usage error naming the option and value."""
    with pytest.raises(usage.UsageError) as e:
        parse("--element=chatthing.chatterbox.chat", f"--{option}", value)
    text = str(e.value)
    assert text.startswith(f"--{option} must be ") and message in text and repr(value) in text
    assert "\n" not in text


@pytest.mark.parametrize("origin", [
    "chat.example.com", "ftp://chat.example.com", "https://", "https://chat.example.com/path",
    "https://chat.example.com?x=1", "https://user@chat.example.com", "https://chat.example.com:http",
])
def test_badAllowedOrigin(origin):
    """--allowed-origin takes only a web origin: scheme, host and optional port."""
    with pytest.raises(usage.UsageError, match="--allowed-origin must be an origin like") as e:
        parse("--element=chatthing.chatterbox.chat", "--allowed-origin", origin)
    assert "\n" not in str(e.value)


def test_helpShowsLimitDefaults():
    """--help documents each limit option with its default, each doc on folded lines."""
    help = " ".join(str(tap.Options()).split())
    for option, default in [
        ("--grace-period", "30"), ("--max-connections", "10000"), ("--rate", "20"),
        ("--burst", "40"), ("--max-pending-calls", "16"), ("--max-frame-bytes", "65536"),
        ("--max-outgoing-bytes", "1048576"),
        ("--ping-interval", "15"), ("--ping-timeout", "10"),
    ]:
        assert option in help
        after = help[help.index(option + "="):]
        assert after[:after.index("]") + 1].endswith(f"[default: {default}]"), after[:300]
    assert "--allowed-origin=" in help and "https://chat.example.com" in help
    assert "  " not in tap.Options().docs["listen"]


def test_chatterElementIsLiveElement():
    """The factory makes the tutorial's ChatterElement."""
    element = chat()
    try:
        assert isinstance(element, ChatterElement)
    finally:
        element.disconnected(Failure(ConnectionDone("the page closed")))


class FakeSite:
    """
    A site with C{count} connections, recording its shutdown.
    """

    def __init__(self, count: int) -> None:
        from types import SimpleNamespace

        from twisted.internet.defer import Deferred
        self.liveFactory = SimpleNamespace(connections={object(): None for _ in range(count)})
        self.closed = Deferred()
        self.shutDowns = 0

    def shutDown(self, spread=0.0):
        self.shutDowns += 1
        self.spread = spread
        return self.closed


def test_gracefulShutdownDrains():
    """Stopping drains the site over drainSeconds (no global alert: each page is told by its element); it waits for the closes."""
    site = FakeSite(2)
    shutdown = GracefulShutdown(site, drainSeconds=5)
    shutdown.startService()
    d = shutdown.stopService()
    assert site.shutDowns == 1 and site.spread == 5
    assert d is site.closed and not d.called


@pytest.mark.parametrize("count", [0, 3])
def test_gracefulShutdownDefaultWindow(count):
    """With or without connections, the site is drained over the default window."""
    site = FakeSite(count)
    GracefulShutdown(site).stopService()
    assert site.shutDowns == 1 and site.spread == DRAIN_SECONDS


def test_drainSecondsOption():
    """--drain-seconds sets the shutdown's window; a negative or non-number is a usage error."""
    options = parse("--element=chatthing.chatterbox.chat", "--listen", "tcp:0", "--drain-seconds", "0.5")
    assert options["drainSeconds"] == 0.5
    assert serving(tap.makeService(options))[-1].drainSeconds == 0.5
    for bad in ("-1", "soon", "inf", "nan"):
        with pytest.raises(usage.UsageError, match="--drain-seconds"):
            parse("--element=chatthing.chatterbox.chat", "--drain-seconds", bad)


def test_operatorDefaults():
    """By default /healthz is on the chat's port, /metrics nowhere, and there is no metrics listener."""
    options = parse("--element=chatthing.chatterbox.chat", "--listen", "tcp:0")
    assert options["metrics-listen"] is None and not options["metrics-public"]
    services = serving(tap.makeService(options))
    assert [s.label for s in services[:-1]] == ["chat"]
    site = services[0].factory
    assert isinstance(site.resource.children[b"healthz"], HealthResource)
    assert b"metrics" not in site.resource.children


def test_metricsListen():
    """--metrics-listen adds a listener serving only the site's /healthz and /metrics, before the shutdown."""
    options = parse("--element=chatthing.chatterbox.chat", "--listen", "tcp:0",
                    "--metrics-listen", "tcp:9100:interface=127.0.0.1")
    services = serving(tap.makeService(options))
    assert [(s.description, s.label) for s in services[:-1]] == [
        ("tcp:0", "chat"), ("tcp:9100:interface=127.0.0.1", "metrics")]
    site, operator = services[0].factory, services[1].factory
    assert set(operator.resource.children) == {b"healthz", b"metrics"}
    assert operator.resource.children[b"healthz"] is site.health
    assert operator.resource.children[b"metrics"].metrics is site.metrics
    assert b"metrics" not in site.resource.children
    assert isinstance(services[-1], GracefulShutdown)


def test_metricsPublic():
    """--metrics-public serves /metrics on the chat's own port too."""
    options = parse("--element=chatthing.chatterbox.chat", "--listen", "tcp:0", "--metrics-public")
    site = serving(tap.makeService(options))[0].factory
    assert isinstance(site.resource.children[b"metrics"], MetricsResource)
    assert site.resource.children[b"metrics"].metrics is site.metrics


def test_healthzWhileStopping():
    """Once the service starts stopping, /healthz reports "shutting down", so load balancers drain it."""
    options = parse("--element=chatthing.chatterbox.chat", "--listen", "tcp:0")
    service = tap.makeService(options)
    site = serving(service)[0].factory
    service.running = 1  # as startService leaves it, without listening
    assert site.health.problems() == []
    service.running = 0  # as stopService leaves it, before its children stop
    assert site.health.problems() == ["shutting down"]


def test_helpShowsOperatorOptions():
    """--help describes where /metrics and /healthz are served, and the JSON logs."""
    text = " ".join(str(tap.Options()).split())
    assert "--metrics-listen" in text and "--metrics-public" in text
    assert "/healthz" in text and "chatthing.logs.jsonLogObserver" in text


@pytest.mark.parametrize("url", ["nope", "http://127.0.0.1:6379/0", "redis://", "redis://host:6379/db"])
def test_redisOptionMustBeARedisURL(url):
    """--redis takes redis://host:port/db; anything else is a usage error naming the option."""
    with pytest.raises(usage.UsageError, match="--redis must be a URL like redis://"):
        parse("--element=chatthing.chatterbox.chat", "--redis", url)


def test_redisOptionSharesTheChat():
    """With --redis the backplane is Redis's, the lobby and the session store use it, and /healthz
    answers 200 "degraded: backplane unreachable" until it connects (the process still serves)."""
    from chatthing.backplane.redis import RedisBackplane

    options = parse("--element=chatthing.chatterbox.chat", "--listen", "tcp:0",
                    "--redis", "redis://:secret@127.0.0.1:1/3", "--grace-period", "7")
    service = tap.makeService(options)
    backplane, site = list(service)[0], list(service)[1].factory
    try:
        assert isinstance(backplane, RedisBackplane)
        assert (backplane.url.host, backplane.url.port, backplane.url.db) == ("127.0.0.1", 1, 3)
        assert backplane.url.password == "secret" and backplane.gracePeriod == 7
        assert chat.__self__.backplane is backplane
        assert site.liveFactory.sessionStore is backplane.sessions
        service.running = 1
        assert site.health.problems() == ["backplane unreachable (redis://127.0.0.1:1/3)"]
        assert site.health.problems(critical=True) == []
    finally:
        chat.__self__.useBackplane(MemoryBackplane())


@pytest.mark.parametrize("option, description, message", [
    ("--listen", "foo:1", "--listen 'foo:1' cannot be used: ValueError: Unknown endpoint type: 'foo'"),
    ("--listen", "tcp:port", "--listen 'tcp:port' cannot be used: ValueError"),
    ("--listen", "ssl:0:privateKey=/nonexistent/k.pem:certKey=/nonexistent/c.pem",
     "No such file or directory: '/nonexistent/c.pem'; an ssl: endpoint needs privateKey="),
    ("--metrics-listen", "bar:9", "--metrics-listen 'bar:9' cannot be used"),
])
def test_badEndpointIsUsageError(option, description, message):
    """An endpoint description the server could not listen on is a one-line usage error, found while parsing."""
    with pytest.raises(usage.UsageError) as raised:
        parse("--element=chatthing.chatterbox.chat", option, description)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_adminListenCheckedOnlyWhenOn(tmp_path):
    """--admin-listen is checked only when the admin endpoint is on (--admin-token-file)."""
    parse("--element=chatthing.chatterbox.chat", "--admin-listen", "nope:1")
    token = tmp_path / "token"
    token.write_text("t")
    with pytest.raises(usage.UsageError, match="--admin-listen 'nope:1' cannot be used"):
        parse("--element=chatthing.chatterbox.chat", "--admin-listen", "nope:1",
              "--admin-token-file", str(token))


def test_sslWithKeyAndCertificate(tmp_path):
    """ssl:PORT:privateKey=KEY:certKey=CERT with a real key and certificate parses as given."""
    import subprocess

    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
                    "-keyout", str(key), "-out", str(cert), "-days", "2"],
                   check=True, capture_output=True, timeout=60)
    description = f"ssl:8443:privateKey={key}:certKey={cert}"
    assert parse("--element=chatthing.chatterbox.chat", "--listen", description)["listen"] == [description]
    # The key alone (README's old example) is refused, saying what is needed.
    with pytest.raises(usage.UsageError, match="needs privateKey=KEY.pem:certKey=CERT.pem"):
        parse("--element=chatthing.chatterbox.chat", "--listen", f"ssl:8443:privateKey={key}")


def test_listeningRefusedAtOnceRaises():
    """A ListeningService whose port is taken raises CannotListen from starting, naming label and description."""
    import socket

    from chatthing.listening import CannotListen

    with socket.create_server(("127.0.0.1", 0)) as taken:
        description = f"tcp:{taken.getsockname()[1]}:interface=127.0.0.1"
        service = ListeningService(description, object(), "chat")
        with pytest.raises(CannotListen, match=f"^chat cannot listen on {description}: .*in use"):
            service.privilegedStartService()
    assert service.port is None


def test_makeServiceStartsLoudly():
    """The plugin's top service is a StartupService: a listener refused ends start-up in one line."""
    from chatthing.startup import StartupService

    options = parse("--element=chatthing.chatterbox.chat", "--listen", "tcp:0")
    assert isinstance(tap.makeService(options), StartupService)
