// chatthing bench's Node peer: the least a broadcast server on Node's `ws`
// does for the bench's load, speaking the same wire subset, with the same
// bytes, as chatthing/bench/baseline.py:
//
// - a `hello` is answered with a `welcome` (a session string, no element);
// - a `call` is answered with a numbered `result`: `setUsername` returns
//   the name; `say` first sends every page one `emit` of the stream `room`
//   (`displayUserMessage`, numbered by an offset), encoded once, then
//   answers `null`;
// - `ack` frames, and anything else, are ignored.
//
//     node server.mjs --host 127.0.0.1 --port 0
//
// prints "node-ws listening on http://HOST:PORT/" once it listens, the
// line the bench waits for, and serves until SIGTERM.
import { randomBytes } from "node:crypto";
import { WebSocketServer } from "ws";

function option(name, fallback) {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 && at + 1 < process.argv.length ? process.argv[at + 1] : fallback;
}

const pages = new Set();
let offset = 0;

const server = new WebSocketServer({
  host: option("host", "127.0.0.1"),
  port: Number(option("port", "8080")),
  path: "/live",
  perMessageDeflate: false,
  clientTracking: false,
  backlog: 1024,
});

function broadcast(username, text) {
  offset += 1;
  const frame = Buffer.from(JSON.stringify({
    type: "emit", stream: "room", offset,
    method: "displayUserMessage", args: [username, text],
  }));
  for (const page of pages) {
    page.send(frame, { binary: false });
  }
}

server.on("connection", (socket) => {
  socket._socket.setNoDelay(true);
  let welcomed = false;
  let username = null;
  let sentSeq = 0;
  socket.on("message", (data) => {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if (frame === null || typeof frame !== "object") return;
    if (frame.type === "hello" && !welcomed) {
      welcomed = true;
      socket.send(JSON.stringify({
        type: "welcome", version: 1, session: randomBytes(16).toString("base64url"),
        element: { html: null, module: null, widget: null },
        limits: { maxFrameBytes: 65536 },
      }));
      pages.add(socket);
    } else if (frame.type === "call" && welcomed) {
      const args = Array.isArray(frame.args) ? frame.args : [];
      let value = null;
      if (frame.method === "setUsername" && args.length) {
        username = value = String(args[0]);
      } else if (frame.method === "say" && args.length) {
        broadcast(username, args[0]);
      }
      sentSeq += 1;
      socket.send(JSON.stringify({ type: "result", id: frame.id ?? null, value, seq: sentSeq }));
    }
  });
  socket.on("close", () => pages.delete(socket));
  socket.on("error", () => pages.delete(socket));
});

server.on("listening", () => {
  const address = server.address();
  console.log(`node-ws listening on http://${address.address}:${address.port}/`);
});

process.on("SIGTERM", () => process.exit(0));
