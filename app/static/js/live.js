// @ts-check
// How the page hears of changes: the API's event stream (GET api/admin/events), read with
// fetch() so that the token travels in the Authorization header (EventSource cannot send
// it); when the stream fails, polling instead, and the stream again later.

import { authHeaders, tokenRefused } from "./api.js";
import { $ } from "./dom.js";

/** @import { Stats } from "./stats.js" */
/** @import { TaskSummary } from "./tasks.js" */
/**
 * Who gets what the stream says, and what one poll does.
 * @typedef {{
 *   stats: (stats: Stats) => void,
 *   tasks: (tasks: TaskSummary[]) => void,
 *   poll: () => void,
 * }} Listeners
 */
/** @typedef {"on" | "poll" | "off"} LiveMode */

const POLL_MS = 2000;
/** A stream that ends sooner than this, in ms, counts as failed: do not reconnect at once. */
const SHORT_STREAM_MS = 1000;
/** The longest wait, in ms, before trying the stream again (the wait doubles per failure). */
const MAX_RETRY_MS = 30000;

/** @type {Listeners} */
let listeners = { stats: () => {}, tasks: () => {}, poll: () => {} };
/** @type {AbortController | null} */
let abort = null;
/** @type {number | null} */
let pollTimer = null;
let failures = 0;

/** @param {LiveMode} mode shown in the header's chip */
export function setLive(mode) {
  const chip = $("live");
  chip.className = `chip live-${mode}`;
  chip.textContent = { on: "live", poll: "polling", off: "offline" }[mode];
  chip.dataset.mode = mode;
}

/** @param {Listeners} to */
export function startLive(to) {
  listeners = to;
  connect();
}

/** Ends the stream and the polling; the chip says offline. */
export function stopLive() {
  abort?.abort();
  abort = null;
  stopPolling();
  setLive("off");
}

function startPolling() {
  if (pollTimer) return;
  setLive("poll");
  pollTimer = setInterval(() => listeners.poll(), POLL_MS);
}

function stopPolling() {
  if (pollTimer !== null) clearInterval(pollTimer);
  pollTimer = null;
}

/** One stream, start to end; then the next one, at once or after a wait. */
async function connect() {
  if (!window.ReadableStream || !window.TextDecoder || !window.AbortController) {
    startPolling();
    return;
  }
  const controller = new AbortController();
  abort = controller;
  const started = Date.now();
  const failed = await readStream(controller.signal);
  if (controller.signal.aborted || failed === null) return;
  // The server ends every stream after a while: reconnect at once. After a failure
  // (or a stream that ended at once), poll meanwhile and try again later.
  if (failed || Date.now() - started < SHORT_STREAM_MS) {
    failures += 1;
    startPolling();
    setTimeout(connect, Math.min(MAX_RETRY_MS, 1000 * 2 ** failures));
  } else {
    connect();
  }
}

/**
 * Reads the stream until it ends; whether it failed, or null when the token was refused.
 * @param {AbortSignal} signal
 * @returns {Promise<boolean | null>}
 */
async function readStream(signal) {
  let failed = false;
  try {
    const headers = authHeaders();
    const response = await fetch("api/admin/events", { headers, cache: "no-store", signal });
    if (response.status === 401) {
      tokenRefused();
      return null;
    }
    if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        failed = handleEvent(buffer.slice(0, end)) === "error" || failed;
        buffer = buffer.slice(end + 2);
      }
    }
  } catch {
    failed = true;
  }
  return failed;
}

/**
 * Acts on one server-sent event ("event:" and "data:" lines); returns its name.
 * @param {string} block
 * @returns {string}
 */
function handleEvent(block) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
  }
  if (!data.length) return event;
  const payload = JSON.parse(data.join("\n"));
  if (event === "stats") {
    if (pollTimer) stopPolling();
    failures = 0;
    setLive("on");
    listeners.stats(payload);
  } else if (event === "tasks") {
    listeners.tasks(payload.tasks);
  }
  return event;
}
