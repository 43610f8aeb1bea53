//! Working on a finished dissection from the command line: the models it was made with
//! (or the ones given instead, found as [`crate::project`] resolves them), its concepts
//! as segmenter classes, and its report. Shared by `dissect`, `dissect causal`, `dissect ace`,
//! `eval-edits` and `figure`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::dissect::causal::DrawRegions;
use crate::dissect::context::{ContextProfile, CONTEXT_FIRST_ID, CONTEXT_SAMPLES};
use crate::dissect::output::StatsFile;
use crate::dissect::report::{write_report, ReportInfo};
use crate::model::{DeviceChoice, Precision, ProgGan, DEFAULT_MODEL};
use crate::project::{
    generator_file, setting_file, DissectJson, Project, ProjectLayer, DISSECT_FILE,
};
use crate::segment::{ScorePrecision, Segmenter};

use super::eval_demo::DEFAULT_SEGMENTER;

/// Rewrites `dir/dissect.html` from its `dissect.json` and `stats.json`, linking the
/// unit images where they exist. Returns the report's path.
pub(crate) fn rewrite_report(dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join(DISSECT_FILE);
    let dissect: DissectJson = serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("reading {}", path.display()))?;
    let stats = StatsFile::read(dir)
        .with_context(|| format!("reading the dissection's statistics in {}", dir.display()))?;
    let images = dissect
        .layers
        .iter()
        .any(|l| dir.join(&l.layer).join("s-image").is_dir());
    write_report(dir, &dissect, &stats, &ReportInfo { images })?;
    Ok(dir.join("dissect.html"))
}

