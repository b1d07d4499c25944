//! Demix's real-time separation engine.
//!
//! Data flows one way: input → STFT → model (on the inference worker) → masks (optionally refined
//! by the stereo Wiener post-filter) → ISTFT → stems.
//! [`Engine`] is the only engine; [`Separator`] runs it at any host rate. The plugin, live mode
//! and the offline bounce all drive it.

pub mod delay;
pub mod engine;
pub mod model;
pub mod reference_models;
pub mod separator;
pub mod wiener;
pub mod window;
pub mod worker;

pub use delay::DelayLine;
pub use engine::{DeadlinePolicy, Engine, EngineConfig, EngineError, StatsHandle};
pub use model::{FeatureKind, ModelError, ModelSpec, ResultKind, ResultSink, SeparationModel};
pub use separator::Separator;
pub use window::WindowKind;
