//! Projects: every folder under `--data` (up to two levels deep) holding a `dissect.json`.
//! A project's id is its folder's name. Its generator is the dissection's
//! `settings.model` (a path relative to the repository), unless the folder has a
//! `project.json` with `{"model": "<path relative to the project folder>"}`.
//! The dissection itself (ours, or GAN Dissection's own `dissect.json`) is read by
//! [`crate::dissect::output::read_project`].

use std::path::{Path, PathBuf};

use crate::dissect::output::{self, read_project};
use crate::model::repo_path;

use super::worker::WorkerHandle;

/// A dissected layer as the APIs serve it: the dissection plus the grid from the model.
#[derive(Clone, Debug)]
pub struct ProjectLayer {
    pub name: String,
    pub channels: i64,
    pub height: i64,
    pub width: i64,
    pub dissection: output::ProjectLayer,
}

impl ProjectLayer {
    /// The level of `unit` at `quantile` (0.99 is painting's draw level).
    pub fn level(&self, unit: usize, quantile: f64) -> Option<f32> {
        self.dissection
            .levels
            .level(unit, quantile)
            .filter(|v| v.is_finite())
    }

    /// Where `value` falls in `unit`'s activation distribution (0 when unknown).
    pub fn quantile_of(&self, unit: usize, value: f32) -> f64 {
        self.dissection
            .levels
            .quantile_of(unit, value)
            .unwrap_or(0.0)
    }

    /// Concepts ranked by IoU at this layer.
    pub fn concepts(&self) -> impl Iterator<Item = &output::ConceptRanking> {
        self.dissection
            .rankings
            .iter()
            .filter(|r| r.metric == "iou")
    }

    /// The units (at most `k`, best first) and their alphas that a stroke of `mode`
    /// paints for `concept`: the learned weights of an optimized intervention when the
    /// dissection has one, else the causal ranking's top units for that mode, else the
    /// IoU ranking's (see [`output::ProjectLayer::stroke_edits`]). `None` when the concept
    /// is not ranked here.
    pub fn stroke_units(
        &self,
        concept: &str,
        mode: crate::edit::StrokeMode,
        k: usize,
    ) -> Option<Vec<(usize, f32)>> {
        // Paintable concepts are the IoU-ranked ones.
        self.concept_units(concept)?;
        let edits = self
            .dissection
            .stroke_edits(concept, mode, k, 1.0, 0.99, output::UnitChoice::Optimized)
            .ok()?;
        Some(edits.iter().map(|e| (e.unit as usize, e.alpha)).collect())
    }

    /// A concept's units, best first, with their IoU.
    pub fn concept_units(&self, concept: &str) -> Option<Vec<(usize, f64)>> {
        let ranking = self.concepts().find(|r| r.concept == concept)?;
        Some(
            ranking
                .units
                .iter()
                .map(|&u| (u as usize, -ranking.scores[u as usize]))
                .collect(),
        )
    }
}

/// What the server reads before loading a model.
#[derive(Clone, Debug)]
pub struct ProjectSpec {
    pub id: String,
    pub dir: PathBuf,
    pub model: PathBuf,
    pub dissection: output::Project,
}

pub struct Project {
    pub spec: ProjectSpec,
    pub layers: Vec<ProjectLayer>,
    pub worker: WorkerHandle,
}

impl Project {
    pub fn id(&self) -> &str {
        &self.spec.id
    }

    pub fn layer(&self, name: &str) -> Option<&ProjectLayer> {
        self.layers.iter().find(|l| l.name == name)
    }

    /// `layer4` when dissected (the church model's painting layer), else the first.
    pub fn default_layer(&self) -> &ProjectLayer {
        self.layer("layer4").unwrap_or(&self.layers[0])
    }

    pub fn resolution(&self) -> i64 {
        self.worker.config.resolution()
    }
}

/// Folders under `data` (the folder itself, children and grandchildren) with a
/// `dissect.json`, sorted.
pub fn discover(data: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut visit = |dir: &Path| {
        if dir.join("dissect.json").is_file() {
            found.push(dir.to_path_buf());
        }
    };
    visit(data);
    for child in subdirs(data) {
        visit(&child);
        for grandchild in subdirs(&child) {
            visit(&grandchild);
        }
    }
    found.sort();
    found.dedup();
    found
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

#[derive(serde::Deserialize)]
struct ProjectFile {
    model: PathBuf,
}

/// Reads a project folder's dissection and finds its generator (the model is not loaded).
pub fn read_spec(dir: &Path) -> anyhow::Result<ProjectSpec> {
    let dissection = read_project(dir)?;
    let override_file = dir.join("project.json");
    let model = if override_file.is_file() {
        let text = std::fs::read_to_string(&override_file)?;
        let file: ProjectFile = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", override_file.display()))?;
        dir.join(file.model)
    } else {
        let model = dissection.setting("model").ok_or_else(|| {
            anyhow::anyhow!(
                "{}: settings.model is missing; add a project.json naming the generator",
                dir.display()
            )
        })?;
        repo_path(model)
    };
    let id = dir.file_name().map_or_else(
        || "project".to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    Ok(ProjectSpec {
        id,
        dir: dir.to_path_buf(),
        model,
        dissection,
    })
}
