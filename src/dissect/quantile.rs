//! A mergeable quantile sketch with a rigorous, self-reported rank-error bound.
//!
//! Dissection needs each unit's activation quantiles (its threshold `t_u` at 0.99 and the
//! draw levels at 0.99, 0.995 and 0.999) over millions of values, in bounded memory, and
//! from shards that are merged afterwards. This sketch is a KLL-style hierarchy of
//! compactors (Karnin, Lang and Liberty 2016) made deterministic:
//!
//! - Level `h` holds values of weight `2^h`, at most `capacity` of them.
//! - A full level is sorted and its **lower part** (all but the top `capacity / 2`
//!   values, an even count) is compacted: every other value of that sorted section moves
//!   up to level `h + 1` with double weight. Which of the two interleavings is kept
//!   alternates deterministically (even positions, then odd, …), so repeated runs and
//!   merges give the same sketch, bit for bit.
//! - Keeping the top half of every level in place, as ReqSketch does (Cormode et al.
//!   2021), favours the high quantiles that dissection asks for: the largest
//!   `capacity / 2` values of the stream are never compacted, so while
//!   `(1 − q)·n < capacity / 2` the q-quantile is exact.
//!
//! **The error bound.** Compacting a sorted, even-length section of weight-`w` values
//! changes the estimated number of values below any point `x` by at most `w`: the values
//! of the section below `x` form a prefix, and a prefix of length `m` keeps `⌊m/2⌋` or
//! `⌈m/2⌉` values of weight `2w`. The change is zero unless `x` falls inside the section.
//! So the sketch tracks:
//! - `error`, the sum of the weights of all compactions: a worst-case bound on the rank
//!   error of *any* query ([`QuantileSketch::rank_error_bound`], as a fraction of `n`);
//! - per level, the number of compactions and the largest value ever compacted, giving
//!   a tighter bound at a given point `x` ([`QuantileSketch::rank_error_at`]): only the
//!   levels that compacted a value `≥ x` can have moved the rank of `x`.
//!
//! Merging adds two sketches level by level (errors and counts add, so the bounds stay
//! rigorous), then compacts levels that overflow. Memory is below `capacity` values per
//! level, and there are about `log2(2n / capacity)` levels: 6 for 128 000 values at the
//! default capacity of 4096, 20 for 2·10⁹. Since weights are `u64`, there are never more
//! than 64 levels, so a sketch never holds more than `64 × capacity` values (1 MiB at the
//! default), whatever the sample count.
//!
//! Values are ordered by IEEE total order (`f32::total_cmp`); activations are never NaN,
//! but if one were it would sort above `+∞` instead of corrupting the order.

use std::cmp::Ordering;

use super::DissectError;

/// The default number of values per level.
pub const DEFAULT_CAPACITY: usize = 4096;

const MAGIC: &[u8; 4] = b"GPQS";
const LAYER_MAGIC: &[u8; 4] = b"GPQL";
const VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq)]
struct Level {
    /// Values of weight `2^h`, unsorted between compactions.
    items: Vec<f32>,
    /// Compactions performed at this level (each moved any rank by at most `2^h`).
    compactions: u64,
    /// The largest value ever compacted here; `-∞` before the first compaction.
    compacted_max: f32,
    /// Which interleaving the next compaction keeps.
    keep_odd: bool,
}

impl Level {
    fn new() -> Self {
        Level {
            items: Vec::new(),
            compactions: 0,
            compacted_max: f32::NEG_INFINITY,
            keep_odd: false,
        }
    }
}

/// A deterministic, mergeable quantile sketch of a stream of `f32` values.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantileSketch {
    capacity: usize,
    count: u64,
    /// Sum of the weights of all compactions: the worst-case rank error of any query.
    error: u64,
    min: f32,
    max: f32,
    levels: Vec<Level>,
}

fn total_max(a: f32, b: f32) -> f32 {
    if a.total_cmp(&b) == Ordering::Less {
        b
    } else {
        a
    }
}