/// The dissection's layers named by a command's `--layer` (all of them when none is).
pub(crate) fn chosen_layers<'a>(
    project: &'a Project,
    wanted: &[String],
) -> anyhow::Result<Vec<&'a ProjectLayer>> {
    let layers: Vec<_> = project
        .layers
        .iter()
        .filter(|l| wanted.is_empty() || wanted.contains(&l.layer))
        .collect();
    if layers.is_empty() {
        bail!(
            "--layer {wanted:?}: the dissection has {}",
            project
                .layers
                .iter()
                .map(|l| l.layer.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(layers)
}

/// `dir/dissect.json` as JSON, for a command that adds to it and keeps every other field
/// as it was ([`write_dissect_json`]).
pub(crate) fn read_dissect_json(dir: &Path) -> anyhow::Result<serde_json::Value> {
    let path = dir.join(DISSECT_FILE);
    let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("reading {}", path.display()))
}

/// Writes `json` back to `dir/dissect.json`; returns the path.
pub(crate) fn write_dissect_json(dir: &Path, json: &serde_json::Value) -> anyhow::Result<PathBuf> {
    let path = dir.join(DISSECT_FILE);
    std::fs::write(&path, serde_json::to_string_pretty(json)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The generator and segmenter a dissection was made with, or the ones given instead.
pub(crate) struct ProjectModels {
    pub generator: ProgGan,
    pub generator_path: PathBuf,
    pub segmenter: Box<dyn Segmenter>,
}

/// The dissection layer's ranked concepts that the segmenter labels, with their classes.
pub(crate) fn labeled_concepts(layer: &ProjectLayer, labels: &[String]) -> Vec<(String, i64)> {
    layer
        .concepts()
        .into_iter()
        .filter_map(|c| {
            labels
                .iter()
                .position(|l| l == c)
                .map(|class| (c.to_string(), class as i64))
        })
        .collect()
}

/// The segmenter's class for each concept named by `flag`, or a message naming the flag.
pub(crate) fn concept_classes(
    concepts: &[String],
    labels: &[String],
    flag: &str,
) -> anyhow::Result<Vec<(String, i64)>> {
    concepts
        .iter()
        .map(|c| {
            labels
                .iter()
                .position(|l| l == c)
                .map(|class| (c.clone(), class as i64))
                .with_context(|| {
                    format!(
                        "{flag}: `{c}` is not one of the segmenter's labels ({})",
                        labels.join(", ")
                    )
                })
        })
        .collect()
}

/// The flags of the commands that work on a finished dissection with its models
/// (`dissect causal`, `dissect ace`).
#[derive(clap::Args, Debug)]
pub struct ProjectModelArgs {
    /// Generator (default: the dissection's, else the bundled one).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Segmenter (default: the dissection's, else the bundled one).
    #[arg(long)]
    pub segmenter: Option<PathBuf>,
    /// A TorchScript segmenter's labels (default: labels.json beside it).
    #[arg(long)]
    pub segmenter_labels: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
}

impl ProjectModelArgs {
    /// Reads the dissection in `dir` and loads its models (or the ones these flags give).
    pub(crate) fn open(&self, dir: &Path) -> anyhow::Result<(Project, ProjectModels)> {
        let project = crate::project::read_project(dir)
            .with_context(|| format!("reading the dissection in {}", dir.display()))?;
        let models = self.load(&project)?;
        Ok((project, models))
    }

    /// The dissection's models, or the ones these flags give.
    pub(crate) fn load(&self, project: &Project) -> anyhow::Result<ProjectModels> {
        load_project_models(
            project,
            self.model.as_deref(),
            "--model",
            self.segmenter.as_deref(),
            self.segmenter_labels.as_deref(),
            self.device.resolve()?,
        )
    }
}

/// `model_flag` is the command's flag for `model`, for the message when the file is missing.
pub(crate) fn load_project_models(
    project: &Project,
    model: Option<&Path>,
    model_flag: &str,
    segmenter: Option<&Path>,
    segmenter_labels: Option<&Path>,
    device: tch::Device,
) -> anyhow::Result<ProjectModels> {
    // The generator the server would paint this project with (project.json, then the
    // dissection's settings), unless one is given.
    let generator_path = match model {
        Some(path) => path.to_path_buf(),
        None => generator_file(project)?,
    };
    let generator = load_model_given_by(&generator_path, model_flag, device)?;
    let segmenter_path = setting_file(project, segmenter, "segmenter", DEFAULT_SEGMENTER);
    let segmenter = sized_segmenter(
        load_segmenter(
            &segmenter_path,
            segmenter_labels,
            device,
            segment_precision(project)?,
        )?,
        segment_size(project)?,
    );
    Ok(ProjectModels {
        generator,
        generator_path,
        segmenter,
    })
}

/// The size the dissection segmented at (`settings.segment_size`), when it scaled images
/// down; a value that is not a size stops the command with the field named.
pub(crate) fn segment_size(project: &Project) -> anyhow::Result<Option<usize>> {
    let Some(value) = project.settings.get("segment_size") else {
        return Ok(None);
    };
    match value.as_u64() {
        Some(size) if size as usize >= crate::segment::MIN_SEGMENT_SIZE => Ok(Some(size as usize)),
        _ => bail!(
            "{}: settings.segment_size is {value}; it must be a whole number of pixels, at \
             least {}",
            project.dir.join(crate::project::DISSECT_FILE).display(),
            crate::segment::MIN_SEGMENT_SIZE
        ),
    }
}

/// `settings.<key>` of the project's dissection read as one of the names in `expected`
/// (`None` when absent); any other value stops the command with the field named.
fn named_setting<T: serde::de::DeserializeOwned>(
    project: &Project,
    key: &str,
    expected: &str,
) -> anyhow::Result<Option<T>> {
    let Some(value) = project.settings.get(key) else {
        return Ok(None);
    };
    serde_json::from_value(value.clone())
        .map(Some)
        .map_err(|_| {
            anyhow::anyhow!(
                "{}: settings.{key} is {value}; it must be {expected}",
                project.dir.join(crate::project::DISSECT_FILE).display()
            )
        })
}

/// The arithmetic the dissection segmented in (`settings.segment_precision`; f32 when
/// absent).
pub(crate) fn segment_precision(project: &Project) -> anyhow::Result<ScorePrecision> {
    Ok(
        named_setting(project, "segment_precision", "\"f32\", \"bf16\" or \"f16\"")?
            .unwrap_or(ScorePrecision::F32),
    )
}

/// How the project's passes that only render run the generator
/// (`settings.render_precision`; exact when absent), set on `generator`.
pub(crate) fn render_in_project_precision(
    project: &Project,
    generator: &mut ProgGan,
) -> anyhow::Result<()> {
    let precision = named_setting(
        project,
        "render_precision",
        "\"exact\", \"fast-f32\", \"fast-bf16\" or \"fast-f16\"",
    )?
    .unwrap_or(Precision::Exact);
    Ok(generator.set_precision(precision)?)
}

/// The segmenter as a dissection uses it: scaled down to `size` when one is set.
pub(crate) fn sized_segmenter(
    segmenter: Box<dyn Segmenter>,
    size: Option<usize>,
) -> Box<dyn Segmenter> {
    match size {
        Some(size) => Box::new(crate::segment::AtMostSize::new(segmenter, size)),
        None => segmenter,
    }
}

/// Loads a segmenter with a clear message when the file is missing.
pub(crate) fn load_segmenter(
    path: &Path,
    labels: Option<&Path>,
    device: tch::Device,
    precision: ScorePrecision,
) -> anyhow::Result<Box<dyn Segmenter>> {
    if !path.exists() {
        bail!(
            "segmenter {} does not exist (pass --segmenter PATH; the bundled one is {DEFAULT_SEGMENTER})",
            path.display()
        );
    }
    crate::segment::load_in(path, labels, device, precision)
        .with_context(|| format!("loading segmenter {}", path.display()))
}

pub(crate) fn load_model(path: &Path, device: tch::Device) -> anyhow::Result<ProgGan> {
    load_model_given_by(path, "--model", device)
}

/// Loads a generator with a clear message, naming the command's own flag, when the file
/// is missing.
pub(crate) fn load_model_given_by(
    path: &Path,
    flag: &str,
    device: tch::Device,
) -> anyhow::Result<ProgGan> {
    if !path.exists() {
        bail!(
            "model file {} does not exist (pass {flag} PATH; the bundled model is {DEFAULT_MODEL})",
            path.display()
        );
    }
    ProgGan::load(path, device).with_context(|| format!("loading {}", path.display()))
}

/// Where draws are brushed: `eval-edits --regions` and `dissect ace --regions`.
#[derive(clap::Args, Debug, Clone, Copy)]
pub(crate) struct DrawRegionArgs {
    /// Where draws are brushed: `random` (a random 3×3-cell region per image, the same
    /// for every concept) or `context` (per concept, the region where it fits, by what
    /// surrounds it in the generator's images: a dome on top of a building, grass beside
    /// a path).
    #[arg(long, value_enum, default_value_t = RegionsArg::Random)]
    regions: RegionsArg,
    /// Images the `context` profiles are counted from (ids from `--context-first-id`).
    #[arg(long, default_value_t = CONTEXT_SAMPLES,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    context_samples: u64,
    /// First id of the context images (by default a dissection's own ids, apart from
    /// those evaluated or learned on).
    #[arg(long, default_value_t = CONTEXT_FIRST_ID,
          value_parser = clap::value_parser!(u64).range(0..=1 << 40))]
    context_first_id: u64,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum RegionsArg {
    Random,
    Context,
}

impl DrawRegionArgs {
    /// The context profiles of `classes` (segmenter classes), counted on the generator's
    /// images; `None` for random regions.
    pub(crate) fn profiles(
        self,
        generator: &ProgGan,
        segmenter: &dyn Segmenter,
        layer: &str,
        classes: &[i64],
        batch: usize,
    ) -> anyhow::Result<Option<Vec<ContextProfile>>> {
        if self.regions == RegionsArg::Random {
            return Ok(None);
        }
        let ids: Vec<u64> =
            (self.context_first_id..self.context_first_id + self.context_samples).collect();
        tracing::info!(
            images = ids.len(),
            first_id = self.context_first_id,
            "counting what surrounds each concept"
        );
        Ok(Some(ContextProfile::from_samples(
            generator, segmenter, layer, classes, &ids, batch,
        )?))
    }

    pub(crate) fn name(self) -> &'static str {
        match self.regions {
            RegionsArg::Random => "random",
            RegionsArg::Context => "context",
        }
    }
}

/// How draws are brushed, given [`DrawRegionArgs::profiles`]' answer.
pub(crate) fn draw_regions(profiles: &Option<Vec<ContextProfile>>) -> DrawRegions<'_> {
    match profiles {
        Some(profiles) => DrawRegions::Context(profiles),
        None => DrawRegions::Random,
    }
}
