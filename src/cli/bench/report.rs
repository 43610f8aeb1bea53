//! The bench's results as typed, serialisable structs, and the table printed from them.
//!
//! The JSON keeps the keys earlier runs wrote (`ratios.fast_vs_torch_fp32`,
//! `psnr_db.demo_fast`, `models.<name>.latency_ms.fast.p50_ms`, …), so recorded results
//! and the scripts that read them stay comparable. What the rounds add: `ratio_spread`
//! (and each model's `ratios`) gives every ratio as `{median, min, max, rounds,
//! per_round}`, and `ratios` holds those medians.

use std::collections::BTreeMap;

use serde::Serialize;

use super::stats::{round3, Latency, RatioStats};

/// A whole run.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub machine: Machine,
    pub precision: String,
    /// Rounds each model's compared cases were alternated in.
    pub rounds: usize,
    /// The medians of `ratio_spread`, on `ratios_model`.
    pub ratios: Ratios<f64>,
    pub ratio_spread: Ratios<RatioStats>,
    /// The model the ratios were measured on (the 256² one when it ran, else the first).
    pub ratios_model: String,
    /// The fast path's PSNR against the exact one, as `<model>_fast`.
    pub psnr_db: BTreeMap<String, f64>,
    pub models: BTreeMap<String, ModelReport>,
    pub http: Option<HttpReport>,
    pub upload: Option<UploadBench>,
}

/// Painting an uploaded picture against painting a sample ([`super::upload`]).
#[derive(Clone, Debug, Serialize)]
pub struct UploadBench {
    pub project: String,
    /// The upload's wall time as the client saw it (the inversion, mostly).
    pub upload_ms: f64,
    pub psnr_db: f64,
    /// The server's `timing` of the inversion.
    pub inversion: serde_json::Value,
    pub sample_paint: Option<Latency>,
    pub upload_paint: Option<Latency>,
    /// Per round: the upload's median paint time over the sample's.
    pub upload_over_sample: Option<RatioStats>,
}

/// Where it ran.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub logical_cpus: usize,
    pub torch_threads: i32,
    pub cpu_fast_bf16: bool,
    pub device: String,
}

/// Every ratio the bench forms: ours over PyTorch's, and incremental over full renders.
/// `None` (null) when a side did not run (`--skip-torch`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Ratios<T> {
    pub fp32_vs_torch_fp32: Option<T>,
    pub fast_vs_torch_fp32: Option<T>,
    pub fast_vs_torch_low_precision: Option<T>,
    pub fp32_vs_torch_fp32_tuned_malloc: Option<T>,
    pub fast_vs_torch_fp32_tuned_malloc: Option<T>,
    pub incremental_vs_fast: Option<T>,
    pub incremental_centre_vs_fast: Option<T>,
}

impl<T> Default for Ratios<T> {
    fn default() -> Self {
        Ratios {
            fp32_vs_torch_fp32: None,
            fast_vs_torch_fp32: None,
            fast_vs_torch_low_precision: None,
            fp32_vs_torch_fp32_tuned_malloc: None,
            fast_vs_torch_fp32_tuned_malloc: None,
            incremental_vs_fast: None,
            incremental_centre_vs_fast: None,
        }
    }
}

impl Ratios<RatioStats> {
    /// Each ratio's median.
    pub fn medians(&self) -> Ratios<f64> {
        let m = |r: &Option<RatioStats>| r.as_ref().map(|s| s.median);
        Ratios {
            fp32_vs_torch_fp32: m(&self.fp32_vs_torch_fp32),
            fast_vs_torch_fp32: m(&self.fast_vs_torch_fp32),
            fast_vs_torch_low_precision: m(&self.fast_vs_torch_low_precision),
            fp32_vs_torch_fp32_tuned_malloc: m(&self.fp32_vs_torch_fp32_tuned_malloc),
            fast_vs_torch_fp32_tuned_malloc: m(&self.fast_vs_torch_fp32_tuned_malloc),
            incremental_vs_fast: m(&self.incremental_vs_fast),
            incremental_centre_vs_fast: m(&self.incremental_centre_vs_fast),
        }
    }

