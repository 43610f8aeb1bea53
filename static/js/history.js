// Undo and redo over stroke stacks. Each state is a frozen array of (frozen) strokes, so a
// snapshot costs one array and shares its strokes with its neighbours.

export class StrokeHistory {
  constructor(strokes = []) {
    this.reset(strokes);
  }

  /** Starts over (a new image): no undo across images. */
  reset(strokes = []) {
    this.past = [];
    this.present = Object.freeze([...strokes]);
    this.future = [];
  }

  get strokes() {
    return this.present;
  }

  get canUndo() {
    return this.past.length > 0;
  }

  get canRedo() {
    return this.future.length > 0;
  }

  /** Moves to a new stack; the old one becomes undoable and redo is cleared. */
  push(strokes) {
    this.past.push(this.present);
    this.present = Object.freeze([...strokes]);
    this.future = [];
  }

  add(stroke) {
    this.push([...this.present, stroke]);
  }

  remove(index) {
    this.push(this.present.filter((_, i) => i !== index));
  }

  clear() {
    if (this.present.length) this.push([]);
  }

  undo() {
    if (!this.canUndo) return false;
    this.future.push(this.present);
    this.present = this.past.pop();
    return true;
  }

  redo() {
    if (!this.canRedo) return false;
    this.past.push(this.present);
    this.present = this.future.pop();
    return true;
  }

  /**
   * Forgets the present state as if it never happened (the server refused it): back to
   * the previous state, with nothing to redo into the refused one.
   */
  discard() {
    if (!this.canUndo) {
      this.present = Object.freeze([]);
      return;
    }
    this.present = this.past.pop();
  }
}
