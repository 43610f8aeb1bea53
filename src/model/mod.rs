//! The generator and everything needed to run it: architecture and split execution
//! ([`proggan`], with the block specification both plans share in [`block`]), weight files ([`weights`], reading PyTorch checkpoints with
//! [`crate::formats::pth`]), GAN Dissection's latent
//! vectors ([`latent`]), the fast execution plan ([`fast`]), incremental re-rendering
//! ([`incremental`]) and the choice of device.

pub mod block;
pub mod fast;
pub mod incremental;
pub mod latent;
pub mod proggan;
pub mod weights;

pub use fast::Precision;
pub use incremental::{IncrementalStats, SuffixActivations};
pub use proggan::{ProgGan, ProgGanConfig};
pub use weights::ModelError;

/// Where the model runs. `Auto` picks CUDA when a GPU is visible.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceChoice {
    #[default]
    Auto,
    Cpu,
    Cuda,
}

impl DeviceChoice {
    pub fn resolve(self) -> Result<tch::Device, ModelError> {
        match self {
            DeviceChoice::Auto => Ok(tch::Device::cuda_if_available()),
            DeviceChoice::Cpu => Ok(tch::Device::Cpu),
            DeviceChoice::Cuda if tch::Cuda::is_available() => Ok(tch::Device::Cuda(0)),
            DeviceChoice::Cuda => Err(ModelError::NoCuda),
        }
    }
}

/// Runs `work` on a thread of its own named `name` that ends with it, and returns what it
/// returned (a panic becomes an error).
///
/// libtorch's OpenMP keeps a pool of threads for every thread that has computed, for as
/// long as that thread lives. Once a process holds more pool threads than CPUs, libgomp
/// spins only about 100 times before sleeping between operations, so every small
/// operation of every pool then waits for a wake-up. Measured on 2 CPUs with the 256²
/// church architecture, a second live pool made each render about 13% slower. Work that
/// computes once (reading projects, benchmark passes) runs here, so that its pool ends
/// with it and the server's workers are the only pools left.
///
/// The thread logs to the caller's `tracing` subscriber, inside the caller's span, with
/// gradients off and its thread count fitted to the CPUs (both are per thread).
pub fn on_own_thread<T: Send>(
    name: &str,
    work: impl FnOnce() -> anyhow::Result<T> + Send,
) -> anyhow::Result<T> {
    let dispatch = tracing::dispatcher::get_default(|d| d.clone());
    let span = tracing::Span::current();
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn_scoped(scope, move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    span.in_scope(|| {
                        let _no_grad = tch::no_grad_guard();
                        fit_threads_to_cpus();
                        work()
                    })
                })
            })?
            .join()
            .map_err(|_| anyhow::anyhow!("the {name} thread panicked"))?
    })
}

/// Makes glibc keep freed activation memory for reuse instead of unmapping it.
///
/// libtorch allocates every activation afresh. glibc serves blocks above its mmap
/// threshold (128 KiB at first, adapting upward) with `mmap` and unmaps them on free, so
/// each forward pass page-faults its whole working set in again: measured here, that is
/// about a fifth of the reference f32 pass at 256², and a third of a bf16 batch of 8.
/// Serving every block from the heap (no mmap) and never trimming it makes later passes
/// reuse the same pages; the process keeps its peak footprint, which a server holding a
/// render cache does anyway. (In threads other than `main`, glibc's per-thread arenas
/// still map blocks above 64 MiB directly; a 256² activation at batch 1 is at most
/// 32 MiB.) Call once at start-up, before any tensor exists. A no-op on other C
/// libraries.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_MMAP_THRESHOLD: i32 = -3;
        const M_MMAP_MAX: i32 = -4;
        extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        // SAFETY: mallopt only changes allocator parameters; it is called before other
        // threads allocate.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 32 << 20);
            mallopt(M_MMAP_MAX, 0);
            mallopt(M_TRIM_THRESHOLD, i32::MAX);
        }
    }
}

/// Hands the free pages that [`keep_freed_memory`] keeps back to the OS (glibc's
/// `malloc_trim`, which also releases whole free pages inside the heap, not only its top).
///
/// A bounded cache needs this: its entries are freed between activations that stay
/// alive, so without it each freed entry's pages stay resident and the next ones land
/// elsewhere (measured with the 64² demo and 8 clients: `--render-cache-mb 256` held
/// +520 MiB, 1024 held +1.5 GiB). Call it after freeing a sizeable amount, not per free:
/// the pages it returns fault in again when reused. A no-op on other C libraries.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: malloc_trim only returns free memory to the OS; it takes each arena's
        // lock, so it is safe beside other threads' allocations.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// Caps libtorch's intra-op threads at the CPUs this process may use. libtorch counts
/// the host's physical cores, which oversubscribes a container limited by a CPU quota;
/// `available_parallelism` honours cgroup quotas and affinity. `OMP_NUM_THREADS`, when
/// set, wins. OpenMP keeps the count per thread, so call this in every thread that runs
/// the model (`main`, and each server worker).
pub fn fit_threads_to_cpus() {
    if std::env::var_os("OMP_NUM_THREADS").is_some() {
        return;
    }
    if let Ok(allowed) = std::thread::available_parallelism() {
        let allowed = allowed.get() as i32;
        if tch::get_num_threads() > allowed {
            tch::set_num_threads(allowed);
        }
    }
}

/// The bundled demo generator, relative to the repository root.
pub const DEFAULT_MODEL: &str = "models/demo_generator.safetensors";

/// Finds a path that is relative to the repository: first as given (the working
/// directory), then next to the binary's `../../` (a cargo `target/<profile>/` build), so
/// the bundled model is found wherever the binary is started from.
pub fn repo_path(relative: &str) -> std::path::PathBuf {
    let direct = std::path::PathBuf::from(relative);
    if direct.exists() {
        return direct;
    }
    let from_exe = std::env::current_exe().ok().and_then(|exe| {
        exe.ancestors()
            .skip(1)
            .map(|dir| dir.join(relative))
            .find(|p| p.exists())
    });
    from_exe.unwrap_or(direct)
}

/// Small models for the unit tests of every room.
#[cfg(test)]
pub(crate) mod testing {
    use super::{ProgGan, ProgGanConfig};

    /// A 16² generator (z 16, widths 32, 16, 8: `layer4` is 16×8×8) with weights drawn
    /// after `tch::manual_seed(seed)`.
    pub(crate) fn tiny_generator(seed: i64) -> ProgGan {
        tch::manual_seed(seed);
        ProgGan::new(
            ProgGanConfig {
                z_dim: 16,
                channels: vec![32, 16, 8],
            },
            tch::Device::Cpu,
        )
    }
}
