// Two users chat in one browser driven by puppeteer-core, for
// tests/test_other_browsers.py: `node twoUsersChat.mjs URL BROWSER EXECUTABLE`.
//
// alice and bob each get their own browser context (their own cookies and
// storage, as two people would), log in, see each other in the presence
// list, and say a line each, each waiting to see the other's.  Every wait is
// for a condition with a deadline, never a sleep.
//
// Writes one JSON line per event to stdout, which the test reads:
//   {"browserPid": N}                  as soon as the browser runs (the test
//                                      kills it by that PID if this script
//                                      dies or hangs);
//   {"ok": true, "seen": {...}}        what each page showed at the end;
//   {"ok": false, "error": "..."}      what went wrong (and the exit status is 1).
import puppeteer from "puppeteer-core";

const [url, product, executablePath] = process.argv.slice(2);
// Milliseconds any one condition may take, generous for a loaded 2-core box.
const DEADLINE = 20_000;

function report(event) {
  process.stdout.write(JSON.stringify(event) + "\n");
}

/** What a page shows: its lines, who is present, who it is logged in as. */
function shown(page) {
  return page.evaluate(() => ({
    lines: [...document.querySelectorAll('[name="scrollArea"] .message')].map((n) => n.textContent),
    presence: [...document.querySelectorAll('[name="presence"] li')].map((n) => n.textContent),
    loggedInAs: document.querySelector('[name="loggedInAs"]').textContent,
    title: document.title,
  }));
}

/** Wait until `condition(arg)` is true in `page`; if not, say what was awaited and what the page shows. */
async function waitFor(page, what, condition, arg) {
  try {
    await page.waitForFunction(condition, { timeout: DEADLINE }, arg);
  } catch (error) {
    throw new Error(`waiting for ${what}: ${error.message}; the page shows ${JSON.stringify(await shown(page))}`);
  }
}

/** Wait until some line of `page`'s scroll area contains `text`. */
function waitForLine(page, text) {
  return waitFor(page, `a line saying ${JSON.stringify(text)}`,
    (text) => [...document.querySelectorAll('[name="scrollArea"] .message')]
      .some((n) => n.textContent.includes(text)), text);
}

/** Wait until `page`'s presence list is exactly `names`. */
function waitForPresence(page, names) {
  return waitFor(page, `the presence list to be ${JSON.stringify(names)}`,
    (names) => JSON.stringify([...document.querySelectorAll('[name="presence"] li')]
      .map((n) => n.textContent)) === JSON.stringify(names), names);
}

async function openAs(browser, name, errors) {
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  page.setDefaultTimeout(DEADLINE);
  page.on("console", (message) => {
    if (message.type() === "error" || message.type() === "warn") {
      errors.push(`${name} console.${message.type()}: ${message.text()}`);
    }
  });
  page.on("pageerror", (error) => errors.push(`${name} pageerror: ${error}`));
  await page.goto(url);
  await page.waitForSelector('html[data-live-ready="true"]');
  await page.type('[name="username"]', name);
  await page.click('[name="GO"]');
  await waitFor(page, `the page to say it is logged in as ${name}`,
    (name) => document.querySelector('[name="loggedInAs"]').textContent === `Logged in as ${name}`
      && !document.querySelector('[name="sendLine"]').hidden, name);
  return page;
}

async function say(page, text) {
  await page.type('[name="userMessage"]', text);
  await page.keyboard.press("Enter");
  // The field is cleared once the line is sent.
  await waitFor(page, `${JSON.stringify(text)} to be sent`,
    () => document.querySelector('[name="userMessage"]').value === "");
}

async function main() {
  const browser = await puppeteer.launch({
    browser: product,
    executablePath,
    headless: true,
    protocolTimeout: DEADLINE * 2,
    timeout: 60_000,
  });
  report({ browserPid: browser.process().pid, version: await browser.version() });
  const errors = [];
  try {
    const alice = await openAs(browser, "alice", errors);
    const bob = await openAs(browser, "bob", errors);
    for (const page of [alice, bob]) {
      await waitForPresence(page, ["alice", "bob"]);
      await waitForLine(page, "user bob has joined the room");
    }
    await say(alice, "hello bob");
    await waitForLine(bob, "alice: hello bob");
    await say(bob, "hi alice!");
    await waitForLine(alice, "bob: hi alice!");
    await waitForLine(bob, "bob: hi alice!");
    await waitForLine(alice, "alice: hello bob");
    report({ ok: true, seen: { alice: await shown(alice), bob: await shown(bob) }, errors });
  } finally {
    await browser.close();
  }
}

main().catch((error) => {
  report({ ok: false, error: String(error && error.stack || error) });
  process.exit(1);
});
