/**
 * LiveSocket: the page's one WebSocket to its element, and the calls that
 * flow over it both ways.
 */

import { FrameType, PROTOCOL_VERSION, SocketState, WEBSOCKET_PATH } from "./constants.js";
import { ConnectionLost, RemoteError } from "./errors.js";

export class LiveSocket {
  /**
   * The WebSocket address for a page at `location`: same host and port,
   * `wss:` under `https:`, so it works behind proxies and TLS terminators.
   */
  static urlFor(location) {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}${WEBSOCKET_PATH}`;
  }

  constructor({ url = LiveSocket.urlFor(window.location), page = window.location.pathname } = {}) {
    this.url = url;
    this.page = page;
    this.state = SocketState.CONNECTING;
    this.welcome = null;
    this._ws = null;
    this._widget = null;
    this._nextCallId = 0;
    this._awaitingAnswer = new Map();
    this._callsBeforeWidget = [];
    this._stateListeners = [];
    this._errorListeners = [];
  }

  /** Call `listener(state)` on every change of connection state. */
  onStateChange(listener) {
    this._stateListeners.push(listener);
  }

  /** Call `listener(error)` for each error frame the server sends that answers no call. */
  onError(listener) {
    this._errorListeners.push(listener);
  }

  /**
   * Open the connection and say hello.
   * @returns {Promise<object>} the server's welcome frame.
   */
  connect() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url);
      this._ws = ws;
      ws.addEventListener("open", () => {
        this._send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, page: this.page });
      });
      ws.addEventListener("message", (event) => {
        const frame = JSON.parse(event.data);
        if (frame.type === FrameType.WELCOME) {
          this.welcome = frame;
          this._setState(SocketState.CONNECTED);
          resolve(frame);
        } else {
          this._receive(frame);
        }
      });
      ws.addEventListener("close", (event) => {
        this._ws = null;
        this._setState(SocketState.DISCONNECTED);
        this._failAll(new ConnectionLost(`the connection closed (code ${event.code})`));
        reject(new ConnectionLost(`the connection closed (code ${event.code})`));
      });
    });
  }

  /** Give server calls to `widget` from now on, starting with any that came before it. */
  attach(widget) {
    this._widget = widget;
    const early = this._callsBeforeWidget;
    this._callsBeforeWidget = [];
    early.forEach((frame) => this._runCall(frame));
  }

  /**
   * Call an exposed method of the element.
   * @returns {Promise} its return value, or a RemoteError / ConnectionLost.
   */
  callRemote(method, ...args) {
    if (this._ws === null || this.state !== SocketState.CONNECTED) {
      return Promise.reject(new ConnectionLost("not connected to the server"));
    }
    const id = this._nextCallId++;
    return new Promise((resolve, reject) => {
      this._awaitingAnswer.set(id, { resolve, reject });
      this._send({ type: FrameType.CALL, id, method, args });
    });
  }

  /** Close the connection on purpose. */
  close() {
    if (this._ws !== null) {
      this._ws.close(1000, "page closed");
    }
  }

  _receive(frame) {
    switch (frame.type) {
      case FrameType.CALL:
        if (this._widget === null) {
          this._callsBeforeWidget.push(frame);
        } else {
          this._runCall(frame);
        }
        break;
      case FrameType.RESULT:
        this._settle(frame.id, (call) => call.resolve(frame.value));
        break;
      case FrameType.ERROR: {
        const error = new RemoteError(frame.error.name, frame.error.message);
        if (!this._settle(frame.id, (call) => call.reject(error))) {
          this._errorListeners.forEach((listener) => listener(error));
        }
        break;
      }
      default:
        console.warn("live: ignoring unknown frame", frame);
    }
  }

  _settle(id, how) {
    const call = this._awaitingAnswer.get(id);
    if (call === undefined) {
      return false;
    }
    this._awaitingAnswer.delete(id);
    how(call);
    return true;
  }

  async _runCall(frame) {
    const widget = this._widget;
    const allowed = widget.constructor.remoteMethods || [];
    try {
      if (!allowed.includes(frame.method) || typeof widget[frame.method] !== "function") {
        throw new RemoteError("NoSuchMethod", `${widget.constructor.name} has no remote method ${frame.method}`);
      }
      const value = await widget[frame.method](...frame.args);
      this._send({ type: FrameType.RESULT, id: frame.id, value: value === undefined ? null : value });
    } catch (error) {
      const name = (error && error.name) || "Error";
      const message = (error && error.message) || String(error);
      this._send({ type: FrameType.ERROR, id: frame.id, error: { name, message } });
    }
  }

  _send(frame) {
    if (this._ws !== null && this._ws.readyState === WebSocket.OPEN) {
      this._ws.send(JSON.stringify(frame));
    }
  }

  _failAll(error) {
    const waiting = [...this._awaitingAnswer.values()];
    this._awaitingAnswer.clear();
    waiting.forEach((call) => call.reject(error));
  }

  _setState(state) {
    this.state = state;
    this._stateListeners.forEach((listener) => listener(state));
  }
}
