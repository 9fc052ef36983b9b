/**
 * User text as the page shows it and checks it: laid out in the order it
 * was typed, unable to make a line of its own, and never cut without a
 * word.  The server's rules (chatthing/validation.py) are the ones that
 * count; these say the same thing sooner.
 */

/**
 * Characters that reorder the text around them: embeddings, overrides,
 * isolates and the implicit marks.  The server takes them out of messages
 * (validation.BIDI_CONTROLS); the page does too, for a line from a server
 * that did not.
 */
export const BIDI_CONTROLS = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/gu;

/** What breaks a line in a browser: shown as NEWLINE_MARK, then a break. */
const LINE_BREAKS = /\r\n|[\n\r\v\f\u0085\u2028\u2029]/u;

/** The visible sign of a line break the speaker typed. */
export const NEWLINE_MARK = "\u21b5";

/** `text` without bidi controls. */
export function withoutBidiControls(text) {
  return text.replace(BIDI_CONTROLS, "");
}

/**
 * Nodes showing `text` said by a user: one `<bdi>` laid out on its own
 * (CSS `unicode-bidi: plaintext`, so right-to-left text neither reorders
 * the speaker's name nor is reordered by it), bidi controls left out, and
 * each line break the speaker typed shown as a visible "↵" before the
 * break, so that what follows it reads as part of this message (it is
 * indented under the speaker, see chatterbox.css), never as a line of its
 * own such as a fake " * user admin has joined the room".
 */
export function userTextNode(text) {
  const node = document.createElement("bdi");
  node.className = "text";
  withoutBidiControls(text).split(LINE_BREAKS).forEach((part, index) => {
    if (index > 0) {
      const mark = document.createElement("span");
      mark.className = "newline";
      mark.title = "new line";
      mark.textContent = NEWLINE_MARK;
      node.append(mark, document.createElement("br"));
    }
    node.append(document.createTextNode(part));
  });
  return node;
}

/** How many characters the server counts in `text`: code points, once trimmed. */
export function countedLength(text, { bidi = false } = {}) {
  const kept = bidi ? withoutBidiControls(text) : text;
  return [...kept.trim()].length;
}

/**
 * The server's error for a `what` ("Messages", "Usernames") of `count`
 * characters when at most `max` are allowed, or null if it fits.
 */
export function tooLong(what, max, count) {
  if (!(count > max)) {
    return null;
  }
  return `${what} are at most ${max} characters long (this one has ${count}).`;
}
