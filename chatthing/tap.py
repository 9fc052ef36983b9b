"""
The C{chat-widget} twistd plugin's options and service, in the shape of
C{twisted.web.tap}.

    twistd -n chat-widget --element=chatthing.chatterbox.chat
"""

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from twisted.application.service import MultiService
from twisted.python import usage
from twisted.python.reflect import namedAny

from .admin import adminSite, readToken
from .backplane import MemoryBackplane
from .backplane.redis import RedisURL
from .listening import ListeningService
from .live import (
    ANY_HOST,
    MAX_STATE_BYTES,
    HostCheck,
    IAppState,
    ILiveApplication,
    LiveSettings,
    LiveSite,
    MetricsResource,
    checkElementModule,
    hostName,
    listenHosts,
    StateFile,
    StateKeeper,
    operatorSite,
)
from .shutdown import DRAIN_SECONDS, GracefulShutdown
from .startup import StartupService, checkEndpoint


def loadApplication(dottedName: str) -> ILiveApplication:
    """
    The application C{--element} names, found in this one place: the
    object at C{dottedName}, as an L{ILiveApplication} -- itself if it
    provides the interface, the object whose C{makeElement} it is for a
    bound method (C{chatthing.chatterbox.chat} is the module-level
    C{ChatRoom}), or else a plain element factory adapted to one
    (L{chatthing.live.CallableApplication}: called with no arguments per page, only C{/}, no
    alerts, no backplane).

    @raise usage.UsageError: with a one-line reason if it cannot be imported
        or cannot be an application (not callable, a class that is not a
        C{LiveElement}, a callable that needs arguments).
    """
    try:
        thing = namedAny(dottedName)
    except Exception as e:
        raise usage.UsageError(
            f"--element {dottedName!r} cannot be imported: {type(e).__name__}: {e}"
        ) from None
    try:
        return ILiveApplication(thing)
    except TypeError as e:
        raise usage.UsageError(f"--element {dottedName!r}: {e}") from None


