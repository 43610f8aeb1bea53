//! The worker's cache of recent renders, for incremental re-rendering.
//!
//! The GANPaint client (and our own UI) resends the whole stroke stack with every
//! stroke, so consecutive requests for one image differ by one stroke. The worker keeps,
//! per (image latent, edited layer), the unedited prefix activation and the suffix's
//! activations ([`SuffixActivations`]); the next request then recomputes only what its
//! change reaches. Entries are evicted least recently used first once their bytes exceed
//! the budget. The cache lives on the worker thread only, like every tensor.
//!
//! The process keeps freed memory for reuse ([`crate::model::keep_freed_memory`]), so
//! evicted entries would stay resident: after every eighth of the budget evicted (at most
//! [`RELEASE_EVERY_MAX`]), the cache hands free pages back
//! ([`crate::model::release_freed_memory`]), which keeps the resident set within the
//! budget plus what a forward pass and that much hold.

use std::collections::HashMap;

use tch::Tensor;

use crate::model::SuffixActivations;

/// The most evicted bytes that stay resident before they are handed back to the OS.
pub const RELEASE_EVERY_MAX: usize = 32 << 20;

/// Which image a kept render is of.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Subject {
    /// A generated image: the exact bits of its z.
    Latent(Vec<u32>),
    /// An uploaded picture (rendered by its own adapted generator): its id.
    Upload(String),
}

/// Which render an entry belongs to: the image, and the edited layer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RenderKey {
    subject: Subject,
    layer: String,
}

impl RenderKey {
    pub fn new(z: &[f32], layer: &str) -> Self {
        RenderKey {
            subject: Subject::Latent(z.iter().map(|v| v.to_bits()).collect()),
            layer: layer.to_string(),
        }
    }

    pub fn upload(id: &str, layer: &str) -> Self {
        RenderKey {
            subject: Subject::Upload(id.to_string()),
            layer: layer.to_string(),
        }
    }
}

/// One kept render.
pub struct RenderEntry {
    /// The edited layer's activation before any edit, `[1, C, H, W]` f32.
    pub prefix: Tensor,
    pub suffix: SuffixActivations,
}

impl RenderEntry {
    fn bytes(&self) -> usize {
        self.prefix.numel() * self.prefix.kind().elt_size_in_bytes() + self.suffix.bytes()
    }
}

/// LRU by bytes.
pub struct RenderCache {
    budget_bytes: usize,
    used_bytes: usize,
    clock: u64,
    /// Bytes evicted since free memory was last handed back.
    evicted_unreleased: usize,
    entries: HashMap<RenderKey, (u64, usize, RenderEntry)>,
}

impl RenderCache {
    pub fn new(budget_bytes: usize) -> Self {
        RenderCache {
            budget_bytes,
            used_bytes: 0,
            clock: 0,
            evicted_unreleased: 0,
            entries: HashMap::new(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.budget_bytes > 0
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn used_bytes(&self) -> usize {
        self.used_bytes
    }

    /// Evicted bytes after which free memory goes back to the OS: an eighth of the budget,
    /// at most [`RELEASE_EVERY_MAX`].
    fn release_every(&self) -> usize {
        (self.budget_bytes / 8).min(RELEASE_EVERY_MAX)
    }

    /// Takes an entry out (the caller updates it and puts it back with [`Self::insert`]).
    pub fn take(&mut self, key: &RenderKey) -> Option<RenderEntry> {
        let (_, bytes, entry) = self.entries.remove(key)?;
        self.used_bytes -= bytes;
        Some(entry)
    }

    /// Keeps `entry` as the most recently used, evicting the least recently used ones
    /// until the budget holds. An entry larger than the whole budget is not kept.
    pub fn insert(&mut self, key: RenderKey, entry: RenderEntry) {
        if let Some((_, bytes, _)) = self.entries.remove(&key) {
            self.used_bytes -= bytes;
        }
        let bytes = entry.bytes();
        if bytes > self.budget_bytes {
            return;
        }
        while self.used_bytes + bytes > self.budget_bytes {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, (used, _, _))| *used)
                .map(|(k, _)| k.clone())
                .expect("over budget implies an entry");
            let (_, freed, _) = self.entries.remove(&oldest).expect("just found");
            self.used_bytes -= freed;
            self.evicted_unreleased += freed;
        }
        if self.evicted_unreleased > 0 && self.evicted_unreleased >= self.release_every() {
            let started = std::time::Instant::now();
            crate::model::release_freed_memory();
            tracing::debug!(
                evicted_bytes = self.evicted_unreleased,
                seconds = started.elapsed().as_secs_f64(),
                "render cache: freed memory handed back"
            );
            self.evicted_unreleased = 0;
        }
        self.clock += 1;
        self.used_bytes += bytes;
        self.entries.insert(key, (self.clock, bytes, entry));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ProgGan, ProgGanConfig};
    use tch::{Device, Kind};

    fn entry(model: &ProgGan, seed: f32) -> RenderEntry {
        let z = Tensor::full([1, 8], seed as f64, (Kind::Float, Device::Cpu));
        let prefix = model.features(&z, "layer2").unwrap();
        let (_, mut suffix) = model.forward_from_recorded("layer2", &prefix).unwrap();
        RenderEntry {
            prefix,
            suffix: suffix.pop().unwrap(),
        }
    }

    #[test]
    fn evicts_least_recently_used_when_over_budget() {
        let _guard = tch::no_grad_guard();
        let model = ProgGan::new(
            ProgGanConfig {
                z_dim: 8,
                channels: vec![8, 4],
            },
            Device::Cpu,
        );
        let one = entry(&model, 1.0).bytes();
        let mut cache = RenderCache::new(2 * one + one / 2);
        let key = |i: f32| RenderKey::new(&[i; 8], "layer2");
        cache.insert(key(1.0), entry(&model, 1.0));
        cache.insert(key(2.0), entry(&model, 2.0));
        // Touch 1, so 2 is the oldest when 3 arrives.
        let first = cache.take(&key(1.0)).unwrap();
        cache.insert(key(1.0), first);
        cache.insert(key(3.0), entry(&model, 3.0));
        assert_eq!(cache.len(), 2);
        assert!(cache.used_bytes() <= 2 * one + one / 2);
        assert!(cache.take(&key(2.0)).is_none());
        assert!(cache.take(&key(1.0)).is_some());
        assert!(cache.take(&key(3.0)).is_some());
        assert_eq!(cache.used_bytes(), 0);
    }

    #[test]
    fn entry_larger_than_budget_is_not_kept_and_zero_budget_disables() {
        let _guard = tch::no_grad_guard();
        let model = ProgGan::new(
            ProgGanConfig {
                z_dim: 8,
                channels: vec![8, 4],
            },
            Device::Cpu,
        );
        let mut cache = RenderCache::new(16);
        cache.insert(RenderKey::new(&[0.0; 8], "layer2"), entry(&model, 0.0));
        assert!(cache.is_empty());
        assert!(!RenderCache::new(0).enabled());
    }
}
