/** The live runtime's public API. */

export { FrameType, PROTOCOL_VERSION, SocketState } from "./constants.js";
export { ConnectionLost, RemoteError } from "./errors.js";
export { LiveSocket } from "./socket.js";
export { Widget } from "./widget.js";
