// @ts-check
// The workflows table: one page of them, newest first, optionally of one status; shown
// only when the API has workflows (GET api/admin/workflows answers).

import { api, errorText, statusOf } from "./api.js";
import { $, el } from "./dom.js";
import { shortId } from "./format.js";
import { notice } from "./notice.js";
import { workflowButtons } from "./workflow-actions.js";
import { openWorkflow, stepsChanged } from "./workflow-panel.js";
import { countsText, workflowProgress } from "./workflow-parts.js";
import { progressBar, setProgress, statusBadge, timeCell } from "./widgets.js";

/** @import { TaskSummary } from "./tasks.js" */
/**
 * A workflow as the list sends it (the API's WorkflowSummary). `status` is running,
 * completed, failed or cancelled; `stepsByStatus` counts its steps by task status.
 * @typedef {{
 *   workflowId: string, status: string, stepCount: number,
 *   stepsByStatus: Record<string, number>, percent: number, error: string | null,
 *   createdAt: string, updatedAt: string, completedAt: string | null,
 * }} WorkflowSummary
 */
/**
 * A workflow's tree as submitted: a step (its task id); a chain, members one after the
 * other; a group, members side by side, and `then` once they all completed.
 * @typedef {string | { chain: Shape[] } | { group: Shape[], then?: Shape }} Shape
 */
/**
 * A step: its task (as the task list sends it), and how many steps before it have not
 * completed yet (`waitingOn`; a pending step waiting on some is not on a queue yet).
 * @typedef {TaskSummary & { waitingOn: number, workflowId: string }} WorkflowStep
 */
/**
 * One workflow in full: its shape, its steps in the shape's order, its result once
 * completed.
 * @typedef {WorkflowSummary & { shape: Shape, steps: WorkflowStep[], result?: unknown }}
 *   WorkflowDetail
 */
/** @typedef {{ workflows: WorkflowSummary[], total: number, page: number }} WorkflowPage */

const PAGE_SIZE = 10;
/** Step changes the live stream reports reload the list this much later, in ms (once a burst). */
const RELOAD_MS = 1000;

let page = 1;
let status = "";
/** Whether the API has workflows: once it answered, until it answers 404. */
let available = false;
/** Numbers each load, so that an older answer arriving late is dropped. */
let loadSeq = 0;
/** @type {number | null} */
let reloadTimer = null;

/** Loads the current page; hides the table if the API has no workflows. */
export async function loadWorkflows() {
  const query = new URLSearchParams({ page: String(page), pageSize: String(PAGE_SIZE) });
  if (status) query.set("status", status);
  const seq = ++loadSeq;
  /** @type {WorkflowPage} */
  let answer;
  try {
    answer = await api("GET", `api/admin/workflows?${query}`);
  } catch (error) {
    const code = statusOf(error);
    if (code === 404) available = false;
    else if (available && code !== 401) notice(`Cannot list workflows: ${errorText(error)}`, true);
    $("workflows").hidden = !available;
    return;
  }
  if (seq !== loadSeq) return; // a newer load answered first
  available = true;
  $("workflows").hidden = false;
  showRows(answer.workflows);
  showPageInfo(answer);
}

/** Reads the list again if the API has workflows (for the periodic refresh). */
export function refreshWorkflows() {
  if (available) loadWorkflows();
}

/**
 * The live stream's changed tasks: steps among them reload the list (soon, once) and
 * the open workflow's panel.
 * @param {TaskSummary[]} tasks
 */
export function workflowTasksChanged(tasks) {
  const ids = new Set(tasks.flatMap((task) => (task.workflowId ? [task.workflowId] : [])));
  if (!ids.size) return;
  stepsChanged(ids);
  if (available && !reloadTimer) {
    reloadTimer = setTimeout(() => {
      reloadTimer = null;
      loadWorkflows();
    }, RELOAD_MS);
  }
}

/**
 * Draws the rows, keeping each workflow's progress bar element so that its width animates.
 * @param {WorkflowSummary[]} workflows
 */
function showRows(workflows) {
  /** @type {Map<string, HTMLElement>} */
  const bars = new Map();
  for (const row of $("workflow-rows").querySelectorAll("tr")) {
    const bar = row.querySelector(".progress");
    if (row.dataset.workflowId && bar instanceof HTMLElement) bars.set(row.dataset.workflowId, bar);
  }
  $("workflow-rows").replaceChildren(
    ...workflows.map((workflow) => workflowRow(workflow, bars.get(workflow.workflowId))),
  );
  $("workflows-empty").hidden = workflows.length > 0;
}

/**
 * @param {WorkflowSummary} workflow
 * @param {HTMLElement | undefined} bar the row's bar before this load
 */
function workflowRow(workflow, bar) {
  const progress = workflowProgress(workflow);
  if (bar) setProgress(bar, progress);
  const counts = countsText(workflow.stepsByStatus, workflow.stepCount);
  const id = workflow.workflowId;
  return el(
    "tr",
    { dataset: { workflowId: id, status: workflow.status } },
    el("td", { class: "id" }, workflowLink(id), el("span", { class: "sub" }, counts)),
    el("td", { class: "status-cell" }, statusBadge(workflow.status)),
    el("td", { class: "progress-cell" }, bar || progressBar(progress)),
    el("td", { class: "steps" }, counts),
    el("td", { class: "created" }, timeCell(workflow.createdAt)),
    el("td", { class: "actions" }, workflowButtons(workflow, true)),
  );
}

/** @param {string} id */
function workflowLink(id) {
  const href = `#workflow=${encodeURIComponent(id)}`;
  const onclick = (/** @type {Event} */ event) => {
    event.preventDefault();
    openWorkflow(id);
  };
  return el("a", { href, title: id, onclick }, shortId(id));
}

/** @param {WorkflowPage} answer */
function showPageInfo(answer) {
  const first = answer.total ? (answer.page - 1) * PAGE_SIZE + 1 : 0;
  const last = (answer.page - 1) * PAGE_SIZE + answer.workflows.length;
  $("wf-page-info").textContent = `${first}–${last} of ${answer.total}`;
  $("wf-prev-page", HTMLButtonElement).disabled = page <= 1;
  $("wf-next-page", HTMLButtonElement).disabled = last >= answer.total;
}

/** The status filter and the pager. */
export function wireWorkflows() {
  const select = $("wf-filter-status", HTMLSelectElement);
  select.addEventListener("change", () => {
    status = select.value;
    page = 1;
    loadWorkflows();
  });
  $("wf-filters").addEventListener("submit", (event) => event.preventDefault());
  $("wf-prev-page").addEventListener("click", () => {
    page = Math.max(1, page - 1);
    loadWorkflows();
  });
  $("wf-next-page").addEventListener("click", () => {
    page += 1;
    loadWorkflows();
  });
}
