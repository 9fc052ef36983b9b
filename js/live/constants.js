/**
 * Names shared by the live runtime's modules: the protocol version, frame
 * types and connection states.  See docs/protocol.md.
 */

export const PROTOCOL_VERSION = 1;

/** Path of the WebSocket, on the page's own host and port. */
export const WEBSOCKET_PATH = "/live";

export const FrameType = Object.freeze({
  HELLO: "hello",
  WELCOME: "welcome",
  CALL: "call",
  RESULT: "result",
  ERROR: "error",
});

export const SocketState = Object.freeze({
  CONNECTING: "connecting",
  CONNECTED: "connected",
  DISCONNECTED: "disconnected",
});
