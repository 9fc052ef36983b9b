/**
 * Backoff: how long to wait before each reconnection attempt.
 */

/**
 * Exponential back-off with jitter: the n-th delay is drawn from
 * [d/2, d] where d = min(cap, base * 2^n).  The first retry comes within
 * `base` ms; the jitter spreads the pages of a restarted server over time
 * instead of having them all knock at once.
 */
export class Backoff {
  constructor({ base = 500, cap = 15000, random = Math.random } = {}) {
    this.base = base;
    this.cap = cap;
    this.random = random;
    this.attempts = 0;
  }

  /** The delay, in ms, before the next attempt. */
  next() {
    const ceiling = Math.min(this.cap, this.base * 2 ** this.attempts);
    this.attempts += 1;
    return Math.round(ceiling / 2 + (this.random() * ceiling) / 2);
  }

  /** Start again from the shortest delay (after a successful connection). */
  reset() {
    this.attempts = 0;
  }
}
