// Small pieces of feedback: toasts, the status line, the busy indicator.

const toasts = () => document.getElementById('toasts');

/**
 * Shows a message in a toast. `kind` is 'error' (role=alert, stays 10 s) or 'info'.
 * `action` is an optional `{label, run}` button (e.g. Retry).
 */
export function toast(message, { kind = 'error', title, action, timeout } = {}) {
  const box = document.createElement('div');
  box.className = `toast toast-${kind}`;
  box.setAttribute('role', kind === 'error' ? 'alert' : 'status');
  const text = document.createElement('div');
  text.className = 'toast-text';
  if (title) {
    const strong = document.createElement('strong');
    strong.textContent = title;
    text.append(strong, document.createElement('br'));
  }
  text.append(message);
  box.append(text);
  const close = () => box.remove();
  if (action) {
    const button = document.createElement('button');
    button.type = 'button';
    button.textContent = action.label;
    button.addEventListener('click', () => {
      close();
      action.run();
    });
    box.append(button);
  }
  const dismiss = document.createElement('button');
  dismiss.type = 'button';
  dismiss.className = 'toast-close';
  dismiss.setAttribute('aria-label', 'Dismiss');
  dismiss.textContent = '×';
  dismiss.addEventListener('click', close);
  box.append(dismiss);
  toasts().append(box);
  // Keep at most four on screen.
  while (toasts().children.length > 4) toasts().firstElementChild.remove();
  setTimeout(close, timeout ?? (kind === 'error' ? 10000 : 4000));
  return box;
}

export function setStatus(text) {
  document.getElementById('status').textContent = text;
}

/**
 * Counts outstanding work; the stage is aria-busy and the spinner shows while any is
 * pending. The spinner waits 120 ms, so fast renders don't flicker.
 */
export class Busy {
  constructor(stage, indicator) {
    this.stage = stage;
    this.indicator = indicator;
    this.count = 0;
    this.timer = null;
  }

  begin() {
    this.count += 1;
    this.stage.setAttribute('aria-busy', 'true');
    if (!this.timer && this.indicator.hidden) {
      this.timer = setTimeout(() => {
        this.timer = null;
        if (this.count > 0) this.indicator.hidden = false;
      }, 120);
    }
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.count -= 1;
      if (this.count === 0) {
        this.stage.setAttribute('aria-busy', 'false');
        this.indicator.hidden = true;
        clearTimeout(this.timer);
        this.timer = null;
      }
    };
  }
}
