// Keyboard shortcuts. `shortcutFor` is pure (node tests it); `installKeys` wires it to the
// document. Shortcuts never type into fields: while a text field has focus only Undo,
// Redo and Escape reach the editor (Undo/Redo then act on the edit, not on the field's
// text, which always shows the committed value), and letters go to the field.

/** Is `target` a field that takes typed text? (`{tagName, type}`-like or an Element.) */
export function isTextField(target) {
  if (!target || !target.tagName) return false;
  const tag = target.tagName.toLowerCase();
  if (tag === 'textarea' || tag === 'select') return true;
  if (target.isContentEditable) return true;
  return tag === 'input' && !['radio', 'range', 'checkbox', 'button', 'submit', 'reset', 'file', 'color'].includes((target.type || 'text').toLowerCase());
}

/**
 * The action a key press asks for — `{action, ...}` or null — from a KeyboardEvent-like
 * `{key, ctrlKey, metaKey, shiftKey, altKey, repeat}`, with `inField` true while a text
 * field has focus and `concepts` the palette's length.
 */
export function shortcutFor(event, { inField = false, concepts = 0 } = {}) {
  const mod = event.ctrlKey || event.metaKey;
  const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
  if (mod && !event.altKey && key === 'z') return { action: event.shiftKey ? 'redo' : 'undo' };
  if (mod && !event.altKey && key === 'y') return { action: 'redo' };
  if (event.key === 'Escape') return { action: inField ? 'leave-field' : 'escape' };
  if (inField) return null;
  if (mod && !event.altKey && key === 's') return { action: 'download' };
  if (mod || event.altKey) return null; // the browser's own shortcuts
  if (event.key === '?') return { action: 'help' };
  if (key === 'd') return { action: 'mode', mode: 'draw' };
  if (key === 'e') return { action: 'mode', mode: 'remove' };
  if (event.key === '[') return { action: 'brush', direction: -1 };
  if (event.key === ']') return { action: 'brush', direction: 1 };
  if (/^[0-9]$/.test(event.key)) {
    // 1–9 are the first nine concepts, 0 the tenth.
    const index = event.key === '0' ? 9 : Number(event.key) - 1;
    return index < concepts ? { action: 'concept', index } : null;
  }
  if (key === 'c') return event.repeat ? null : { action: 'compare', on: true };
  if (key === 'n') return { action: 'random' };
  return null;
}

/** Sends the document's key presses to `handlers[action](shortcut, event)`. */
export function installKeys(handlers, { blocked, concepts }) {
  document.addEventListener('keydown', (event) => {
    if (blocked()) return; // a dialog is open: it handles its own keys
    const inField = isTextField(event.target);
    const shortcut = shortcutFor(event, { inField, concepts: concepts() });
    if (!shortcut || !handlers[shortcut.action]) return;
    event.preventDefault();
    handlers[shortcut.action](shortcut, event);
  });
  document.addEventListener('keyup', (event) => {
    if (event.key.toLowerCase() === 'c') handlers.compare?.({ on: false }, event);
  });
}
