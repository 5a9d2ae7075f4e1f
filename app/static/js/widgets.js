// @ts-check
// The small pieces the task table, the task panel and the schedules share.

import { el } from "./dom.js";
import { formatTime } from "./format.js";

/**
 * How far a task is; a Task has these fields.
 * @typedef {{ percent: number, progress: number, total: number | null }} Progress
 */

/**
 * A <time> showing the reader's local time, with the exact ISO time as its tooltip.
 * @param {string | null | undefined} iso
 * @returns {HTMLTimeElement | string}
 */
export function timeCell(iso) {
  if (!iso) return "–";
  return el("time", { datetime: iso, title: iso }, formatTime(iso));
}

/**
 * @param {string} status
 * @returns {HTMLSpanElement}
 */
export function statusBadge(status) {
  return el("span", { class: `status status-${status}` }, status);
}

/**
 * A progress bar; `setProgress` moves it later.
 * @param {Progress} task
 * @returns {HTMLDivElement}
 */
export function progressBar(task) {
  const node = el(
    "div",
    { class: "progress", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100" },
    el("div", { class: "bar" }),
    el("span", { class: "label" }),
  );
  setProgress(node, task);
  return node;
}

/**
 * Updates the bar in place, so that its width animates rather than jumps.
 * @param {HTMLElement} node a progressBar()
 * @param {Progress} task
 */
export function setProgress(node, task) {
  const percent = task.percent;
  node.setAttribute("aria-valuenow", String(percent));
  node.dataset.percent = String(percent);
  node.classList.toggle("done", percent >= 100);
  node.title = task.total ? `${task.progress} of ${task.total}` : `${percent}%`;
  const bar = node.querySelector(".bar");
  if (bar instanceof HTMLElement) bar.style.width = `${percent}%`;
  const label = node.querySelector(".label");
  if (label) label.textContent = `${percent}%`;
}
