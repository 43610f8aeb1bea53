// Bringing your own picture: the Upload button's file picker, a file dropped on the
// canvas or pasted, the server's fitting shown as it goes (stage, step, a bar, Cancel),
// and a refusal in plain words. The fitted picture is the editor's business: main.js
// hears `onFitted(answer, file)` and shows it.

import * as api from './api.js';
import { explainUpload } from './errors.js';
import { setStatus, toast } from './ui.js';
import { progressText } from './uploads.js';

const $ = (id) => document.getElementById(id);

export class Uploader {
  /**
   * `project()` names the project to upload to (null while the page loads);
   * `onFitted(answer, file)` when done.
   */
  constructor({ project, onFitted }) {
    this.project = project;
    this.onFitted = onFitted;
    this.running = null; // {controller, file}
    this.stage = $('stage');
    this.input = $('upload-file');
    this.panel = $('upload-progress');
    this.dropHint = $('drop-hint');
    this.input.addEventListener('change', () => {
      const [file] = this.input.files;
      this.input.value = '';
      if (file) this.upload(file);
    });
    $('upload-cancel').addEventListener('click', () => this.cancel());
    this.acceptDrops();
    document.addEventListener('paste', (event) => this.paste(event));
  }

  /** Opens the file picker. */
  choose() {
    this.input.click();
  }

  get busy() {
    return this.running !== null;
  }

  /** Sends `file` and follows the fitting; a new upload replaces one in progress. */
  async upload(file) {
    if (!this.project()) return; // the page is still loading the projects
    this.running?.controller.abort();
    const controller = new AbortController();
    this.running = { controller, file };
    this.showProgress({ stage: 'upload' });
    try {
      const answer = await api.upload(this.project(), file, {
        signal: controller.signal,
        onProgress: (progress) => {
          if (this.running?.controller === controller) this.showProgress(progress);
        },
      });
      if (this.running?.controller !== controller) return;
      this.finish();
      this.onFitted(answer, file);
    } catch (error) {
      if (this.running?.controller !== controller) return; // cancelled, or replaced
      this.finish();
      const plain = explainUpload(error);
      if (!plain) return;
      toast(plain.message, { title: plain.title });
      setStatus(`Not uploaded: ${plain.title.charAt(0).toLowerCase()}${plain.title.slice(1)}`);
    }
  }

  /** Stops the upload in progress (closing the connection cancels the fitting); false if none. */
  cancel() {
    if (!this.running) return false;
    this.running.controller.abort();
    this.finish();
    setStatus('Upload cancelled');
    return true;
  }

  finish() {
    this.running = null;
    this.panel.hidden = true;
    delete this.panel.dataset.image;
    delete this.stage.dataset.uploading;
  }

  showProgress(progress) {
    const { label, steps, fraction } = progressText(progress);
    this.panel.hidden = false;
    this.stage.dataset.uploading = progress.stage || 'upload';
    if (progress.image) this.panel.dataset.image = progress.image;
    $('upload-stage').textContent = label;
    $('upload-steps').textContent = steps;
    const bar = $('upload-bar');
    if (fraction === null) bar.removeAttribute('value');
    else bar.value = fraction;
  }

  /** Files dropped on the canvas are uploaded; elsewhere on the page they do nothing. */
  acceptDrops() {
    const carriesFiles = (event) => [...(event.dataTransfer?.types || [])].includes('Files');
    const highlight = (on) => {
      this.dropHint.hidden = !on;
      this.stage.classList.toggle('dropping', on);
    };
    for (const type of ['dragenter', 'dragover']) {
      this.stage.addEventListener(type, (event) => {
        if (!carriesFiles(event)) return;
        event.preventDefault();
        event.stopPropagation();
        event.dataTransfer.dropEffect = 'copy';
        highlight(true);
      });
    }
    this.stage.addEventListener('dragleave', (event) => {
      if (!this.stage.contains(event.relatedTarget)) highlight(false);
    });
    this.stage.addEventListener('drop', (event) => {
      if (!carriesFiles(event) && !event.dataTransfer?.files.length) return;
      event.preventDefault();
      event.stopPropagation();
      highlight(false);
      const files = [...event.dataTransfer.files];
      if (!files.length) return;
      if (files.length > 1) toast(`One picture at a time: uploading ${files[0].name}.`, { kind: 'info', title: 'Uploading the first picture' });
      this.upload(files[0]);
    });
    // Anywhere else, a dropped file would replace the editor with the file: refuse it.
    for (const type of ['dragover', 'drop']) {
      window.addEventListener(type, (event) => {
        if (!carriesFiles(event)) return;
        event.preventDefault();
        if (type === 'dragover') event.dataTransfer.dropEffect = 'none';
      });
    }
  }

  /** A pasted picture (a screenshot, an image copied in another app) is uploaded. */
  paste(event) {
    const file = [...(event.clipboardData?.files || [])].find((f) => f.type.startsWith('image/'));
    if (!file) return;
    event.preventDefault();
    this.upload(file);
  }
}
