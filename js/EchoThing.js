/**
 * The echo widget: the browser half of chatthing.examples.echobox.EchoElement,
 * after the Nevow Athena tutorial's EchoThing.EchoWidget.
 */

import { Widget } from "./live/index.js";

export class EchoWidget extends Widget {
  /** The server may call only these. */
  static remoteMethods = ["addText"];

  constructor(node, socket) {
    super(node, socket);
    this.scrollArea = this.nodeByAttribute("name", "scrollArea");
    this.message = this.nodeByAttribute("name", "message");
    this.nodeByAttribute("name", "echoBox").addEventListener("submit", (event) => {
      event.preventDefault();
      this.doSay();
    });
    this.message.focus();
  }

  /** Send what is typed to the element's exposed `say`. */
  doSay() {
    const text = this.message.value;
    this.message.value = "";
    this.callRemote("say", text).catch((error) => {
      this.addText(`Not sent: ${error.message}`);
    });
  }

  /** Called by the server: show `text` as a new line (as text, never HTML). */
  addText(text) {
    const line = document.createElement("div");
    line.className = "echo-line";
    line.textContent = text;
    this.scrollArea.appendChild(line);
    this.scrollArea.scrollTop = this.scrollArea.scrollHeight;
  }
}
