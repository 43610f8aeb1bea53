//! Latent vectors that match GAN Dissection's, bit for bit.
//!
//! GAN Dissection names an image by an integer id: image `i` of a model is row `i` of
//! `numpy.random.RandomState(1).standard_normal((N, D))`, cast to float32. To show the
//! same pictures for the same ids (and so accept its client's requests), we reimplement
//! numpy's legacy generator: MT19937 seeded with `init_genrand`, doubles built from two
//! 32-bit draws as `(a >> 5, b >> 6) / 2⁵³`, and the polar Box–Muller method that caches
//! its second value. Because rows are consecutive draws, row `i` depends only on `i·D`
//! earlier draws, not on `N`.

const N: usize = 624;
const M: usize = 397;

/// numpy's legacy `RandomState`: MT19937 plus the cached-gauss state.
#[derive(Clone)]
pub struct RandomState {
    state: [u32; N],
    index: usize,
    cached_gauss: Option<f64>,
}

impl RandomState {
    /// Equivalent to `numpy.random.RandomState(seed)` for an integer seed in `0..2³²`.
    pub fn new(seed: u32) -> Self {
        let mut state = [0u32; N];
        state[0] = seed;
        for i in 1..N {
            state[i] = 1_812_433_253u32
                .wrapping_mul(state[i - 1] ^ (state[i - 1] >> 30))
                .wrapping_add(i as u32);
        }
        RandomState {
            state,
            index: N,
            cached_gauss: None,
        }
    }

    /// Equivalent to `numpy.random.RandomState(key)` for an array of uint32 `key`
    /// (MT19937's `init_by_array`). Used for seeds that do not fit in 32 bits.
    pub fn from_key(key: &[u32]) -> Self {
        let mut rs = RandomState::new(19_650_218);
        let mt = &mut rs.state;
        let (mut i, mut j) = (1usize, 0usize);
        let key_len = key.len().max(1);
        for _ in 0..N.max(key_len) {
            let prev = mt[i - 1] ^ (mt[i - 1] >> 30);
            let k = key.get(j).copied().unwrap_or(0);
            mt[i] = (mt[i] ^ prev.wrapping_mul(1_664_525))
                .wrapping_add(k)
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
            if j >= key_len {
                j = 0;
            }
        }
        for _ in 0..N - 1 {
            let prev = mt[i - 1] ^ (mt[i - 1] >> 30);
            mt[i] = (mt[i] ^ prev.wrapping_mul(1_566_083_941)).wrapping_sub(i as u32);
            i += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
        }
        mt[0] = 0x8000_0000;
        rs.index = N;
        rs
    }

    /// A generator for any 64-bit seed: seeds below 2³² are numpy's integer seeding; larger
    /// ones are `RandomState([low32, high32])`.
    pub fn from_seed(seed: u64) -> Self {
        match u32::try_from(seed) {
            Ok(small) => RandomState::new(small),
            Err(_) => RandomState::from_key(&[seed as u32, (seed >> 32) as u32]),
        }
    }

    fn regenerate(&mut self) {
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        const MATRIX_A: u32 = 0x9908_b0df;
        for k in 0..N {
            let y = (self.state[k] & UPPER) | (self.state[(k + 1) % N] & LOWER);
            let mag = if y & 1 == 1 { MATRIX_A } else { 0 };
            self.state[k] = self.state[(k + M) % N] ^ (y >> 1) ^ mag;
        }
        self.index = 0;
    }

    /// MT19937's `genrand_int32`.
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            self.regenerate();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }

    /// A double in [0, 1) with 53 random bits, as numpy's `random_sample`.
    pub fn next_f64(&mut self) -> f64 {
        let a = (self.next_u32() >> 5) as f64;
        let b = (self.next_u32() >> 6) as f64;
        (a * 67_108_864.0 + b) / 9_007_199_254_740_992.0
    }

    /// One standard normal draw, numpy's `legacy_gauss`.
    pub fn standard_normal(&mut self) -> f64 {
        if let Some(cached) = self.cached_gauss.take() {
            return cached;
        }
        loop {
            let x1 = 2.0 * self.next_f64() - 1.0;
            let x2 = 2.0 * self.next_f64() - 1.0;
            let r2 = x1 * x1 + x2 * x2;
            if r2 < 1.0 && r2 != 0.0 {
                let f = (-2.0 * r2.ln() / r2).sqrt();
                self.cached_gauss = Some(f * x1);
                return f * x2;
            }
        }
    }

    /// Skips `count` standard normal draws.
    pub fn skip_normals(&mut self, count: usize) {
        for _ in 0..count {
            self.standard_normal();
        }
    }
}

