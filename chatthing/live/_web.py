"""
The HTTP side of the runtime: one C{twisted.web} L{Site} serving the page,
its static files and its WebSocket on one port.
"""

from pathlib import Path
from typing import Any, Callable

from autobahn.twisted.resource import WebSocketResource
from jinja2 import Environment, FileSystemLoader, select_autoescape
from twisted.internet.defer import Deferred
from twisted.web.pages import forbidden, notFound
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from twisted.web.static import File

from .._assets import assetFolder
from ._element import LiveElement
from ._factory import LiveServerFactory
from ._health import HealthResource
from ._metrics import MetricsResource
from ._settings import LiveSettings

#: Sent with every response: no inline script or style, nothing from other
#: origins, no framing (clickjacking), no MIME sniffing.
SECURITY_HEADERS = {
    b"Content-Security-Policy": (
        b"default-src 'self'; script-src 'self'; style-src 'self'; "
        b"img-src 'self' data:; connect-src 'self'; object-src 'none'; "
        b"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    b"X-Content-Type-Options": b"nosniff",
    b"X-Frame-Options": b"DENY",
    b"Referrer-Policy": b"no-referrer",
}

#: The path of the WebSocket, relative to the site's root.
WEBSOCKET_PATH = b"live"


class SecureRequest(Request):
    """
    A request whose response carries L{SECURITY_HEADERS}, whatever resource
    answers it.
    """

    def process(self) -> None:
        for name, value in SECURITY_HEADERS.items():
            self.setHeader(name, value)
        super().process()


class LiveSocketResource(WebSocketResource):
    """
    C{/live}: hands the request's connection over to the WebSocket, then lets
    go of twisted.web's channel and request, which the connection would
    otherwise keep for its whole life (the channel stays registered as its
    producer): some 4 KiB of headers and buffers a page.
    """

    def render(self, request: Request) -> Any:
        channel = request.channel
        transport = channel.transport
        body = super().render(request)
        if channel.transport is None and getattr(transport, "producer", None) is channel:
            transport.unregisterProducer()
            channel.requests.clear()
        return body


class StaticFolder(File):
    """
    Files of one folder, served with no directory listings; C{File} already
    refuses paths that climb out of the folder.
    """

    contentTypes = {**File.contentTypes, ".js": "text/javascript; charset=utf-8",
                    ".css": "text/css; charset=utf-8"}

    def directoryListing(self) -> Resource:
        return forbidden(message="Directory listings are not served.")


class SiteRoot(Resource):
    """
    The site's root: its children, and an escaped "404 Not Found" for any
    other path (not twisted.web's deprecated, unescaped C{NoResource}).
    """

    #: The page shell, also served at the other paths it says are pages.
    livePage: "LivePage | None" = None

    def getChild(self, path: bytes, request: Request) -> Resource:
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
    C{/js/} and C{/css/} its static files.

    @ivar liveFactory: the L{LiveServerFactory}, which knows the connected
        sessions.
    @ivar metrics: the site's L{LiveMetrics}; C{/metrics} only if
        L{serveMetrics} is called.
    @ivar health: C{/healthz}, a L{HealthResource}: add checks to it.
    """

    requestFactory = SecureRequest

    def __init__(
        self,
        elementFactory: Callable[[], LiveElement],
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
        super().__init__(page)
        self.metrics, self.health = self.liveFactory.metrics, HealthResource()
        page.putChild(b"healthz", self.health)

    def serveMetrics(self) -> None:
        """
        Serve C{/metrics} on this site too (C{--metrics-public}).
        """
        self.resource.putChild(b"metrics", MetricsResource(self.metrics))

    def shutDown(self) -> Deferred:
        """
        Tell every page the server is going away; fires once they have gone.
        """
        return self.liveFactory.shutDown()
