//! Link-time set-up: make every binary and test find libtorch without `LD_LIBRARY_PATH`.
//!
//! torch-sys reports where it found libtorch (with `LIBTORCH_USE_PYTORCH=1`, inside the
//! project's `.venv`). We write two rpath entries into our binaries: that absolute folder,
//! for a checkout, and `$ORIGIN/../lib`, for an installed layout such as the container's
//! `/opt/ganpaint/{bin,lib}`. `--no-as-needed -ltorch` keeps libtorch (and through it
//! libtorch_cuda) linked even though Rust code calls only the C wrapper, so CUDA is found
//! at run time where a GPU exists.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    if let Ok(lib_dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    }
    println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN/../lib");
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    println!("cargo:rustc-link-arg=-ltorch");
}
