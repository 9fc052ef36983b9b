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
  RESUMED: "resumed",
  EPOCH: "epoch",
  CALL: "call",
  RESULT: "result",
  ERROR: "error",
  EMIT: "emit",
  ACK: "ack",
  LEAVE: "leave",
});

export const SocketState = Object.freeze({
  /** Opening the first connection. */
  CONNECTING: "connecting",
  /** Talking to the element. */
  CONNECTED: "connected",
  /** The connection dropped; trying again, with back-off. */
  RECONNECTING: "reconnecting",
  /** Closed on purpose: the page is leaving. */
  DISCONNECTED: "disconnected",
});

/**
 * Close codes after which the page does not reconnect: the server cannot
 * show this page (the element's template or module is broken), and trying
 * again would only fail again.
 */
export const FINAL_CLOSE_CODES = Object.freeze([4010]);

/** Acknowledge the server's numbered frames after this many, or this many ms. */
export const ACK_EVERY = 16;
export const ACK_DELAY_MS = 250;

/**
 * Connections lost or refused in a row, on one URL, after which the page
 * tries the next of the cluster's public URLs (the welcome's `urls`).
 */
export const FAILOVER_AFTER = 2;
