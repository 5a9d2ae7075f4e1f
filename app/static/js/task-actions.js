// @ts-check
// Cancel and Retry: the buttons a task's row and its panel offer, and what they do.

import { api, errorText, statusOf, taskPath } from "./api.js";
import { el } from "./dom.js";
import { shortId } from "./format.js";
import { confirmAction, notice } from "./notice.js";

/** @import { TaskDetail, TaskSummary } from "./tasks.js" */

/** Tasks that can still change by themselves, and be cancelled. */
export const LIVE_STATUSES = new Set(["pending", "running"]);
/** Tasks that ended without success, which can run again. */
const RETRYABLE = new Set(["failed", "cancelled", "skipped"]);

/**
 * What to do with a task an action changed: the table and the header catch up (set by
 * main.js, since the table itself shows these buttons).
 * @type {(task: TaskDetail) => void}
 */
let onChanged = () => {};

/** @param {(task: TaskDetail) => void} handler */
export function whenTaskChanged(handler) {
  onChanged = handler;
}

/**
 * The buttons for what can be done to the task now; `small` ones fit a table row.
 * @param {TaskSummary} task
 * @param {boolean} small
 * @returns {HTMLButtonElement[]}
 */
export function actionButtons(task, small) {
  const buttons = [];
  const size = small ? "small" : "";
  if (LIVE_STATUSES.has(task.status) && !task.cancelRequested) {
    const onclick = () => cancelTask(task.taskId);
    buttons.push(el("button", { type: "button", class: `cancel ${size}`, onclick }, "Cancel"));
  }
  if (RETRYABLE.has(task.status)) {
    const onclick = () => retryTask(task.taskId);
    buttons.push(el("button", { type: "button", class: `retry ${size}`, onclick }, "Retry"));
  }
  return buttons;
}

/** @param {string} id */
async function cancelTask(id) {
  const ok = await confirmAction(
    `Cancel task ${shortId(id)}? A pending task is cancelled at once; ` +
      "a running one is interrupted within about a second.",
    "Cancel task",
  );
  if (!ok) return;
  try {
    /** @type {TaskDetail} */
    const task = await api("POST", `${taskPath(id)}/cancel`);
    notice(
      task.status === "cancelled"
        ? `Cancelled ${shortId(id)}.`
        : `Cancel requested: ${shortId(id)} is running and will stop within seconds.`,
    );
    onChanged(task);
  } catch (error) {
    if (statusOf(error) === 401) return;
    notice(`Could not cancel ${shortId(id)}: ${errorText(error)}`, true);
  }
}

/** @param {string} id */
async function retryTask(id) {
  const ok = await confirmAction(`Run task ${shortId(id)} again, as a new attempt?`, "Retry");
  if (!ok) return;
  try {
    /** @type {TaskDetail} */
    const task = await api("POST", `${taskPath(id)}/retry`);
    notice(`Retrying ${shortId(id)}: it is ${task.status} again.`);
    onChanged(task);
  } catch (error) {
    if (statusOf(error) === 401) return;
    notice(`Could not retry ${shortId(id)}: ${errorText(error)}`, true);
  }
}
