"""
A WebSocket attacker in a process of its own, for tests/test_ws_budget.py:
plain sockets, frames built by hand, loopback only, bounded in time.

    python wsflood.py PORT MODE SECONDS [RATE] [CONNECTIONS]

MODE:
  ack        log in (hello) and send acks, RATE a second (0: as fast as it can)
  ping       log in and send 125-byte pings, RATE a second (0: as fast as it can)
  pingnoread as ping, but never read anything after the handshake
  fragments  log in and send one text message in 16 KiB fragments, never its
             last one, on each of CONNECTIONS connections (RATE: its bytes)

It stops after SECONDS, or when every connection is closed, and prints one
JSON line: frames sent and close codes received, per connection.
"""

import base64
import json
import os
import socket
import struct
import sys
import threading
import time

HOST = "127.0.0.1"


def frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """
    One masked client frame.
    """
    mask = os.urandom(4)
    first = (0x80 if fin else 0) | opcode
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", first, 0x80 | length)
    elif length < 65536:
        header = struct.pack("!BBH", first, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, length)
    key = (mask * (length // 4 + 1))[:length]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(length, "big")
    return header + mask + masked


def connect(port: int, read: bool = True) -> socket.socket:
    """
    A handshaken WebSocket that has said hello.
    """
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if not read:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10)
    s.connect((HOST, port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /live HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(1)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        data += chunk
    if not data.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(data.decode("latin-1"))
    s.sendall(frame(1, json.dumps({"type": "hello", "version": 1, "render": False}).encode()))
    return s


class Reader(threading.Thread):
    """
    Reads everything the server sends, and notes its close code.
    """

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.closeCode: int | None = None
        self.ended = False
        self.received = 0

    def run(self) -> None:
        buffer = b""
        try:
            while True:
                try:
                    chunk = self.sock.recv(65536)
                except socket.timeout:
                    continue  # nothing yet: the server may still close
                if not chunk:
                    break
                self.received += len(chunk)
                frames, buffer = parseFrames(buffer + chunk)
                for opcode, payload in frames:
                    if opcode == 8 and len(payload) >= 2:
                        self.closeCode = struct.unpack("!H", payload[:2])[0]
        except OSError:
            pass
        self.ended = True


def parseFrames(buffer: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """
    The whole (unmasked) server frames at the start of C{buffer}, as
    (opcode, payload), and the bytes left over.
    """
    frames = []
    while len(buffer) >= 2:
        opcode, length, start = buffer[0] & 0x0F, buffer[1] & 0x7F, 2
        if length == 126:
            if len(buffer) < 4:
                break
            length, start = struct.unpack("!H", buffer[2:4])[0], 4
        elif length == 127:
            if len(buffer) < 10:
                break
            length, start = struct.unpack("!Q", buffer[2:10])[0], 10
        if len(buffer) < start + length:
            break
        frames.append((opcode, buffer[start:start + length]))
        buffer = buffer[start + length:]
    return frames, buffer


def flood(port: int, mode: str, seconds: float, rate: float) -> dict:
    read = mode != "pingnoread"
    sock = connect(port, read)
    sock.settimeout(0.5)
    reader = Reader(sock) if read else None
    if reader:
        reader.start()
    if mode == "ack":
        one = frame(1, b'{"type":"ack","seq":0}')
    else:
        one = frame(9, b"p" * 125)
    batch = 1 if rate else 50
    sent, started, error = 0, time.monotonic(), None
    due = started
    end = started + seconds
    while time.monotonic() < end and not (reader and reader.ended):
        try:
            sock.sendall(one * batch)
        except socket.timeout:
            continue  # the server is not reading: try again until the end
        except OSError as e:
            error = type(e).__name__
            break
        sent += batch
        if rate:
            # Never faster than RATE, even to catch up after a stall (a
            # loaded machine): a paced flooder must stay a paced one.
            due = max(due + 1 / rate, time.monotonic() - 1 / rate)
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
    if reader:
        reader.join(2)
    sock.close()
    return {"sent": sent, "closeCode": reader.closeCode if reader else None,
            "ended": bool(reader and reader.ended), "error": error,
            "seconds": round(time.monotonic() - started, 3)}


def fragments(port: int, seconds: float, total: int, connections: int) -> dict:
    socks, readers = [], []
    for _ in range(connections):
        sock = connect(port)
        sock.settimeout(2)
        reader = Reader(sock)
        reader.start()
        socks.append(sock)
        readers.append(reader)
    chunk = b"x" * (16 * 1024)
    sent = [0] * connections
    for i, sock in enumerate(socks):
        try:
            sock.sendall(frame(1, b'{"type":"call","id":1,"method":"say","args":["' + chunk, fin=False))
            sent[i] += len(chunk)
            while sent[i] + len(chunk) <= total:
                sock.sendall(frame(0, chunk, fin=False))
                sent[i] += len(chunk)
        except OSError:
            pass
    end = time.monotonic() + seconds
    while time.monotonic() < end and not all(r.ended for r in readers):
        time.sleep(0.05)
    for sock in socks:
        sock.close()
    return {"sent": sent, "closeCodes": [r.closeCode for r in readers]}


def main() -> None:
    port, mode, seconds = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    rate = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    connections = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    if mode == "fragments":
        result = fragments(port, seconds, int(rate), connections)
    else:
        result = flood(port, mode, seconds, rate)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
