/**
 * The chat widget: the browser half of chatthing.chatterbox.ChatterElement.
 * Method names are the Nevow Athena tutorial's.
 */

import { Widget } from "./live/index.js";

export class ChatterWidget extends Widget {
  static remoteMethods = ["displayMessage", "displayUserMessage"];

  constructor(node, socket) {
    super(node, socket);
    this.chooseBox = this.nodeByAttribute("name", "chooseBox");
    this.scrollArea = this.nodeByAttribute("name", "scrollArea");
    this.sendLine = this.nodeByAttribute("name", "sendLine");
    this.usernameField = this.nodeByAttribute("name", "username");
    this.userMessage = this.nodeByAttribute("name", "userMessage");
    this.loggedInAs = this.nodeByAttribute("name", "loggedInAs");
    this.loginError = this.nodeByAttribute("name", "loginError");
    this.sendError = this.nodeByAttribute("name", "sendError");
    this.chooseBox.addEventListener("submit", (event) => {
      event.preventDefault();
      this.doSetUsername();
    });
    this.nodeByAttribute("name", "chatBox").addEventListener("submit", (event) => {
      event.preventDefault();
      this.doSay();
    });
    this.usernameField.focus();
  }

  /** Log in with the name typed in the login box. */
  async doSetUsername() {
    this.loginError.textContent = "";
    try {
      const username = await this.callRemote("setUsername", this.usernameField.value);
      this.chooseBox.hidden = true;
      this.sendLine.hidden = false;
      this.loggedInAs.appendChild(document.createTextNode(username));
      this.loggedInAs.hidden = false;
      this.userMessage.focus();
    } catch (error) {
      this.loginError.textContent = error.message;
      this.usernameField.select();
    }
  }

  /** Say what is typed in the message field. */
  async doSay() {
    const text = this.userMessage.value;
    if (text.trim() === "") {
      return;
    }
    this.sendError.textContent = "";
    this.userMessage.value = "";
    try {
      await this.callRemote("say", text);
    } catch (error) {
      this.userMessage.value = text;
      this.sendError.textContent = `Not sent: ${error.message}`;
    }
  }

  /** Show an alert: joins, leaves and operator messages. */
  displayMessage(message) {
    this._append(["message", "alert"], [document.createTextNode(message)]);
  }

  /** Show what `avatarName` said. */
  displayUserMessage(avatarName, text) {
    const speaker = document.createElement("span");
    speaker.className = "speaker";
    speaker.textContent = avatarName;
    this._append(["message", "user"], [speaker, document.createTextNode(`: ${text}`)]);
  }

  _append(classes, children) {
    const line = document.createElement("div");
    line.classList.add(...classes);
    line.append(...children);
    this.scrollArea.appendChild(line);
    this.scrollArea.scrollTop = this.scrollArea.scrollHeight;
  }
}
