//! # ganpaint
//!
//! A GANPaint editing server: paint concepts (trees, domes, clouds, …) into scenes made by
//! a Progressive GAN, following GAN Dissection (Bau et al. 2019).
//!
//! The data flows one way:
//! - [`model`] holds the generator. It loads GAN Dissection's published weights (legacy
//!   and zip `.pth`, or safetensors), reproduces its latent vectors from image ids, and
//!   runs split at any layer: `features(z, layer)` then `forward_from(layer, feats)`.
//!   Every consumer (the CLI, the server, dissection and the benchmark) runs this one
//!   implementation.
//! - [`formats`] reads and writes files with no meaning attached: pickles, PyTorch
//!   checkpoints, numpy arrays, data URLs.
//! - [`project`] reads a dissected project folder (`dissect.json`, the level tables, GAN
//!   Dissection's quantile sketches), resolves the generator and encoder it names, and
//!   turns a stroke (concept, mode, units, strength) into units and levels. The
//!   dissection writes projects; the server and the commands read them only through it.
//! - [`invert`] paints on pictures the generator did not make: an encoder's guess of the
//!   painted layer's activations, optimised, then the layers after it fine-tuned for the
//!   picture (GANPaint Studio's three steps); edits render on the adapted generator.
//! - [`imageio`] turns generator output into pixels and PNGs.
//! - [`progress`] gives long jobs their progress bars (or plain progress lines in logs),
//!   for every room that runs them.
//! - [`cli`] is the command line; the binary's `main` only dispatches to it.

pub mod cli;
pub mod demo;
pub mod dissect;
pub mod edit;
pub mod formats;
pub mod imageio;
pub mod invert;
pub mod model;
pub mod progress;
pub mod project;
pub mod segment;
pub mod serve;
