"""
How much a connection's transport holds that its peer has not taken: what
tells a page that does not read from one that is merely busy.
"""

from typing import Any


def bufferedBytes(transport: Any) -> int:
    """
    Bytes written to C{transport} and not yet taken by the kernel.

    Twisted's TCP transports keep them in C{dataBuffer} (sent up to
    C{offset}: what the kernel refused at the last write attempt) and
    C{_tempDataBuffer} (written since); a transport without them (a test
    double) counts as empty.
    """
    return refusedBytes(transport) + getattr(transport, "_tempDataLen", 0)


def refusedBytes(transport: Any) -> int:
    """
    Bytes the kernel would not take at C{transport}'s last write attempt:
    more than zero only when the peer's receive window and our socket buffer
    are full, i.e. when the peer is not keeping up.
    """
    return len(getattr(transport, "dataBuffer", b"")) - getattr(transport, "offset", 0)
