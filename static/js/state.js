// A small store: the editor's settings and what it shows, with subscribers told which
// keys changed. Pure: no DOM.

export function createStore(initial) {
  let state = Object.freeze({ ...initial });
  const listeners = new Set();
  return {
    get: () => state,
    /** Merges `patch`; listeners hear about the keys whose values changed. */
    set(patch) {
      const changed = Object.keys(patch).filter((key) => !Object.is(state[key], patch[key]));
      if (!changed.length) return changed;
      state = Object.freeze({ ...state, ...patch });
      for (const listener of [...listeners]) listener(state, new Set(changed));
      return changed;
    },
    /** Calls `listener(state, changedKeys)` after each change; returns the unsubscribe. */
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}
