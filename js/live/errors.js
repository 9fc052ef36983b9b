/**
 * Errors the live runtime hands to application code.
 */

/**
 * The server refused or failed a call.  `name` is the Python exception's
 * class name (for example "UsernameTaken" or "NoSuchMethod"), `message` its
 * message.
 */
export class RemoteError extends Error {
  constructor(name, message) {
    super(message);
    this.remoteName = name;
    this.name = name;
  }
}

/** The connection went away before the server answered. */
export class ConnectionLost extends Error {
  constructor(message = "the connection to the server was lost") {
    super(message);
    this.name = "ConnectionLost";
  }
}
