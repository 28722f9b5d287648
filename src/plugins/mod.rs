//! Plugin definitions: parameters, I/O layouts and what the host shows.
//! Processing itself lives in the bridge and the pipelines.

pub mod clean;
pub mod common;
pub mod stems;
pub mod voice;