impl QuantileSketch {
    /// An empty sketch. `capacity` is rounded up to an even number of at least 8.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(8).next_multiple_of(2);
        QuantileSketch {
            capacity,
            count: 0,
            error: 0,
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            levels: vec![Level::new()],
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Values seen (the total weight).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Values retained, across all levels: the memory in use.
    pub fn retained(&self) -> usize {
        self.levels.iter().map(|l| l.items.len()).sum()
    }

    /// The worst-case rank error of any query, as a fraction of [`count`](Self::count):
    /// every estimated rank is within `bound · n` of the true rank.
    pub fn rank_error_bound(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.error as f64 / self.count as f64
        }
    }

    /// A rigorous bound on the rank error at `x`, as a count of values: the total weight
    /// of compactions on levels that ever compacted a value `≥ x`.
    pub fn rank_error_at(&self, x: f32) -> u64 {
        self.levels
            .iter()
            .enumerate()
            .filter(|(_, level)| x.total_cmp(&level.compacted_max) != Ordering::Greater)
            .map(|(h, level)| level.compactions << h)
            .sum()
    }

    pub fn insert(&mut self, value: f32) {
        self.extend(std::slice::from_ref(&value));
    }

    pub fn extend(&mut self, values: &[f32]) {
        let mut rest = values;
        while !rest.is_empty() {
            let room = self.capacity - self.levels[0].items.len().min(self.capacity - 1);
            let (now, later) = rest.split_at(room.min(rest.len()));
            for &v in now {
                if v.total_cmp(&self.min) == Ordering::Less {
                    self.min = v;
                }
                self.max = total_max(self.max, v);
            }
            self.levels[0].items.extend_from_slice(now);
            self.count += now.len() as u64;
            self.compress();
            rest = later;
        }
    }

    /// Adds `other`'s values to this sketch. Both must have the same capacity.
    pub fn merge(&mut self, other: &QuantileSketch) -> Result<(), DissectError> {
        if other.capacity != self.capacity {
            return Err(DissectError::Mismatch {
                what: "sketch capacity".into(),
                detail: format!("{} vs {}", self.capacity, other.capacity),
            });
        }
        while self.levels.len() < other.levels.len() {
            self.levels.push(Level::new());
        }
        for (mine, theirs) in self.levels.iter_mut().zip(&other.levels) {
            mine.items.extend_from_slice(&theirs.items);
            mine.compactions += theirs.compactions;
            mine.compacted_max = total_max(mine.compacted_max, theirs.compacted_max);
        }
        self.count += other.count;
        self.error += other.error;
        if other.min.total_cmp(&self.min) == Ordering::Less {
            self.min = other.min;
        }
        self.max = total_max(self.max, other.max);
        self.compress();
        Ok(())
    }

    /// Compacts every level that is full, bottom up (a compaction only feeds the level
    /// above, so one sweep suffices).
    fn compress(&mut self) {
        let mut h = 0;
        while h < self.levels.len() {
            if self.levels[h].items.len() >= self.capacity {
                self.compact(h);
            }
            h += 1;
        }
    }

    fn compact(&mut self, h: usize) {
        let keep_top = self.capacity / 2;
        let level = &mut self.levels[h];
        level.items.sort_unstable_by(f32::total_cmp);
        let mut section = level.items.len().saturating_sub(keep_top);
        section -= section % 2;
        if section == 0 {
            return;
        }
        let start = usize::from(level.keep_odd);
        let promoted: Vec<f32> = level.items[start..section]
            .iter()
            .step_by(2)
            .copied()
            .collect();
        level.compacted_max = total_max(level.compacted_max, level.items[section - 1]);
        level.items.drain(..section);
        level.compactions += 1;
        level.keep_odd = !level.keep_odd;
        self.error += 1u64 << h;
        if h + 1 == self.levels.len() {
            self.levels.push(Level::new());
        }
        self.levels[h + 1].items.extend(promoted);
    }

