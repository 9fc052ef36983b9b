"""
C{GET /healthz}: whether this server is fit to be sent pages, for load
balancers and orchestrators.
"""

from typing import Callable

from twisted.logger import Logger
from twisted.web.pages import notFound
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request, Site

#: A health check: L{None} when all is well, else a short reason why not
#: (C{"shutting down"}, C{"backplane unreachable"}).
HealthCheck = Callable[[], str | None]


class HealthResource(Resource):
    """
    Asks each of its C{checks} in turn: if none has a problem, C{200} and
    C{ok}; else C{degraded: REASON}, one line per problem (a check that
    raises is a problem too), with C{503} if a critical check has one (the
    server should not be sent pages: shutting down) and C{200} if not (it
    serves, with less: the backplane is down).  Plain text, never cached.

    With C{detailed} false (L{public}: what the chat's own port serves) the
    reasons are left out, only C{degraded}: they may name the Redis server
    and what is wrong with it, which is the operator's business; the
    operator's site (C{--metrics-listen}) has the details.

    @ivar checks: the L{HealthCheck}s and whether each is critical; add to
        it with L{addCheck}.
    @ivar detailed: whether the answer says what the problems are.
    """

    isLeaf = True
    log = Logger()

    def __init__(self, detailed: bool = True) -> None:
        super().__init__()
        self.checks: list[tuple[HealthCheck, bool]] = []
        self.detailed = detailed

    def public(self) -> "HealthResource":
        """
        The same checks (checks added to either are asked by both), answered
        without details.
        """
        view = HealthResource(detailed=False)
        view.checks = self.checks
        return view

    def addCheck(self, check: HealthCheck, critical: bool = True) -> None:
        self.checks.append((check, critical))

    def problems(self, critical: bool = False) -> list[str]:
        """
        What is wrong now (only with the critical checks, if C{critical}).
        """
        found = []
        for check, isCritical in self.checks:
            if critical and not isCritical:
                continue
            try:
                problem = check()
            except Exception:
                self.log.failure("health check {check!r} raised", check=check)
                problem = f"health check {getattr(check, '__name__', 'check')} failed"
            if problem:
                found.append(str(problem))
        return found

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        problems = self.problems()
        if not problems:
            return b"ok"
        if self.problems(critical=True):
            request.setResponseCode(503)
        if not self.detailed:
            return b"degraded"
        return "\n".join(f"degraded: {p}" for p in problems).encode("utf-8")


class _OperatorRoot(Resource):
    def getChild(self, path: bytes, request: Request) -> IResource:
        return notFound()


def operatorSite(health: HealthResource, metrics: Resource) -> Site:
    """
    The site of C{--metrics-listen}: C{/healthz} and C{/metrics}, and a 404
    for anything else.
    """
    root = _OperatorRoot()
    root.putChild(b"healthz", health)
    root.putChild(b"metrics", metrics)
    return Site(root)
