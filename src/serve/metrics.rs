//! Prometheus metrics in text format: request counts and latency histograms per route,
//! queue depth per project, and forward-pass batch sizes.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const BATCH_BUCKETS: [f64; 7] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];
const FRACTION_BUCKETS: [f64; 6] = [0.0, 0.1, 0.25, 0.5, 0.8, 1.0];

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    total: u64,
}

impl Histogram {
    fn observe(&mut self, buckets: &[f64], value: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; buckets.len()];
        }
        for (i, bound) in buckets.iter().enumerate() {
            if value <= *bound {
                self.counts[i] += 1;
            }
        }
        self.sum += value;
        self.total += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str, buckets: &[f64]) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, bound) in buckets.iter().enumerate() {
            let count = self.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.total
        );
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.total);
    }
}

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(String, String, u16), u64>,
    latency: BTreeMap<(String, String), Histogram>,
    batches: Histogram,
    incremental: Histogram,
}

/// How often, at most, overload is logged.
const OVERLOAD_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
    overloaded: AtomicU64,
    /// (when overload was last logged, the count then).
    overload_logged: Mutex<Option<(std::time::Instant, u64)>>,
}

impl Metrics {
    pub fn request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let mut inner = self.inner.lock().expect("metrics lock");
        *inner
            .requests
            .entry((method.to_string(), route.to_string(), status))
            .or_default() += 1;
        inner
            .latency
            .entry((method.to_string(), route.to_string()))
            .or_default()
            .observe(&LATENCY_BUCKETS, seconds);
    }

    /// Counts a 503 for overload; returns how many there were since the last log line
    /// when one is due (at most one per `OVERLOAD_LOG_EVERY`).
    pub fn overloaded(&self) -> Option<u64> {
        let total = self.overloaded.fetch_add(1, Ordering::Relaxed) + 1;
        let mut logged = self.overload_logged.lock().expect("metrics lock");
        let now = std::time::Instant::now();
        match *logged {
            Some((at, _)) if now.duration_since(at) < OVERLOAD_LOG_EVERY => None,
            previous => {
                *logged = Some((now, total));
                Some(total - previous.map_or(0, |(_, count)| count))
            }
        }
    }

    pub fn batch(&self, images: usize) {
        self.inner
            .lock()
            .expect("metrics lock")
            .batches
            .observe(&BATCH_BUCKETS, images as f64);
    }

    /// An incremental re-render that recomputed `fraction` of a full pass.
    pub fn incremental(&self, fraction: f64) {
        self.inner
            .lock()
            .expect("metrics lock")
            .incremental
            .observe(&FRACTION_BUCKETS, fraction);
    }

    /// The text exposition; `queues` are (project, depth); `gauges` are further
    /// (name, help, value) gauges from the server.
    pub fn render(&self, queues: &[(String, usize)], gauges: &[(&str, &str, f64)]) -> String {
        let inner = self.inner.lock().expect("metrics lock");
        let mut out = String::new();
        out.push_str("# HELP ganpaint_overloaded_total Requests refused with 503 because a queue was full.\n");
        out.push_str("# TYPE ganpaint_overloaded_total counter\n");
        let _ = writeln!(
            out,
            "ganpaint_overloaded_total {}",
            self.overloaded.load(Ordering::Relaxed)
        );
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        out.push_str("# HELP ganpaint_http_requests_total HTTP requests by route and status.\n");
        out.push_str("# TYPE ganpaint_http_requests_total counter\n");
        for ((method, route, status), count) in &inner.requests {
            let _ = writeln!(out, "ganpaint_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {count}");
        }
        out.push_str(
            "# HELP ganpaint_http_request_duration_seconds HTTP request latency by route.\n",
        );
        out.push_str("# TYPE ganpaint_http_request_duration_seconds histogram\n");
        for ((method, route), histogram) in &inner.latency {
            let labels = format!("method=\"{method}\",route=\"{route}\"");
            histogram.render(
                &mut out,
                "ganpaint_http_request_duration_seconds",
                &labels,
                &LATENCY_BUCKETS,
            );
        }
        out.push_str(
            "# HELP ganpaint_queue_depth Requests waiting for a project's model worker.\n",
        );
        out.push_str("# TYPE ganpaint_queue_depth gauge\n");
        for (project, depth) in queues {
            let _ = writeln!(out, "ganpaint_queue_depth{{project=\"{project}\"}} {depth}");
        }
        out.push_str("# HELP ganpaint_batch_size Images per forward pass.\n");
        out.push_str("# TYPE ganpaint_batch_size histogram\n");
        inner
            .batches
            .render(&mut out, "ganpaint_batch_size", "", &BATCH_BUCKETS);
        out.push_str(
            "# HELP ganpaint_incremental_work_fraction Share of a full pass recomputed by each incremental re-render.\n",
        );
        out.push_str("# TYPE ganpaint_incremental_work_fraction histogram\n");
        inner.incremental.render(
            &mut out,
            "ganpaint_incremental_work_fraction",
            "",
            &FRACTION_BUCKETS,
        );
        out
    }
}

impl super::worker::WorkerObserver for Metrics {
    fn batch(&self, images: usize, _seconds: f64) {
        Metrics::batch(self, images);
    }

    fn incremental(&self, stats: &crate::model::IncrementalStats) {
        Metrics::incremental(self, stats.work_fraction);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_gauges() {
        let metrics = Metrics::default();
        metrics.request("POST", "/api/v1/paint", 200, 0.03);
        metrics.request("POST", "/api/v1/paint", 200, 0.2);
        metrics.batch(3);
        assert_eq!(metrics.overloaded(), Some(1));
        assert_eq!(
            metrics.overloaded(),
            None,
            "a second 503 at once is not logged"
        );
        let text = metrics.render(
            &[("demo".into(), 2)],
            &[("ganpaint_open_connections", "Open connections.", 3.0)],
        );
        assert!(text.contains("ganpaint_overloaded_total 2"));
        assert!(text.contains("ganpaint_open_connections 3"));
        assert!(text.contains("ganpaint_http_requests_total{method=\"POST\",route=\"/api/v1/paint\",status=\"200\"} 2"));
        assert!(text.contains("ganpaint_http_request_duration_seconds_bucket{method=\"POST\",route=\"/api/v1/paint\",le=\"0.05\"} 1"));
        assert!(text.contains("ganpaint_queue_depth{project=\"demo\"} 2"));
        assert!(text.contains("ganpaint_batch_size_bucket{le=\"4\"} 1"));
    }
}
