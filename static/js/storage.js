// What the editor keeps in this browser (localStorage): the edit history of every image,
// the pictures this browser uploaded (their names and figures, not the pictures), and
// small preferences. Writing never throws: when space runs out, the history keeps
// fewer undo states, and the user is told if even the stroke stacks don't fit.

const HISTORY_KEY = 'ganpaint.history.v1';
const PREFS_KEY = 'ganpaint.prefs.v1';
const UPLOADS_KEY = 'ganpaint.uploads.v1';

function read(key) {
  try {
    const text = localStorage.getItem(key);
    return text ? JSON.parse(text) : null;
  } catch {
    return null;
  }
}

function write(key, value) {
  try {
    localStorage.setItem(key, JSON.stringify(value));
    return true;
  } catch {
    return false;
  }
}

export function loadHistory() {
  return read(HISTORY_KEY);
}

/**
 * Saves `history` (an EditHistory); returns 'saved', 'trimmed' (fewer undo states fit)
 * or 'failed' (not even the current stacks fit).
 */
export function saveHistory(history) {
  for (let entries = history.entries.length; entries >= 1; entries = Math.floor(entries / 2)) {
    if (write(HISTORY_KEY, history.toJSON(entries))) return entries === history.entries.length ? 'saved' : 'trimmed';
    if (entries === 1) break;
  }
  return 'failed';
}

/** The upload records (see uploads.js), newest first, as they were saved. */
export function loadUploads() {
  return read(UPLOADS_KEY);
}

export function saveUploads(records) {
  return write(UPLOADS_KEY, records);
}

export function loadPrefs() {
  return read(PREFS_KEY) || {};
}

export function savePrefs(prefs) {
  write(PREFS_KEY, { ...loadPrefs(), ...prefs });
}