    /// `(name, stats)` of each ratio that was formed, in declaration order.
    pub fn named(&self) -> Vec<(&'static str, &RatioStats)> {
        [
            ("fp32_vs_torch_fp32", &self.fp32_vs_torch_fp32),
            ("fast_vs_torch_fp32", &self.fast_vs_torch_fp32),
            (
                "fast_vs_torch_low_precision",
                &self.fast_vs_torch_low_precision,
            ),
            (
                "fp32_vs_torch_fp32_tuned_malloc",
                &self.fp32_vs_torch_fp32_tuned_malloc,
            ),
            (
                "fast_vs_torch_fp32_tuned_malloc",
                &self.fast_vs_torch_fp32_tuned_malloc,
            ),
            ("incremental_vs_fast", &self.incremental_vs_fast),
            (
                "incremental_centre_vs_fast",
                &self.incremental_centre_vs_fast,
            ),
        ]
        .into_iter()
        .filter_map(|(name, stats)| stats.as_ref().map(|s| (name, s)))
        .collect()
    }
}

/// Everything measured on one model.
#[derive(Clone, Debug, Serialize)]
pub struct ModelReport {
    pub resolution: i64,
    pub layer: String,
    pub compute_kind: String,
    pub rounds: usize,
    /// Timed runs of each case per round (the incremental case at every place gets more).
    pub reps_per_round: usize,
    pub latency_ms: Latencies,
    pub incremental_work_fraction: WorkFraction,
    /// Images per second at each batch size (the key, written as a string).
    pub throughput_images_per_s_fast: BTreeMap<i64, f64>,
    pub psnr_db_fast_vs_exact: f64,
    pub ratios: Ratios<RatioStats>,
    pub torch: Option<TorchReport>,
}

/// Batch-1 latencies of our cases, over all rounds.
#[derive(Clone, Debug, Serialize)]
pub struct Latencies {
    pub exact_fp32: Latency,
    pub exact_fp32_png: Latency,
    pub fast: Latency,
    pub fast_png: Latency,
    /// The fast pass from z (layers before the edited one too), as the server renders an
    /// image it holds nothing of.
    pub fast_from_z: Latency,
    pub png_encode: Latency,
    /// JPEG at quality 95, as `/api/generate` answers.
    pub jpeg_encode: Latency,
    pub incremental_2x2_centre: Latency,
    pub incremental_2x2_corner: Latency,
    pub incremental_2x2_any_place: Latency,
}

/// The share of a full pass each incremental case recomputed, on average.
#[derive(Clone, Debug, Serialize)]
pub struct WorkFraction {
    pub centre: f64,
    pub corner: f64,
    pub any_place_mean: f64,
}

/// The PyTorch reference's side, timed in the same rounds.
#[derive(Clone, Debug, Serialize)]
pub struct TorchReport {
    pub torch: String,
    pub threads: i64,
    pub device: String,
    pub batch: i64,
    pub fp32: Latency,
    /// The low-precision case under its own name: bf16 on CPU, fp16 on CUDA.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bf16: Option<Latency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fp16: Option<Latency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bf16_psnr_db_vs_fp32: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fp16_psnr_db_vs_fp32: Option<f64>,
    /// The largest u8 difference between PyTorch's fp32 pixels and our exact ones.
    pub fp32_max_pixel_diff_vs_ours: u8,
    pub tuned_malloc: TunedMalloc,
}

impl TorchReport {
    pub fn low_precision(&self) -> Option<&Latency> {
        self.bf16.as_ref().or(self.fp16.as_ref())
    }
}

/// PyTorch fp32 again, with glibc set up as `keep_freed_memory` sets up ours: how much of
/// the difference is the allocator.
#[derive(Clone, Debug, Serialize)]
pub struct TunedMalloc {
    pub fp32: Latency,
}

/// The HTTP load test.
#[derive(Clone, Debug, Serialize)]
pub struct HttpReport {
    pub project: String,
    /// The rounds the routes alternated in at each concurrency.
    pub rounds: usize,
    pub cases: Vec<HttpCase>,
    /// `/api/generate` over `/api/v1/paint` at each concurrency: the median of the
    /// per-round ratios of their p50s, with the spread.
    pub generate_vs_paint: Vec<HttpRouteRatio>,
    /// Each route's p50 at one client over the in-process passes of the model of the same
    /// name, when one was benchmarked (for example `church256` served as `church256`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub against_passes: Vec<HttpAgainstPass>,
    /// One person painting: strokes on an image the server already rendered.
    pub editing: Option<HttpEditing>,
}

/// `/api/generate` as an editor drives it: each image gets
/// [`super::http::EDIT_STROKES`] strokes, one per request, each request carrying the
/// strokes so far, from one client, with the render cache on. Each image's first stroke (a
/// full render) is left out, so this is what a stroke on a shown picture costs.
#[derive(Clone, Debug, Serialize)]
pub struct HttpEditing {
    pub strokes_per_image: u64,
    pub case: HttpCase,
    /// Each round's p50 (ms).
    pub round_p50: Vec<f64>,
    /// The p50 over the served model's in-process incremental re-render of a 2×2-cell
    /// stroke (`latency_ms.incremental_2x2_any_place`), when that model was benchmarked.
    pub vs_incremental: Option<f64>,
    /// The p50 over the same model's fast pass from a held activation.
    pub vs_fast: Option<f64>,
}

