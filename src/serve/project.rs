//! Projects: every folder under `--data` (up to two levels deep) holding a `dissect.json`.
//! A project's id is its folder's name. The dissection itself (ours, or GAN Dissection's
//! own `dissect.json`) is read by [`crate::dissect::output::read_project`].
//!
//! ## Which generator a project serves
//! - A `project.json` in the folder, `{"model": "<path relative to the project folder>"}`,
//!   always wins.
//! - Else ours: `settings.model` is a path (relative to the repository, see
//!   [`repo_path`]).
//! - Else GAN Dissection's: `settings.model` is the Python expression its dissection ran,
//!   `netdissect.proggan.from_pth_file('<file>')`, or a
//!   `netdissect.proggan.ProgressiveGenerator(…)` whose weights `settings.pthfile` names
//!   (`pthfile` wins over `from_pth_file`'s file, as GAN Dissection loads it last). The
//!   file is looked up as GAN Dissection does, relative to the working directory, and
//!   then relative to the project folder. Nothing is evaluated: any other expression is
//!   refused with an error that points at `project.json`.
//!
//! ## Quantiles as GAN Dissection computes them
//! When a layer has GAN Dissection's sketch `<layer>/quantiles.npz`, activations map to
//! quantiles ([`ProjectLayer::quantile_of`], used by `/api/features` and
//! `/api/featuremaps`) through the whole sketch, exactly as `RunningQuantile.normalize`
//! does ([`QuantileNormalizer`]), rather than through the level grid that painting uses.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::dissect::npz::{self, RunningQuantileState};
use crate::dissect::output::{self, read_project};
use crate::dissect::DissectError;
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
    /// GAN Dissection's quantile map, when the layer has its `quantiles.npz`.
    pub normalizer: Option<Arc<QuantileNormalizer>>,
}

impl ProjectLayer {
    /// The level of `unit` at `quantile` (0.99 is painting's draw level).
    pub fn level(&self, unit: usize, quantile: f64) -> Option<f32> {
        self.dissection
            .levels
            .level(unit, quantile)
            .filter(|v| v.is_finite())
    }

    /// Where `value` falls in `unit`'s activation distribution, in [0, 1] (0 when
    /// unknown), as the f32 that GAN Dissection's `RunningQuantile.normalize` answers: from
    /// its sketch when the layer has one, else from the dissection's level grid.
    pub fn quantile_of(&self, unit: usize, value: f32) -> f32 {
        let q = match &self.normalizer {
            Some(normalizer) => normalizer.normalize(unit, value),
            None => self
                .dissection
                .levels
                .quantile_of(unit, value)
                .map(|q| q as f32),
        };
        q.filter(|q| !q.is_nan()).unwrap_or(0.0).clamp(0.0, 1.0)
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
    /// Per dissected layer that has GAN Dissection's `quantiles.npz`: its quantile map.
    pub normalizers: std::collections::BTreeMap<String, Arc<QuantileNormalizer>>,
}

pub struct Project {
    pub spec: ProjectSpec,
    pub layers: Vec<ProjectLayer>,
    pub worker: WorkerHandle,
    /// Inverts uploaded pictures; why not, when the project takes none (no encoder that
    /// fits its generator).
    pub inverter: Result<Arc<super::uploads::Inverter>, String>,
    /// A hash of the generator's weights file: part of every upload's id, so uploads
    /// inverted for another generator are never painted with this one.
    pub generator_fingerprint: String,
}

impl Project {
    pub fn id(&self) -> &str {
        &self.spec.id
    }

    pub fn layer(&self, name: &str) -> Option<&ProjectLayer> {
        self.layers.iter().find(|l| l.name == name)
    }