class Options(usage.Options):
    synopsis = "--element DOTTED.NAME [options]"
    longdesc = (
        "Serve a live element to browsers: the page, its JavaScript and its "
        "WebSocket on one port. For the tutorial's chat: "
        "twistd -n chat-widget --element=chatthing.chatterbox.chat . "
        "For operators: /healthz (200 ok; 200 degraded while Redis is unreachable; 503 "
        "while shutting down) is always served "
        "on the chat's port; Prometheus /metrics only on --metrics-listen, or on the "
        "chat's port with --metrics-public. For one JSON object per log line, give "
        "twistd its own option before the plugin's name: "
        "twistd --logger chatthing.logs.jsonLogObserver -n chat-widget ..."
    )

    optFlags = [
        ["nagle", None,
         "Leave Nagle's algorithm on for page connections (TCP_NODELAY off), so that "
         "small frames may wait to be sent together; by default they go out at once."],
        ["metrics-public", None,
         "Also serve /metrics on the chat's own port(s), to anyone who can reach "
         "them (only if a proxy in front keeps it private). /healthz is always "
         "served there."],
    ]

    optParameters = [
        ["element", "e", None,
         "Dotted name of the application to serve (required): an object providing "
         "chatthing.live.ILiveApplication, or its bound makeElement, e.g. "
         "chatthing.chatterbox.chat (the ChatRoom's makeChatter); or a LiveElement "
         "class or zero-argument callable returning one, called once per page, serving /."],
        ["port", "p", "8080",
         "TCP port to serve on, all interfaces, 0-65535; ignored if --listen is given."],
        ["admin-token-file", None, None,
         "File holding the secret token for the admin endpoint; without it the "
         "admin endpoint is off."],
        ["admin-listen", None, "tcp:8081:interface=127.0.0.1",
         "Endpoint description for the admin endpoint (used only with --admin-token-file)."],
        ["metrics-listen", None, None,
         "Endpoint description for an operator listener serving /metrics (Prometheus) "
         "and /healthz, with no authentication: bind it to loopback or a private "
         "network, e.g. tcp:9100:interface=127.0.0.1 [default: off]."],
        ["title", None, "chatthing", "Title of the page."],
        ["redis", None, None,
         "redis://[:password@]host:port/db of a Redis server through which several processes "
         "share the chat (rooms, names, history, alerts, sessions), or "
         "redis+sentinel://[:password@]HOST:PORT[,HOST:PORT...]/SERVICE[/DB] for the primary "
         "that those Redis Sentinels name for SERVICE, followed across failovers; see "
         "docs/scaling.md [default: none, this process alone, in memory]."],
        ["grace-period", None, "30",
         "Seconds a page whose connection dropped may take to come back to its "
         "session (and get what it missed) before the session ends; 0 or more."],
        ["drain-seconds", None, "2",
         "On SIGTERM, seconds over which this process's pages are told and their "
         "connections closed (1012), so that they do not all reconnect at once; 0 or more."],
        ["max-connections", None, "10000",
         "WebSocket connections served at once; past that, handshakes get HTTP 503."],
        ["rate", None, "20",
         "Frames a second each page may keep sending (after a burst); past that "
         "its frames get a RateLimited error."],
        ["burst", None, "40",
         "Frames each page may send at once, faster than --rate."],
        ["max-pending-calls", None, "16",
         "Calls from one page that may run at once; past that, TooManyPendingCalls."],
        ["max-frame-bytes", None, "65536",
         "Largest frame a page may send; larger ones get a FrameTooLarge error."],
        ["max-outgoing-bytes", None, "1048576",
         "Bytes buffered for a page that does not read before its connection is cut."],
        ["ping-interval", None, "15",
         "Seconds between heartbeat pings to each page; 0 turns heartbeats off."],
        ["ping-timeout", None, "10",
         "Seconds a page has to answer a heartbeat ping before it is dropped."],
        ["max-rooms", None, "1000",
         "Rooms where someone may be logged in at once (for an application with rooms, "
         "like chatthing.chatterbox.chat's ChatRoom); a login in one more gets TooManyRooms."],
        ["room-bytes", None, "524288",
         "Bytes one room keeps: frames for pages that resume (three quarters) and its last "
         "messages (a quarter); a room nobody is in keeps only the messages."],
        ["rooms-bytes", None, "134217728",
         "Bytes all rooms keep together; past that, empty rooms go first, then the oldest "
         "frames and messages of the fullest."],
        ["ack-rate", None, "20",
         "Acks a second each page may keep sending (a browser sends about 4); past "
         "that they are dropped. Frames of every kind over ten times --rate plus "
         "--ack-rate close the connection (1008)."],
        ["ack-burst", None, "40",
         "Acks each page may send at once, faster than --ack-rate."],
        ["max-partial-bytes", None, "67108864",
         "Bytes all pages together may hold in messages begun and not finished; past "
         "that the page holding the most is closed (1009)."],
        ["request-header-timeout", None, "15",
         "Seconds an HTTP request has to arrive whole from the moment the server waits "
         "for it (not an idle timeout: trickling bytes does not extend it); then 408, closed."],
        ["max-unfinished-requests", None, "256",
         "HTTP connections that may wait at once for their request to arrive; past that "
         "the one that has waited longest is closed (keep it well under ulimit -n)."],
        ["max-request-body-bytes", None, "65536",
         "Largest HTTP request body read on the chat's port (it takes none); a larger "
         "one gets 413 and the connection is closed."],
        ["state-file", None, None,
         "File where, on SIGTERM (after the drain), a process that runs alone saves its "
         "sessions, names, rooms and their history, and which it loads when it starts "
         "again (then renames it PATH.loaded), so that a deploy logs no one out: the "
         "pages resume. Not with --redis (Redis keeps them) [default: none]."],
        ["state-file-max-bytes", None, str(MAX_STATE_BYTES),
         "The largest --state-file written or loaded; a bigger state is not saved "
         "(said in the log) and the pages start over."],
        ["redis-replicas", None, None,
         "With --redis: how many Redis replicas must have a message (WAIT) before it is shown and its "
         "sender told it was sent; if fewer do within --redis-replica-bound it is refused (BackplaneDown), and "
         "while Redis cannot be reached messages are refused, not shown on this process "
         "only [default: 1 with redis+sentinel://, else 0]."],
        ["redis-replica-wait", None, "0.5",
         "With --redis-replicas above 0: seconds each WAIT gives the replicas to confirm a message "
         "(it asks again until --redis-replica-bound); more than 0."],
        ["presence-list-max", None, None,
         "Past this many names in a room, its pages are shown the first this many (by join "
         "order) and how many are there, not every name, so a page of a big room is sent a "
         "bounded list; 0 lists every name [default: the application's, 250 for the chat]."],
        ["redis-replica-bound", None, "10",
         "With --redis-replicas above 0: seconds a message may wait for the replicas (across a "
         "failover) before it is settled: sent if they have it by then, else deleted unseen and "
         "refused (BackplaneDown); more than 0."],
    ]

    #: How each limit option is read: (LiveSettings field, type, lowest
    #: value allowed, what the usage error says it must be).
    limits = {
        "grace-period": ("gracePeriod", float, 0, "a number of seconds, 0 or more"),
        "max-connections": ("maxConnections", int, 1, "a whole number, 1 or more"),
        "rate": ("frameRate", float, None, "a number of frames a second, more than 0"),
        "burst": ("frameBurst", int, 1, "a whole number, 1 or more"),
        "max-pending-calls": ("maxPendingCalls", int, 1, "a whole number, 1 or more"),
        "max-frame-bytes": ("maxFrameBytes", int, 1024, "a whole number of bytes, 1024 or more"),
        "max-outgoing-bytes": ("maxOutgoingBytes", int, 1, "a whole number of bytes, 1 or more"),
        "ping-interval": ("pingInterval", float, 0, "a number of seconds, 0 (off) or more"),
        "ping-timeout": ("pingTimeout", float, None, "a number of seconds, more than 0"),
        "ack-rate": ("ackRate", float, None, "a number of acks a second, more than 0"),
        "ack-burst": ("ackBurst", int, 1, "a whole number, 1 or more"),
        "max-partial-bytes": ("maxPartialBytes", int, 65536, "a whole number of bytes, 65536 or more"),
        "request-header-timeout": ("requestHeaderTimeout", float, None, "a number of seconds, more than 0"),
        "max-unfinished-requests": ("maxUnfinishedRequests", int, 1, "a whole number, 1 or more"),
        "max-request-body-bytes": ("maxRequestBodyBytes", int, 0, "a whole number of bytes, 0 or more"),
    }

    def __init__(self) -> None:
        super().__init__()
        # --help shows opt_ docstrings as they are: fold their lines.
        self.docs = {name: " ".join(doc.split()) if doc else doc for name, doc in self.docs.items()}
        self["listen"] = []
        self["allowed-origin"] = []
        self["allowed-host"] = []
        self["public-url"] = []

    def opt_listen(self, description: str) -> None:
        """
        Endpoint description to serve on, e.g. tcp:8080:interface=127.0.0.1,
        or for TLS ssl:8443:privateKey=key.pem:certKey=cert.pem (PEM files: the
        private key and the certificate; intermediates in
        extraCertChain=chain.pem); repeatable; overrides --port. Checked at
        start: an unknown type or an unreadable key or certificate is a usage
        error, a port in use ends start-up.
        """
        self["listen"].append(description)

    def opt_allowed_origin(self, origin: str) -> None:
        """
        An origin, such as https://chat.example.com, whose pages may open the
        WebSocket besides the server's own; repeatable [default: none, only
        the page's own origin; clients that send no Origin are allowed].
        """
        self["allowed-origin"].append(origin)

    def opt_allowed_host(self, host: str) -> None:
        """
        A host name (chat.example.com; *.example.com for every name under it;
        * for any) the chat answers to in the Host header of its pages, files
        and WebSocket, against DNS rebinding; others get 421; repeatable
        [default: localhost, the address each connection arrives at, and,
        when listening on all interfaces, this machine's host names].
        """
        self["allowed-host"].append(host)

    def opt_public_url(self, url: str) -> None:
        """
        The public WebSocket URL (ws://HOST:PORT/live or wss://...) of a
        process of this cluster, this one's included; repeatable. Each page
        and ChatClient is told them in its welcome, and tries the next one
        when its own keeps failing [default: none].
        """
        self["public-url"].append(checkPublicUrl(url))

    def postOptions(self) -> None:
        if self["element"] is None:
            raise usage.UsageError("--element is required, e.g. --element=chatthing.chatterbox.chat")
        self["application"] = application = loadApplication(self["element"])
        # The element factory, for what needs only that.
        self["elementFactory"] = application.makeElement
        checkElementModule(self["element"])  # its template and widget module are there
        if not self["listen"]:
            try:
                port = int(self["port"])
            except ValueError:
                port = -1
            if not 0 <= port <= 65535:
                raise usage.UsageError(f"--port must be a number from 0 to 65535, not {self['port']!r}")
            self["listen"] = [f"tcp:{port}"]
        self.checkEndpoints()
        self["settings"] = self.makeSettings()
        self["drainSeconds"] = self.makeDrainSeconds()
        if self["redis"] is not None:
            try:
                RedisURL(self["redis"])
            except ValueError as e:
                raise usage.UsageError(
                    f"--redis must be a URL like redis://127.0.0.1:6379/0 or "
                    f"redis+sentinel://127.0.0.1:26379,127.0.0.2:26379/SERVICE/0, not "
                    f"{self['redis']!r} ({e})"
                ) from None
        self["redisReplicas"] = self.makeRedisReplicas()
        self["redisReplicaWait"] = self.makeRedisReplicaWait()
        self["redisReplicaBound"] = self.makeRedisReplicaWait("redis-replica-bound")
        self["adminToken"] = None
        if self["admin-token-file"] is not None:
            self["adminToken"] = readToken(self["admin-token-file"])
            self["alertTarget"] = application.wall
            if self["alertTarget"] is None:
                raise usage.UsageError(
                    f"--admin-token-file was given, but {self['element']!r} has no wall "
                    "to send alerts to"
                )
        self["roomLimits"] = roomLimits(self)
        self["presenceListMax"] = presenceListMax(self)
        self["stateFile"] = self.makeStateFile()

    def makeStateFile(self) -> StateFile | None:
        """
        The L{StateFile} C{--state-file} and C{--state-file-max-bytes} ask
        for, or L{None}.

        @raise usage.UsageError: if they cannot be used.
        """
        try:
            maxBytes = int(str(self["state-file-max-bytes"]).strip())
        except ValueError:
            maxBytes = 0
        if maxBytes < 1024:
            raise usage.UsageError("--state-file-max-bytes must be a whole number of bytes, 1024 or "
                                   f"more, not {self['state-file-max-bytes']!r}")
        if self["state-file"] is None:
            return None
        if self["redis"] is not None:
            raise usage.UsageError("--state-file is for a process that runs alone: with --redis, "
                                   "the sessions, names and rooms are kept in Redis already")
        return StateFile(self["state-file"], maxBytes)

    def checkEndpoints(self) -> None:
        """
        Every endpoint description given can be listened on as far as can be
        told before starting (L{checkEndpoint}); the admin one only if the
        admin endpoint is on.

        @raise usage.UsageError: naming the option and what is wrong.
        """
        for description in self["listen"]:
            checkEndpoint("--listen", description)
        if self["metrics-listen"] is not None:
            checkEndpoint("--metrics-listen", self["metrics-listen"])
        if self["admin-token-file"] is not None:
            checkEndpoint("--admin-listen", self["admin-listen"])

    def makeRedisReplicas(self) -> int | None:
        """
        C{--redis-replicas}, a whole number, 0 or more, or L{None} for the
        default of C{--redis}'s kind of URL.

        @raise usage.UsageError: if it is not, or if it is given without
            C{--redis}.
        """
        text = self["redis-replicas"]
        if text is None:
            return None
        if self["redis"] is None:
            raise usage.UsageError("--redis-replicas was given without --redis")
        if not str(text).strip().isdigit():
            raise usage.UsageError(f"--redis-replicas must be a whole number, 0 or more, not {text!r}")
        return int(str(text).strip())

    def makeRedisReplicaWait(self, option: str = "redis-replica-wait") -> float:
        """
        C{--redis-replica-wait} (or C{option}), a number of seconds, more than 0.

        @raise usage.UsageError: if it is not.
        """
        try:
            value = float(str(self[option]).strip())
        except ValueError:
            value = 0.0
        if not 0 < value < float("inf"):
            raise usage.UsageError(f"--{option} must be a number of seconds, more than 0, "
                                   f"not {self[option]!r}")
        return value

    def makeDrainSeconds(self) -> float:
        """
        C{--drain-seconds}, a number of seconds, 0 or more.

        @raise usage.UsageError: if it is not.
        """
        try:
            value = float(str(self["drain-seconds"]).strip())
        except ValueError:
            value = -1.0
        if not 0 <= value < float("inf"):
            raise usage.UsageError(
                f"--drain-seconds must be a number of seconds, 0 or more, not {self['drain-seconds']!r}")
        return value

    def makeSettings(self) -> LiveSettings:
        """
        The L{LiveSettings} the limit options give.

        @raise usage.UsageError: naming the first option whose value is not
            allowed, and what it must be.
        """
        values: dict[str, Any] = {}
        for option, (field, kind, lowest, must) in self.limits.items():
            text = str(self[option]).strip()
            try:
                value = kind(text)
            except ValueError:
                value = None
            if (value is None or value != value or value in (float("inf"), float("-inf"))
                    or (lowest is None and value <= 0)
                    or (lowest is not None and value < lowest)):
                raise usage.UsageError(f"--{option} must be {must}, not {self[option]!r}")
            values[field] = value
        values["allowedOrigins"] = tuple(checkOrigin(o) for o in self["allowed-origin"])
        values["noDelay"] = not self["nagle"]
        values["allowedHosts"] = tuple(checkHost(h) for h in self["allowed-host"])
        values["publicUrls"] = tuple(self["public-url"])
        return LiveSettings(**values)


