// @ts-check
// Logging in and out, and starting and stopping everything the page does meanwhile
// (the live stream, the periodic refreshes, the open task and workflow).

import {
  api,
  errorText,
  forgetToken,
  hasToken,
  loadToken,
  saveToken,
  statusOf,
  tokenFromHash,
} from "./api.js";
import { $ } from "./dom.js";
import { startLive, stopLive } from "./live.js";
import { notice } from "./notice.js";
import { loadSchedules, refreshSchedules } from "./schedules.js";
import { loadStats, renderStats } from "./stats.js";
import { loadJobTypes } from "./submit.js";
import { closePanel, openTaskFromHash } from "./task-panel.js";
import { applyTaskChanges, loadTasks } from "./tasks.js";
import { closeWorkflow, openWorkflowFromHash } from "./workflow-panel.js";
import { loadWorkflows, refreshWorkflows, workflowTasksChanged } from "./workflows.js";

/** @import { Stats } from "./stats.js" */

/** The whole table again, in ms, whatever the stream says (it sends changes only). */
const REFRESH_MS = 15000;
const SCHEDULES_MS = 10000;
const WORKFLOWS_MS = 5000;
/** After the API could not be reached, try again this much later, in ms. */
const RETRY_MS = 5000;

/** @type {number[]} intervals and timeouts to clear when the session ends */
let timers = [];

/** Reads the stats with the stored token: the dashboard if they come, the form if refused. */
export async function start() {
  tokenFromHash();
  loadToken();
  /** @type {Stats} */
  let stats;
  try {
    stats = await api("GET", "api/admin/stats");
  } catch (error) {
    if (statusOf(error) === 401) return; // the form shows (loggedOut)
    $("app").hidden = false;
    notice(`Cannot load the dashboard: ${errorText(error)}`, true);
    timers.push(setTimeout(start, RETRY_MS));
    return;
  }
  enterApp(stats);
}

/** @param {Stats} stats */
function enterApp(stats) {
  $("login").hidden = true;
  $("app").hidden = false;
  $("logout").hidden = !hasToken();
  renderStats(stats);
  loadJobTypes();
  loadTasks();
  loadSchedules();
  loadWorkflows();
  startLive({
    stats: renderStats,
    tasks: (tasks) => {
      applyTaskChanges(tasks);
      workflowTasksChanged(tasks);
    },
    poll: () => {
      loadStats();
      loadTasks();
    },
  });
  timers.push(setInterval(loadTasks, REFRESH_MS));
  timers.push(setInterval(refreshSchedules, SCHEDULES_MS));
  timers.push(setInterval(refreshWorkflows, WORKFLOWS_MS));
  openTaskFromHash();
  openWorkflowFromHash();
}

function stopEverything() {
  stopLive();
  // Timeouts and intervals share one list of ids: clearTimeout clears either.
  for (const timer of timers) clearTimeout(timer);
  timers = [];
  closePanel();
  closeWorkflow();
}

/** @param {string} message */
function showLogin(message) {
  stopEverything();
  $("app").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
  $("token-input").focus();
}

/**
 * Forgets the token and shows the form; with `message` when there was a token to lose.
 * @param {string} message
 */
export function loggedOut(message) {
  showLogin(forgetToken() ? message : "");
}

/** The log-in form, the log-out button, and log-in links opened in this tab. */
export function wireSession() {
  const input = $("token-input", HTMLInputElement);
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = input.value.trim();
    if (!token) return;
    saveToken(token);
    input.value = "";
    start();
  });
  $("logout").addEventListener("click", () => loggedOut("Logged out."));
  window.addEventListener("hashchange", () => {
    if (/(?:^#|&)token=/.test(location.hash)) {
      stopEverything(); // a log-in link opened in this tab: start again with its token
      start();
      return;
    }
    openTaskFromHash();
    openWorkflowFromHash();
  });
}
