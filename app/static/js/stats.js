// @ts-check
// The header: tasks by status (buttons that filter the table), the outbox, the workers.

import { api, statusOf } from "./api.js";
import { $, el } from "./dom.js";
import { currentFilters, offerStatuses, setFilter } from "./filters.js";
import { formatAge, formatTime } from "./format.js";
import { setLive } from "./live.js";

/**
 * @typedef {{
 *   counts: Record<string, number>, total: number,
 *   outbox: { backlog: number, oldestCreatedAt: string | null, oldestAgeSeconds: number | null },
 *   workers: { worker: string, lastHeartbeatAt: string, running: number }[],
 *   workersWindowSeconds: number, generatedAt: string,
 * }} Stats
 */

/** An outbox row older than this, in seconds, means the relay is behind: the chip warns. */
const OUTBOX_LATE_S = 60;

/** @param {Stats} stats */
export function renderStats(stats) {
  const counts = Object.entries(stats.counts);
  $("counts").replaceChildren(...counts.map(([status, count]) => countButton(status, count)));
  offerStatuses(counts.map(([status]) => status));
  renderOutbox(stats.outbox);
  renderWorkers(stats);
}

/**
 * A status and its count; pressing it shows only that status, pressing again shows all.
 * @param {string} status
 * @param {number} count
 */
function countButton(status, count) {
  const pressed = () => currentFilters().status === status;
  return el(
    "button",
    {
      type: "button",
      class: `status-${status}`,
      "aria-pressed": String(pressed()),
      dataset: { status },
      title: `show ${status} tasks`,
      onclick: () => setFilter("status", pressed() ? "" : status),
    },
    status,
    el("span", { class: "n" }, count),
  );
}

/** @param {Stats["outbox"]} outbox */
function renderOutbox(outbox) {
  const age = outbox.oldestAgeSeconds;
  const chip = $("outbox");
  chip.textContent = outbox.backlog
    ? `outbox ${outbox.backlog} · oldest ${formatAge(age ?? 0)}`
    : "outbox 0";
  chip.classList.toggle("warn", age !== null && age > OUTBOX_LATE_S);
}

/** @param {Stats} stats */
function renderWorkers(stats) {
  const workers = stats.workers;
  const chip = $("workers");
  chip.textContent = `${workers.length} worker${workers.length === 1 ? "" : "s"}`;
  chip.title = workers.length
    ? workers
        .map((w) => `${w.worker}: ${w.running} running, heartbeat ${formatTime(w.lastHeartbeatAt)}`)
        .join("\n")
    : `no worker heartbeat in the last ${formatAge(stats.workersWindowSeconds)}`;
}

/** Reads the stats now (the stream sends them too); a failure shows the page offline. */
export async function loadStats() {
  try {
    renderStats(await api("GET", "api/admin/stats"));
  } catch (error) {
    if (statusOf(error) !== 401) setLive("off");
  }
}
