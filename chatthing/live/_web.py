"""
The HTTP side of the runtime: one C{twisted.web} L{Site} serving the page,
its static files and its WebSocket on one port.
"""

from pathlib import Path
from typing import Any, Callable, cast

from autobahn.twisted.resource import WebSocketResource
from jinja2 import Environment, FileSystemLoader, select_autoescape
from twisted.internet.defer import Deferred
from twisted.web.pages import forbidden, notFound
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request, Site
from twisted.web.static import File

from ._assets import assetFolder
from ._app import ILiveApplication
from ._apps import APPS_PATH, AppFolders
from ._element import LiveElement
from ._factory import LiveServerFactory
from ._health import HealthResource
from ._hosts import HostCheck
from ._http import (
    HOST_NOT_ALLOWED,
    SECURITY_HEADERS,
    BoundedHTTPChannel,
    HTTPRefusals,
    limitRequests,
    withConnectSources,
)
from ._logsafe import cut
from ._metrics import MetricsResource
from ._settings import LiveSettings
from ._upgrade import LiveHTTPChannel, releaseChannel

__all__ = ["SECURITY_HEADERS", "LiveSite"]

#: The path of the WebSocket, relative to the site's root.
WEBSOCKET_PATH = b"live"


class SecureRequest(Request):
    """
    A request whose response carries L{SECURITY_HEADERS}, whatever resource
    answers it, and no C{Server} banner (twisted.web's names its version);
    one whose C{Host} the site's L{HostCheck} does not allow is answered 421
    before any resource sees it (DNS rebinding: see L{chatthing.live._hosts}).
    C{/healthz} is served whatever the C{Host}: load balancers ask for it by
    address, and it says no more than "ok" or "degraded".
    """

    def process(self) -> None:
        # Request.process sets self.site from the channel; it has not run yet.
        site: Any = cast(BoundedHTTPChannel, self.channel).site
        for name, value in getattr(site, "securityHeaders", SECURITY_HEADERS).items():
            self.setHeader(name, value)
        check = getattr(site, "hostCheck", None)
        if check is not None and self.path.split(b"?", 1)[0] != b"/healthz":
            host = self.getHeader(b"host")
            local = getattr(self.getHost(), "host", None)
            if not check.allows(host, local):
                self.site = site
                self._refuseHost(site, host)
                return
        super().process()

    def _refuseHost(self, site: Any, host: bytes | None) -> None:
        shown = (host or b"").decode("latin-1")
        site.refusals.refused(
            HOST_NOT_ALLOWED, "HTTP request from {peer} refused: Host {host} is not served here "
            "(--allowed-host)", peer=getattr(self.getClientAddress(), "host", "?"), host=cut(shown, 100))
        self.setResponseCode(421, b"Misdirected Request")
        self.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        self.write(f"421 Misdirected Request: this server does not answer to the host name "
                   f"{shown[:100]!r}; its operator may allow it with --allowed-host.\n".encode("utf-8"))
        self.finish()

    def setHeader(self, name: bytes | str, value: bytes | str) -> None:
        if (name.lower() if isinstance(name, bytes) else name.lower().encode()) == b"server":
            return
        super().setHeader(name, value)


class LiveSocketResource(WebSocketResource):
    """
    C{/live}: hands the request's connection over to the WebSocket, then lets
    go of twisted.web's channel and request, which the connection would
    otherwise keep for its whole life (the channel stays registered as its
    producer): some 4 KiB of headers and buffers a page.
    """

    def render(self, request: Request) -> Any:
        if (request.getHeader(b"upgrade") or b"").lower() != b"websocket":
            # Not a handshake: a plain answer with the site's headers, not
            # Autobahn's status page.
            request.setResponseCode(426, b"Upgrade Required")
            request.setHeader(b"Upgrade", b"websocket")
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"426 Upgrade Required: this is the chat's WebSocket; open the page instead.\n"
        channel = request.channel
        transport = channel.transport
        body = super().render(request)
        if channel.transport is None and transport is not None:
            releaseChannel(channel, transport)
        return body


class StaticFolder(File):
    """
    Files of one folder, served with no directory listings; C{File} already
    refuses paths that climb out of the folder.
    """

    contentTypes = {**File.contentTypes, ".js": "text/javascript; charset=utf-8",
                    ".css": "text/css; charset=utf-8"}

    def getChild(self, path: bytes, request: Request) -> IResource:
        # A NUL is in no file name: the file system would raise.
        if b"\x00" in path:
            return notFound()
        return super().getChild(path, request)

    def directoryListing(self) -> IResource:
        return forbidden(message="Directory listings are not served.")


class AppFiles(Resource):
    """
    C{/apps/<module>/js/} and C{/apps/<module>/css/}: the files of the apps
    the server has made elements of (L{AppFolders}), each from its own
    folder's C{js/} and C{css/} (or C{templates/css/}); nothing else, and
    nothing outside them.
    """

    def __init__(self, apps: AppFolders) -> None:
        super().__init__()
        self.apps = apps

    def getChild(self, path: bytes, request: Request) -> IResource:
        folder = self.apps.folder(path.decode("utf-8", "replace"))
        if folder is None:
            return notFound()
        files = SiteRoot()  # 404 for anything but js/ and css/
        if (folder / "js").is_dir():
            files.putChild(b"js", StaticFolder(str(folder / "js")))
        for css in (folder / "css", folder / "templates" / "css"):
            if css.is_dir():
                files.putChild(b"css", StaticFolder(str(css)))
                break
        return files


