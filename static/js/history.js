// The editing history: every image keeps its own stroke stack, and one timeline of
// states `{key, strokes}` (key = project|layer|image) runs through strokes and image
// switches alike, so Undo steps back over a switch to the previous image and its
// strokes. Each state's strokes are a frozen array of frozen strokes: a snapshot costs
// one array and shares its strokes with its neighbours. Pure: no DOM.

import { decodeStroke, encodeStroke } from './strokes.js';

/** How many states the timeline keeps (the oldest go first). */
export const TIMELINE_LIMIT = 2000;

export function imageKey(project, layer, image) {
  return `${project}|${layer}|${image}`;
}

/** `{project, layer, image}` of a key (project and layer names may not hold `|`). */
export function splitKey(key) {
  const parts = key.split('|');
  const image = parts.pop();
  const layer = parts.pop();
  return { project: parts.join('|'), layer, image };
}

const frozen = (strokes) => (Object.isFrozen(strokes) ? strokes : Object.freeze([...strokes]));

export class EditHistory {
  /** Starts on image `key` with `strokes`. */
  constructor(key, strokes = []) {
    this.entries = [{ key, strokes: frozen(strokes) }];
    this.index = 0;
    this.stacks = new Map([[key, this.entries[0].strokes]]);
  }

  get present() {
    return this.entries[this.index];
  }

  get key() {
    return this.present.key;
  }

  get strokes() {
    return this.present.strokes;
  }

  get canUndo() {
    return this.index > 0;
  }

  get canRedo() {
    return this.index < this.entries.length - 1;
  }

  /** The strokes image `key` had when last shown (none for an image never painted). */
  stackOf(key) {
    return this.stacks.get(key) || Object.freeze([]);
  }

  /** Moves to a new state; what could be redone is dropped, as in any editor. */
  push(key, strokes) {
    const entry = { key, strokes: frozen(strokes) };
    this.entries.splice(this.index + 1, Infinity, entry);
    this.index = this.entries.length - 1;
    if (this.entries.length > TIMELINE_LIMIT) {
      const drop = this.entries.length - TIMELINE_LIMIT;
      this.entries.splice(0, drop);
      this.index -= drop;
    }
    this.stacks.set(key, entry.strokes);
    return entry;
  }

  setStrokes(strokes) {
    return this.push(this.key, strokes);
  }

  add(stroke) {
    return this.setStrokes([...this.strokes, stroke]);
  }

  remove(index) {
    return this.setStrokes(this.strokes.filter((_, i) => i !== index));
  }

  clear() {
    return this.strokes.length ? this.setStrokes([]) : null;
  }

  /**
   * Shows image `key` with the strokes it had (or `strokes`, when a link names them):
   * a step of its own, so Undo comes back to the image before. No step when nothing
   * would change.
   */
  switchTo(key, strokes = this.stackOf(key)) {
    if (key === this.key && sameStrokes(strokes, this.strokes)) return null;
    return this.push(key, strokes);
  }

  undo() {
    if (!this.canUndo) return null;
    this.index -= 1;
    this.stacks.set(this.key, this.strokes);
    return this.present;
  }

  redo() {
    if (!this.canRedo) return null;
    this.index += 1;
    this.stacks.set(this.key, this.strokes);
    return this.present;
  }

  /**
   * Forgets the present state as if it never happened (the server refused it): back to
   * the previous state, with nothing to redo into the refused one.
   */
  discard() {
    if (!this.canUndo) {
      this.entries = [{ key: this.key, strokes: Object.freeze([]) }];
      this.stacks.set(this.key, this.entries[0].strokes);
      return this.present;
    }
    this.entries.splice(this.index, Infinity);
    this.index -= 1;
    this.stacks.set(this.key, this.strokes);
    return this.present;
  }

  /**
   * Plain JSON for localStorage: each distinct stroke once, and each state as
   * `[key, shared, ...numbers]`: the first `shared` strokes of the state before it, then
   * these strokes (so a stroke added costs one number, not the whole stack). `maxEntries`
   * keeps only the states nearest the present (when space runs out).
   */
  toJSON(maxEntries = TIMELINE_LIMIT) {
    const table = [];
    const numbers = new Map();
    const number = (stroke) => {
      if (!numbers.has(stroke)) {
        numbers.set(stroke, table.length);
        table.push(encodeStroke(stroke));
      }
      return numbers.get(stroke);
    };
    const first = Math.max(0, Math.min(this.index - Math.floor(maxEntries / 2), this.entries.length - maxEntries));
    const kept = this.entries.slice(first, first + maxEntries);
    const stacks = {};
    for (const [key, strokes] of this.stacks) {
      if (strokes.length) stacks[key] = strokes.map(number);
    }
    let previous = [];
    const entries = kept.map(({ key, strokes }) => {
      let shared = 0;
      while (shared < strokes.length && shared < previous.length && strokes[shared] === previous[shared]) shared += 1;
      previous = strokes;
      return [key, shared, ...strokes.slice(shared).map(number)];
    });
    return { version: 1, strokes: table, entries, index: this.index - first, stacks };
  }

  /** The history saved by `toJSON`, or null when it is missing or malformed. */
  static fromJSON(data) {
    if (!data || data.version !== 1 || !Array.isArray(data.strokes) || !Array.isArray(data.entries)
      || !data.entries.length || !Number.isInteger(data.index)
      || data.index < 0 || data.index >= data.entries.length) {
      return null;
    }
    const table = data.strokes.map((text) => (typeof text === 'string' ? decodeStroke(text) : null));
    const strokesOf = (list) => {
      if (!Array.isArray(list)) return null;
      const strokes = list.map((n) => table[n]);
      return strokes.every(Boolean) ? Object.freeze(strokes) : null;
    };
    const history = new EditHistory('', []);
    history.entries = [];
    history.stacks = new Map();
    let previous = [];
    for (const entry of data.entries) {
      if (!Array.isArray(entry) || typeof entry[0] !== 'string' || !Number.isInteger(entry[1])
        || entry[1] < 0 || entry[1] > previous.length) {
        return null;
      }
      const added = strokesOf(entry.slice(2));
      if (!added) return null;
      const strokes = Object.freeze([...previous.slice(0, entry[1]), ...added]);
      history.entries.push({ key: entry[0], strokes });
      previous = strokes;
    }
    history.index = data.index;
    for (const [key, list] of Object.entries(data.stacks || {})) {
      const strokes = strokesOf(list);
      if (strokes) history.stacks.set(key, strokes);
    }
    history.stacks.set(history.key, history.strokes);
    return history;
  }
}

export function sameStrokes(a, b) {
  return a.length === b.length && a.every((stroke, i) => stroke === b[i] || encodeStroke(stroke) === encodeStroke(b[i]));
}
