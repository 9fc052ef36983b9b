/**
 * LiveSocket: the page's connection to its element, kept alive across
 * network drops, and the calls that flow over it both ways.
 */

import { Backoff } from "./backoff.js";
import {
  ACK_DELAY_MS, ACK_EVERY, FAILOVER_AFTER, FINAL_CLOSE_CODES, FrameType, PROTOCOL_VERSION, SocketState, WEBSOCKET_PATH,
} from "./constants.js";
import { ConnectionLost, RemoteError } from "./errors.js";

/**
 * One page's session with its server-side element.
 *
 * Frames the page sends are numbered and kept until the server acknowledges
 * them; frames the server sends are numbered (or carry their stream's
 * offset) and run once.  When the WebSocket drops, the socket reconnects by
 * itself, with back-off, and resumes the session: each side gets what it
 * missed, exactly once, in order.  If the server no longer has the session,
 * a new one starts, calls still waiting fail with ConnectionLost, and
 * `onWelcome` listeners are told, so the page can start over.
 */
export class LiveSocket {
  /**
   * The WebSocket address for a page at `location`: same host and port,
   * `wss:` under `https:`, so it works behind proxies and TLS terminators.
   */
  static urlFor(location) {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}${WEBSOCKET_PATH}`;
  }

  constructor({
    url = LiveSocket.urlFor(window.location),
    page = window.location.pathname,
    backoff = new Backoff(),
  } = {}) {
    this.url = url;
    this.page = page;
    this.backoff = backoff;
    this.state = SocketState.CONNECTING;
    this.session = null;
    this._ws = null;
    this._widget = null;
    this._leaving = false;
    this._retryTimer = null;
    this._nextCallId = 0;
    this._awaitingAnswer = new Map();
    this._callsBeforeWidget = [];
    this._sentSeq = 0;
    this._outbox = [];
    this._receivedSeq = 0;
    this._unacknowledged = 0;
    this._ackTimer = null;
    this._offsets = new Map();
    this._stateListeners = [];
    this._welcomeListeners = [];
    this._errorListeners = [];
    this._finalListeners = [];
    /** The close code of the last connection that was up (1012: the server restarted). */
    this.lastCloseCode = null;
    /** Where to connect: this URL, then the cluster's others from the welcome. */
    this.urls = [url];
    this._failures = 0;
    /** The last `epoch` the server named (with a shared store), or null. */
    this.epoch = null;
    this._storeLost = false;
  }

  /**
   * Call `listener(reason)` if the server ends the page for good (a close
   * code in FINAL_CLOSE_CODES): the socket is then disconnected and does
   * not retry.  `reason` is the last error frame's message, or the close
   * frame's reason.
   */
  onFinalClose(listener) {
    this._finalListeners.push(listener);
  }

  /** Call `listener(state)` on every change of connection state. */
  onStateChange(listener) {
    this._stateListeners.push(listener);
  }

  /**
   * Call `listener(welcome)` when a session starts: the first, and any that
   * replaces one the server could not resume (then `welcome.expired` says why).
   */
  onWelcome(listener) {
    this._welcomeListeners.push(listener);
  }

  /** Call `listener(error)` for each error frame that answers no call. */
  onError(listener) {
    this._errorListeners.push(listener);
  }

  /** Open the connection (and keep it open until `leave()`). */
  connect() {
    this._leaving = false;
    this._open();
  }

  /** Give server calls to `widget` from now on, starting with any that came before it. */
  attach(widget) {
    this._widget = widget;
    const early = this._callsBeforeWidget;
    this._callsBeforeWidget = [];
    early.forEach((frame) => this._runCall(frame));
    this._tellStoreLost();
  }

  /**
   * Call an exposed method of the element.  While the connection is down
   * the call waits, and is sent when the session resumes.
   * @returns {Promise} its return value, or a RemoteError / ConnectionLost.
   */
  callRemote(method, ...args) {
    if (this._leaving) {
      return Promise.reject(new ConnectionLost("the page has left"));
    }
    const id = this._nextCallId++;
    return new Promise((resolve, reject) => {
      const call = { resolve, reject, sent: null };
      this._awaitingAnswer.set(id, call);
      call.sent = this._sendNumbered({ type: FrameType.CALL, id, method, args });
    });
  }

  /** Leave on purpose: the server ends the session at once. */
  leave() {
    this._leaving = true;
    clearTimeout(this._retryTimer);
    if (this._ws !== null && this._ws.readyState === WebSocket.OPEN) {
      this._ws.send(JSON.stringify({ type: FrameType.LEAVE }));
      this._ws.close(1000, "page closed");
    }
    this._setState(SocketState.DISCONNECTED);
  }

  /** If waiting to reconnect, try now (say, when the browser is back online). */
  retryNow() {
    if (this.state === SocketState.RECONNECTING && this._ws === null) {
      clearTimeout(this._retryTimer);
      this._open();
    }
  }

  // The connection

  _open() {
    const ws = new WebSocket(this.url);
    this._ws = ws;
    ws.addEventListener("open", () => {
      const hello = { type: FrameType.HELLO, version: PROTOCOL_VERSION, page: this.page };
      if (this.session !== null) {
        hello.resume = {
          session: this.session,
          seq: this._receivedSeq,
          streams: Object.fromEntries(this._offsets),
        };
      }
      ws.send(JSON.stringify(hello));
    });
    ws.addEventListener("message", (event) => {
      if (this._ws === ws) {
        this._receive(JSON.parse(event.data));
      }
    });
    ws.addEventListener("close", (event) => {
      if (this._ws !== ws) {
        return;
      }
      this._ws = null;
      if (this.state === SocketState.CONNECTED) {
        this.lastCloseCode = event.code;
      }
      clearTimeout(this._ackTimer);
      this._ackTimer = null;
      this._failedOnce();
      if (FINAL_CLOSE_CODES.includes(event.code)) {
        this._leaving = true;
        this._setState(SocketState.DISCONNECTED);
        const reason = this._lastError?.message ?? event.reason;
        this._finalListeners.forEach((listener) => listener(reason));
        return;
      }
      if (this._leaving) {
        this._setState(SocketState.DISCONNECTED);
        return;
      }
      this._setState(SocketState.RECONNECTING);
      this._retryTimer = setTimeout(() => this._open(), this.backoff.next());
    });
  }

  _receive(frame) {
    switch (frame.type) {
      case FrameType.WELCOME:
        this._welcomed(frame);
        break;
      case FrameType.RESUMED:
        this._acknowledged(frame.seq);
        // What waited goes first, in order: the server runs each number once.
        this._resend(frame.rerun === true);
        this._connected();
        this._noteEpoch(frame.epoch);
        if (frame.restarted === true) {
          // The server restarted and resumed this session from its state file.
          this._widget?.serverRestarted?.();
        }
        break;
      case FrameType.ACK:
        this._acknowledged(frame.seq);
        break;
      case FrameType.EPOCH:
        this._noteEpoch(frame.epoch); // the store's changed while this page is here
        break;
      case FrameType.EMIT:
        if (frame.seq !== undefined) {
          // For this page only, numbered like a call; never answered.
          if (this._isNewNumbered(frame)) {
            this._deliver(frame);
          }
        } else if (frame.offset === undefined) {
          this._deliver(frame); // a passing event, never replayed
        } else if (frame.offset > (this._offsets.get(frame.stream) ?? 0)) {
          this._offsets.set(frame.stream, frame.offset);
          this._deliver(frame);
        }
        break;
      case FrameType.CALL:
      case FrameType.RESULT:
      case FrameType.ERROR:
        if (frame.seq === undefined || this._isNewNumbered(frame)) {
          this._direct(frame);
        }
        break;
      default:
        console.warn("live: ignoring unknown frame", frame);
    }
  }

  /** Whether a numbered frame is new (not sent again after a reconnection); acknowledged soon if so. */
  _isNewNumbered(frame) {
    if (frame.seq <= this._receivedSeq) {
      return false;
    }
    this._receivedSeq = frame.seq;
    this._acknowledgeSoon();
    return true;
  }

  _welcomed(frame) {
    if (this.session !== null) {
      // The server could not resume our session: what waited for it is lost.
      const lost = new ConnectionLost(`the session ended: ${frame.expired ?? "expired"}`);
      const waiting = [...this._awaitingAnswer.values()];
      this._awaitingAnswer.clear();
      this._outbox = [];
      this._widget = null;
      this._callsBeforeWidget = [];
      waiting.forEach((call) => call.reject(lost));
    }
    this.session = frame.session;
    if (Array.isArray(frame.urls)) {
      this._useUrls(frame.urls);
    }
    this._receivedSeq = 0;
    this._offsets.clear();
    // Calls made before the first welcome go to this session, first.
    this._outbox.forEach((entry) => this._ws.send(entry.text));
    this._connected();
    this._noteEpoch(frame.epoch);
    this._welcomeListeners.forEach((listener) => listener(frame));
  }

  /**
   * The store's `epoch` in a welcome, resumed or epoch frame: if it changed, the store
   * lost what it kept (history read from it now holds only what came
   * after), so the widget's `storeLost()` is called, once per change; a
   * widget that comes later (a new session's) is told when attached.
   */
  _noteEpoch(epoch) {
    if (typeof epoch !== "string") {
      return;
    }
    const changed = this.epoch !== null && epoch !== this.epoch;
    this.epoch = epoch;
    if (changed) {
      this._storeLost = true;
      this._tellStoreLost();
    }
  }

  _tellStoreLost() {
    if (this._storeLost && this._widget !== null) {
      this._storeLost = false;
      this._widget.storeLost?.();
    }
  }

  /**
   * The cluster's public URLs (the welcome's `urls`): this socket's own
   * first, then the others in the order given after it, so that each page
   * fails over to the next process, not all to the same one.
   */
  _useUrls(urls) {
    const others = urls.filter((url) => typeof url === "string" && url !== this.url);
    const mine = urls.indexOf(this.url);
    const after = mine < 0 ? others : [...urls.slice(mine + 1), ...urls.slice(0, mine)];
    this.urls = [this.url, ...after.filter((url) => others.includes(url))];
  }

  /**
   * One more connection lost, or not made, since the last that worked:
   * after FAILOVER_AFTER in a row, try the next of the cluster's URLs.
   */
  _failedOnce() {
    this._failures += 1;
    if (this._failures >= FAILOVER_AFTER && this.urls.length > 1) {
      this._failures = 0;
      const index = this.urls.indexOf(this.url);
      this.url = this.urls[(index + 1) % this.urls.length];
    }
  }

  _connected() {
    this._failures = 0;
    this.backoff.reset();
    this._setState(SocketState.CONNECTED);
  }

  _direct(frame) {
    switch (frame.type) {
      case FrameType.CALL:
        this._deliver(frame);
        break;
      case FrameType.RESULT:
        this._settle(frame.id, (call) => call.resolve(frame.value));
        break;
      default: {
        const error = new RemoteError(frame.error.name, frame.error.message);
        this._lastError = error;
        if (!this._settle(frame.id, (call) => call.reject(error))) {
          this._errorListeners.forEach((listener) => listener(error));
        }
      }
    }
  }

  _deliver(frame) {
    if (this._widget === null) {
      this._callsBeforeWidget.push(frame);
    } else {
      this._runCall(frame);
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

  /** Run a server call on the widget; answer it unless it came from a stream. */
  async _runCall(frame) {
    const widget = this._widget;
    const answered = frame.type === FrameType.CALL;
    const allowed = widget.constructor.remoteMethods || [];
    try {
      if (!allowed.includes(frame.method) || typeof widget[frame.method] !== "function") {
        throw new RemoteError("NoSuchMethod", `${widget.constructor.name} has no remote method ${frame.method}`);
      }
      const value = await widget[frame.method](...frame.args);
      if (answered) {
        this._sendNumbered({ type: FrameType.RESULT, id: frame.id, value: value === undefined ? null : value });
      }
    } catch (error) {
      const name = (error && error.name) || "Error";
      const message = (error && error.message) || String(error);
      if (answered) {
        this._sendNumbered({ type: FrameType.ERROR, id: frame.id, error: { name, message } });
      } else {
        console.error(`live: ${frame.method} from stream ${frame.stream} failed`, error);
      }
    }
  }

  // Numbering and acknowledgement

  _sendNumbered(frame) {
    this._sentSeq += 1;
    const entry = { seq: this._sentSeq, text: JSON.stringify({ ...frame, seq: this._sentSeq }) };
    this._outbox.push(entry);
    if (this.state === SocketState.CONNECTED && this._ws !== null) {
      this._ws.send(entry.text);
    }
    return entry;
  }

  /**
   * After a resume, send again what the server has not acknowledged; after
   * one that moved the session to another server (`rerun`), also every call
   * still waiting for its answer, which died with the first server.
   */
  _resend(rerun) {
    const entries = new Map(this._outbox.map((entry) => [entry.seq, entry]));
    if (rerun) {
      this._awaitingAnswer.forEach((call) => entries.set(call.sent.seq, call.sent));
    }
    [...entries.values()].sort((a, b) => a.seq - b.seq).forEach((entry) => this._ws.send(entry.text));
  }

  _acknowledged(seq) {
    this._outbox = this._outbox.filter((entry) => entry.seq > seq);
  }

  _acknowledgeSoon() {
    this._unacknowledged += 1;
    if (this._unacknowledged >= ACK_EVERY) {
      this._acknowledge();
    } else if (this._ackTimer === null) {
      this._ackTimer = setTimeout(() => this._acknowledge(), ACK_DELAY_MS);
    }
  }

  _acknowledge() {
    clearTimeout(this._ackTimer);
    this._ackTimer = null;
    this._unacknowledged = 0;
    if (this._ws !== null && this._ws.readyState === WebSocket.OPEN) {
      this._ws.send(JSON.stringify({ type: FrameType.ACK, seq: this._receivedSeq }));
    }
  }

  _setState(state) {
    if (this.state === state) {
      return;
    }
    this.state = state;
    this._stateListeners.forEach((listener) => listener(state));
    this._widget?.connectionChanged?.(state);
  }
}
