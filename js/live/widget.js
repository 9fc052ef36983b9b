/**
 * Widget: the browser half of one live element.
 */

/**
 * Base class of application widgets.  A subclass lists in `remoteMethods`
 * the methods the server may call; any other name is refused.
 */
export class Widget {
  /** Names of the methods the server may call on this widget. */
  static remoteMethods = [];

  /**
   * @param {Element} node - the element's markup, as the server drew it.
   * @param {LiveSocket} socket - the page's connection.
   */
  constructor(node, socket) {
    this.node = node;
    this.socket = socket;
  }

  /**
   * The first node under this widget whose attribute `name` is `value`.
   * @throws {Error} if there is none.
   */
  nodeByAttribute(name, value) {
    const node = this.node.querySelector(`[${name}="${CSS.escape(value)}"]`);
    if (node === null) {
      throw new Error(`no node with ${name}="${value}"`);
    }
    return node;
  }

  /**
   * Call an exposed method of the server-side element.
   * @returns {Promise} its return value, or a RemoteError.
   */
  callRemote(method, ...args) {
    return this.socket.callRemote(method, ...args);
  }
}