/// The two routes set against each other, round by round.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct HttpRouteRatio {
    pub concurrency: usize,
    pub generate_vs_paint: RatioStats,
}

/// One route's p50 at one client against the model's fast passes (p50 over p50): the
/// pass from a held `layer` activation, and the pass from z that the server runs for an
/// image it holds nothing of.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct HttpAgainstPass {
    pub route: String,
    pub model: String,
    pub vs_fast: f64,
    pub vs_fast_from_z: f64,
}

impl HttpReport {
    /// Fills [`Self::against_passes`] from the model reports (nothing when none is named
    /// as the served project).
    pub fn compare_with(&mut self, models: &BTreeMap<String, ModelReport>) {
        if let Some(model) = models.get(&self.project) {
            let latency = &model.latency_ms;
            self.against_passes = self.against(&latency.fast, &latency.fast_from_z);
            if let Some(editing) = &mut self.editing {
                if let Some(p50) = editing.case.latency_ms.as_ref().map(|l| l.p50_ms) {
                    editing.vs_incremental =
                        Some(round3(p50 / latency.incremental_2x2_any_place.p50_ms));
                    editing.vs_fast = Some(round3(p50 / latency.fast.p50_ms));
                }
            }
        }
    }

    /// Each route's p50 at one client over the two passes' p50s.
    fn against(&self, fast: &Latency, fast_from_z: &Latency) -> Vec<HttpAgainstPass> {
        self.cases
            .iter()
            .filter(|case| case.concurrency == 1)
            .filter_map(|case| {
                let p50 = case.latency_ms.as_ref()?.p50_ms;
                Some(HttpAgainstPass {
                    route: case.route.clone(),
                    model: self.project.clone(),
                    vs_fast: round3(p50 / fast.p50_ms),
                    vs_fast_from_z: round3(p50 / fast_from_z.p50_ms),
                })
            })
            .collect()
    }
}

/// One route at one concurrency.
#[derive(Clone, Debug, Serialize)]
pub struct HttpCase {
    pub route: String,
    pub concurrency: usize,
    pub requests: usize,
    pub errors: u64,
    pub requests_per_s: f64,
    /// `None` (null) when no request succeeded.
    pub latency_ms: Option<Latency>,
}

fn ms(latency: Option<&Latency>) -> String {
    latency.map_or("-".to_string(), |l| {
        format!("{:9.2} / {:9.2}", l.p50_ms, l.p95_ms)
    })
}

fn ratio_text(stats: &RatioStats) -> String {
    format!(
        "{:.3} ({:.3}–{:.3} over {} rounds)",
        stats.median, stats.min, stats.max, stats.rounds
    )
}

