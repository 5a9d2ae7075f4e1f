// @ts-check
// The panel for one workflow: its progress, its buttons and its steps as a tree, read
// again every couple of seconds while anything in it can still change. A step opens its
// task's panel, which lies over this one until it is closed.

import { api, errorText, statusOf, workflowPath } from "./api.js";
import { $, el } from "./dom.js";
import { shortId } from "./format.js";
import { LIVE_STATUSES } from "./task-actions.js";
import { closePanel, openTask } from "./task-panel.js";
import { workflowButtons } from "./workflow-actions.js";
import { countsText, shapeTree, stepCounts, workflowProgress } from "./workflow-parts.js";
import { progressBar, statusBadge, timeCell } from "./widgets.js";

/** @import { Child } from "./dom.js" */
/** @import { WorkflowDetail } from "./workflows.js" */

const PANEL_MS = 2000;
/** Looks at a workflow after it ended, for the steps a cancel stops a moment later. */
const FINAL_LOOKS = 2;

/**
 * The open workflow: its id, as last read (and drawn), and how the polling goes.
 * @type {{
 *   id: string | null, detail: WorkflowDetail | null, json: string | null,
 *   busy: boolean, timer: number | null, finalLooks: number,
 * }}
 */
const panel = { id: null, detail: null, json: null, busy: false, timer: null, finalLooks: 0 };

/** The open workflow's id, or null. */
export const openWorkflowId = () => panel.id;

/**
 * Opens the panel on a workflow (its id goes in the address bar, so a reload keeps it
 * open); a task panel over it closes.
 * @param {string} id
 */
export function openWorkflow(id) {
  closePanel();
  if (panel.id === id && !$("wf-panel").hidden) {
    $("wf-panel-title").focus();
    return;
  }
  Object.assign(panel, { id, detail: null, json: null, finalLooks: 0 });
  history.replaceState(null, "", `#workflow=${encodeURIComponent(id)}`);
  $("wf-panel-title").textContent = `Workflow ${shortId(id)}`;
  $("wf-panel-body").replaceChildren(el("p", {}, "loading…"));
  $("wf-panel").hidden = false;
  $("wf-panel-title").focus();
  if (panel.timer !== null) clearInterval(panel.timer);
  panel.timer = setInterval(panelTick, PANEL_MS);
  refreshWorkflowPanel();
}

export function closeWorkflow() {
  if (panel.timer !== null) clearInterval(panel.timer);
  panel.timer = null;
  panel.id = null;
  $("wf-panel").hidden = true;
  if (location.hash.startsWith("#workflow=")) history.replaceState(null, "", location.pathname);
}

/**
 * Whether anything in the workflow can still change by itself.
 * @param {WorkflowDetail} detail
 */
function isLive(detail) {
  return detail.status === "running" || detail.steps.some((step) => LIVE_STATUSES.has(step.status));
}

function panelTick() {
  const detail = panel.detail;
  if (detail && (isLive(detail) || panel.finalLooks < FINAL_LOOKS)) refreshWorkflowPanel();
}

/**
 * Steps of these workflows changed (the live stream said so): the open one is read again.
 * @param {Set<string>} workflowIds
 */
export function stepsChanged(workflowIds) {
  if (panel.id === null || !workflowIds.has(panel.id)) return;
  panel.finalLooks = 0;
  refreshWorkflowPanel();
}

/**
 * A workflow an action changed (or null: read it again), drawn if it is the open one.
 * @param {string} id
 * @param {WorkflowDetail | null} detail
 */
export function showWorkflow(id, detail) {
  if (panel.id !== id) return;
  panel.finalLooks = 0;
  if (detail) draw(detail);
  else refreshWorkflowPanel();
}

/** Reads the open workflow; one read at a time. */
export async function refreshWorkflowPanel() {
  const id = panel.id;
  if (!id || panel.busy) return;
  panel.busy = true;
  try {
    /** @type {WorkflowDetail} */
    const detail = await api("GET", workflowPath(id));
    if (panel.id === id) draw(detail);
  } catch (error) {
    if (panel.id === id && statusOf(error) !== 401) {
      $("wf-panel-body").replaceChildren(el("p", { class: "error" }, errorText(error)));
    }
  } finally {
    panel.busy = false;
  }
}