    /// Retained values with their weights, sorted by value.
    fn weighted(&self) -> Vec<(f32, u64)> {
        let mut all: Vec<(f32, u64)> = self
            .levels
            .iter()
            .enumerate()
            .flat_map(|(h, level)| level.items.iter().map(move |&v| (v, 1u64 << h)))
            .collect();
        all.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        all
    }

    /// The q-quantile for each `q` in `[0, 1]`: the first retained value whose cumulative
    /// weight reaches `⌈q·n⌉` (at least 1). `q = 0` gives the exact minimum, `q = 1` the
    /// exact maximum. An empty sketch gives NaN.
    ///
    /// With `v` the answer and `E = rank_error_at(v)`, the true counts satisfy
    /// `#{x < v} < ⌈q·n⌉ + E` and `#{x ≤ v} ≥ ⌈q·n⌉ − E`.
    pub fn quantiles(&self, qs: &[f64]) -> Vec<f32> {
        if self.count == 0 {
            return vec![f32::NAN; qs.len()];
        }
        let all = self.weighted();
        qs.iter()
            .map(|&q| {
                if q <= 0.0 {
                    return self.min;
                }
                if q >= 1.0 {
                    return self.max;
                }
                let target = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
                let mut cumulative = 0u64;
                for &(v, w) in &all {
                    cumulative += w;
                    if cumulative >= target {
                        return v;
                    }
                }
                self.max
            })
            .collect()
    }

    pub fn quantile(&self, q: f64) -> f32 {
        self.quantiles(&[q])[0]
    }

    /// The binary form (little-endian): magic `GPQS`, version, capacity, count, error,
    /// min, max, level count, then per level: compactions, compacted max, parity, length
    /// and the values.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(self.capacity as u32).to_le_bytes());
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&self.error.to_le_bytes());
        out.extend_from_slice(&self.min.to_le_bytes());
        out.extend_from_slice(&self.max.to_le_bytes());
        out.extend_from_slice(&(self.levels.len() as u32).to_le_bytes());
        for level in &self.levels {
            out.extend_from_slice(&level.compactions.to_le_bytes());
            out.extend_from_slice(&level.compacted_max.to_le_bytes());
            out.push(u8::from(level.keep_odd));
            out.extend_from_slice(&(level.items.len() as u32).to_le_bytes());
            for v in &level.items {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(40 + 4 * self.retained() + 17 * self.levels.len());
        self.write_to(&mut out);
        out
    }

    /// Reads one sketch from the front of `reader`, checking that the weights add up.
    pub fn read_from(reader: &mut Reader<'_>) -> Result<Self, String> {
        if reader.take(4)? != MAGIC {
            return Err("not a quantile sketch (bad magic)".into());
        }
        let version = reader.u32()?;
        if version != VERSION {
            return Err(format!("sketch version {version}, expected {VERSION}"));
        }
        let capacity = reader.u32()? as usize;
        let count = reader.u64()?;
        let error = reader.u64()?;
        let min = reader.f32()?;
        let max = reader.f32()?;
        let level_count = reader.u32()? as usize;
        if capacity < 8 || !capacity.is_multiple_of(2) || level_count == 0 || level_count > 64 {
            return Err(format!(
                "bad sketch header (capacity {capacity}, {level_count} levels)"
            ));
        }
        let mut levels = Vec::with_capacity(level_count);
        let mut weight = 0u128;
        for h in 0..level_count {
            let compactions = reader.u64()?;
            let compacted_max = reader.f32()?;
            let keep_odd = reader.take(1)?[0] != 0;
            let len = reader.u32()? as usize;
            let bytes = reader.take(len * 4)?;
            let items = bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            weight += (len as u128) << h;
            levels.push(Level {
                items,
                compactions,
                compacted_max,
                keep_odd,
            });
        }
        if weight != count as u128 {
            return Err(format!(
                "sketch weights add up to {weight}, but its count is {count}"
            ));
        }
        Ok(QuantileSketch {
            capacity,
            count,
            error,
            min,
            max,
            levels,
        })
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let mut reader = Reader::new(bytes);
        let sketch = Self::read_from(&mut reader)?;
        reader.finish()?;
        Ok(sketch)
    }
}