def checkOrigin(origin: str) -> str:
    """
    C{origin} without a trailing slash, if it is a web origin (scheme, host,
    optional port, nothing else).

    @raise usage.UsageError: if it is not.
    """
    parts = urlsplit(origin.strip())
    try:
        parts.port
        valid = (parts.scheme in ("http", "https") and bool(parts.hostname)
                 and parts.path in ("", "/") and not parts.query and not parts.fragment
                 and "@" not in parts.netloc)
    except ValueError:
        valid = False
    if not valid:
        raise usage.UsageError(
            f"--allowed-origin must be an origin like https://chat.example.com, not {origin!r}"
        )
    return origin.strip().rstrip("/")


def checkPublicUrl(url: str) -> str:
    """
    C{url}, if it is a WebSocket URL (C{ws://} or C{wss://}, a host, no
    query or credentials).

    @raise usage.UsageError: if it is not.
    """
    parts = urlsplit(url.strip())
    try:
        parts.port
        valid = (parts.scheme in ("ws", "wss") and bool(parts.hostname) and not parts.query
                 and not parts.fragment and "@" not in parts.netloc)
    except ValueError:
        valid = False
    if not valid:
        raise usage.UsageError(f"--public-url must be a URL like wss://chat1.example.com/live, not {url!r}")
    return url.strip()