/**
 * Draws the workflow unless it is as last drawn (so that its buttons stay still), and
 * gives the focus back to what had it (the same step's link, the same button).
 * @param {WorkflowDetail} detail
 */
function draw(detail) {
  if (!isLive(detail)) panel.finalLooks += 1;
  panel.detail = detail;
  const json = JSON.stringify(detail);
  if (json === panel.json) return;
  panel.json = json;
  const body = $("wf-panel-body");
  const focused = focusSelector(document.activeElement, body);
  body.replaceChildren(...summary(detail));
  const again = focused && body.querySelector(focused);
  if (again instanceof HTMLElement) again.focus();
}

/**
 * @param {WorkflowDetail} detail
 * @returns {HTMLElement[]}
 */
function summary(detail) {
  const steps = new Map(detail.steps.map((step) => [step.taskId, step]));
  const open = (/** @type {string} */ taskId) => {
    openTask(taskId);
    $("panel-close").focus(); // the task's panel now lies over this one
  };
  const list = fields(detail).flatMap(([name, value]) => [el("dt", {}, name), el("dd", {}, value)]);
  /** @type {HTMLElement[]} */
  const parts = [
    el("div", {}, statusBadge(detail.status)),
    el("div", { class: "panel-progress" }, progressBar(workflowProgress(detail))),
    el("p", { class: "wf-counts" }, countsText(stepCounts(detail.steps), detail.stepCount)),
    el("div", { class: "buttons" }, workflowButtons(detail, false)),
    el("dl", {}, list),
  ];
  if (detail.error) {
    parts.push(el("h3", {}, "Error"), el("pre", { class: "task-error" }, detail.error));
  }
  const tree = shapeTree(detail.shape, steps, open);
  parts.push(el("h3", {}, "Steps"), el("div", { class: "wf-tree" }, tree));
  if (detail.status === "completed" && detail.result !== undefined) {
    const result = JSON.stringify(detail.result, null, 2);
    parts.push(el("h3", {}, "Result"), el("pre", { class: "result" }, result));
  }
  return parts;
}

/**
 * The workflow's details, as [name, value] lines of the panel's list.
 * @param {WorkflowDetail} detail
 * @returns {[string, Child][]}
 */
function fields(detail) {
  return [
    ["ID", el("span", { class: "mono" }, detail.workflowId)],
    ["Steps", detail.stepCount],
    ["Created", timeCell(detail.createdAt)],
    ["Updated", timeCell(detail.updatedAt)],
    ["Completed", timeCell(detail.completedAt)],
  ];
}

/**
 * How to find `node` again in a redrawn `body`: a step's link by its task id, a button
 * by its action; null when the focus is elsewhere.
 * @param {Element | null} node
 * @param {HTMLElement} body
 * @returns {string | null}
 */
function focusSelector(node, body) {
  if (!(node instanceof HTMLElement) || !body.contains(node)) return null;
  if (node.dataset.taskId) return `a[data-task-id="${CSS.escape(node.dataset.taskId)}"]`;
  const action = [...node.classList].find((name) => name.startsWith("wf-"));
  return action ? `button.${action}` : null;
}

/** Opens the workflow a "#workflow=…" address names, unless it is open already. */
export function openWorkflowFromHash() {
  const [, value] = location.hash.match(/^#workflow=(.+)$/) ?? [];
  const id = value === undefined ? null : decodeURIComponent(value);
  if (id !== null && id !== panel.id) openWorkflow(id);
}

/** The close button, and Escape when neither a dialog nor the task panel is over it. */
export function wireWorkflowPanel() {
  $("wf-panel-close").addEventListener("click", closeWorkflow);
  document.addEventListener("keydown", (event) => {
    // The task panel's own Escape closes it first (and marks the event handled).
    if (event.key !== "Escape" || event.defaultPrevented || $("wf-panel").hidden) return;
    if ($("panel").hidden && !document.querySelector("dialog[open]")) closeWorkflow();
  });
}