/// The largest image id accepted. Reaching id `i` the first time costs `i·D` draws, so the
/// bound keeps even that request cheap (about 50 ms at D = 512) while covering any dataset
/// size in use; afterwards the snapshots make it cost at most `CHECKPOINT_ROWS·D`.
pub const MAX_ID: u64 = 1 << 20;

/// Generator snapshots every [`CHECKPOINT_ROWS`] rows, per latent size, shared by the
/// whole process: reaching id `i` then costs at most `CHECKPOINT_ROWS·D` draws once the
/// ids below it have been visited, instead of `i·D` every time (about 10 ms for id 8000 at
/// D = 128). Snapshot `k` is the generator at the start of row `k·CHECKPOINT_ROWS`; each is
/// about 2.5 KB, so all of them up to [`MAX_ID`] take about 10 MB per latent size.
static CHECKPOINTS: std::sync::Mutex<Vec<(usize, Vec<RandomState>)>> =
    std::sync::Mutex::new(Vec::new());

/// Rows between generator snapshots.
pub const CHECKPOINT_ROWS: u64 = 256;

/// The latest snapshot at or before row `row` for latent size `dim`, with its row.
fn nearest_checkpoint(dim: usize, row: u64) -> (u64, RandomState) {
    let table = CHECKPOINTS.lock().unwrap_or_else(|e| e.into_inner());
    table
        .iter()
        .find(|(d, _)| *d == dim)
        .and_then(|(_, snaps)| {
            let k = ((row / CHECKPOINT_ROWS) as usize).min(snaps.len().checked_sub(1)?);
            Some((k as u64 * CHECKPOINT_ROWS, snaps[k].clone()))
        })
        .unwrap_or_else(|| (0, RandomState::new(1)))
}

/// Records snapshots found while generating (`found[j]` is snapshot `first + j`), when
/// they extend the table without a gap.
fn record_checkpoints(dim: usize, first: usize, found: Vec<RandomState>) {
    if found.is_empty() {
        return;
    }
    let mut table = CHECKPOINTS.lock().unwrap_or_else(|e| e.into_inner());
    let index = match table.iter().position(|(d, _)| *d == dim) {
        Some(index) => index,
        None => {
            // Snapshot 0 is the freshly seeded generator.
            table.push((dim, vec![RandomState::new(1)]));
            table.len() - 1
        }
    };
    let snaps = &mut table[index].1;
    if first <= snaps.len() {
        let skip = snaps.len() - first;
        snaps.extend(found.into_iter().skip(skip));
    }
}

/// z for GAN Dissection's image ids: row `id` of `RandomState(1).standard_normal((N, dim))`,
/// as f32, for each id. Returns `ids.len() × dim` values, row-major.
///
/// Ids are generated in ascending order with one generator, starting from the nearest
/// snapshot, so a batch of nearby ids costs one short pass. Callers check ids against
/// [`MAX_ID`].
pub fn z_for_ids(ids: &[u64], dim: usize) -> Vec<f32> {
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by_key(|&i| ids[i]);
    let mut out = vec![0f32; ids.len() * dim];
    let Some(&first_slot) = order.first() else {
        return out;
    };
    // The generator and the row it is at.
    let (mut position, mut rng) = nearest_checkpoint(dim, ids[first_slot]);
    let first_new = (position / CHECKPOINT_ROWS) as usize + 1;
    let mut found = Vec::new();
    let mut last: Option<(u64, usize)> = None;
    for &slot in &order {
        let id = ids[slot];
        if let Some((last_id, last_slot)) = last {
            if last_id == id {
                let (src, dst) = (last_slot * dim, slot * dim);
                out.copy_within(src..src + dim, dst);
                continue;
            }
        }
        while position < id {
            rng.skip_normals(dim);
            position += 1;
            if position % CHECKPOINT_ROWS == 0 {
                found.push(rng.clone());
            }
        }
        for value in &mut out[slot * dim..(slot + 1) * dim] {
            *value = rng.standard_normal() as f32;
        }
        position = id + 1;
        if position % CHECKPOINT_ROWS == 0 {
            found.push(rng.clone());
        }
        last = Some((id, slot));
    }
    record_checkpoints(dim, first_new, found);
    out
}

