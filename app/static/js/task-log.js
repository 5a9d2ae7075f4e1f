// @ts-check
// The open task's log tail: new lines appended as they come, in pages of LOG_PAGE.

import { api, taskPath } from "./api.js";
import { $, el } from "./dom.js";
import { formatTime } from "./format.js";

/** @typedef {{ id: number, level: string, message: string, createdAt: string }} LogLine */
/** @typedef {{ lines: LogLine[], total: number, page: number, pageSize: number }} LogPage */

const LOG_PAGE = 200;

/**
 * Whose log is shown, the last line shown, and how many lines the pages read so far hold.
 * @type {{ taskId: string | null, lastId: number, count: number }}
 */
const log = { taskId: null, lastId: 0, count: 0 };

/**
 * A fresh, empty log for the task: its heading with the "follow" box, and the lines.
 * @param {string} taskId
 * @returns {HTMLElement[]}
 */
export function startLog(taskId) {
  Object.assign(log, { taskId, lastId: 0, count: 0 });
  const follow = el("input", { type: "checkbox", id: "log-follow", checked: true });
  return [
    el("div", { class: "log-head" }, el("h3", {}, "Log"), el("label", {}, follow, " follow")),
    el("pre", { id: "panel-log", class: "log" }),
  ];
}

/** No log is shown any more: answers still on their way are dropped. */
export function stopLog() {
  log.taskId = null;
}

/** Appends the lines written since the last look. */
export async function refreshLog() {
  const id = log.taskId;
  if (!id) return;
  let page = Math.floor(log.count / LOG_PAGE) + 1;
  let data = await logPage(id, page);
  const skipped = log.count === 0 && data.total > LOG_PAGE;
  if (skipped) {
    // A long log: start at its last page.
    page = Math.ceil(data.total / LOG_PAGE);
    data = await logPage(id, page);
  }
  if (log.taskId !== id) return;
  const pre = $("panel-log");
  if (skipped) pre.append(el("div", { class: "hint" }, `… ${(page - 1) * LOG_PAGE} earlier lines`));
  const fresh = data.lines.filter((line) => line.id > log.lastId);
  for (const line of fresh) {
    const text = `${formatTime(line.createdAt)}  ${line.level.padEnd(7)}  ${line.message}`;
    pre.append(el("div", { class: line.level }, text));
    log.lastId = line.id;
  }
  log.count = (page - 1) * LOG_PAGE + data.lines.length;
  if (!pre.childElementCount) pre.textContent = "";
  const follow = document.getElementById("log-follow");
  if (fresh.length && follow instanceof HTMLInputElement && follow.checked) {
    pre.scrollTop = pre.scrollHeight;
  }
}

/**
 * @param {string} id
 * @param {number} page
 * @returns {Promise<LogPage>}
 */
function logPage(id, page) {
  return api("GET", `${taskPath(id)}/logs?page=${page}&pageSize=${LOG_PAGE}`);
}
