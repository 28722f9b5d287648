//! The real-time bridge shared by every effect: the audio thread hands audio
//! to a worker thread through lock-free SPSC rings and reads the results back
//! at a fixed delay.
//!
//! ```text
//! audio thread                      worker thread
//! ────────────                      ─────────────
//! sanitize ─▶ input ring ─────────▶ HostRateStream (resample, model, resample)
//!    │                                      │
//!    └▶ dry delay line (L)   output ring ◀──┘
//!              │                   │
//!              └──── crossfade ◀───┘ (dry when the worker is late)
//! ```
//! See [`latency::LatencyPlan`] for how the fixed delay `L` is made up.

pub mod capture;
pub mod latency;
pub mod pace;
pub mod realtime;
pub mod similarity;
pub mod telemetry;
pub mod worker;

pub use latency::LatencyPlan;
pub use realtime::{BridgeConfig, RealtimeBridge};
pub use worker::ModelShelf;
pub use telemetry::{LevelMeter, Levels, Telemetry, WorkerState};
