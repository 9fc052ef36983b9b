"""
The floor under any Python broadcast server on this machine: what one
C{send()} of a small frame to each of many loopback connections costs,
with no server around it.

    python -m chatthing.bench.sendfloor [--connections 1000] [--rounds 200]

A process pinned to CPU 0 sends a 100-byte frame to each of N sockets, one
round every 20 ms (the latency scenario's 50 messages a second), while a
process pinned to CPU 1 reads them all.  On loopback the kernel does the
receiving side's work inside the sender's C{send()}, so this is most of
what a delivery costs a server that cannot write several frames at once.
"""

import os
import select
import socket
import sys
import time

from twisted.python import usage

from ..commandline import parseCommandLine

FRAME = b"x" * 100


class FloorOptions(usage.Options):
    optParameters = [
        ["connections", None, 1000, "Loopback connections to send to.", int],
        ["rounds", None, 200, "Rounds of one frame to every connection.", int],
    ]


def _pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and cpu < (os.cpu_count() or 1):
        os.sched_setaffinity(0, {cpu})


def _readAll(port: int, count: int) -> None:
    """
    The reader: open C{count} connections, read until killed.
    """
    _pin(1)
    connections = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
    poller = select.epoll()
    for connection in connections:
        connection.setblocking(False)
        poller.register(connection.fileno(), select.EPOLLIN)
    while True:
        for fd, _ in poller.poll(1):
            try:
                os.read(fd, 65536)
            except BlockingIOError:
                pass


def measure(count: int, rounds: int) -> dict:
    """
    Microseconds of CPU time (the sender's, kernel included) per C{send()},
    the median round's, with Nagle's algorithm off as chatthing runs.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(count)
    reader = os.fork()
    if reader == 0:
        try:
            _readAll(listener.getsockname()[1], count)
        finally:
            os._exit(0)
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    sockets: list[socket.socket] = []
    try:
        _pin(0)
        sockets += [listener.accept()[0] for _ in range(count)]
        for sock in sockets:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        costs = []
        for _ in range(rounds):
            started = time.process_time()
            for sock in sockets:
                sock.send(FRAME)
            costs.append(time.process_time() - started)
            time.sleep(0.02)
        costs.sort()
        return {"connections": count, "rounds": rounds,
                "cpuMicrosPerSend": costs[len(costs) // 2] * 1e6 / count}
    finally:
        if cpus is not None:
            os.sched_setaffinity(0, cpus)
        os.kill(reader, 9)
        os.waitpid(reader, 0)
        for sock in [*sockets, listener]:
            sock.close()


def main(argv: list[str] | None = None) -> None:
    options = FloorOptions()
    if not parseCommandLine(options, argv, "chatthing.bench.sendfloor"):
        sys.exit(2)
    floor = measure(options["connections"], options["rounds"])
    print(f"send() floor: {floor['cpuMicrosPerSend']:.1f} us of CPU per 100-byte frame "
          f"({floor['connections']:,} loopback connections, median of {floor['rounds']} rounds)")


if __name__ == "__main__":
    main()
