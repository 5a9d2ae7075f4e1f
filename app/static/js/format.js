// @ts-check
// Text for times, durations and ids, the same everywhere on the page.

/**
 * A time as the reader's clock shows it; the date only when it is not today.
 * @param {string | null | undefined} iso
 * @returns {string}
 */
export function formatTime(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  const today = new Date().toDateString() === date.toDateString();
  return today ? date.toLocaleTimeString() : date.toLocaleString();
}

/**
 * A duration in the largest unit that keeps it readable: "45 s", "3 min", "2.5 h".
 * @param {number} seconds
 * @returns {string}
 */
export function formatAge(seconds) {
  if (seconds < 60) return `${Math.round(seconds)} s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

/**
 * A task id's first 8 characters: enough to tell tasks apart on one screen.
 * @param {string} id
 * @returns {string}
 */
export const shortId = (id) => id.slice(0, 8);
