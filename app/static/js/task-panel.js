// @ts-check
// The panel beside the table for one task: its details, its buttons and its log tail,
// read again every second while the task can still change.

import { api, errorText, statusOf, taskPath } from "./api.js";
import { $, el } from "./dom.js";
import { formatAge, shortId } from "./format.js";
import { actionButtons, LIVE_STATUSES } from "./task-actions.js";
import { refreshLog, startLog, stopLog } from "./task-log.js";
import { progressBar, statusBadge, timeCell } from "./widgets.js";

/** @import { Child } from "./dom.js" */
/** @import { TaskDetail } from "./tasks.js" */

const PANEL_MS = 1000;
/** Looks at a task after it ended, for the log lines written as it finished. */
const FINAL_LOOKS = 2;

/**
 * The open task: its id, as last read (and drawn), and how the polling goes.
 * @type {{
 *   id: string | null, task: TaskDetail | null, json: string | null,
 *   busy: boolean, timer: number | null, finalLooks: number,
 * }}
 */
const panel = { id: null, task: null, json: null, busy: false, timer: null, finalLooks: 0 };

/** What to do with a task the panel read: its row in the table catches up (set by main.js). */
let onRead = /** @type {(task: TaskDetail) => void} */ (() => {});

/** @param {(task: TaskDetail) => void} handler */
export function whenTaskRead(handler) {
  onRead = handler;
}

/** What a task's "Workflow" link does: that workflow's panel opens (set by main.js). */
let onWorkflowLink = /** @type {(workflowId: string) => void} */ (() => {});

/** @param {(workflowId: string) => void} handler */
export function whenWorkflowLinked(handler) {
  onWorkflowLink = handler;
}

/** The open task's id, or null. */
export const openTaskId = () => panel.id;

/**
 * Opens the panel on a task (its id goes in the address bar, so a reload keeps it open).
 * @param {string} id
 */
export function openTask(id) {
  Object.assign(panel, { id, task: null, json: null, finalLooks: 0 });
  history.replaceState(null, "", `#task=${encodeURIComponent(id)}`);
  $("panel-title").textContent = `Task ${shortId(id)}`;
  $("panel-body").replaceChildren(el("div", { id: "panel-summary" }, "loading…"), ...startLog(id));
  $("panel").hidden = false;
  if (panel.timer !== null) clearInterval(panel.timer);
  panel.timer = setInterval(panelTick, PANEL_MS);
  refreshPanel();
}

export function closePanel() {
  if (panel.timer !== null) clearInterval(panel.timer);
  panel.timer = null;
  panel.id = null;
  stopLog();
  $("panel").hidden = true;
  if (location.hash.startsWith("#task=")) history.replaceState(null, "", location.pathname);
}

function panelTick() {
  const task = panel.task;
  if (!task) return;
  // Keep looking while it runs, and a few times more after it ends (its last log lines).
  if (LIVE_STATUSES.has(task.status) || panel.finalLooks < FINAL_LOOKS) refreshPanel();
}

/** Reads the open task and its new log lines; one read at a time. */
export async function refreshPanel() {
  const id = panel.id;
  if (!id || panel.busy) return;
  panel.busy = true;
  try {
    /** @type {TaskDetail} */
    const task = await api("GET", taskPath(id));
    if (panel.id !== id) return;
    if (!LIVE_STATUSES.has(task.status)) panel.finalLooks += 1;
    panel.task = task;
    const json = JSON.stringify(task);
    if (json !== panel.json) renderPanel(task); // unchanged: keep its buttons still
    panel.json = json;
    await refreshLog();
  } catch (error) {
    if (panel.id === id && statusOf(error) !== 401) {
      $("panel-summary").replaceChildren(el("p", { class: "error" }, errorText(error)));
    }
  } finally {
    panel.busy = false;
  }
}

/** @param {TaskDetail} task */
function renderPanel(task) {
  const list = fields(task).flatMap(([name, value]) => [el("dt", {}, name), el("dd", {}, value)]);
  const summary = [
    el("div", {}, statusBadge(task.status)),
    el("div", { class: "panel-progress" }, progressBar(task)),
    el("div", { class: "buttons" }, actionButtons(task, false)),
    el("dl", {}, list),
    el("h3", {}, "Params"),
    el("pre", { class: "params" }, JSON.stringify(task.params, null, 2)),
  ];
  if (task.result !== null && task.result !== undefined) {
    const result = JSON.stringify(task.result, null, 2);
    summary.push(el("h3", {}, "Result"), el("pre", { class: "result" }, result));
  }
  if (task.error) {
    summary.push(el("h3", {}, "Error"), el("pre", { class: "task-error" }, task.error));
  }
  $("panel-summary").replaceChildren(...summary);
  onRead(task);
}

/**
 * The task's details, as [name, value] lines of the panel's list.
 * @param {TaskDetail} task
 * @returns {[string, Child][]}
 */
function fields(task) {
  /** @type {[string, Child][]} */
  const lines = [
    ["ID", el("span", { class: "mono" }, task.taskId)],
    ["Type", task.taskType],
    ["Queue", task.queue],
    ["Priority", task.priority],
    ["Attempts", `${task.attempts} (retries ${task.retryCount} of ${task.maxRetries})`],
    ["Time limit", formatAge(task.timeoutSeconds)],
    ["Worker", task.worker || "–"],
    ["Heartbeat", timeCell(task.heartbeatAt)],
    ["Created", timeCell(task.createdAt)],
    ["Run after", timeCell(task.runAfter)],
    ["Started", timeCell(task.startedAt)],
    ["Completed", timeCell(task.completedAt)],
    ["Cancelled", timeCell(task.cancelledAt)],
  ];
  if (task.cancelRequested && task.status === "running") lines.push(["Cancel", "requested"]);
  if (task.workflowId) lines.push(["Workflow", workflowLink(task.workflowId)]);
  if (task.scheduleName) {
    lines.push(["Schedule", `${task.scheduleName} @ ${task.fireTime || "run now"}`]);
  }
  return lines;
}

/**
 * A link to the workflow the task is a step of.
 * @param {string} workflowId
 */
function workflowLink(workflowId) {
  const href = `#workflow=${encodeURIComponent(workflowId)}`;
  const onclick = (/** @type {Event} */ event) => {
    event.preventDefault();
    onWorkflowLink(workflowId);
  };
  const props = { href, class: "workflow-link mono", title: workflowId, onclick };
  return el("a", props, shortId(workflowId));
}

/** Opens the task a "#task=…" address names, unless it is open already. */
export function openTaskFromHash() {
  const [, value] = location.hash.match(/^#task=(.+)$/) ?? [];
  const id = value === undefined ? null : decodeURIComponent(value);
  if (id !== null && id !== panel.id) openTask(id);
}

/** The close button, and Escape when no dialog is over the panel. */
export function wirePanel() {
  $("panel-close").addEventListener("click", closePanel);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !$("panel").hidden && !document.querySelector("dialog[open]")) {
      closePanel();
      // Handled: a workflow's panel under this one stays open for the next Escape.
      event.preventDefault();
    }
  });
}
