// A refused field, shown where it is: the server names it in `param`, and the form's
// inputs carry the API's field names, so the message lands beside the right one.
import { h } from './dom.js';

/** Mark the input named *param* in *form* invalid with *message*; false if none is. */
export function showFieldError(form, param, message) {
  if (!param) return false;
  const input = form.querySelector(`[name="${CSS.escape(param)}"]`);
  if (!input || input.closest('[hidden]')) return false;
  const id = `${input.id}-error`;
  let note = document.getElementById(id);
  if (!note) {
    note = h('p', {id, class: 'field-error'});
    input.insertAdjacentElement('afterend', note);
    const described = input.getAttribute('aria-describedby') || '';
    input.setAttribute('aria-describedby', `${id} ${described}`.trim());
  }
  note.textContent = message;
  input.setAttribute('aria-invalid', 'true');
  input.focus();
  return true;
}

/** Remove every field error of *form*. */
export function clearFieldErrors(form) {
  for (const note of form.querySelectorAll('.field-error')) {
    const input = form.querySelector(`[aria-describedby~="${CSS.escape(note.id)}"]`);
    if (input) {
      const rest = input.getAttribute('aria-describedby').split(/\s+/).filter((i) => i !== note.id);
      input.setAttribute('aria-describedby', rest.join(' '));
      input.removeAttribute('aria-invalid');
    }
    note.remove();
  }
}

/** The first empty required, visible and enabled input of *form*, marked; true if any. */
export function missingRequired(form) {
  const required = form.querySelectorAll('input[required], select[required], textarea[required]');
  for (const input of required) {
    if (input.disabled || input.closest('[hidden]') || input.value.trim()) continue;
    const label = form.querySelector(`label[for="${CSS.escape(input.id)}"]`);
    showFieldError(form, input.name, `${label ? label.textContent.trim() : input.name} is needed.`);
    return true;
  }
  return false;
}

/** A number input's value, or undefined when empty (empty fields are not sent). */
export function numberOf(input) {
  const text = input.value.trim();
  if (text === '') return undefined;
  const value = Number(text);
  return Number.isFinite(value) ? value : undefined;
}
