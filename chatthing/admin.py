"""
The operator's admin endpoint: C{POST /alert} sends a global alert.

It is off unless a secret token is configured (C{--admin-token-file}), and
listens where the operator says (C{--admin-listen}, loopback by default).
Requests carry the token as C{Authorization: Bearer TOKEN}.
"""

import hmac
import json
from pathlib import Path
from typing import Any, BinaryIO, Callable, cast

from twisted.logger import Logger
from twisted.python import usage
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

#: Longest alert, in characters.
MAX_ALERT_LENGTH = 2000


def readToken(path: str) -> str:
    """
    The token in the file at C{path}, trimmed.

    @raise usage.UsageError: if the file cannot be read or holds no token.
    """
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except OSError as e:
        raise usage.UsageError(f"--admin-token-file {path!r} cannot be read: {e.strerror}") from None
    if not token:
        raise usage.UsageError(f"--admin-token-file {path!r} is empty")
    return token


class AlertResource(Resource):
    """
    C{POST /alert} with a JSON body C{{"text": "..."}} calls the
    application's C{wall(text)} and answers C{{"delivered": N}}.
    """

    isLeaf = True
    log = Logger()

    def __init__(self, token: str, wall: Callable[[str], Any]) -> None:
        super().__init__()
        self._token = token.encode("utf-8")
        self.wall = wall

    def render_POST(self, request: Request) -> bytes:
        # getHeader(bytes) gives bytes: compare bytes throughout.
        given = request.getHeader(b"authorization") or b""
        scheme, _, token = given.partition(b" ")
        if scheme.lower() != b"bearer" or not token.strip():
            return self._answer(request, 401, {"error": "an Authorization: Bearer token is required"})
        if not hmac.compare_digest(token.strip(), self._token):
            self.log.warn("admin alert refused: wrong token from {peer}", peer=request.getClientAddress())
            return self._answer(request, 403, {"error": "wrong token"})
        # Twisted documents Request.content as a BinaryIO (set once the
        # body's length is known) but declares it `content = None`.
        body = cast(BinaryIO, request.content)
        try:
            text = json.loads(body.read())["text"]
        except (ValueError, TypeError, KeyError):
            return self._answer(request, 400, {"error": 'body must be JSON: {"text": "..."}'})
        if not isinstance(text, str) or not text.strip():
            return self._answer(request, 400, {"error": "text must be a non-empty string"})
        if len(text) > MAX_ALERT_LENGTH:
            return self._answer(request, 400, {"error": f"text is over {MAX_ALERT_LENGTH} characters"})
        delivered = self.wall(text.strip())
        self.log.info("admin alert sent to {n} pages: {text}", n=delivered, text=text)
        return self._answer(request, 200, {"delivered": delivered})

    def _answer(self, request: Request, code: int, body: dict) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps(body).encode("utf-8")


def adminSite(token: str, wall: Callable[[str], Any]) -> Site:
    root = Resource()
    root.putChild(b"alert", AlertResource(token, wall))
    return Site(root)
