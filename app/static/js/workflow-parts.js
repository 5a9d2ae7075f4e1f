// @ts-check
// The pieces of a workflow that its row and its panel share: how far it is, its steps
// counted by status, and its steps drawn as the tree it was submitted as.

import { el } from "./dom.js";
import { shortId } from "./format.js";
import { statusBadge } from "./widgets.js";

/** @import { Progress } from "./widgets.js" */
/** @import { Shape, WorkflowStep, WorkflowSummary } from "./workflows.js" */

/**
 * A workflow's progress bar: its percent, with "3 of 5" (steps completed) as its title.
 * @param {WorkflowSummary} workflow
 * @returns {Progress}
 */
export function workflowProgress(workflow) {
  const done = workflow.stepsByStatus.completed ?? 0;
  return { percent: workflow.percent, progress: done, total: workflow.stepCount };
}

/**
 * "2 of 5 completed · 1 running · 2 waiting": the steps by status, completed first.
 * @param {Record<string, number>} counts
 * @param {number} total
 * @returns {string}
 */
export function countsText(counts, total) {
  const rest = Object.entries(counts)
    .filter(([status, count]) => status !== "completed" && count > 0)
    .map(([status, count]) => `${count} ${status}`);
  return [`${counts.completed ?? 0} of ${total} completed`, ...rest].join(" · ");
}

/**
 * What a step is, as the page shows it: a pending step that still waits on steps before
 * it is "waiting" (it has not been handed to a worker), not "pending".
 * @param {WorkflowStep} step
 * @returns {string}
 */
export function stepStatus(step) {
  return step.status === "pending" && step.waitingOn > 0 ? "waiting" : step.status;
}

/**
 * The steps counted by the status the page shows them with (see stepStatus).
 * @param {WorkflowStep[]} steps
 * @returns {Record<string, number>}
 */
export function stepCounts(steps) {
  /** @type {Record<string, number>} */
  const counts = {};
  for (const step of steps) {
    const status = stepStatus(step);
    counts[status] = (counts[status] ?? 0) + 1;
  }
  return counts;
}

/**
 * The workflow's steps as nested lists following its shape: a chain an ordered list, a
 * group its members side by side, then the step after them. `open` opens a step's task.
 * @param {Shape} shape
 * @param {Map<string, WorkflowStep>} steps by task id
 * @param {(taskId: string) => void} open
 * @returns {HTMLElement}
 */
export function shapeTree(shape, steps, open) {
  if (typeof shape === "string") return stepItem(shape, steps.get(shape), open);
  if (shape && "chain" in shape && Array.isArray(shape.chain)) {
    const members = shape.chain.map((member) => el("li", {}, shapeTree(member, steps, open)));
    return el("ol", { class: "wf-chain" }, members);
  }
  if (shape && "group" in shape && Array.isArray(shape.group)) return groupTree(shape, steps, open);
  return el("p", { class: "error" }, "a part of this workflow that the page cannot show");
}

/**
 * @param {{ group: Shape[], then?: Shape }} shape
 * @param {Map<string, WorkflowStep>} steps
 * @param {(taskId: string) => void} open
 * @returns {HTMLElement}
 */
function groupTree(shape, steps, open) {
  const count = shape.group.length;
  const members = shape.group.map((member) => el("li", {}, shapeTree(member, steps, open)));
  const after = `then, once ${count === 1 ? "it" : `all ${count}`} completed`;
  const then =
    shape.then !== undefined &&
    el(
      "div",
      { class: "wf-then" },
      el("span", { class: "wf-label" }, after),
      shapeTree(shape.then, steps, open),
    );
  return el(
    "div",
    { class: "wf-group" },
    el("span", { class: "wf-label" }, `${count} side by side`),
    el("ul", { class: "wf-members" }, members),
    then,
  );
}

/**
 * One step: its status, its type (a link that opens its task), its id and attempts.
 * @param {string} taskId
 * @param {WorkflowStep | undefined} step
 * @param {(taskId: string) => void} open
 * @returns {HTMLElement}
 */
function stepItem(taskId, step, open) {
  if (!step) {
    const missing = `${shortId(taskId)} (not found)`;
    return el("div", { class: "wf-step", dataset: { step: taskId } }, missing);
  }
  const status = stepStatus(step);
  const badge = statusBadge(status);
  if (status === "waiting") badge.title = `waits on ${step.waitingOn} step(s) before it`;
  const link = el(
    "a",
    {
      href: `#task=${encodeURIComponent(taskId)}`,
      class: "wf-step-link",
      title: `open task ${taskId}`,
      dataset: { taskId },
      onclick: (event) => {
        event.preventDefault();
        open(taskId);
      },
    },
    step.taskType,
  );
  const attempts = `${step.attempts} attempt${step.attempts === 1 ? "" : "s"}`;
  return el(
    "div",
    { class: "wf-step", dataset: { step: taskId, status } },
    badge,
    link,
    el("span", { class: "mono wf-step-id" }, shortId(taskId)),
    el("span", { class: "wf-attempts" }, attempts),
    step.status === "running" && step.total > 0 && el("span", {}, `${step.percent}%`),
    step.error && el("span", { class: "wf-step-error", title: step.error }, firstLine(step.error)),
  );
}

/**
 * @param {string} text
 * @returns {string}
 */
function firstLine(text) {
  const line = text.split("\n", 1)[0] ?? "";
  return line.length > 80 ? `${line.slice(0, 79)}…` : line;
}
