// @ts-check
// Every request to the API: the token it carries, and one error type for every failure.
//
// Paths are relative, so that a path prefix in front of the API works. The token lives
// in sessionStorage (gone with the tab); "#token=…" in the URL, what `jobplane dev`
// prints, logs in.

const TOKEN_KEY = "jobplane.token";

/**
 * An error body as the API sends it (`message`), or FastAPI's own (`detail`).
 * @typedef {{ error?: string, message?: string, detail?: unknown }} Problem
 */

/** A request that failed: HTTP status 0 when the API could not be reached at all. */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {Problem | null} body
   */
  constructor(status, body) {
    super(body?.message || (typeof body?.detail === "string" && body.detail) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

/** @type {string | null} */
let token = null;

/** What to do when the API refuses the token; session.js decides (set by main.js). */
let onRefused = () => {};

/** @param {() => void} handler */
export function whenTokenRefused(handler) {
  onRefused = handler;
}

/** Tells whoever registered that the token was refused (the live stream has its own fetch). */
export function tokenRefused() {
  onRefused();
}

/** Takes the token out of a "#token=…" link into sessionStorage, then out of the address bar. */
export function tokenFromHash() {
  const [, value] = location.hash.match(/(?:^#|&)token=([^&]+)/) ?? [];
  if (value === undefined) return;
  sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(value));
  // Keep the token out of the address bar, the history and screenshots.
  history.replaceState(null, "", location.pathname + location.search);
}

/** The stored token becomes the one requests send. */
export function loadToken() {
  token = sessionStorage.getItem(TOKEN_KEY);
}

/** Whether requests send a token (an API without one needs none). */
export const hasToken = () => token !== null;

/** @param {string} value */
export function saveToken(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
}

/** Forgets the token; true when there was one. */
export function forgetToken() {
  const had = token !== null;
  sessionStorage.removeItem(TOKEN_KEY);
  token = null;
  return had;
}

/** @returns {Record<string, string>} */
export function authHeaders() {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/**
 * One JSON request. Resolves to the answer's body (null when empty); rejects with an
 * ApiError. A 401 also tells the session, which shows the log-in form.
 * @template [T=unknown] what the caller expects back
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body] sent as JSON
 * @returns {Promise<T>}
 */
export async function api(method, path, body) {
  const headers = authHeaders();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      cache: "no-store",
      body: body === undefined ? null : JSON.stringify(body),
    });
  } catch (error) {
    const message = `cannot reach the API (${errorMessage(error)})`;
    throw new ApiError(0, { error: "unreachable", message });
  }
  const data = parseBody(await response.text());
  if (!response.ok) {
    const error = new ApiError(response.status, /** @type {Problem | null} */ (data));
    if (response.status === 401) tokenRefused();
    throw error;
  }
  return /** @type {T} */ (data);
}

/**
 * JSON when it is, else the text as a message (a proxy's HTML error page, say).
 * @param {string} text
 * @returns {unknown}
 */
function parseBody(text) {
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return { message: text };
  }
}

/**
 * A line for the reader: "422: …" for an HTTP error, the message alone otherwise.
 * @param {unknown} error
 * @returns {string}
 */
export function errorText(error) {
  if (error instanceof ApiError && error.status) return `${error.status}: ${error.message}`;
  return errorMessage(error);
}

/**
 * @param {unknown} error
 * @returns {string}
 */
export function errorMessage(error) {
  return error instanceof Error ? error.message : String(error);
}

/**
 * The HTTP status of a failed request; 0 for anything else (unreachable, or a bug).
 * @param {unknown} error
 * @returns {number}
 */
export function statusOf(error) {
  return error instanceof ApiError ? error.status : 0;
}

/**
 * @param {string} id
 * @returns {string}
 */
export const taskPath = (id) => `api/admin/tasks/${encodeURIComponent(id)}`;

/**
 * @param {string} id
 * @returns {string}
 */
export const workflowPath = (id) => `api/admin/workflows/${encodeURIComponent(id)}`;
