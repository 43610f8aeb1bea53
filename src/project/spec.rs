//! Finding projects: every folder under the data folder (up to two levels deep) holding a
//! `dissect.json`, and what is read of one before its generator is loaded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{
    gandissect_quantiles_path, generator_file, read_project, Project, ProjectError,
    QuantileNormalizer, DISSECT_FILE,
};

/// A project folder as read before its generator is loaded.
#[derive(Clone, Debug)]
pub struct ProjectSpec {
    /// The folder's name.
    pub id: String,
    pub dir: PathBuf,
    pub model: PathBuf,
    pub dissection: Project,
    /// Per dissected layer that has GAN Dissection's `quantiles.npz`: its quantile map.
    pub normalizers: BTreeMap<String, Arc<QuantileNormalizer>>,
}

/// Folders under `data` (the folder itself, children and grandchildren) with a
/// `dissect.json`, sorted.
pub fn discover(data: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut visit = |dir: &Path| {
        if dir.join(DISSECT_FILE).is_file() {
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

/// Reads a project folder's dissection and finds its generator (the model is not loaded).
pub fn read_spec(dir: &Path) -> Result<ProjectSpec, ProjectError> {
    let dissection = read_project(dir)?;
    let model = generator_file(&dissection)?;
    let mut normalizers = BTreeMap::new();
    for layer in &dissection.layers {
        if let Some(path) = gandissect_quantiles_path(dir, &layer.layer).filter(|p| p.is_file()) {
            normalizers.insert(
                layer.layer.clone(),
                Arc::new(QuantileNormalizer::read(&path)?),
            );
        }
    }
    let id = dir.file_name().map_or_else(
        || "project".to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    Ok(ProjectSpec {
        id,
        dir: dir.to_path_buf(),
        model,
        dissection,
        normalizers,
    })
}
