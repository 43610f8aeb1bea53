// What a link (the address bar's hash, decoded by hashstate.js) asks for, resolved
// against the server's projects: the project, layer, image and strokes to show, and a
// plain note for everything the link names that this server doesn't have. Pure: no DOM.

import { MAX_ID } from './hashstate.js';

/**
 * `{project, layer, image, strokes, notes}` for `wanted` (from decodeHash), given the
 * server's `projects` and what is shown now (`current = {project, layer, image}`, names;
 * empty on the first load).
 */
export function resolveLink(wanted, projects, current = {}) {
  const notes = [];
  if (wanted.dropped) notes.push(`${wanted.dropped} stroke(s) in the link could not be read and were left out.`);
  const currentProject = projects.find((p) => p.name === current.project);
  let project = wanted.project ? projects.find((p) => p.name === wanted.project) : null;
  if (wanted.project && !project) {
    project = currentProject || projects[0];
    notes.push(`The link names project “${wanted.project}”, which this server doesn't have (it has ${projects.map((p) => p.name).join(', ')}). Showing ${project.name} instead.`);
  }
  project = project || currentProject || projects[0];
  let layer = wanted.layer ? project.layers.find((l) => l.name === wanted.layer) : null;
  if (wanted.layer && !layer) notes.push(`Project ${project.name} has no layer “${wanted.layer}”; showing ${project.default_layer}.`);
  const stay = project === currentProject ? current.layer : project.default_layer;
  layer = layer || project.layers.find((l) => l.name === stay) || project.layers.find((l) => l.name === project.default_layer) || project.layers[0];
  if (wanted.badImage?.startsWith('image ')) {
    notes.push(`The link's image “${wanted.badImage.slice(6)}” is not the name of an uploaded picture (upload-, then 32 hex digits).`);
  } else if (wanted.badImage) {
    notes.push(`The link's ${wanted.badImage} is out of range (ids run from 0 to ${MAX_ID}, seeds up to 2⁶⁴ − 1).`);
  }
  const image = wanted.image || current.image || 'id:0';
  const known = (stroke) => layer.concepts.some((c) => c.name === stroke.concept);
  const strokes = wanted.strokes.filter(known);
  if (strokes.length < wanted.strokes.length) {
    const names = [...new Set(wanted.strokes.filter((s) => !known(s)).map((s) => s.concept))];
    notes.push(`${wanted.strokes.length - strokes.length} stroke(s) paint ${names.join(', ')}, which ${layer.name} has no units for; they were left out.`);
  }
  return { project: project.name, layer: layer.name, image, strokes, notes };
}
