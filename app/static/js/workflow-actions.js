// @ts-check
// Cancel and Retry for a whole workflow: the buttons its row and its panel offer, and
// what they do. The API says no (409) to what it does not allow; its message is shown.

import { api, errorText, statusOf, workflowPath } from "./api.js";
import { el } from "./dom.js";
import { shortId } from "./format.js";
import { confirmAction, notice } from "./notice.js";

/** @import { WorkflowDetail, WorkflowSummary } from "./workflows.js" */

/** Workflows that ended without success, which can run again from where they stopped. */
const RETRYABLE = new Set(["failed", "cancelled"]);

/**
 * What to do with a workflow an action changed, or may have found changed (a refusal
 * says the page was behind; `workflow` is then null): its row and its panel catch up
 * (set by main.js, since the list and the panel both show these buttons).
 * @typedef {(id: string, workflow: WorkflowDetail | null) => void} ChangeHandler
 */
/** @type {ChangeHandler} */
let onChanged = () => {};

/** @param {ChangeHandler} handler */
export function whenWorkflowChanged(handler) {
  onChanged = handler;
}

/**
 * The buttons for what can be done to the workflow now; `small` ones fit a table row.
 * @param {WorkflowSummary} workflow
 * @param {boolean} small
 * @returns {HTMLButtonElement[]}
 */
export function workflowButtons(workflow, small) {
  const size = small ? "small" : "";
  const id = workflow.workflowId;
  const buttons = [];
  if (workflow.status === "running") {
    const onclick = () => cancelWorkflow(id);
    buttons.push(el("button", { type: "button", class: `wf-cancel ${size}`, onclick }, "Cancel"));
  }
  if (RETRYABLE.has(workflow.status)) {
    const onclick = () => retryWorkflow(id);
    buttons.push(el("button", { type: "button", class: `wf-retry ${size}`, onclick }, "Retry"));
  }
  return buttons;
}

/** @param {string} id */
async function cancelWorkflow(id) {
  const question =
    `Cancel workflow ${shortId(id)}? Its pending steps are cancelled at once, ` +
    "its running ones interrupted within about a second.";
  if (!(await confirmAction(question, "Cancel workflow"))) return;
  await act(id, "cancel", (workflow) => `Cancelled workflow ${shortId(id)} (${workflow.status}).`);
}

/** @param {string} id */
async function retryWorkflow(id) {
  const question = `Run workflow ${shortId(id)} again from where it stopped?`;
  if (!(await confirmAction(question, "Retry"))) return;
  await act(id, "retry", (workflow) => `Retrying workflow ${shortId(id)}: ${workflow.status}.`);
}

/**
 * Posts the action; a notice either way (the API's message when it refuses).
 * @param {string} id
 * @param {"cancel" | "retry"} action
 * @param {(workflow: WorkflowDetail) => string} done what to say when it worked
 */
async function act(id, action, done) {
  try {
    /** @type {WorkflowDetail} */
    const workflow = await api("POST", `${workflowPath(id)}/${action}`);
    notice(done(workflow));
    onChanged(id, workflow);
  } catch (error) {
    if (statusOf(error) === 401) return;
    notice(`Could not ${action} workflow ${shortId(id)}: ${errorText(error)}`, true);
    if (statusOf(error) === 409) onChanged(id, null);
  }
}
