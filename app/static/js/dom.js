// @ts-check
// Finding and building elements: the two things every other module does to the page.

/** @typedef {string | number | boolean | null | undefined} Attribute */
/** @typedef {Node | string | number | null | undefined | false} Child */
/**
 * What `el` sets on a new element: "class", "dataset", "on<event>" listeners, and any
 * other attribute (true for a bare attribute; null, undefined and false for none).
 * @typedef {{
 *   class?: string,
 *   dataset?: Record<string, string>,
 *   [name: string]: Attribute | Record<string, string> | ((event: Event) => void),
 * }} Props
 */

/**
 * The element with this id, checked to be of `type` (HTMLElement by default), so that a
 * renamed id in index.html fails loudly here rather than as "undefined" somewhere later.
 * @template {HTMLElement} [T=HTMLElement]
 * @param {string} id
 * @param {new (...args: never[]) => T} [type]
 * @returns {T}
 */
export function $(id, type) {
  const node = document.getElementById(id);
  const expected = type ?? HTMLElement;
  if (!(node instanceof expected)) throw new Error(`#${id} is not a ${expected.name}`);
  return /** @type {T} */ (node);
}

/**
 * A new element with its props and children (nested arrays are flattened one level).
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Props} [props]
 * @param {...(Child | Child[])} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) setProp(node, key, value);
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/**
 * @param {HTMLElement} node
 * @param {string} key
 * @param {Props[string]} value
 */
function setProp(node, key, value) {
  if (value === undefined || value === null || value === false) return;
  if (typeof value === "function") node.addEventListener(key.slice(2), value);
  else if (typeof value === "object") Object.assign(node.dataset, value);
  else if (key === "class") node.className = String(value);
  else node.setAttribute(key, value === true ? "" : String(value));
}