/// The human-readable summary.
pub fn print_table(report: &BenchReport) {
    let machine = &report.machine;
    println!(
        "machine: {} ({} logical CPUs, {} torch threads, fast bf16 {}, {})",
        machine.cpu,
        machine.logical_cpus,
        machine.torch_threads,
        machine.cpu_fast_bf16,
        machine.device
    );
    for (name, model) in &report.models {
        println!(
            "\n== {name} ({}², edit at {}, fast kind {}) — batch 1, ms p50 / p95, {} rounds",
            model.resolution, model.layer, model.compute_kind, model.rounds
        );
        let latency = &model.latency_ms;
        let torch = model.torch.as_ref();
        let rows = [
            ("torch eager fp32", torch.map(|t| &t.fp32)),
            (
                "torch eager fp32, our malloc settings",
                torch.map(|t| &t.tuned_malloc.fp32),
            ),
            (
                "torch eager bf16/fp16 (weights cast once)",
                torch.and_then(TorchReport::low_precision),
            ),
            ("ours exact fp32", Some(&latency.exact_fp32)),
            ("ours exact fp32 + PNG", Some(&latency.exact_fp32_png)),
            ("ours fast", Some(&latency.fast)),
            ("ours fast + PNG", Some(&latency.fast_png)),
            ("ours fast, from z", Some(&latency.fast_from_z)),
            (
                "ours incremental, 2×2 cells at centre",
                Some(&latency.incremental_2x2_centre),
            ),
            (
                "ours incremental, 2×2 cells at corner",
                Some(&latency.incremental_2x2_corner),
            ),
            (
                "ours incremental, 2×2 cells, every place",
                Some(&latency.incremental_2x2_any_place),
            ),
            ("PNG encode alone", Some(&latency.png_encode)),
            ("JPEG q95 encode alone", Some(&latency.jpeg_encode)),
        ];
        for (label, value) in rows {
            println!("  {label:<44} {}", ms(value));
        }
        let work = &model.incremental_work_fraction;
        println!(
            "  fast vs exact PSNR {} dB; incremental recomputes {} (centre) / {} (corner) / {} (mean, every place) of a pass",
            model.psnr_db_fast_vs_exact, work.centre, work.corner, work.any_place_mean
        );
        if let Some(torch) = torch {
            println!(
                "  torch fp32 vs ours exact: max pixel difference {}",
                torch.fp32_max_pixel_diff_vs_ours
            );
        }
        println!(
            "  throughput (fast, images/s by batch): {}",
            serde_json::to_string(&model.throughput_images_per_s_fast).unwrap_or_default()
        );
        println!("  ratios, median of per-round ratios (min–max):");
        for (ratio, stats) in model.ratios.named() {
            println!("    {ratio:<34} {}", ratio_text(stats));
        }
    }
    println!(
        "\nratios ({}, batch 1, p50): {}",
        report.ratios_model,
        serde_json::to_string(&report.ratios).unwrap_or_default()
    );
    println!(
        "PSNR fast vs exact (dB): {}",
        serde_json::to_string(&report.psnr_db).unwrap_or_default()
    );
    if let Some(upload) = &report.upload {
        println!(
            "\n== Uploads, project {} — one picture inverted in {:.0} ms (PSNR {:.1} dB); paint ms p50 / p95",
            upload.project, upload.upload_ms, upload.psnr_db
        );
        println!("  on a sample   {}", ms(upload.sample_paint.as_ref()));
        println!("  on the upload {}", ms(upload.upload_paint.as_ref()));
        if let Some(ratio) = &upload.upload_over_sample {
            println!(
                "  upload / sample, median of {} rounds: {} (min {}, max {})",
                ratio.rounds, ratio.median, ratio.min, ratio.max
            );
        }
    }
    if let Some(http) = &report.http {
        println!(
            "\n== HTTP, project {} — requests/s, latency ms p50 / p95, errors",
            http.project
        );
        for case in &http.cases {
            println!(
                "  {:<16} c={:<3} {:>9.1} req/s  {}  errors {}",
                case.route,
                case.concurrency,
                case.requests_per_s,
                ms(case.latency_ms.as_ref()),
                case.errors
            );
        }
        for ratio in &http.generate_vs_paint {
            println!(
                "  /api/generate over /api/v1/paint, c={}: {}",
                ratio.concurrency,
                ratio_text(&ratio.generate_vs_paint)
            );
        }
        if let Some(editing) = &http.editing {
            println!(
                "  editing: a stroke on a shown image ({} per image, 1 client) {}  errors {}",
                editing.strokes_per_image,
                ms(editing.case.latency_ms.as_ref()),
                editing.case.errors
            );
            if let (Some(inc), Some(fast)) = (editing.vs_incremental, editing.vs_fast) {
                println!(
                    "  editing p50 over the incremental re-render of a 2×2-cell stroke: {inc:.3}; over the fast pass: {fast:.3}"
                );
            }
        }
        for against in &http.against_passes {
            println!(
                "  {} p50, 1 client, over {}'s fast pass: {:.3} (from a held activation), {:.3} (from z)",
                against.route, against.model, against.vs_fast, against.vs_fast_from_z
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(median: f64) -> RatioStats {
        RatioStats {
            median,
            min: median / 2.0,
            max: median * 2.0,
            rounds: 3,
            per_round: vec![median / 2.0, median, median * 2.0],
        }
    }

    #[test]
    fn ratio_medians_keep_the_formed_ratios_and_null_the_rest() {
        let spread = Ratios {
            fast_vs_torch_fp32: Some(stats(0.25)),
            incremental_vs_fast: Some(stats(0.5)),
            ..Ratios::default()
        };
        let json = serde_json::to_value(spread.medians()).unwrap();
        assert_eq!(json["fast_vs_torch_fp32"], 0.25);
        assert_eq!(json["incremental_vs_fast"], 0.5);
        assert!(json["fp32_vs_torch_fp32"].is_null());
        assert_eq!(json.as_object().unwrap().len(), 7);
        let named: Vec<&str> = spread.named().into_iter().map(|(n, _)| n).collect();
        assert_eq!(named, ["fast_vs_torch_fp32", "incremental_vs_fast"]);
    }

    fn latency(p50: f64) -> Latency {
        Latency {
            p50_ms: p50,
            p95_ms: p50 + 1.0,
            samples: 4,
        }
    }

    #[test]
    fn http_routes_are_set_against_both_passes_at_one_client_only() {
        let case = |route: &str, concurrency, p50: Option<f64>| HttpCase {
            route: route.into(),
            concurrency,
            requests: 10,
            errors: 0,
            requests_per_s: 1.0,
            latency_ms: p50.map(latency),
        };
        let report = HttpReport {
            project: "church256".into(),
            rounds: 1,
            generate_vs_paint: Vec::new(),
            cases: vec![
                case("/api/v1/paint", 1, Some(50.0)),
                case("/api/v1/paint", 4, Some(150.0)),
                case("/api/generate", 1, Some(55.0)),
                case("/api/other", 1, None),
            ],
            against_passes: Vec::new(),
            editing: None,
        };
        let against = report.against(&latency(40.0), &latency(50.0));
        assert_eq!(
            against,
            [
                HttpAgainstPass {
                    route: "/api/v1/paint".into(),
                    model: "church256".into(),
                    vs_fast: 1.25,
                    vs_fast_from_z: 1.0,
                },
                HttpAgainstPass {
                    route: "/api/generate".into(),
                    model: "church256".into(),
                    vs_fast: 1.375,
                    vs_fast_from_z: 1.1,
                },
            ]
        );
        // No model of the project's name: nothing to set against, and no key written.
        let mut alone = report.clone();
        alone.compare_with(&BTreeMap::new());
        let json = serde_json::to_value(&alone).unwrap();
        assert!(json.get("against_passes").is_none());
    }

    #[test]
    fn torch_report_names_its_low_precision_and_omits_the_other() {
        let report = TorchReport {
            torch: "2.13.0".into(),
            threads: 2,
            device: "cpu".into(),
            batch: 1,
            fp32: latency(10.0),
            bf16: Some(latency(4.0)),
            fp16: None,
            bf16_psnr_db_vs_fp32: Some(40.0),
            fp16_psnr_db_vs_fp32: None,
            fp32_max_pixel_diff_vs_ours: 0,
            tuned_malloc: TunedMalloc { fp32: latency(8.0) },
        };
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["bf16"]["p50_ms"], 4.0);
        assert!(json.get("fp16").is_none());
        assert!(json.get("fp16_psnr_db_vs_fp32").is_none());
        assert_eq!(json["tuned_malloc"]["fp32"]["p95_ms"], 9.0);
        assert_eq!(json["fp32_max_pixel_diff_vs_ours"], 0);
        assert_eq!(report.low_precision(), Some(&latency(4.0)));
    }

    #[test]
    fn bench_report_serialises_with_the_recorded_keys_and_the_spread() {
        let spread = Ratios {
            fp32_vs_torch_fp32: Some(stats(0.7)),
            ..Ratios::default()
        };
        let report = BenchReport {
            machine: Machine {
                cpu: "cpu".into(),
                logical_cpus: 2,
                torch_threads: 2,
                cpu_fast_bf16: true,
                device: "Cpu".into(),
            },
            precision: "Fast".into(),
            rounds: 3,
            ratios: spread.medians(),
            ratio_spread: spread,
            ratios_model: "demo".into(),
            psnr_db: BTreeMap::from([("demo_fast".to_string(), 52.5)]),
            models: BTreeMap::new(),
            http: None,
            upload: None,
        };
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["ratios"]["fp32_vs_torch_fp32"], 0.7);
        assert_eq!(json["ratio_spread"]["fp32_vs_torch_fp32"]["rounds"], 3);
        assert_eq!(json["ratio_spread"]["fp32_vs_torch_fp32"]["min"], 0.35);
        assert_eq!(json["ratios_model"], "demo");
        assert_eq!(json["psnr_db"]["demo_fast"], 52.5);
        assert!(json["http"].is_null());
        assert_eq!(json["machine"]["logical_cpus"], 2);
    }

    #[test]
    fn http_case_without_successes_has_null_latency() {
        let case = HttpCase {
            route: "/api/v1/paint".into(),
            concurrency: 4,
            requests: 0,
            errors: 3,
            requests_per_s: 0.0,
            latency_ms: None,
        };
        let json = serde_json::to_value(&case).unwrap();
        assert!(json["latency_ms"].is_null());
        assert_eq!(json["errors"], 3);
    }
}
