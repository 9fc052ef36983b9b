/**
 * The chat widget: the browser half of chatthing.chatterbox.ChatterElement.
 * Method names are the Nevow Athena tutorial's (displayMessage,
 * displayUserMessage, doSetUsername, doSay), plus the room's: history,
 * actions, presence, typing and the time of each line.
 *
 * User text is only ever set as text (textContent, text nodes), never HTML,
 * laid out on its own so it cannot reorder its line, and with the line
 * breaks it holds shown (see userText.js).  Over-long input is said, not
 * cut: the fields have no maxlength, and the widget gives the server's
 * error before sending, keeping the text in the field.
 */

import { SocketState, Widget } from "./live/index.js";
import { countedLength, tooLong, userTextNode, withoutBidiControls } from "./userText.js";

/** Send "typing" at most this often, in milliseconds, while typing. */
export const TYPING_SEND_EVERY_MS = 2000;

/** Forget that someone is typing after this long without news, in ms. */
export const TYPING_SHOWN_FOR_MS = 4000;

export class ChatterWidget extends Widget {
  static remoteMethods = [
    "displayMessage", "displayUserMessage", "displayAction", "displayHistory",
    "messageTime", "updatePresence", "presenceChanged", "showTyping",
  ];

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
    this.presenceList = this.nodeByAttribute("name", "presence");
    this.onlineCount = this.nodeByAttribute("name", "onlineCount");
    this.presenceMore = this.nodeByAttribute("name", "presenceMore");
    this.typingLine = this.nodeByAttribute("name", "typingLine");
    this.roomName = this.nodeByAttribute("name", "roomName").textContent;
    this.chooseBox.addEventListener("submit", (event) => {
      event.preventDefault();
      this.doSetUsername();
    });
    this.nodeByAttribute("name", "chatBox").addEventListener("submit", (event) => {
      event.preventDefault();
      this.doSay();
    });
    this.userMessage.addEventListener("input", () => {
      this._checkMessageLength();
      this.doTyping();
    });
    this.usernameField.addEventListener("input", () => this._checkUsernameLength());
    this.maxMessageLength = Number(this.userMessage.dataset.maxLength) || Infinity;
    this.maxUsernameLength = Number(this.usernameField.dataset.maxLength) || Infinity;
    this.username = null;
    /** When the server last said the time (ms since the epoch, UTC). */
    this.serverTime = null;
    /** Who is typing: name → timer that forgets it. */
    this.typers = new Map();
    this.lastTypingSent = -Infinity;
    /** Whether the log follows its newest line, read once per frame of lines (see _append). */
    this.following = null;
    // Who was online when the page was drawn; updatePresence keeps it.
    const drawn = [...this.presenceList.children].map((item) => item.textContent);
    this.updatePresence(drawn, Number(this.presenceList.dataset.count) || drawn.length);
    this.usernameField.focus();
  }

  /**
   * The server ended this page's session (it restarted with no state
   * file, or the page was away too long): what the next widget takes over
   * (see takeOver).
   */
  carryOver() {
    return { lines: [...this.scrollArea.childNodes], username: this.username };
  }

  /**
   * Take over from the widget of the session that ended: keep its lines on
   * screen, log in again with its name if it had one, and say in plain
   * words what happened (`how.restarted`: the server restarted).
   */
  async takeOver({ lines, username }, { restarted }) {
    this.scrollArea.prepend(...lines);
    this._scrollToEnd();
    const what = restarted ? "The server restarted" : "The connection was lost and your session could not be kept";
    if (username === null) {
      this.displayMessage(`${what}; please log in again.`);
      return;
    }
    this.usernameField.value = username;
    try {
      this._loggedIn(await this.callRemote("setUsername", username));
      this.displayMessage(`${what}; you are logged in again as ${this.username}.`);
    } catch (error) {
      this.displayMessage(`${what}, and you could not log in again as ${username}: ${error.message}`);
      this.loginError.textContent = error.message;
    }
  }

  /** The server restarted and resumed this page's session from its state file. */
  serverRestarted() {
    const who = this.username === null ? "" : `; you are still logged in as ${this.username}`;
    this.displayMessage(`The server restarted${who}.`);
  }

  /**
   * The server's store lost what it kept (Redis restarted with nothing
   * saved; the socket calls this once per change of its epoch).  The lines
   * on screen stay, and history shown from now on is what the store still
   * has (displayHistory skips lines already shown): say it in plain words.
   */
  storeLost() {
    this.displayMessage("The server lost its stored history; earlier messages may be missing.");
  }

  /** Log in with the name typed in the login box. */
  async doSetUsername() {
    this.loginError.textContent = "";
    const tooLongError = this._usernameTooLong();
    if (tooLongError !== null) {
      this.loginError.textContent = tooLongError;
      this.usernameField.focus();
      return;
    }
    try {
      this._loggedIn(await this.callRemote("setUsername", this.usernameField.value));
    } catch (error) {
      this.loginError.textContent = error.message;
      this.usernameField.select();
    }
  }

  /** Logged in as `username`: show the message line instead of the login box. */
  _loggedIn(username) {
    this._setName(username);
    this.chooseBox.hidden = true;
    this.sendLine.hidden = false;
    this.loggedInAs.hidden = false;
    this._scrollToEnd();
    this.userMessage.focus();
  }

  /** Say what is typed in the message field (or run its slash command). */
  async doSay() {
    const text = this.userMessage.value;
    if (text.trim() === "") {
      return;
    }
    const tooLongError = this._messageTooLong();
    if (tooLongError !== null) {
      // Said, not cut: the text stays in the field to be shortened.
      this.sendError.textContent = `Not sent: ${tooLongError}`;
      this.userMessage.focus();
      return;
    }
    this.sendError.textContent = "";
    this.userMessage.value = "";
    this.lastTypingSent = -Infinity;
    try {
      const renamed = await this.callRemote("say", text);
      if (typeof renamed === "string") {
        this._setName(renamed); // after /nick
      }
    } catch (error) {
      this.userMessage.value = text;
      this.sendError.textContent = `Not sent: ${error.message}`;
    }
  }

  /** The server's error for the message field's text, if it is too long, else null. */
  _messageTooLong() {
    return tooLong("Messages", this.maxMessageLength,
      countedLength(this.userMessage.value, { bidi: true }));
  }

  /** The server's error for the name field's text, if it is too long, else null. */
  _usernameTooLong() {
    return tooLong("Usernames", this.maxUsernameLength, countedLength(this.usernameField.value));
  }

  /** Say at once (as text is typed or pasted) that the message is too long, or no longer. */
  _checkMessageLength() {
    showLengthError(this.userMessage, this.sendError, this._messageTooLong());
  }

  /** Say at once that the name is too long, or no longer. */
  _checkUsernameLength() {
    showLengthError(this.usernameField, this.loginError, this._usernameTooLong());
  }

  /** The user typed: tell the room, at most once every 2 seconds. */
  doTyping() {
    const now = performance.now();
    if (this.username === null || this.userMessage.value.trim() === ""
        || this.userMessage.value.startsWith("/")
        || now - this.lastTypingSent < TYPING_SEND_EVERY_MS) {
      return;
    }
    this.lastTypingSent = now;
    this.callRemote("typing").catch(() => {}); // only a hint: losing it is fine
  }

  /** Show an alert: joins, leaves, renames, answers to commands, operator messages. */
  displayMessage(message) {
    this._append(["message", "alert"], [document.createTextNode(withoutBidiControls(message))],
      this._now());
  }

  /** Show what `avatarName` said. */
  displayUserMessage(avatarName, text) {
    this._stopTyping(avatarName);
    this._appendSpoken(avatarName, ": ", text, ["user"], this._now());
  }

  /** Show what `avatarName` does (/me): "* alice waves". */
  displayAction(avatarName, text) {
    this._stopTyping(avatarName);
    this._appendSpoken(avatarName, " ", text, ["action"], this._now(), "* ");
  }

  /**
   * Show the room's last messages, said before this page came, each
   * `[kind, speaker, text, epochMs]`, under an "Earlier messages" divider.
   */
  displayHistory(entries) {
    // Lines already on screen (taken over from an ended session) are not shown twice.
    const shown = new Set([...this.scrollArea.querySelectorAll("[data-said]")].map((line) => line.dataset.said));
    entries = entries.filter(([, speaker, text, when]) => !shown.has(saidKey(speaker, text, when)));
    if (entries.length === 0) {
      return;
    }
    const divider = document.createElement("div");
    divider.className = "divider";
    divider.setAttribute("role", "separator");
    divider.textContent = "Earlier messages";
    this.scrollArea.appendChild(divider);
    for (const [kind, speaker, text, when] of entries) {
      if (kind === "action") {
        this._appendSpoken(speaker, " ", text, ["action", "earlier"], when, "* ");
      } else {
        this._appendSpoken(speaker, ": ", text, ["user", "earlier"], when);
      }
    }
    const end = document.createElement("div");
    end.className = "divider divider-end";
    end.setAttribute("role", "separator");
    end.textContent = "New messages";
    this.scrollArea.appendChild(end);
    this._scrollToEnd();
  }

  /** The server's time now (ms since the epoch): it dates the lines that follow. */
  messageTime(epochMs) {
    this.serverTime = epochMs;
  }

  /**
   * Who is logged in to this room now: `names`, and `count` how many are
   * there.  A big room (more than the server's --presence-list-max) sends
   * only its first names by join order, the same window on every page, and
   * the count: the list shows them, this page's own name, and "and N more"
   * (`/who NAME` says whether anyone else is there).
   */
  updatePresence(names, count = names.length) {
    const listed = this.username !== null && count > names.length && !names.includes(this.username)
      ? [...names, this.username] : names;
    const items = listed.map((name) => {
      const item = document.createElement("li");
      item.textContent = name;
      item.className = `speaker-${paletteIndex(name)}`;
      if (name === this.username) {
        item.classList.add("me");
      }
      return item;
    });
    this.presenceList.replaceChildren(...items);
    this.onlineCount.textContent = `${count} online`;
    const more = count - listed.length;
    this.presenceMore.hidden = more <= 0;
    this.presenceMore.textContent = `and ${more} more`;
    document.title = `${this.roomName} (${count} online) · chatthing`;
    if (count === names.length) { // everyone is listed: who is not has left
      for (const name of [...this.typers.keys()]) {
        if (!names.includes(name)) {
          this._stopTyping(name);
        }
      }
    }
    this.presence = names;
    this.presenceCount = count;
  }

  /**
   * Who joined this room and who left it (a rename is both) since the last
   * change: the server gathers them over a short interval, so a crowd
   * logging in at once costs each page a few frames, not one per name.  In
   * a big room, the changes to its window of names and the room's `count`.
   */
  presenceChanged(joined, left, count) {
    const gone = new Set(left);
    const joining = new Set(joined.map((name) => name.toLowerCase()));
    const kept = (this.presence ?? []).filter(
      (known) => !gone.has(known) && !joining.has(known.toLowerCase()));
    const names = sortNames([...kept, ...joined]);
    this.updatePresence(names, count ?? names.length);
  }

  /** `avatarName` is typing: say so for a few seconds. */
  showTyping(avatarName) {
    if (avatarName === this.username) {
      return;
    }
    clearTimeout(this.typers.get(avatarName));
    this.typers.set(avatarName, setTimeout(() => this._stopTyping(avatarName), TYPING_SHOWN_FOR_MS));
    this._showTypers();
  }

  _stopTyping(avatarName) {
    if (this.typers.has(avatarName)) {
      clearTimeout(this.typers.get(avatarName));
      this.typers.delete(avatarName);
      this._showTypers();
    }
  }

  _showTypers() {
    const names = [...this.typers.keys()];
    let text = "";
    if (names.length === 1) {
      text = `${names[0]} is typing…`;
    } else if (names.length === 2) {
      text = `${names[0]} and ${names[1]} are typing…`;
    } else if (names.length > 2) {
      text = "Several people are typing…";
    }
    this.typingLine.textContent = text;
  }

  _setName(username) {
    this.username = username;
    const who = document.createElement("strong");
    who.textContent = username;
    this.loggedInAs.replaceChildren(document.createTextNode("Logged in as "), who);
    const names = this.presence ?? [];
    this.updatePresence(names, this.presenceCount ?? names.length);
  }

  /** When a line that arrives now was said (the server's last time, or ours). */
  _now() {
    return this.serverTime ?? Date.now();
  }

  /**
   * Add the line `[before]speaker[separator]text`: the speaker's name and
   * the text each laid out on its own (`<bdi>`), so neither reorders the
   * other or the separator.
   */
  _appendSpoken(avatarName, separator, text, classes, when, before = "") {
    const speaker = document.createElement("bdi");
    speaker.className = `speaker speaker-${paletteIndex(avatarName)}`;
    speaker.textContent = avatarName;
    const all = ["message", ...classes];
    const mine = avatarName === this.username && !classes.includes("earlier");
    if (mine) {
      all.push("mine");
    }
    const children = [speaker, document.createTextNode(separator), userTextNode(text)];
    if (before) {
      children.unshift(document.createTextNode(before));
    }
    this._append(all, children, when, mine).dataset.said = saidKey(avatarName, text, when);
  }

  /**
   * Add a line to the log, dated `when` (ms since the epoch) in the
   * browser's local time.  The log follows the newest line, unless the
   * reader has scrolled up to read older ones (then only their own lines
   * bring it back down).  Whether it follows is read once for all the lines
   * added before the next animation frame, which scrolls once: reading the
   * log's height after each line would lay the page out again per line.
   */
  _append(classes, children, when, mine = false) {
    const area = this.scrollArea;
    if (this.following === null) {
      this.following = area.scrollHeight - area.scrollTop - area.clientHeight < FOLLOW_SLACK_PX;
      requestAnimationFrame(() => this._followLog());
    }
    const line = document.createElement("div");
    line.classList.add(...classes);
    line.append(...children);
    if (typeof when === "number") {
      const date = new Date(when);
      // Shown by CSS (::before), so the time is not part of the line's text.
      line.dataset.time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
      line.dataset.utc = String(when);
      line.title = date.toLocaleString();
    }
    area.appendChild(line);
    if (mine) {
      this.following = true;
    }
    return line;
  }

  /** The frame after lines were added: scroll to the newest if the log follows it. */
  _followLog() {
    if (this.following) {
      this._scrollToEnd();
    }
    this.following = null;
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

/**
 * Show `error` (a length error, or null) for `field` in `box`; a length
 * error shown earlier goes when the text fits again, other errors stay.
 */
function showLengthError(field, box, error) {
  field.setAttribute("aria-invalid", String(error !== null));
  if (error !== null) {
    box.textContent = error;
    box.dataset.lengthError = "true";
  } else if (box.dataset.lengthError) {
    box.textContent = "";
  }
  if (error === null) {
    delete box.dataset.lengthError;
  }
}

/** What identifies a line said (a history entry and its live line alike). */
function saidKey(speaker, text, when) {
  return JSON.stringify([speaker, text, when]);
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

/** Names in the order the server sorts them: ignoring case, then by case. */
export function sortNames(names) {
  const key = (name) => name.toLowerCase();
  return [...names].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : a < b ? -1 : a > b ? 1 : 0));
}
