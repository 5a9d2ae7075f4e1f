// @ts-check
// The task list's filters: the form above the table and the status buttons in the header.

import { $, el } from "./dom.js";

/** @import { TaskSummary } from "./tasks.js" */
/** @typedef {{ status: string, type: string, queue: string, search: string }} Filters */
/** @typedef {keyof Filters} FilterName */

/** @type {Filters} each empty for "any" */
const filters = { status: "", type: "", queue: "", search: "" };

/** Typing in a text filter reloads the list once the reader pauses, not on every key. */
const TYPING_MS = 300;

/** What to do when a filter changes; the task list reloads (set in wireFilters). */
let onChange = () => {};

/** @returns {Readonly<Filters>} */
export const currentFilters = () => filters;

/**
 * @param {FilterName} name
 * @param {string} value
 */
export function setFilter(name, value) {
  filters[name] = value;
  if (name === "status") $("filter-status", HTMLSelectElement).value = value;
  for (const button of $("counts").querySelectorAll("button")) {
    button.setAttribute("aria-pressed", String(filters.status === button.dataset.status));
  }
  onChange();
}

/**
 * Does the task belong in the filtered list? (For changes the live stream reports.)
 * @param {TaskSummary} task
 */
export function matchesFilters(task) {
  const f = filters;
  return (
    (!f.status || task.status === f.status) &&
    (!f.type || task.taskType === f.type) &&
    (!f.queue || task.queue === f.queue) &&
    (!f.search || task.taskId.toLowerCase().startsWith(f.search.toLowerCase()))
  );
}

/**
 * The filters that are set, as query parameters of the list request.
 * @param {URLSearchParams} query
 */
export function addFilters(query) {
  for (const [name, value] of Object.entries(filters)) if (value) query.set(name, value);
}

/**
 * Adds the statuses the API counts to the status filter, once each.
 * @param {string[]} statuses
 */
export function offerStatuses(statuses) {
  const select = $("filter-status", HTMLSelectElement);
  for (const status of statuses) {
    if (![...select.options].some((option) => option.value === status)) {
      select.append(el("option", { value: status }, status));
    }
  }
}

/**
 * The job types the API knows become the type filter's choices.
 * @param {string[]} names
 */
export function offerJobTypes(names) {
  const select = $("filter-type", HTMLSelectElement);
  select.replaceChildren(
    el("option", { value: "" }, "any"),
    ...names.map((name) => el("option", { value: name }, name)),
  );
  select.value = filters.type;
}

/** @param {() => void} handler called after any filter changed */
export function wireFilters(handler) {
  onChange = handler;
  const status = $("filter-status", HTMLSelectElement);
  const type = $("filter-type", HTMLSelectElement);
  status.addEventListener("change", () => setFilter("status", status.value));
  type.addEventListener("change", () => setFilter("type", type.value));
  const typed = debounce((/** @type {FilterName} */ name, /** @type {string} */ value) => {
    setFilter(name, value.trim());
  }, TYPING_MS);
  /** @type {[string, FilterName][]} */
  const texts = [["filter-queue", "queue"], ["filter-search", "search"]];
  for (const [id, name] of texts) {
    const input = $(id, HTMLInputElement);
    input.addEventListener("input", () => typed(name, input.value));
  }
  $("filters").addEventListener("submit", (event) => event.preventDefault());
}

/**
 * `fn`, called only once calls have stopped for `ms`, with the last call's arguments.
 * @template {unknown[]} A
 * @param {(...args: A) => void} fn
 * @param {number} ms
 * @returns {(...args: A) => void}
 */
function debounce(fn, ms) {
  /** @type {number | undefined} */
  let timer;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}