/// z for arbitrary seeds: `RandomState(seed).standard_normal(dim)` per seed, as f32.
pub fn z_for_seeds(seeds: &[u64], dim: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(seeds.len() * dim);
    for &seed in seeds {
        let mut rng = RandomState::from_seed(seed);
        out.extend((0..dim).map(|_| rng.standard_normal() as f32));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // From numpy: RandomState(1).standard_normal(3)
    const SEED1_FIRST3: [f64; 3] = [1.6243453636632417, -0.6117564136500754, -0.5281717522634557];

    #[test]
    fn seed_one_matches_numpy_known_values() {
        let mut rng = RandomState::new(1);
        for expected in SEED1_FIRST3 {
            assert_eq!(rng.standard_normal(), expected);
        }
    }

    #[test]
    fn genrand_int32_matches_reference_sequence() {
        // MT19937 reference: init_genrand(5489) first output is 3499211612.
        let mut rng = RandomState::new(5489);
        assert_eq!(rng.next_u32(), 3_499_211_612);
        assert_eq!(rng.next_u32(), 581_869_302);
    }

    #[test]
    fn init_by_array_matches_reference_sequence() {
        // mt19937ar.c's test: init_by_array({0x123, 0x234, 0x345, 0x456}) starts 1067595299.
        let mut rng = RandomState::from_key(&[0x123, 0x234, 0x345, 0x456]);
        assert_eq!(rng.next_u32(), 1_067_595_299);
        assert_eq!(rng.next_u32(), 955_945_823);
    }

    #[test]
    fn id_rows_are_consecutive_draws_of_seed_one() {
        let dim = 3;
        let z = z_for_ids(&[0, 1], dim);
        let mut rng = RandomState::new(1);
        let expected: Vec<f32> = (0..6).map(|_| rng.standard_normal() as f32).collect();
        assert_eq!(z, expected);
        assert_eq!(z[0], SEED1_FIRST3[0] as f32);
    }

    #[test]
    fn id_order_and_repeats_do_not_change_rows() {
        let dim = 5;
        let single: Vec<Vec<f32>> = [7u64, 2, 7, 0]
            .iter()
            .map(|&id| z_for_ids(&[id], dim))
            .collect();
        let batch = z_for_ids(&[7, 2, 7, 0], dim);
        for (i, row) in single.iter().enumerate() {
            assert_eq!(&batch[i * dim..(i + 1) * dim], row.as_slice());
        }
    }

    /// The same rows whether the generator starts from a snapshot or from seed 1.
    #[test]
    fn snapshots_give_the_same_rows_as_generating_from_the_start() {
        let dim = 7; // a size no other test uses, so this test owns its snapshots
        let reference = |id: u64| {
            let mut rng = RandomState::new(1);
            rng.skip_normals(id as usize * dim);
            (0..dim)
                .map(|_| rng.standard_normal() as f32)
                .collect::<Vec<_>>()
        };
        let far = 3 * CHECKPOINT_ROWS + 17;
        // First call records snapshots; later calls start from them.
        assert_eq!(z_for_ids(&[far], dim), reference(far));
        for id in [
            far,
            CHECKPOINT_ROWS - 1,
            CHECKPOINT_ROWS,
            2 * CHECKPOINT_ROWS + 3,
            5,
        ] {
            assert_eq!(z_for_ids(&[id], dim), reference(id), "id {id}");
        }
        let many = z_for_ids(&[far + 1, 1, CHECKPOINT_ROWS], dim);
        assert_eq!(&many[..dim], reference(far + 1).as_slice());
        assert_eq!(&many[dim..2 * dim], reference(1).as_slice());
        assert_eq!(&many[2 * dim..], reference(CHECKPOINT_ROWS).as_slice());
    }

    #[test]
    fn seeds_are_numpy_seeding_and_large_seeds_differ() {
        let z1 = z_for_seeds(&[1], 3);
        assert_eq!(z1, SEED1_FIRST3.map(|v| v as f32).to_vec());
        let big = z_for_seeds(&[1 << 40, (1 << 40) + 1], 4);
        assert_ne!(big[0..4], big[4..8]);
    }
}
