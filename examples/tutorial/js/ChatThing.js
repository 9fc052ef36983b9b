/**
 * The Athena tutorial's ChatThing.ChatterWidget on the live runtime: the
 * browser half of chatterbox.ChatterElement.  Served from this app's own
 * js/ folder at /apps/chatterbox/js/ChatThing.js; the runtime it builds on
 * is at /js/live/index.js.
 */

import { Widget } from "/js/live/index.js";

export class ChatterWidget extends Widget {
  /** The server may call only these. */
  static remoteMethods = ["displayMessage", "displayUserMessage"];

  constructor(node, socket) {
    super(node, socket);
    this.scrollArea = this.nodeByAttribute("name", "scrollArea");
    this.message = this.nodeByAttribute("name", "message");
    this.nodeByAttribute("name", "loginDialog").addEventListener("submit", (event) => {
      event.preventDefault();
      this.doSetUsername();
    });
    this.nodeByAttribute("name", "chatForm").addEventListener("submit", (event) => {
      event.preventDefault();
      this.doSay();
    });
  }

  doSetUsername() {
    const userNameField = this.nodeByAttribute("name", "username");
    this.callRemote("setUsername", userNameField.value);
    userNameField.value = "";
    this.nodeByAttribute("name", "loginDialog").style.display = "none";
    this.nodeByAttribute("name", "chatBox").style.display = "block";
    this.message.focus();
  }

  doSay() {
    this.callRemote("say", this.message.value);
    this.message.value = "";
  }

  /** Called by the server: a line for everyone (as text, never HTML). */
  displayMessage(message) {
    const newNode = document.createElement("div");
    newNode.appendChild(document.createTextNode(message));
    this.scrollArea.appendChild(newNode);
    this.scrollArea.scrollTop = this.scrollArea.scrollHeight;
  }

  /** Called by the server: what `avatarName` said. */
  displayUserMessage(avatarName, text) {
    const msg = `${avatarName}: ${text}`;
    this.displayMessage(msg);
  }
}
