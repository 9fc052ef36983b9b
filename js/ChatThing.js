/**
 * The chat widget: the browser half of chatthing.chatterbox.ChatterElement.
 * Method names are the Nevow Athena tutorial's.
 */

import { SocketState, Widget } from "./live/index.js";

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
    this.username = null;
    this.usernameField.focus();
  }

  /** Log in with the name typed in the login box. */
  async doSetUsername() {
    this.loginError.textContent = "";
    try {
      const username = await this.callRemote("setUsername", this.usernameField.value);
      this.username = username;
      this.chooseBox.hidden = true;
      this.sendLine.hidden = false;
      const who = document.createElement("strong");
      who.textContent = username;
      this.loggedInAs.appendChild(who);
      this.loggedInAs.hidden = false;
      this._scrollToEnd();
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
    speaker.className = `speaker speaker-${paletteIndex(avatarName)}`;
    speaker.textContent = avatarName;
    const classes = ["message", "user"];
    const mine = avatarName === this.username;
    if (mine) {
      classes.push("mine");
    }
    this._append(classes, [speaker, document.createTextNode(`: ${text}`)], mine);
  }

  /**
   * Add a line to the log.  The log follows the newest line, unless the
   * reader has scrolled up to read older ones (then only their own lines
   * bring it back down).
   */
  _append(classes, children, mine = false) {
    const area = this.scrollArea;
    const following = area.scrollHeight - area.scrollTop - area.clientHeight < FOLLOW_SLACK_PX;
    const line = document.createElement("div");
    line.classList.add(...classes);
    line.append(...children);
    area.appendChild(line);
    if (following || mine) {
      this._scrollToEnd();
    }
  }

  _scrollToEnd() {
    this.scrollArea.scrollTop = this.scrollArea.scrollHeight;
  }

  /** Disable the forms while the connection is down (called by the socket). */
  connectionChanged(state) {
    const down = state !== SocketState.CONNECTED;
    this.node.querySelectorAll("input").forEach((input) => {
      input.disabled = down;
    });
  }
}

/** How close to the bottom, in pixels, counts as following the log. */
const FOLLOW_SLACK_PX = 48;

/** Number of speaker colours in chatterbox.css (.speaker-0 …). */
const PALETTE_SIZE = 8;

/** A stable colour for a name, the same on every page (FNV-1a hash). */
function paletteIndex(name) {
  let hash = 0x811c9dc5;
  for (const char of name) {
    hash = Math.imul(hash ^ char.codePointAt(0), 0x01000193) >>> 0;
  }
  return hash % PALETTE_SIZE;
}
