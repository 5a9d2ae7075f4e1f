// @ts-check
// The task table: one page of the filtered list, kept current by the live changes.

import { api, errorText, statusOf } from "./api.js";
import { $, el } from "./dom.js";
import { addFilters, matchesFilters } from "./filters.js";
import { shortId } from "./format.js";
import { notice } from "./notice.js";
import { actionButtons } from "./task-actions.js";
import { openTask, openTaskId, refreshPanel } from "./task-panel.js";
import { progressBar, setProgress, statusBadge, timeCell } from "./widgets.js";

/**
 * A task as lists and the live stream send it (the API's TaskSummary); `workflowId`
 * names the workflow it is a step of (null for a task of its own).
 * @typedef {{
 *   taskId: string, taskType: string, queue: string, priority: number, status: string,
 *   progress: number, total: number, percent: number, attempts: number, retryCount: number,
 *   error: string | null, createdAt: string, startedAt: string | null,
 *   completedAt: string | null, cancelledAt: string | null,
 *   cancelRequested?: boolean, workflowId?: string | null,
 * }} TaskSummary
 */
/**
 * One task in full (the API's TaskDetail).
 * @typedef {TaskSummary & {
 *   params: Record<string, unknown>, result: unknown, maxRetries: number,
 *   timeoutSeconds: number, runAfter: string, cancelRequested: boolean,
 *   worker: string | null, heartbeatAt: string | null,
 *   scheduleName: string | null, fireTime: string | null,
 * }} TaskDetail
 */
/**
 * @typedef {{ tasks: TaskSummary[], total: number, totalIsEstimate: boolean, page: number,
 *   pageSize: number }} TaskPage
 */

const PAGE_SIZE = 25;
/** Changes that move rows in or out wait this long, so that a burst reloads once. */
const RELOAD_MS = 700;

let page = 1;
/** @type {Map<string, TaskSummary>} the current page's tasks, newest first */
let shown = new Map();
/** Numbers each load, so that an older answer arriving late is dropped. */
let loadSeq = 0;
/** @type {number | null} */
let reloadTimer = null;

/** Loads the current page with the current filters. */
export async function loadTasks() {
  const query = new URLSearchParams({ page: String(page), pageSize: String(PAGE_SIZE) });
  addFilters(query);
  const seq = ++loadSeq;
  /** @type {TaskPage} */
  let answer;
  try {
    answer = await api("GET", `api/admin/tasks?${query}`);
  } catch (error) {
    if (statusOf(error) !== 401) notice(`Cannot list tasks: ${errorText(error)}`, true);
    return;
  }
  if (seq !== loadSeq) return; // a newer load answered first
  shown = new Map(answer.tasks.map((task) => [task.taskId, task]));
  $("task-rows").replaceChildren(...answer.tasks.map(taskRow));
  $("tasks-empty").hidden = answer.tasks.length > 0;
  showPageInfo(answer);
}

/** @param {TaskPage} answer */
function showPageInfo(answer) {
  const first = answer.total ? (answer.page - 1) * PAGE_SIZE + 1 : 0;
  const last = (answer.page - 1) * PAGE_SIZE + answer.tasks.length;
  const total = answer.totalIsEstimate ? `about ${answer.total}` : `${answer.total}`;
  $("page-info").textContent = `${first}–${last} of ${total}`;
  $("prev-page", HTMLButtonElement).disabled = page <= 1;
  // An estimated total may be off: a full page means there may be more.
  $("next-page", HTMLButtonElement).disabled = answer.totalIsEstimate
    ? answer.tasks.length < PAGE_SIZE
    : last >= answer.total;
}

/** Back to the newest tasks, e.g. after a submission or a filter change. */
export function showFirstPage() {
  page = 1;
  loadTasks();
}

/** @param {TaskSummary} task */
function taskRow(task) {
  const row = el("tr", { dataset: { taskId: task.taskId } });
  fillRow(row, task);
  return row;
}

/**
 * (Re)draws a row, keeping its progress bar element so that its width animates.
 * @param {HTMLTableRowElement} row
 * @param {TaskSummary} task
 */
function fillRow(row, task) {
  shown.set(task.taskId, task);
  row.dataset.status = task.status;
  const progress = row.querySelector(".progress");
  const cells = [
    el("td", { class: "id" }, taskLink(task), el("span", { class: "sub" }, task.taskType)),
    el("td", { class: "type" }, task.taskType),
    el("td", { class: "queue" }, task.queue),
    el("td", { class: "status-cell" }, statusBadge(task.status)),
    el("td", { class: "progress-cell" }, progress || progressBar(task)),
    el("td", { class: "attempts" }, String(task.attempts)),
    el("td", { class: "created" }, timeCell(task.createdAt)),
    el("td", { class: "actions" }, actionButtons(task, true)),
  ];
  if (progress instanceof HTMLElement) setProgress(progress, task);
  row.replaceChildren(...cells);
}

/** @param {TaskSummary} task */
function taskLink(task) {
  const href = `#task=${encodeURIComponent(task.taskId)}`;
  const link = el("a", { href, title: task.taskId }, shortId(task.taskId));
  link.addEventListener("click", (event) => {
    event.preventDefault();
    openTask(task.taskId);
  });
  return link;
}

/**
 * @param {string} taskId
 * @returns {HTMLTableRowElement | null}
 */
function rowOf(taskId) {
  return $("task-rows").querySelector(`tr[data-task-id="${CSS.escape(taskId)}"]`);
}

/**
 * Redraws the task's row if it is on this page (the panel read it afresh).
 * @param {TaskSummary} task
 */
export function showTask(task) {
  const row = rowOf(task.taskId);
  if (row) fillRow(row, task);
}

/**
 * Applies tasks that changed: rows redraw in place; a task that leaves the filtered list,
 * or a new one that belongs on the first page, reloads the page (soon, once).
 * @param {TaskSummary[]} tasks
 */
export function applyTaskChanges(tasks) {
  let reload = false;
  const before = [...shown.values()];
  for (const task of tasks) {
    const row = rowOf(task.taskId);
    if (row && matchesFilters(task)) fillRow(row, task);
    else if (row) reload = true; // it left the filtered list
    else if (page === 1 && matchesFilters(task)) reload ||= joinsFirstPage(task, before);
    if (task.taskId === openTaskId()) refreshPanel();
  }
  if (reload) reloadSoon();
}

/**
 * A task not shown belongs on the first page if the page has room or it is newer than
 * the page's oldest task.
 * @param {TaskSummary} task
 * @param {TaskSummary[]} before the page's tasks, newest first
 */
function joinsFirstPage(task, before) {
  const oldest = before.at(-1);
  return before.length < PAGE_SIZE || oldest === undefined || task.createdAt >= oldest.createdAt;
}

function reloadSoon() {
  if (reloadTimer) return;
  reloadTimer = setTimeout(() => {
    reloadTimer = null;
    loadTasks();
  }, RELOAD_MS);
}

/** The pager's buttons. */
export function wireTasks() {
  $("prev-page").addEventListener("click", () => {
    page = Math.max(1, page - 1);
    loadTasks();
  });
  $("next-page").addEventListener("click", () => {
    page += 1;
    loadTasks();
  });
}