def roomLimits(config: Options) -> dict[str, int]:
    """
    C{--max-rooms}, C{--room-bytes} and C{--rooms-bytes}, as the keyword
    arguments of L{ILiveApplication.setRoomLimits}.

    @raise usage.UsageError: naming the first option that is not allowed.
    """
    limits = {}
    for option, argument, lowest in (("max-rooms", "maxRooms", 1),
                                     ("room-bytes", "roomBytes", 64 * 1024),
                                     ("rooms-bytes", "totalBytes", 1024 * 1024)):
        try:
            value = int(str(config[option]).strip())
        except ValueError:
            value = lowest - 1
        if value < lowest:
            raise usage.UsageError(f"--{option} must be a whole number, {lowest} or more, "
                                   f"not {config[option]!r}")
        limits[argument] = value
    return limits


def presenceListMax(config: Options) -> int | None:
    """
    C{--presence-list-max}, if given: a whole number, 0 or more.

    @raise usage.UsageError: if it is not.
    """
    if config["presence-list-max"] is None:
        return None
    try:
        value = int(str(config["presence-list-max"]).strip())
    except ValueError:
        value = -1
    if value < 0:
        raise usage.UsageError("--presence-list-max must be a whole number, 0 or more, "
                               f"not {config['presence-list-max']!r}")
    return value


