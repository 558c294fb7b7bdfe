// Building elements from data: text always goes in as text (textContent), never as
// markup, so nothing an upstream or a user wrote can become HTML.

const SVG = 'http://www.w3.org/2000/svg';

function fill(el, attrs, children) {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'text') el.textContent = String(value);
    else if (name === 'class') el.setAttribute('class', value);
    else if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value);
    } else el.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** An HTML element: h('td', {class: 'n'}, 'text', child). */
export function h(tag, attrs = {}, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

/** An SVG element, for the charts. */
export function s(tag, attrs = {}, ...children) {
  return fill(document.createElementNS(SVG, tag), attrs, children);
}

/** The element with this id (the page's static skeleton always has it). */
export function byId(id) {
  const el = document.getElementById(id);
  if (el === null) throw new Error(`missing #${id}`);
  return el;
}

let counter = 0;
/** A fresh id for elements made at run time (labels and descriptions point at ids). */
export function uid(prefix) {
  counter += 1;
  return `${prefix}-${counter}`;
}

/** A button whose visible text is short and whose accessible name says what it acts on. */
export function actionButton(text, target, onclick, cls = '') {
  return h('button', {type: 'button', class: cls || null, onclick},
    text, h('span', {class: 'visually-hidden'}, ` ${target}`));
}

/** "2026-12-02T06:00:00Z" as a short local date and time; anything else unchanged. */
export function when(value) {
  if (!value) return '';
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleString();
}

/** Pretty JSON for a <pre>. */
export function json(value) {
  return JSON.stringify(value, null, 2);
}
