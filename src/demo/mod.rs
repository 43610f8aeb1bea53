//! The demo world: a procedural renderer of outdoor church scenes with exact labels
//! ([`scene`]), and the training of the bundled generator ([`gan`]) on them. The project
//! trains its own generator and segmenter rather than depending on pretrained ones, with
//! the same generator code that serves and dissects.

pub mod data;
pub mod eval;
pub mod fade;
pub mod gan;
pub mod grow;
pub mod nn;
pub mod pick;
pub mod scene;
pub mod segmenter;
pub mod teacher;
pub mod widen;
