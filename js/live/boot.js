/**
 * Starts a live page: connects, shows the element's markup, and starts its
 * widget; shows the connection's state, and starts over when the server
 * could not resume the page's session (a widget with `carryOver()` hands
 * what it shows to the new one's `takeOver(carried, how)`, which says what
 * happened).  Loaded by templates/page.html.
 */

import { SocketState } from "./constants.js";
import { LiveSocket } from "./socket.js";

const STATUS_TEXT = {
  [SocketState.CONNECTING]: "Connecting…",
  [SocketState.CONNECTED]: "Connected",
  [SocketState.RECONNECTING]: "Connection lost. Reconnecting…",
  [SocketState.DISCONNECTED]: "Disconnected.",
};

const status = document.querySelector("[data-live-status]");
const notice = document.querySelector("[data-live-notice]");
const container = document.querySelector("[data-live-element]");
const socket = new LiveSocket();

// For debugging and browser tests: the page's connection.
globalThis.liveSocket = socket;

socket.onStateChange((state) => {
  status.dataset.liveStatus = state;
  status.textContent = STATUS_TEXT[state];
  document.documentElement.dataset.liveStatus = state;
});

// The page's widget now, so that a new session's widget can take over
// what it shows (its transcript, who was logged in).
let current = null;

socket.onWelcome(async (welcome) => {
  // What the old widget hands over (null if it cannot): the new one takes
  // it up, and says itself what happened.
  const carried = welcome.expired !== undefined ? current?.carryOver?.() ?? null : null;
  current = null;
  if (welcome.expired !== undefined && carried === null) {
    notice.textContent = "You were disconnected for too long, so this is a new session. "
      + "Messages sent while you were away are not shown.";
    notice.hidden = false;
  }
  const { html, module, widget } = welcome.element;
  // The server drew this markup from an autoescaped template: trusted.
  container.innerHTML = html ?? "";
  await stylesheetsLoaded(container);
  if (module) {
    let WidgetClass;
    try {
      WidgetClass = (await import(module))[widget];
      if (typeof WidgetClass !== "function") {
        throw new Error(`${module} exports no class ${widget}`);
      }
    } catch (error) {
      // Retrying cannot help either: leave, so the server ends the session now.
      socket.leave();
      showBroken(`the widget could not be loaded: ${error.message}`);
      return;
    }
    current = new WidgetClass(container, socket);
    if (carried !== null) {
      current.takeOver?.(carried, { restarted: socket.lastCloseCode === 1012, expired: welcome.expired });
    }
    socket.attach(current);
  }
  document.documentElement.dataset.liveReady = "true";
});

// The server cannot show this page (its template or widget is broken):
// say so, once; the socket does not retry.
socket.onFinalClose((reason) => showBroken(reason));

/** Show why the page cannot work, in the notice, and mark the page broken. */
function showBroken(reason) {
  notice.textContent = `This page cannot be shown: ${reason}`;
  notice.hidden = false;
  document.documentElement.dataset.liveBroken = "true";
}

// Leaving the page is leaving the session: the server says goodbye at once
// instead of waiting for the grace period of a dropped connection.
window.addEventListener("pagehide", () => socket.leave());
window.addEventListener("pageshow", (event) => {
  if (event.persisted) {
    window.location.reload(); // back from the page cache: the session has ended
  }
});
window.addEventListener("online", () => socket.retryNow());

socket.connect();

/**
 * Wait until the stylesheets linked from `node` have loaded (or failed), so
 * the widget starts on its final layout: no flash of unstyled content, and
 * scroll positions measured against the real sizes.
 */
function stylesheetsLoaded(node) {
  const pending = [...node.querySelectorAll('link[rel="stylesheet"]')]
    .filter((link) => link.sheet === null)
    .map((link) => new Promise((resolve) => {
      link.addEventListener("load", resolve, { once: true });
      link.addEventListener("error", resolve, { once: true });
    }));
  return Promise.all(pending);
}