    /// The dissection's default layer ([`output::Project::default_layer`]).
    pub fn default_layer(&self) -> &ProjectLayer {
        self.spec
            .dissection
            .default_layer()
            .ok()
            .and_then(|l| self.layer(&l.layer))
            .unwrap_or(&self.layers[0])
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
    /// The encoder that inverts uploaded pictures (relative to the folder).
    #[serde(default)]
    encoder: Option<PathBuf>,
}

fn project_file(dir: &Path) -> anyhow::Result<Option<ProjectFile>> {
    let path = dir.join("project.json");
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path)?;
    let file: ProjectFile =
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(Some(file))
}

/// The encoder that inverts pictures for a project folder (see [`crate::invert`]):
/// `project.json`'s `encoder` (relative to the folder), else `dissect.json`'s
/// `settings.encoder` (relative to the repository), else the bundled demo encoder. The
/// server and `ganpaint invert` resolve it here; whether it fits the generator is checked
/// when it is loaded.
pub fn encoder_file(dissection: &output::Project) -> anyhow::Result<PathBuf> {
    if let Some(encoder) = project_file(&dissection.dir)?.and_then(|f| f.encoder) {
        return Ok(dissection.dir.join(encoder));
    }
    Ok(match dissection.setting("encoder") {
        Some(recorded) => crate::model::repo_path(recorded),
        None => crate::model::repo_path(crate::invert::DEFAULT_ENCODER),
    })
}

/// Reads a project folder's dissection and finds its generator (the model is not loaded).
pub fn read_spec(dir: &Path) -> anyhow::Result<ProjectSpec> {
    let dissection = read_project(dir)?;
    let model = generator_file(&dissection)?;
    let mut normalizers = std::collections::BTreeMap::new();
    for layer in &dissection.layers {
        if let Some(path) =
            npz::gandissect_quantiles_path(dir, &layer.layer).filter(|p| p.is_file())
        {
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

/// The generator a project folder paints with: `project.json`'s `model` (relative to the
/// folder) when there is one, else the one `dissect.json`'s settings name. The server and
/// every command that works on a project resolve it here, so they agree.
pub fn generator_file(dissection: &output::Project) -> anyhow::Result<PathBuf> {
    let dir = &dissection.dir;
    if let Some(file) = project_file(dir)? {
        return Ok(dir.join(file.model));
    }
    model_from_settings(dir, &dissection.settings)
        .map_err(|e| anyhow::anyhow!("{}: {e}", dir.join(output::DISSECT_FILE).display()))
}

// ---------------------------------------------------------------------------------------
// The generator named by `dissect.json`'s settings

/// What `settings.model` says, read without evaluating anything.
#[derive(Clone, Debug, PartialEq)]
enum ModelSetting {
    /// Ours: a weights file (relative to the repository).
    Path(String),
    /// GAN Dissection's `[netdissect.]proggan.from_pth_file('<file>')`.
    FromPthFile(String),
    /// `[netdissect.]proggan.ProgressiveGenerator(…)`: the architecture only; the weights
    /// come from `settings.pthfile` (ours infers the architecture from them).
    Constructor,
}

/// Why a setting is not understood; the caller adds the way out (`project.json`).
#[derive(Debug, PartialEq)]
struct NotUnderstood(String);

/// The generator's weights file named by `dissect.json`'s `settings`; see the module docs.
/// Errors are one line, and every refusal names `project.json` as the way out.
fn model_from_settings(dir: &Path, settings: &serde_json::Value) -> anyhow::Result<PathBuf> {
    let way_out = format!(
        "add {} with {{\"model\": \"<weights file, relative to that folder>\"}} to name the generator",
        dir.join("project.json").display()
    );
    let text_setting = |key: &str| -> anyhow::Result<Option<&str>> {
        match settings.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => anyhow::bail!("settings.{key} is {other}, not a string; {way_out}"),
        }
    };
    if let Some(submodule) = text_setting("submodule")? {
        anyhow::bail!(
            "settings.submodule `{submodule}` (a part of a larger state_dict) is not supported; {way_out}"
        );
    }
    let pthfile = text_setting("pthfile")?;
    let Some(model) = text_setting("model")? else {
        return match pthfile {
            Some(file) => resolve_gandissect_file(dir, "pthfile", file, &way_out),
            None => anyhow::bail!("settings.model is missing; {way_out}"),
        };
    };
    let setting = parse_model_setting(model).map_err(|NotUnderstood(why)| {
        anyhow::anyhow!(
            "settings.model `{model}` is not understood ({why}); ganpaint never evaluates \
             Python, it reads only `netdissect.proggan.from_pth_file('<file>')` or a \
             `netdissect.proggan.ProgressiveGenerator(…)` with settings.pthfile; {way_out}"
        )
    })?;
    match (setting, pthfile) {
        (ModelSetting::Path(path), None) => {
            let found = repo_path(&path);
            if !found.is_file() {
                anyhow::bail!(
                    "settings.model `{path}` is no weights file (looked relative to the working \
                     directory and to the repository); {way_out}"
                );
            }
            Ok(found)
        }
        (ModelSetting::Path(_), Some(_)) => anyhow::bail!(
            "settings.model `{model}` is a path, but settings.pthfile is set too (GAN \
             Dissection wants a constructor there); {way_out}"
        ),
        (ModelSetting::Constructor, None) => anyhow::bail!(
            "settings.model `{model}` builds a generator without weights and settings.pthfile \
             is not set; {way_out}"
        ),
        (_, Some(file)) => resolve_gandissect_file(dir, "pthfile", file, &way_out),
        (ModelSetting::FromPthFile(file), None) => {
            resolve_gandissect_file(dir, "model", &file, &way_out)
        }
    }
}

/// A file named in a GAN Dissection setting: as GAN Dissection opens it (relative to the
/// working directory, or absolute), else relative to the project folder.
fn resolve_gandissect_file(
    dir: &Path,
    key: &str,
    file: &str,
    way_out: &str,
) -> anyhow::Result<PathBuf> {
    let given = PathBuf::from(file);
    if given.is_file() {
        return Ok(given);
    }
    if given.is_relative() {
        let in_folder = dir.join(&given);
        if in_folder.is_file() {
            return Ok(in_folder);
        }
        let cwd = std::env::current_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_else(|_| "?".into());
        anyhow::bail!(
            "settings.{key}: `{file}` is neither under the working directory ({cwd}) nor under \
             the project folder ({}); {way_out}",
            dir.display()
        );
    }
    anyhow::bail!("settings.{key}: `{file}` is not a file; {way_out}")
}

/// Reads `settings.model`: a path when it has no parentheses (ours), else one of the two
/// GAN Dissection expressions understood. Never evaluates anything.
fn parse_model_setting(text: &str) -> Result<ModelSetting, NotUnderstood> {
    let text = text.trim();
    let Some(open) = text.find('(') else {
        if text.contains(')') {
            return Err(NotUnderstood("unbalanced parentheses".into()));
        }
        return Ok(ModelSetting::Path(text.to_string()));
    };
    let callee = text[..open].trim_end();
    let args = text[open + 1..]
        .strip_suffix(')')
        .ok_or_else(|| NotUnderstood("it is not a single call".into()))?;
    let names: Vec<&str> = callee.split('.').collect();
    if !names.iter().all(|n| is_identifier(n)) {
        return Err(NotUnderstood(format!("`{callee}` is not a dotted name")));
    }
    let (function, module) = names.split_last().expect("split yields one name at least");
    if module.last() != Some(&"proggan") {
        return Err(NotUnderstood(format!(
            "`{callee}` is not from netdissect.proggan"
        )));
    }
    match *function {
        "from_pth_file" => pth_file_argument(args).map(ModelSetting::FromPthFile),
        "ProgressiveGenerator" => {
            // Keyword and literal arguments only (`resolution=256`, `sizes=[…]`): they
            // describe the architecture, which the weights file gives anyway.
            let plain = args
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c.is_whitespace() || "_=,.[]+-".contains(c));
            if plain {
                Ok(ModelSetting::Constructor)
            } else {
                Err(NotUnderstood(
                    "ProgressiveGenerator's arguments are not plain literals".into(),
                ))
            }
        }
        other => Err(NotUnderstood(format!(
            "proggan.{other} is not from_pth_file or ProgressiveGenerator"
        ))),
    }
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `from_pth_file`'s one argument: a quoted file name (`'…'` or `"…"`, optionally
/// `filename=`, raw `r'…'` allowed) without escapes.
fn pth_file_argument(args: &str) -> Result<String, NotUnderstood> {
    let bad = |why: &str| NotUnderstood(format!("from_pth_file's argument {why}"));
    let mut rest = args.trim();
    if let Some(after) = rest.strip_prefix("filename") {
        rest = after
            .trim_start()
            .strip_prefix('=')
            .ok_or_else(|| bad("is not `filename=<string>`"))?
            .trim_start();
    }
    rest = rest
        .strip_prefix('r')
        .or_else(|| rest.strip_prefix('R'))
        .unwrap_or(rest);
    let quote = rest
        .chars()
        .next()
        .filter(|&c| c == '\'' || c == '"')
        .ok_or_else(|| bad("is not a quoted string"))?;
    let body = &rest[1..];
    let close = body
        .find(quote)
        .ok_or_else(|| bad("has no closing quote"))?;
    let (file, tail) = (&body[..close], &body[close + 1..]);
    let tail = tail.trim_start();
    let tail = tail.strip_prefix(',').unwrap_or(tail);
    if !tail.trim().is_empty() {
        return Err(bad("is not one string"));
    }
    if file.contains('\\') || file.contains('\n') {
        return Err(bad("has escapes"));
    }
    if file.is_empty() {
        return Err(bad("is empty"));
    }
    Ok(file.to_string())
}

// ---------------------------------------------------------------------------------------
// GAN Dissection's RunningQuantile.normalize

/// Each unit's map from activation to quantile, as GAN Dissection's
/// `RunningQuantile.normalize` computes it from the sketch in a layer's `quantiles.npz`:
/// a summary of the unit's two extremes (weight 0) and every sample of level `i` (weight
/// `2^i`), sorted by value; each sample sits at `(cumsum(w) − w/2) / sum(w)`, computed in
/// f32 as gandissect keeps weights; a value's quantile is `numpy.interp(value, samples,
/// positions)` in f64, narrowed to f32 and clamped to [0, 1]. Ties are broken by summary
/// position (extremes, then level 0, 1, …), as [`npz`] does for the levels.
#[derive(Debug)]
pub struct QuantileNormalizer {
    /// Per unit: `(sorted sample values, their positions)`.
    units: Vec<(Vec<f64>, Vec<f32>)>,
}

impl QuantileNormalizer {
    /// Reads `<project>/<layer>/quantiles.npz`.
    pub fn read(path: &Path) -> Result<Self, DissectError> {
        let bytes = std::fs::read(path).map_err(|source| DissectError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let state = RunningQuantileState::from_npz(&bytes).map_err(|e| DissectError::Format {
            path: path.display().to_string(),
            what: "GAN Dissection quantiles file".into(),
            detail: e.to_string(),
        })?;
        Ok(Self::from_state(&state))
    }

    pub fn from_state(state: &RunningQuantileState) -> Self {
        let depth = state.depth.max(1);
        let units = (0..state.depth)
            .map(|unit| {
                if state.size == 0 {
                    return (Vec::new(), Vec::new());
                }
                let Some(&(mut low, mut high)) = state.extremes.get(unit) else {
                    return (Vec::new(), Vec::new());
                };
                // gandissect folds level 0 into the extremes only when it reads them.
                if let Some(level0) = state.levels.first() {
                    for row in level0.chunks_exact(depth) {
                        low = low.min(row[unit]);
                        high = high.max(row[unit]);
                    }
                }
                let mut summary: Vec<(f64, f32)> = vec![(low, 0.0), (high, 0.0)];
                for (level, values) in state.levels.iter().enumerate() {
                    let weight = 2f32.powi(i32::try_from(level).unwrap_or(i32::MAX));
                    summary.extend(values.chunks_exact(depth).map(|row| (row[unit], weight)));
                }
                // NaN last, as torch.sort; the sort is stable, so ties keep summary order.
                summary.sort_by(|a, b| match (a.0.is_nan(), b.0.is_nan()) {
                    (false, false) => a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal),
                    (x, y) => x.cmp(&y),
                });
                // Weights are small powers of two: sums are exact in f64, and one rounding
                // to f32 per operation is what torch's f32 arithmetic gives.
                let total = summary.iter().map(|&(_, w)| w as f64).sum::<f64>() as f32;
                let mut running = 0f64;
                let positions = summary
                    .iter()
                    .map(|&(_, w)| {
                        running += w as f64;
                        let centred = (running as f32 as f64 - (w / 2.0) as f64) as f32;
                        (centred as f64 / total as f64) as f32
                    })
                    .collect();
                (summary.into_iter().map(|(v, _)| v).collect(), positions)
            })
            .collect();
        QuantileNormalizer { units }
    }

    pub fn units(&self) -> usize {
        self.units.len()
    }

    /// `unit`'s quantile of `value` in [0, 1]; `None` for an unknown unit or an empty
    /// sketch.
    pub fn normalize(&self, unit: usize, value: f32) -> Option<f32> {
        let (values, positions) = self.units.get(unit)?;
        let q = numpy_interp(value as f64, values, positions)?;
        Some((q as f32).clamp(0.0, 1.0))
    }
}

/// `numpy.interp(x, xp, fp)` for one point, with numpy's arithmetic: the last `j` with
/// `xp[j] <= x`, then `slope·(x − xp[j]) + fp[j]`; clamped to the end values outside
/// `xp`. `None` when `xp` is empty.
fn numpy_interp(x: f64, xp: &[f64], fp: &[f32]) -> Option<f64> {
    let n = xp.len();
    if n == 0 || fp.len() != n {
        return None;
    }
    let y = |i: usize| fp[i] as f64;
    if x.is_nan() {
        return Some(x);
    }
    if x < xp[0] {
        return Some(y(0));
    }
    if x > xp[n - 1] {
        return Some(y(n - 1));
    }
    let j = xp.partition_point(|&p| p <= x).saturating_sub(1);
    if j == n - 1 || xp[j] == x {
        return Some(y(j));
    }
    let slope = (y(j + 1) - y(j)) / (xp[j + 1] - xp[j]);
    let value = slope * (x - xp[j]) + y(j);
    if !value.is_nan() {
        return Some(value);
    }
    let value = slope * (x - xp[j + 1]) + y(j + 1);
    Some(if value.is_nan() && y(j) == y(j + 1) {
        y(j)
    } else {
        value
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ganpaint-project-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"weights").unwrap();
    }

    #[test]
    fn from_pth_file_is_read_in_every_spelling_gandissect_writes() {
        for text in [
            "netdissect.proggan.from_pth_file('models/church.pth')",
            "proggan.from_pth_file(\"models/church.pth\")",
            "  netdissect.proggan.from_pth_file( 'models/church.pth' , )  ",
            "netdissect.proggan.from_pth_file(filename = 'models/church.pth')",
            "netdissect.proggan.from_pth_file(r'models/church.pth')",
        ] {
            assert_eq!(
                parse_model_setting(text),
                Ok(ModelSetting::FromPthFile("models/church.pth".into())),
                "{text}"
            );
        }
        for text in [
            "netdissect.proggan.ProgressiveGenerator(resolution=256)",
            "proggan.ProgressiveGenerator(sizes=[512, 512, 256], output_tanh=True)",
            "netdissect.proggan.ProgressiveGenerator()",
        ] {
            assert_eq!(
                parse_model_setting(text),
                Ok(ModelSetting::Constructor),
                "{text}"
            );
        }
        assert_eq!(
            parse_model_setting("models/demo_generator.safetensors"),
            Ok(ModelSetting::Path(
                "models/demo_generator.safetensors".into()
            ))
        );
    }

    #[test]
    fn any_other_expression_is_refused_unevaluated() {
        for text in [
            "torchvision.models.alexnet(pretrained=True)",
            "from_pth_file('x.pth')",
            "netdissect.proggan.from_pth_file(open('x').read())",
            "netdissect.proggan.from_pth_file('a' + 'b')",
            "netdissect.proggan.from_pth_file('a\\\\b.pth')",
            "netdissect.proggan.from_pth_file('')",
            "netdissect.proggan.from_pth_file('x.pth'); __import__('os')",
            "netdissect.proggan.from_state_dict(torch.load('x.pth'))",
            "netdissect.proggan.ProgressiveGenerator(resolution=__import__('os').getpid())",
            "__import__('os').system('true')",
            "netdissect.proggan.from_pth_file('x.pth'",
        ] {
            assert!(parse_model_setting(text).is_err(), "{text}");
        }
    }

    #[test]
    fn gandissect_files_resolve_from_the_working_directory_then_the_project_folder() {
        let dir = temp_dir("resolve");
        let project = dir.join("data/church");
        touch(&project.join("models/church.pth"));
        let settings = json!({ "model": "netdissect.proggan.from_pth_file('models/church.pth')" });
        // Not under the working directory (the crate root): found in the project folder.
        assert_eq!(
            model_from_settings(&project, &settings).unwrap(),
            project.join("models/church.pth")
        );
        // Under the working directory: that one, as GAN Dissection opens it.
        let in_cwd = json!({ "model": "netdissect.proggan.from_pth_file('Cargo.toml')" });
        touch(&project.join("Cargo.toml"));
        assert_eq!(
            model_from_settings(&project, &in_cwd).unwrap(),
            PathBuf::from("Cargo.toml")
        );
        // Absolute paths are taken as they are.
        let absolute = project.join("models/church.pth");
        let settings =
            json!({ "model": format!("proggan.from_pth_file('{}')", absolute.display()) });
        assert_eq!(model_from_settings(&project, &settings).unwrap(), absolute);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn pthfile_names_the_weights_and_wins_over_from_pth_file() {
        let dir = temp_dir("pthfile");
        touch(&dir.join("weights/g.pth"));
        touch(&dir.join("other.pth"));
        for model in [
            json!("netdissect.proggan.ProgressiveGenerator(resolution=32)"),
            json!("netdissect.proggan.from_pth_file('other.pth')"),
            serde_json::Value::Null,
        ] {
            let settings = json!({ "model": model, "pthfile": "weights/g.pth", "submodule": null });
            assert_eq!(
                model_from_settings(&dir, &settings).unwrap(),
                dir.join("weights/g.pth"),
                "{model}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn refusals_are_one_line_and_name_project_json() {
        let dir = temp_dir("refusals");
        touch(&dir.join("g.pth"));
        let cases = [
            (
                json!({ "model": "torchvision.models.alexnet(pretrained=True)" }),
                "never evaluates",
            ),
            (
                json!({ "model": "netdissect.proggan.ProgressiveGenerator(resolution=32)" }),
                "without weights",
            ),
            (
                json!({ "model": "netdissect.proggan.from_pth_file('nowhere/g.pth')" }),
                "neither under the working directory",
            ),
            (
                json!({ "model": "nowhere/g.safetensors" }),
                "no weights file",
            ),
            (
                json!({ "model": "netdissect.proggan.from_pth_file('g.pth')", "submodule": "generator" }),
                "submodule",
            ),
            (json!({ "pthfile": 3 }), "not a string"),
            (json!({}), "settings.model is missing"),
        ];
        for (settings, expected) in cases {
            let error = model_from_settings(&dir, &settings)
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{settings}: {error}");
            assert!(error.contains("project.json"), "{settings}: {error}");
            assert!(!error.contains('\n'), "{settings}: {error}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// One unit: level 0 holds -2, -1, 0, 1, 2 (weight 1 each), extremes -3 and 3.
    fn five_samples() -> QuantileNormalizer {
        QuantileNormalizer::from_state(&RunningQuantileState {
            depth: 1,
            levels: vec![vec![1.0, -2.0, 0.0, 2.0, -1.0]],
            extremes: vec![(-3.0, 3.0)],
            size: 5,
        })
    }

    #[test]
    fn normalize_interpolates_the_whole_sketch_as_gandissect() {
        // Sorted summary -3 (w 0), -2, -1, 0, 1, 2, 3 (w 0); (cumsum(w) - w/2) / 5 puts
        // them at 0, .1, .3, .5, .7, .9, 1, as f32.
        let n = five_samples();
        let (values, positions) = &n.units[0];
        assert_eq!(values, &vec![-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]);
        assert_eq!(positions, &vec![0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0]);
        // numpy.interp(x, values, positions) in f64, then f32:
        //   >>> np.float32(np.interp(-2.5, v, np.float32(p)))  -> 0.05
        //   >>> np.float32(np.interp(0.25, v, np.float32(p)))  -> 0.55
        let cases: [(f32, f32); 8] = [
            (-10.0, 0.0),
            (-3.0, 0.0),
            (-2.5, 0.05),
            (-2.0, 0.1),
            (0.25, 0.55),
            (2.0, 0.9),
            (3.0, 1.0),
            (10.0, 1.0),
        ];
        for (x, q) in cases {
            assert_eq!(n.normalize(0, x), Some(q), "x = {x}");
        }
        assert_eq!(n.normalize(1, 0.0), None);
    }

    #[test]
    fn normalize_equals_gandissect_on_its_own_quantiles_file() {
        // The fixture of src/dissect/npz.rs (scripts/make_npz_fixture.py). Expected: its
        // RunningQuantile state run through `_weighted_summary` and `normalize` op for op
        // in PyTorch 2 / numpy 2 (torch.sort, f32 torch.cumsum of the weights,
        // numpy.interp, torch.tensor(..., dtype=torch.float).clamp_(0, 1)), printed with
        // `.tolist()`.
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/gandissect/layer4/quantiles.npz");
        let n = QuantileNormalizer::read(&path).unwrap();
        let xs: [f32; 13] = [
            -3.5, -2.0, -0.7, -0.06857, 0.0, 0.3, 0.95, 1.5, 2.2049733, 2.5, 3.1, 4.0, 6.0,
        ];
        let expected: [[f64; 13]; 6] = [
            [
                0.0,
                0.018680552020668983,
                0.2786453366279602,
                0.5000007748603821,
                0.5236981511116028,
                0.6287418603897095,
                0.8193138837814331,
                0.9299550652503967,
                0.9900000095367432,
                0.9988113045692444,
                1.0,
                1.0,
                1.0,
            ],
            [
                0.0,
                0.0,
                0.0,
                0.0,
                0.0,
                0.05033661052584648,
                0.5000577569007874,
                0.8328260779380798,
                0.9196961522102356,
                0.9588075876235962,
                0.9689362645149231,
                0.9837144017219543,
                1.0,
            ],
            [
                0.0,
                0.0,
                0.07567543536424637,
                0.24050328135490417,
                0.2557656466960907,
                0.3145633041858673,
                0.4640295207500458,
                0.6707401275634766,
                0.8863603472709656,
                0.9160581827163696,
                1.0,
                1.0,
                1.0,
            ],
            [
                0.0,
                0.0,
                0.0,
                0.10507769137620926,
                0.1726691573858261,
                0.3834027051925659,
                0.7565154433250427,
                0.8763887882232666,
                0.9602072238922119,
                0.9649887084960938,
                0.987323522567749,
                1.0,
                1.0,
            ],
            [
                0.0,
                0.0,
                0.0,
                0.0,
                0.0,
                0.0,
                0.014816422946751118,
                0.16894865036010742,
                0.5870682597160339,
                0.7905942797660828,
                0.933449387550354,
                1.0,
                1.0,
            ],
            [
                0.0,
                0.0,
                0.17070679366588593,
                0.5267921090126038,
                0.5345509648323059,
                0.5665936470031738,
                0.5685701370239258,
                0.570579469203949,
                0.6402879953384399,
                0.7745330333709717,
                0.9640322327613831,
                1.0,
                1.0,
            ],
        ];
        assert_eq!(n.units(), 6);
        for (unit, row) in expected.iter().enumerate() {
            for (&x, &q) in xs.iter().zip(row) {
                assert_eq!(
                    n.normalize(unit, x).map(f64::from),
                    Some(q),
                    "unit {unit}, x {x}"
                );
            }
        }
    }

    #[test]
    fn level_zero_extends_the_saved_extremes() {
        // gandissect saves extremes without level 0's samples; -5 lies below them.
        let n = QuantileNormalizer::from_state(&RunningQuantileState {
            depth: 1,
            levels: vec![vec![-5.0, 0.0], vec![1.0]],
            extremes: vec![(-1.0, 2.0)],
            size: 4,
        });
        // -5 (w 0), -5 (w 1), 0 (w 1), 1 (w 2), 2 (w 0): positions 0, .125, .375, .75, 1.
        assert_eq!(n.units[0].1, vec![0.0, 0.125, 0.375, 0.75, 1.0]);
        // A tie takes the last of its run, as numpy.interp does.
        assert_eq!(n.normalize(0, -5.0), Some(0.125));
        assert_eq!(n.normalize(0, 1.5), Some(0.875));
    }

    #[test]
    fn an_empty_sketch_normalizes_to_nothing() {
        let n = QuantileNormalizer::from_state(&RunningQuantileState {
            depth: 2,
            levels: vec![],
            extremes: vec![(0.0, 0.0), (0.0, 0.0)],
            size: 0,
        });
        assert_eq!(n.units(), 2);
        assert_eq!(n.normalize(0, 1.0), None);
    }
}
