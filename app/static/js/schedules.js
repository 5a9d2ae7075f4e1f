// @ts-check
// The schedules table, shown only when the API has schedules (GET api/admin/schedules
// answers), with a "Run now" button per schedule.

import { api, errorText, statusOf } from "./api.js";
import { $, el } from "./dom.js";
import { confirmAction, notice } from "./notice.js";
import { loadTasks } from "./tasks.js";
import { statusBadge, timeCell } from "./widgets.js";

/**
 * A schedule as GET api/admin/schedules lists it (the API's ScheduleInfo, in part).
 * @typedef {{
 *   name: string, job: string, cron: string, timezone: string,
 *   nextFireTime: string | null,
 *   lastRun: { taskId: string, fireTime: string | null, status: string } | null,
 *   missedCount: number, skippedCount: number,
 * }} Schedule
 */

/** Whether the API has schedules: once it answered, until it answers 404. */
let available = false;

/** Reads the schedules again if the API has them (for the periodic refresh). */
export function refreshSchedules() {
  if (available) loadSchedules();
}

export async function loadSchedules() {
  /** @type {{ schedules: Schedule[] }} */
  let data;
  try {
    data = await api("GET", "api/admin/schedules");
  } catch (error) {
    available = statusOf(error) !== 404 && available;
    $("schedules").hidden = !available;
    return;
  }
  available = true;
  $("schedules").hidden = false;
  $("schedule-rows").replaceChildren(...data.schedules.map(scheduleRow));
}

/** @param {Schedule} s */
function scheduleRow(s) {
  const last = s.lastRun;
  const lastCell = last ? [statusBadge(last.status), " ", timeCell(last.fireTime)] : "never";
  const onclick = () => runSchedule(s.name);
  const sub = el("span", { class: "sub" }, `${s.cron} (${s.timezone})`); // the narrow screen's
  return el(
    "tr",
    { dataset: { schedule: s.name } },
    el("td", { class: "name" }, el("span", { class: "mono" }, s.name), sub),
    el("td", { class: "job" }, s.job),
    el("td", { class: "mono cron" }, s.cron),
    el("td", { class: "tz" }, s.timezone),
    el("td", {}, s.nextFireTime ? timeCell(s.nextFireTime) : "–"),
    el("td", { class: "last" }, lastCell),
    el("td", { class: "missed" }, `${s.missedCount} / ${s.skippedCount}`),
    el(
      "td",
      { class: "actions" },
      el("button", { type: "button", class: "small run-now", onclick }, "Run now"),
    ),
  );
}

/** @param {string} name */
async function runSchedule(name) {
  const question = `Run schedule ${name} now, outside its cron times?`;
  if (!(await confirmAction(question, "Run now"))) return;
  try {
    /** @type {{ taskId?: string, task?: { taskId?: string } } | null} */
    const answer = await api("POST", `api/admin/schedules/${encodeURIComponent(name)}/run`);
    const id = answer && (answer.taskId || answer.task?.taskId);
    notice(id ? `Schedule ${name} started task ${id}.` : `Schedule ${name} started.`);
    loadTasks();
    loadSchedules();
  } catch (error) {
    if (statusOf(error) !== 401) notice(`Could not run ${name}: ${errorText(error)}`, true);
  }
}
