"""
Writing a frame to a page's connection without a trip through the reactor.

Twisted's C{transport.write} appends to the transport's buffer and asks the
reactor to watch the socket for writability; the next reactor turn sends
the bytes and stops watching.  For a broadcast to many pages that is three
system calls and a buffer per page per frame.  When nothing is waiting in
the transport's buffer, the socket can usually take the frame at once: send
it now, and hand only what the kernel refused to C{transport.write}.
"""

from typing import Any

from ._backlog import bufferedBytes


def writeNow(transport: Any, data: bytes) -> int:
    """
    Write C{data} to C{transport}, sending it straight to its socket if
    nothing is buffered before it (so the order of bytes is kept), else
    through C{transport.write}.

    @return: how many bytes the transport holds now, unsent (0 when the
        socket took them all).
    """
    sock = getattr(transport, "socket", None)
    if sock is None or not transport.connected or transport.disconnecting or bufferedBytes(transport):
        transport.write(data)
        return bufferedBytes(transport)
    try:
        sent = sock.send(data)
    except BlockingIOError:
        sent = 0
    except OSError:
        # A broken connection: let the transport find out and close it.
        transport.write(data)
        return bufferedBytes(transport)
    if sent < len(data):
        transport.write(data[sent:])
        return len(data) - sent
    return 0