class SiteRoot(Resource):
    """
    The site's root: its children, and an escaped "404 Not Found" for any
    other path (not twisted.web's deprecated, unescaped C{NoResource}).
    """

    #: The page shell, also served at the other paths it says are pages.
    livePage: "LivePage | None" = None

    def getChild(self, path: bytes, request: Request) -> IResource:
        if self.livePage is not None and self.livePage.isPage(request):
            return self.livePage
        return notFound()


class LivePage(Resource):
    """
    The page shell: it loads the runtime, which connects and then shows the
    element's own markup.  It is served at the paths C{pageExists} accepts
    (by default only the root); the page's path goes in its "hello".
    """

    isLeaf = True

    def __init__(self, templates: Environment, title: str,
                 pageExists: Callable[[str], bool] = lambda path: path == "/") -> None:
        super().__init__()
        self.templates = templates
        self.title = title
        self.pageExists = pageExists

    def isPage(self, request: Request) -> bool:
        return self.pageExists(request.path.decode("utf-8", "replace"))

    def render_GET(self, request: Request) -> bytes:
        if not self.isPage(request):
            return notFound().render(request)
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-cache")
        page = self.templates.get_template("page.html").render(title=self.title)
        return page.encode("utf-8")


def templateEnvironment(folder: Path | None = None) -> Environment:
    """
    The Jinja2 environment for pages and elements, autoescaping all HTML.
    """
    return Environment(
        loader=FileSystemLoader(str(folder or assetFolder("templates"))),
        autoescape=select_autoescape(default=True),
    )


class LiveSite(Site):
    """
    The site for one application: C{/} is the page, C{/live} its WebSocket,
    C{/js/} and C{/css/} the runtime's static files, C{/apps/<module>/} the
    application's own (L{AppFiles}).

    @ivar liveFactory: the L{LiveServerFactory}, which knows the connected
        sessions.
    @ivar metrics: the site's L{LiveMetrics}; C{/metrics} only if
        L{serveMetrics} is called.
    @ivar health: the L{HealthResource} with the details, for the operator's
        site: add checks to it.  C{/healthz} here says only "ok" or
        "degraded" (no Redis address for anyone to read).
    @ivar hostCheck: the L{HostCheck} of C{settings.allowedHosts}.
    @ivar unfinished: the connections whose request has not arrived whole,
        L{UnfinishedRequests} of at most C{settings.maxUnfinishedRequests}.
    @ivar refusals: counts and logs the HTTP requests refused.
    """

    requestFactory = SecureRequest

    def __init__(
        self,
        elementFactory: ILiveApplication | Callable[[], LiveElement],
        title: str = "chatthing",
        settings: LiveSettings = LiveSettings(),
        reactor: Any = None,
        sessionStore: Any = None,
    ) -> None:
        templates = templateEnvironment()
        self.liveFactory = LiveServerFactory(elementFactory, templates, settings, reactor=reactor,
                                             sessionStore=sessionStore)
        root = LivePage(templates, title, self.liveFactory.pageExists)
        page = SiteRoot()
        page.livePage = root
        page.putChild(b"", root)
        page.putChild(WEBSOCKET_PATH, LiveSocketResource(self.liveFactory))
        page.putChild(b"js", StaticFolder(str(assetFolder("js"))))
        page.putChild(b"css", StaticFolder(str(assetFolder("templates") / "css")))
        page.putChild(APPS_PATH.encode(), AppFiles(self.liveFactory.apps))
        super().__init__(page, reactor=self.liveFactory.reactor, parsePOSTFormSubmission=False)
        # No version banner in the WebSocket handshake's answer either.
        self.liveFactory.server = None
        self.metrics, self.health = self.liveFactory.metrics, HealthResource()
        page.putChild(b"healthz", self.health.public())
        self.hostCheck = HostCheck(settings.allowedHosts)
        #: L{SECURITY_HEADERS}, the page allowed to connect to the cluster's
        #: other processes too (C{settings.publicUrls}), to fail over.
        self.securityHeaders = withConnectSources(settings.publicUrls)
        limitRequests(self, HTTPRefusals(self.metrics.registry, self.reactor.seconds),
                      settings.requestHeaderTimeout, settings.maxUnfinishedRequests,
                      settings.maxRequestBodyBytes)
        #: Where L{LiveHTTPChannel} takes a WebSocket upgrade straight to
        #: C{liveFactory}, past twisted.web's request (L{chatthing.live._upgrade}).
        self.livePath = b"/" + WEBSOCKET_PATH
        self.protocol = LiveHTTPChannel  # type: ignore[method-assign, assignment]

    def limitOther(self, site: Site, name: str, maxBodyBytes: int = 64 * 1024) -> Site:
        """
        Bound the requests of another site of this server (the operator's,
        the admin endpoint's) as this one's are, with a body cap of its
        own; its refusals are counted as C{NAME_http_refused} here.
        """
        refusals = HTTPRefusals(self.metrics.registry, self.reactor.seconds,
                                metric=f"{name}_http_refused", what=f"the {name} endpoint")
        settings = self.liveFactory.settings
        return limitRequests(site, refusals, settings.requestHeaderTimeout,
                             settings.maxUnfinishedRequests, maxBodyBytes)

    def serveMetrics(self) -> None:
        """
        Serve C{/metrics} on this site too (C{--metrics-public}).
        """
        self.resource.putChild(b"metrics", MetricsResource(self.metrics))

    def shutDown(self, spread: float = 0.0) -> Deferred:
        """
        Tell every page the server is going away and close its connection
        (1012), the closes spread over C{spread} seconds; fires once they
        have gone.
        """
        return self.liveFactory.shutDown(spread=spread)
