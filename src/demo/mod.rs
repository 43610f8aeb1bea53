//! The demo world: a procedural renderer of outdoor church scenes with exact labels
//! ([`scene`]), and the training of the bundled generator ([`gan`]) on them. No pretrained
//! GAN or segmenter can be fetched on our build machines, so the project trains its own,
//! with the same generator code that serves and dissects.

pub mod data;
pub mod eval;
pub mod gan;
pub mod grow;
pub mod nn;
pub mod pick;
pub mod scene;
pub mod segmenter;
pub mod widen;
