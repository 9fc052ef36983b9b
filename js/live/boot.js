/**
 * Starts a live page: connects, shows the element's markup, and starts its
 * widget.  Loaded by the page shell (templates/page.html).
 */

import { SocketState } from "./constants.js";
import { LiveSocket } from "./socket.js";

const STATUS_TEXT = {
  [SocketState.CONNECTING]: "Connecting…",
  [SocketState.CONNECTED]: "Connected",
  [SocketState.DISCONNECTED]: "Disconnected from the server. Reload the page to reconnect.",
};

const status = document.querySelector("[data-live-status]");
const container = document.querySelector("[data-live-element]");
const socket = new LiveSocket();

// For debugging and browser tests: the page's connection.
globalThis.liveSocket = socket;

socket.onStateChange((state) => {
  status.dataset.liveStatus = state;
  status.textContent = STATUS_TEXT[state];
  document.documentElement.dataset.liveStatus = state;
});

socket.connect().then(async (welcome) => {
  const { html, module, widget } = welcome.element;
  // The server drew this markup from an autoescaped template: trusted.
  container.innerHTML = html ?? "";
  await stylesheetsLoaded(container);
  if (module) {
    const WidgetClass = (await import(module))[widget];
    socket.attach(new WidgetClass(container, socket));
  }
  document.documentElement.dataset.liveReady = "true";
}).catch((error) => {
  console.error("live: could not start", error);
});

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
