// @ts-check
// The "Submit a job" dialog: the job types the API knows, their defaults, and the POST.

import { api, errorMessage, errorText, statusOf } from "./api.js";
import { $, el } from "./dom.js";
import { offerJobTypes } from "./filters.js";
import { formatAge } from "./format.js";
import { notice } from "./notice.js";
import { loadStats } from "./stats.js";
import { openTask } from "./task-panel.js";
import { showFirstPage } from "./tasks.js";

/** @import { TaskDetail } from "./tasks.js" */
/**
 * A job type as GET api/admin/job-types describes it (the API's JobType, in part).
 * @typedef {{
 *   name: string, description: string | null, queue: string, maxRetries: number,
 *   timeoutSeconds: number, params: { name: string, required: boolean, default: unknown }[],
 * }} JobType
 */
/** @typedef {{ type: string, params: object, queue?: string, delaySeconds?: number }} Submission */

/** @type {JobType[]} */
let jobTypes = [];

/** Reads the job types into the dialog's choices and the table's type filter. */
export async function loadJobTypes() {
  try {
    /** @type {{ jobTypes: JobType[] }} */
    const answer = await api("GET", "api/admin/job-types");
    jobTypes = answer.jobTypes;
  } catch {
    return; // the dialog asks again when it opens empty
  }
  const names = jobTypes.map((job) => job.name);
  offerJobTypes(names);
  $("submit-type").replaceChildren(...names.map((name) => el("option", { value: name }, name)));
  describeJobType();
}

/** The chosen type's optional params with their defaults, and a line on what it is. */
function describeJobType() {
  const job = jobTypes.find((j) => j.name === $("submit-type", HTMLSelectElement).value);
  if (!job) return;
  const defaults = Object.fromEntries(
    job.params.filter((p) => !p.required && p.default !== null).map((p) => [p.name, p.default]),
  );
  $("submit-params", HTMLTextAreaElement).value = JSON.stringify(defaults, null, 2);
  const required = job.params.filter((p) => p.required).map((p) => p.name);
  const lines = [job.description ? job.description.split("\n")[0] : ""];
  const limit = formatAge(job.timeoutSeconds);
  lines.push(`queue ${job.queue}, ${job.maxRetries} retries, time limit ${limit}`);
  if (required.length) lines.push(`required params: ${required.join(", ")}`);
  $("submit-type-doc").textContent = lines.filter(Boolean).join("\n");
}

function openSubmit() {
  $("submit-error").textContent = "";
  if (!$("submit-type", HTMLSelectElement).options.length) loadJobTypes();
  $("submit-dialog", HTMLDialogElement).showModal();
}

/**
 * The form as the API's submission; throws an Error saying what is wrong with it.
 * @returns {Submission}
 */
function readSubmission() {
  let params;
  try {
    params = JSON.parse($("submit-params", HTMLTextAreaElement).value || "{}");
  } catch (error) {
    throw new Error(`Params are not valid JSON: ${errorMessage(error)}`);
  }
  if (params === null || typeof params !== "object" || Array.isArray(params)) {
    throw new Error('Params must be a JSON object, e.g. {"seconds": 5}');
  }
  /** @type {Submission} */
  const body = { type: $("submit-type", HTMLSelectElement).value, params };
  const queue = $("submit-queue", HTMLInputElement).value.trim();
  const delay = $("submit-delay", HTMLInputElement).value.trim();
  if (queue) body.queue = queue;
  if (delay) body.delaySeconds = Number(delay);
  return body;
}

/** @param {SubmitEvent} event */
async function submitJob(event) {
  event.preventDefault();
  const errorBox = $("submit-error");
  errorBox.textContent = "";
  let body;
  try {
    body = readSubmission();
  } catch (error) {
    errorBox.textContent = errorMessage(error);
    return;
  }
  const button = $("submit-go", HTMLButtonElement);
  button.disabled = true;
  try {
    /** @type {TaskDetail} */
    const task = await api("POST", "api/tasks", body);
    $("submit-dialog", HTMLDialogElement).close();
    const text = `Submitted ${task.taskType} as ${task.taskId} (${task.status}). `;
    notice(text, false, openLink(task.taskId));
    showFirstPage();
    loadStats();
  } catch (error) {
    if (statusOf(error) !== 401) errorBox.textContent = `Not submitted: ${errorText(error)}`;
  } finally {
    button.disabled = false;
  }
}

/**
 * "open it": the submitted task's panel.
 * @param {string} taskId
 */
function openLink(taskId) {
  const link = el("a", { href: "#", class: "open-task", dataset: { taskId } }, "open it");
  link.addEventListener("click", (event) => {
    event.preventDefault();
    openTask(taskId);
  });
  return link;
}

/** The button that opens the dialog, and the dialog's own controls. */
export function wireSubmit() {
  $("open-submit").addEventListener("click", openSubmit);
  $("submit-type").addEventListener("change", describeJobType);
  $("submit-form").addEventListener("submit", submitJob);
  $("submit-cancel").addEventListener("click", () => $("submit-dialog", HTMLDialogElement).close());
}
