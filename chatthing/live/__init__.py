"""
The live runtime: server-side elements paired with browser widgets over one
WebSocket per page.  It knows nothing about chat.

An application subclasses L{LiveElement}, marks what the browser may call
with L{expose}, and calls the browser with L{LiveElement.callRemote}.
L{LiveSite} serves it; C{docs/protocol.md} specifies the wire protocol.
What an application offers besides its elements (its pages, alerts,
backplane, metrics, room limits) is declared by L{ILiveApplication}; a
plain element factory is adapted to one (L{CallableApplication}).
"""

from ._app import CallableApplication, ILiveApplication, LiveApplication
from ._appcheck import AppCheckFailed, checkElementModule
from ._assets import assetFolder
from ._boundedlog import BoundedLog
from ._apps import ElementUnavailable
from ._element import LiveElement
from ._errors import (
    BadArguments,
    CallRefused,
    ElementDetached,
    LiveError,
    NoSuchMethod,
    ProtocolError,
    RateLimited,
    RemoteError,
    SessionMoved,
    TooManyPendingCalls,
)
from ._expose import expose
from ._health import operatorSite
from ._hosts import ANY_HOST, HostCheck, hostName, listenHosts
from ._logsafe import LogThrottle, cut
from ._metrics import MetricsResource
from ._reactor import defaultReactor
from ._session import LiveSession
from ._sessionstore import LocalSessions, SessionRecord, SessionStore, StoredSession
from ._settings import LiveSettings
from ._statefile import MAX_STATE_BYTES, IAppState, StateFile, StateKeeper
from ._stream import PassingStream, Stream, runningCall
from ._web import LiveSite
from ._wire import MAX_FRAME_BYTES, PROTOCOL_VERSION, encodeArgs

__all__ = [
    "ANY_HOST",
    "HostCheck",
    "MetricsResource",
    "hostName",
    "listenHosts",
    "operatorSite",
    "BadArguments",
    "CallRefused",
    "CallableApplication",
    "ElementDetached",
    "ILiveApplication",
    "LiveApplication",
    "LiveElement",
    "LiveError",
    "LiveSettings",
    "LiveSite",
    "MAX_FRAME_BYTES",
    "NoSuchMethod",
    "PassingStream",
    "PROTOCOL_VERSION",
    "ProtocolError",
    "RateLimited",
    "RemoteError",
    "SessionMoved",
    "Stream",
    "TooManyPendingCalls",
    "expose",
    "defaultReactor",
    "encodeArgs",
    "AppCheckFailed",
    "ElementUnavailable",
    "checkElementModule",
    "assetFolder",
    # What a backplane builds on (chatthing.backplane):
    "LiveSession",
    "LocalSessions",
    "LogThrottle",
    "SessionRecord",
    "SessionStore",
    "StoredSession",
    "cut",
    "runningCall",
    # Carrying a process's state across a restart (--state-file):
    "IAppState",
    "MAX_STATE_BYTES",
    "StateFile",
    "StateKeeper",
    # What an application keeps for newcomers, bounded like a stream's frames:
    "BoundedLog",
]