/// A cursor over a byte slice for the binary formats.
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, at: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| format!("truncated at byte {}", self.at))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn f32(&mut self) -> Result<f32, String> {
        Ok(f32::from_bits(self.u32()?))
    }

    fn finish(&self) -> Result<(), String> {
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            Err(format!(
                "{} trailing bytes after the sketch",
                self.bytes.len() - self.at
            ))
        }
    }
}

/// One layer's sketches, one per unit, as a file: magic `GPQL`, version, unit count,
/// then each unit's sketch in [`QuantileSketch::write_to`]'s form.
pub fn layer_sketches_to_bytes(sketches: &[QuantileSketch]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(LAYER_MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(sketches.len() as u32).to_le_bytes());
    for sketch in sketches {
        sketch.write_to(&mut out);
    }
    out
}

pub fn layer_sketches_from_bytes(bytes: &[u8]) -> Result<Vec<QuantileSketch>, String> {
    let mut reader = Reader::new(bytes);
    if reader.take(4)? != LAYER_MAGIC {
        return Err("not a layer sketch file (bad magic)".into());
    }
    let version = reader.u32()?;
    if version != VERSION {
        return Err(format!(
            "layer sketch version {version}, expected {VERSION}"
        ));
    }
    let units = reader.u32()? as usize;
    let sketches = (0..units)
        .map(|_| QuantileSketch::read_from(&mut reader))
        .collect::<Result<Vec<_>, _>>()?;
    reader.finish()?;
    Ok(sketches)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic, unsorted, heavy-tailed stream with repeated values.
    fn stream(n: usize, salt: u64) -> Vec<f32> {
        let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ salt;
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let u = (state >> 11) as f64 / (1u64 << 53) as f64;
                // Mostly ReLU-like zeros and an exponential tail, quantized to make ties.
                if u < 0.3 {
                    0.0
                } else {
                    ((-(1.0 - u).ln() * 1000.0).round() / 1000.0) as f32
                }
            })
            .collect()
    }

    const QS: [f64; 9] = [0.0, 0.01, 0.25, 0.5, 0.9, 0.99, 0.995, 0.999, 1.0];

    /// Checks every quantile against exact counts, within the sketch's own bound.
    fn assert_within_bound(sketch: &QuantileSketch, data: &[f32]) {
        let n = data.len() as u64;
        assert_eq!(sketch.count(), n);
        let mut sorted = data.to_vec();
        sorted.sort_by(f32::total_cmp);
        for (&q, v) in QS.iter().zip(sketch.quantiles(&QS)) {
            let target = ((q * n as f64).ceil() as u64).clamp(1, n);
            let below = sorted.partition_point(|x| x.total_cmp(&v) == Ordering::Less) as u64;
            let at_most = sorted.partition_point(|x| x.total_cmp(&v) != Ordering::Greater) as u64;
            let local = sketch.rank_error_at(v);
            let global = (sketch.rank_error_bound() * n as f64).round() as u64;
            assert!(local <= global, "local bound {local} above global {global}");
            assert!(
                below < target + local && at_most + local >= target,
                "q={q}: v={v} has true ranks [{below}, {at_most}], target {target}, bound {local}"
            );
        }
    }

    #[test]
    fn quantiles_are_within_the_reported_bound_of_exact_ones() {
        let data = stream(200_000, 1);
        let mut sketch = QuantileSketch::new(256);
        sketch.extend(&data);
        assert!(sketch.rank_error_bound() > 0.0, "the test should compact");
        assert!(sketch.rank_error_bound() < 0.1);
        assert_within_bound(&sketch, &data);
    }

    #[test]
    fn top_values_stay_exact_while_they_fit_in_half_a_level() {
        let data = stream(100_000, 2);
        let mut sketch = QuantileSketch::new(4096);
        for chunk in data.chunks(777) {
            sketch.extend(chunk);
        }
        let mut sorted = data.clone();
        sorted.sort_by(f32::total_cmp);
        // (1 − 0.99)·n = 1000 < 2048: the 0.99 quantile is exact, with a zero bound.
        let v = sketch.quantile(0.99);
        assert_eq!(v, sorted[98_999]);
        assert_eq!(sketch.rank_error_at(v), 0);
        assert_eq!(sketch.quantile(1.0), sorted[99_999]);
        assert_eq!(sketch.quantile(0.0), sorted[0]);
    }

    #[test]
    fn merged_sketch_is_within_bound_of_the_concatenation() {
        let (a, b) = (stream(60_000, 3), stream(90_000, 4));
        let mut left = QuantileSketch::new(128);
        left.extend(&a);
        let mut right = QuantileSketch::new(128);
        right.extend(&b);
        left.merge(&right).unwrap();
        let both: Vec<f32> = a.iter().chain(&b).copied().collect();
        assert_within_bound(&left, &both);
        // One sketch over the concatenation answers within its own bound too, and the two
        // agree within the sum of both bounds.
        let mut single = QuantileSketch::new(128);
        single.extend(&both);
        assert_within_bound(&single, &both);
        let n = both.len() as f64;
        let slack = (left.rank_error_bound() + single.rank_error_bound()) * n;
        let mut sorted = both.clone();
        sorted.sort_by(f32::total_cmp);
        for q in [0.5, 0.9, 0.99] {
            let rank = |v: f32| sorted.partition_point(|x| x.total_cmp(&v) == Ordering::Less);
            let (r1, r2) = (
                rank(left.quantile(q)) as f64,
                rank(single.quantile(q)) as f64,
            );
            assert!((r1 - r2).abs() <= slack + 1.0, "q={q}: ranks {r1} vs {r2}");
        }
    }

    #[test]
    fn merging_is_deterministic_and_keeps_memory_bounded() {
        let parts: Vec<Vec<f32>> = (0..8).map(|i| stream(20_000, 10 + i)).collect();
        let build = || {
            let mut acc = QuantileSketch::new(64);
            for part in &parts {
                let mut s = QuantileSketch::new(64);
                s.extend(part);
                acc.merge(&s).unwrap();
            }
            acc
        };
        let (x, y) = (build(), build());
        assert_eq!(x, y);
        assert!(x.retained() <= 64 * (x.levels.len() + 1));
        assert!(x.levels.len() <= 14, "{} levels", x.levels.len());
        let all: Vec<f32> = parts.concat();
        assert_within_bound(&x, &all);
    }

    #[test]
    fn binary_form_round_trips_exactly() {
        let mut sketch = QuantileSketch::new(32);
        sketch.extend(&stream(5_000, 5));
        let bytes = sketch.to_bytes();
        let back = QuantileSketch::from_bytes(&bytes).unwrap();
        assert_eq!(back, sketch);
        let layer = vec![sketch.clone(), QuantileSketch::new(32), back];
        let again = layer_sketches_from_bytes(&layer_sketches_to_bytes(&layer)).unwrap();
        assert_eq!(again, layer);
        assert!(QuantileSketch::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        let mut tampered = bytes.clone();
        tampered[16] ^= 1; // the count no longer matches the weights
        assert!(QuantileSketch::from_bytes(&tampered).is_err());
    }

    #[test]
    fn mismatched_capacities_do_not_merge() {
        let mut a = QuantileSketch::new(16);
        assert!(a.merge(&QuantileSketch::new(32)).is_err());
    }

    #[test]
    fn empty_sketch_answers_nan() {
        assert!(QuantileSketch::new(16).quantile(0.5).is_nan());
    }
}