def checkHost(host: str) -> str:
    """
    C{host} as L{HostCheck} takes it, if it is a host name or address,
    C{*.NAME} or C{*}.

    @raise usage.UsageError: if it is not.
    """
    text = host.strip()
    if text == ANY_HOST:
        return text
    wildcard = text.startswith("*.")
    body = text[2:] if wildcard else text
    try:
        name: str | None = str(ipaddress.ip_address(body.strip("[]")))
    except ValueError:
        name = hostName(body)
    if name is None or "*" in name:
        raise usage.UsageError(
            f"--allowed-host must be a host name like chat.example.com, *.example.com or *, "
            f"not {host!r}")
    return ("*." if wildcard else "") + name


def makeBackplane(config: Options) -> Any:
    """
    The backplane C{--redis} asks for, or the in-memory one.
    """
    if config["redis"] is None:
        return MemoryBackplane()
    from .backplane.redis import RedisBackplane
    from .backplane.redis.settling import BOUND

    return RedisBackplane(config["redis"], gracePeriod=config["settings"].gracePeriod,
                          replicas=config.get("redisReplicas"),
                          replicaWait=config.get("redisReplicaWait", 0.5),
                          replicaBound=config.get("redisReplicaBound", BOUND))


def makeService(config: Options) -> MultiService:
    """
    One listening service per C{--listen} address for the site, plus the
    admin endpoint's if a token is configured, plus the operator listener's
    (C{/metrics}, C{/healthz}) if C{--metrics-listen} is given, plus the
    graceful shutdown: added last so that it is stopped first, while the
    connections are open.  C{/healthz} answers 503 once stopping has begun,
    so that load balancers stop sending pages here.
    """
    service = StartupService()
    backplane = makeBackplane(config)
    backplane.setServiceParent(service)
    application: ILiveApplication = config["application"]
    if not application.useBackplane(backplane) and not isinstance(backplane, MemoryBackplane):
        raise usage.UsageError(f"--redis was given, but {application!r} cannot use a backplane")
    if config.get("roomLimits"):
        application.setRoomLimits(**config["roomLimits"], presenceListMax=config.get("presenceListMax"))
    site = LiveSite(application, title=config["title"], settings=config["settings"],
                    sessionStore=backplane.sessions)
    # The Host names the site answers to: --allowed-host's, and those it
    # listens as (this machine's names, if on all interfaces).
    stateKeeper = None
    if config.get("stateFile") is not None:
        # Started before the listeners: the state is loaded before any page comes.
        stateKeeper = StateKeeper(config["stateFile"], site.liveFactory, IAppState(application, None))
        stateKeeper.setServiceParent(service)
    site.hostCheck = HostCheck((*listenHosts(config["listen"]), *config["settings"].allowedHosts))
    site.health.addCheck(lambda: None if service.running else "shutting down")
    site.health.addCheck(backplane.problem, critical=False)
    if config["metrics-public"]:
        site.serveMetrics()
    for description in config["listen"]:
        ListeningService(description, site, "chat").setServiceParent(service)
    if config["metrics-listen"] is not None:
        ListeningService(
            config["metrics-listen"],
            site.limitOther(operatorSite(site.health, MetricsResource(site.metrics)), "operator"), "metrics"
        ).setServiceParent(service)
    if config["adminToken"] is not None:
        ListeningService(
            config["admin-listen"],
            site.limitOther(adminSite(config["adminToken"], config["alertTarget"]), "admin"), "admin"
        ).setServiceParent(service)
    # The backplane stops once the drain is done: the pages not yet closed
    # go on talking to the other processes.
    GracefulShutdown(site, config.get("drainSeconds", DRAIN_SECONDS),
                     holds=[backplane], stateKeeper=stateKeeper).setServiceParent(service)
    return service
