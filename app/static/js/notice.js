// @ts-check
// Telling the reader something: the notice line under the header, and the yes/no dialog.

import { $ } from "./dom.js";

/** How long a notice stays, in ms: errors longer, as they are more likely to need reading twice. */
const NOTICE_MS = 8000;
const ERROR_MS = 15000;

/** @type {number | undefined} */
let hideTimer;

/**
 * Shows `message` (and `extra`, e.g. a link) until the next notice or a few seconds pass.
 * @param {string} message
 * @param {boolean} [isError]
 * @param {Node | null} [extra]
 */
export function notice(message, isError = false, extra = null) {
  const box = $("notice");
  box.replaceChildren(message, extra || "");
  box.classList.toggle("error", isError);
  box.hidden = false;
  clearTimeout(hideTimer);
  hideTimer = setTimeout(() => (box.hidden = true), isError ? ERROR_MS : NOTICE_MS);
}

/**
 * Asks before an action; resolves true when the reader chose `yesLabel`.
 * @param {string} text
 * @param {string} yesLabel
 * @returns {Promise<boolean>}
 */
export function confirmAction(text, yesLabel) {
  return new Promise((resolve) => {
    const dialog = $("confirm-dialog", HTMLDialogElement);
    $("confirm-text").textContent = text;
    $("confirm-yes").textContent = yesLabel;
    dialog.returnValue = "";
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
    dialog.showModal();
  });
}
