//! The model manifest (docs/model-contract.md): what a separation graph expects and produces,
//! parsed from the ONNX file's `demix.manifest` metadata (JSON) or a sidecar `.demix.toml`,
//! validated strictly and turned into the engine's [`ModelSpec`]. Nothing here runs on the audio
//! thread.
//!
//! | key | type | meaning |
//! |---|---|---|
//! | `format_version` | int | always `1` |
//! | `name` | string | display name |
//! | `sample_rate` | int | rate the model works at, 1000..=768000 Hz |
//! | `n_fft` | int | FFT size, 2..=65536 |
//! | `hop` | int | hop between frames, 1..=`n_fft`; the window must overlap-add at this hop |
//! | `window` | string | `hann`, `sqrt_hann` or `rectangular` |
//! | `channels` | int | 1 or 2 |
//! | `sources` | [string] | ordered, unique, non-empty source names |
//! | `input.name` | string | input tensor name |
//! | `input.kind` | string | `magnitude` (`[1, C, F, T]`) or `complex` (`[1, 2C, F, T]`) |
//! | `input.bins` | int | `F`, the lowest bins given to the model; default `n_fft/2+1` |
//! | `output.name` | string | output tensor name |
//! | `output.kind` | string | `mask` or `magnitude` (`[1, S, C, F, T]`), or `complex` (`[1, S', 2C, F, T]`, or `[1, 2C, F, T]` when `S' = 1`, with `S'` the sources other than the residual, in manifest order) |
//! | `output.residual` | string? | complex only: the source computed as mix − the others |
//! | `output.scale` | float? | complex only: multiplies the output (MDX-Net `compensate`); default 1 |
//! | `renormalize_masks` | bool | default `true` |
//! | `fallback_source` | string? | default: the last source |
//! | `stereo_wiener.time_constant_s` | float? | stereo mask models: refine the masks with the engine's stereo Wiener post-filter, covariances averaged over this many seconds (0 < t <= 600) |
//! | `stereo_wiener.em_steps` | int? | EM steps per frame refining the post-filter's source powers (0..=8; default 0) |
//! | `streaming.style` | string | `stateful` or `windowed` |
//! | `streaming.lookahead_frames` | int | `L` |
//! | `streaming.context_frames` | int | windowed only: `T`, with `L + K <= T` |
//! | `streaming.step_frames` | int | windowed only: `K`, at least 1 |
//! | `streaming.state` | [{input, output, shape}] | stateful only, at least one entry: zero-initialised recurrent tensors |
//!
//! Unknown keys are errors, so a misspelt key never goes unnoticed. The total model delay
//! (`L`, or `L + K − 1` for windowed models) may not exceed 30 s of audio, nor a window 60 s.

use demix_dsp::window::synthesis_window;
use demix_dsp::{FeatureKind, ModelSpec, ResultKind, WindowKind};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// The `metadata_props` key under which an ONNX file embeds its manifest (JSON).
pub const METADATA_KEY: &str = "demix.manifest";

/// The only manifest format version this crate reads.
pub const FORMAT_VERSION: u32 = 1;

/// Longest model delay (lookahead plus step) a manifest may ask for, in seconds.
const MAX_DELAY_SECONDS: f64 = 30.0;

/// Longest analysis window (`context_frames` hops) a manifest may ask for, in seconds.
const MAX_CONTEXT_SECONDS: f64 = 60.0;

/// Most values a state tensor may hold (64 MiB of `f32`).
const MAX_STATE_VALUES: usize = 1 << 24;

/// A model's manifest. Parse with [`Manifest::from_json`] or [`Manifest::from_toml`], which
/// also validate; fields are public for display.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT_VERSION`].
    pub format_version: u32,
    /// Display name.
    pub name: String,
    /// Rate the model works at, in Hz.
    pub sample_rate: u32,
    /// FFT size (frame length).
    pub n_fft: usize,
    /// Hop between frames.
    pub hop: usize,
    /// Analysis window name (`hann`, `sqrt_hann`, `rectangular`).
    pub window: String,
    /// Channels the model sees (1 or 2).
    pub channels: usize,
    /// Ordered source names.
    pub sources: Vec<String>,
    /// The input tensor.
    pub input: InputSpec,
    /// The output tensor.
    pub output: OutputSpec,
    /// Divide masks by their sum per bin (default `true`).
    #[serde(default = "default_true")]
    pub renormalize_masks: bool,
    /// Source taking bins above `input.bins` and the mix before the first result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_source: Option<String>,
    /// The engine's stereo Wiener post-filter, when the model asks for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stereo_wiener: Option<StereoWienerSpec>,
    /// How the model is driven in time.
    pub streaming: Streaming,
}

/// The manifest's `stereo_wiener` table: the mask model's masks are refined by the engine's
/// stereo Wiener post-filter (`demix_dsp::wiener`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StereoWienerSpec {
    /// Time constant of the running spatial covariances, in seconds.
    pub time_constant_s: f64,
    /// EM steps per frame refining the sources' powers (0, the default: none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub em_steps: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn default_true() -> bool {
    true
}

/// The manifest's `input` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Input tensor name.
    pub name: String,
    /// What the tensor holds.
    pub kind: InputKind,
    /// Bins given to the model (default `n_fft / 2 + 1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bins: Option<usize>,
}

/// The input tensor's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    /// Linear magnitudes, `[1, C, F, T]`.
    Magnitude,
    /// Real and imaginary planes per channel, `[1, 2C, F, T]` (`L.re, L.im, R.re, R.im`).
    Complex,
}

/// The manifest's `output` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Output tensor name.
    pub name: String,
    /// What the tensor holds.
    pub kind: OutputKind,
    /// Complex outputs: the source computed as the mix minus the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residual: Option<String>,
    /// Complex outputs: factor applied to the output (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<f32>,
}

impl InputKind {
    /// The manifest spelling.
    pub fn name(self) -> &'static str {
        match self {
            Self::Magnitude => "magnitude",
            Self::Complex => "complex",
        }
    }
}

/// The output tensor's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    /// Masks in 0..1, `[1, S, C, F, T]`.
    Mask,
    /// Magnitude estimates, `[1, S, C, F, T]`, turned into ratio masks `est_s / Σ est`.
    Magnitude,
    /// Complex source spectra, `[1, S', 2C, F, T]` or `[1, 2C, F, T]`.
    Complex,
}

impl OutputKind {
    /// The manifest spelling.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mask => "mask",
            Self::Magnitude => "magnitude",
            Self::Complex => "complex",
        }
    }
}

/// The manifest's `streaming` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Streaming {
    /// Stateful (one frame per call) or windowed (`T` frames every `K`).
    pub style: StreamingStyle,
    /// `L`: frames after frame `m` the model needs before its result for `m`.
    pub lookahead_frames: usize,
    /// Windowed: `T`, frames per call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_frames: Option<usize>,
    /// Windowed: `K`, frames kept per call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_frames: Option<usize>,
    /// Stateful: recurrent state tensors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub state: Vec<StateTensor>,
}

/// How the model is driven in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamingStyle {
    /// One frame per call, recurrent state fed back.
    Stateful,
    /// The last `T` frames every `K` frames.
    Windowed,
}

impl StreamingStyle {
    /// The manifest spelling.
    pub fn name(self) -> &'static str {
        match self {
            Self::Stateful => "stateful",
            Self::Windowed => "windowed",
        }
    }
}

/// One recurrent state tensor of a stateful model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateTensor {
    /// Graph input receiving the state.
    pub input: String,
    /// Graph output producing the next state.
    pub output: String,
    /// Tensor shape (every dimension at least 1).
    pub shape: Vec<usize>,
}

/// A manifest that could not be parsed or breaks a rule; the message names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ManifestError(pub String);

fn fail<T>(message: impl Into<String>) -> Result<T, ManifestError> {
    Err(ManifestError(message.into()))
}

impl Manifest {
    /// Parses and validates a JSON manifest (the embedded form).
    pub fn from_json(text: &str) -> Result<Self, ManifestError> {
        let manifest: Self = serde_json::from_str(text)
            .map_err(|e| ManifestError(format!("invalid JSON manifest: {e}")))?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Parses and validates a TOML manifest (the sidecar form).
    pub fn from_toml(text: &str) -> Result<Self, ManifestError> {
        let manifest: Self = toml::from_str(text).map_err(|e| {
            ManifestError(format!(
                "invalid TOML manifest: {}",
                e.to_string().trim_end()
            ))
        })?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// The manifest as pretty JSON, the form to embed under [`METADATA_KEY`].
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Bins given to the model (`input.bins`, default `n_fft / 2 + 1`).
    pub fn bins(&self) -> usize {
        self.input.bins.unwrap_or(self.n_fft / 2 + 1)
    }

    /// `T`: frames per model call (1 for stateful models).
    pub fn context_frames(&self) -> usize {
        match self.streaming.style {
            StreamingStyle::Stateful => 1,
            StreamingStyle::Windowed => self.streaming.context_frames.unwrap_or(1),
        }
    }

    /// `K`: frames whose results one call produces (1 for stateful models).
    pub fn step_frames(&self) -> usize {
        match self.streaming.style {
            StreamingStyle::Stateful => 1,
            StreamingStyle::Windowed => self.streaming.step_frames.unwrap_or(1),
        }
    }

    /// Frames between a frame's arrival and the call that can produce its result:
    /// `L` (stateful) or `L + K − 1` (windowed).
    pub fn delay_frames(&self) -> usize {
        self.streaming.lookahead_frames + self.step_frames() - 1
    }

    /// Factor applied to complex outputs (`output.scale`, default 1).
    pub fn output_scale(&self) -> f32 {
        self.output.scale.unwrap_or(1.0)
    }

    /// Index of the residual source, if any.
    pub fn residual_index(&self) -> Option<usize> {
        let name = self.output.residual.as_ref()?;
        self.sources.iter().position(|s| s == name)
    }

    /// Indices of the sources a complex output holds, in tensor order (all but the residual).
    pub fn estimated_sources(&self) -> Vec<usize> {
        let residual = self.residual_index();
        (0..self.sources.len())
            .filter(|&s| Some(s) != residual)
            .collect()
    }

    /// Index of the fallback source (`fallback_source`, default the last source).
    pub fn fallback_index(&self) -> usize {
        self.fallback_source
            .as_ref()
            .and_then(|name| self.sources.iter().position(|s| s == name))
            .unwrap_or(self.sources.len().saturating_sub(1))
    }

    /// Checks every rule of the contract; the message names the offending key and value.
    pub fn validate(&self) -> Result<(), ManifestError> {
        if self.format_version != FORMAT_VERSION {
            return fail(format!(
                "format_version {} is not supported (this build reads version {FORMAT_VERSION})",
                self.format_version
            ));
        }
        if self.name.trim().is_empty() {
            return fail("name must not be empty");
        }
        if !(1000..=768_000).contains(&self.sample_rate) {
            return fail(format!(
                "sample_rate {} Hz is outside 1000..=768000 Hz",
                self.sample_rate
            ));
        }
        if !(2..=65_536).contains(&self.n_fft) {
            return fail(format!("n_fft {} is outside 2..=65536", self.n_fft));
        }
        if self.hop == 0 || self.hop > self.n_fft {
            return fail(format!(
                "hop {} must be within 1..=n_fft ({})",
                self.hop, self.n_fft
            ));
        }
        let Some(window) = WindowKind::parse(&self.window) else {
            return fail(format!(
                "unknown window \"{}\" (expected \"hann\", \"sqrt_hann\" or \"rectangular\")",
                self.window
            ));
        };
        if synthesis_window(&window.coefficients(self.n_fft), self.hop).is_none() {
            return fail(format!(
                "the {} window of n_fft {} cannot be overlap-added at hop {}",
                self.window, self.n_fft, self.hop
            ));
        }
        if !(1..=2).contains(&self.channels) {
            return fail(format!("channels must be 1 or 2, got {}", self.channels));
        }
        self.validate_sources()?;
        self.validate_tensors()?;
        self.validate_stereo_wiener()?;
        self.validate_streaming()
    }

    fn validate_stereo_wiener(&self) -> Result<(), ManifestError> {
        let Some(wiener) = &self.stereo_wiener else {
            return Ok(());
        };
        let seconds = wiener.time_constant_s;
        let longest = demix_dsp::wiener::MAX_TIME_CONSTANT_S;
        if !(seconds.is_finite() && seconds > 0.0 && seconds <= longest) {
            return fail(format!(
                "stereo_wiener.time_constant_s {seconds} must be above 0 and at most {longest}"
            ));
        }
        let most = demix_dsp::wiener::MAX_EM_STEPS;
        if wiener.em_steps > most {
            return fail(format!(
                "stereo_wiener.em_steps {} must be at most {most}",
                wiener.em_steps
            ));
        }
        if self.channels != 2 {
            return fail("stereo_wiener needs a stereo model (channels 2)");
        }
        if self.output.kind == OutputKind::Complex {
            return fail("stereo_wiener applies to mask and magnitude outputs, not complex");
        }
        Ok(())
    }

    fn validate_sources(&self) -> Result<(), ManifestError> {
        if self.sources.is_empty() {
            return fail("sources must name at least one source");
        }
        let mut seen = HashSet::new();
        for name in &self.sources {
            if name.trim().is_empty() {
                return fail("sources must not contain an empty name");
            }
            if !seen.insert(name.as_str()) {
                return fail(format!("source \"{name}\" appears twice in sources"));
            }
        }
        if let Some(fallback) = &self.fallback_source {
            if !self.sources.contains(fallback) {
                return fail(format!(
                    "fallback_source \"{fallback}\" is not one of the sources {:?}",
                    self.sources
                ));
            }
        }
        Ok(())
    }

    fn validate_tensors(&self) -> Result<(), ManifestError> {
        let full = self.n_fft / 2 + 1;
        if let Some(bins) = self.input.bins {
            if bins == 0 || bins > full {
                return fail(format!(
                    "input.bins {bins} must be within 1..={full} (n_fft {} has {full} bins)",
                    self.n_fft
                ));
            }
        }
        if self.input.name.is_empty() {
            return fail("input.name must not be empty");
        }
        if self.output.name.is_empty() {
            return fail("output.name must not be empty");
        }
        let complex = self.output.kind == OutputKind::Complex;
        if let Some(residual) = &self.output.residual {
            if !complex {
                return fail(format!(
                    "output.residual \"{residual}\" only applies to complex outputs, but output.kind is \"{}\"",
                    self.output.kind.name()
                ));
            }
            if !self.sources.contains(residual) {
                return fail(format!(
                    "output.residual \"{residual}\" is not one of the sources {:?}",
                    self.sources
                ));
            }
            if self.sources.len() < 2 {
                return fail(format!(
                    "output.residual \"{residual}\" leaves no source for the model to estimate"
                ));
            }
        }
        if let Some(scale) = self.output.scale {
            if !complex {
                return fail(format!(
                    "output.scale {scale} only applies to complex outputs, but output.kind is \"{}\"",
                    self.output.kind.name()
                ));
            }
            if !scale.is_finite() || scale == 0.0 {
                return fail(format!("output.scale {scale} must be finite and non-zero"));
            }
        }
        let mut inputs = HashSet::from([self.input.name.as_str()]);
        let mut outputs = HashSet::from([self.output.name.as_str()]);
        for (i, state) in self.streaming.state.iter().enumerate() {
            if state.input.is_empty() || state.output.is_empty() {
                return fail(format!(
                    "streaming.state[{i}] needs non-empty input and output names"
                ));
            }
            if !inputs.insert(state.input.as_str()) {
                return fail(format!(
                    "streaming.state[{i}].input \"{}\" is already used by another input",
                    state.input
                ));
            }
            if !outputs.insert(state.output.as_str()) {
                return fail(format!(
                    "streaming.state[{i}].output \"{}\" is already used by another output",
                    state.output
                ));
            }
            if state.shape.is_empty() || state.shape.contains(&0) {
                return fail(format!(
                    "streaming.state[{i}].shape {:?} must have at least one dimension, each at least 1",
                    state.shape
                ));
            }
            let values = state
                .shape
                .iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d))
                .unwrap_or(usize::MAX);
            if values > MAX_STATE_VALUES {
                return fail(format!(
                    "streaming.state[{i}].shape {:?} holds {values} values, more than {MAX_STATE_VALUES}",
                    state.shape
                ));
            }
        }
        Ok(())
    }

    fn validate_streaming(&self) -> Result<(), ManifestError> {
        let streaming = &self.streaming;
        let lookahead = streaming.lookahead_frames;
        match streaming.style {
            StreamingStyle::Stateful => {
                if streaming.context_frames.is_some() || streaming.step_frames.is_some() {
                    return fail(
                        "streaming.context_frames and streaming.step_frames only apply to windowed models (style \"stateful\" runs one frame per call)",
                    );
                }
                if streaming.state.is_empty() {
                    return fail(
                        "streaming.style \"stateful\" needs at least one streaming.state entry (a model without recurrent state is declared \"windowed\" with context_frames 1 and step_frames 1)",
                    );
                }
            }
            StreamingStyle::Windowed => {
                if !streaming.state.is_empty() {
                    return fail(
                        "streaming.state only applies to stateful models (style is \"windowed\")",
                    );
                }
                let Some(context) = streaming.context_frames else {
                    return fail("streaming.style \"windowed\" needs streaming.context_frames");
                };
                let Some(step) = streaming.step_frames else {
                    return fail("streaming.style \"windowed\" needs streaming.step_frames");
                };
                if context == 0 || step == 0 {
                    return fail(format!(
                        "streaming.context_frames ({context}) and streaming.step_frames ({step}) must be at least 1"
                    ));
                }
                if lookahead.saturating_add(step) > context {
                    return fail(format!(
                        "streaming.lookahead_frames {lookahead} is too large: with step_frames {step} a window of context_frames {context} holds at most lookahead {}",
                        context.saturating_sub(step)
                    ));
                }
                let seconds = context as f64 * self.hop as f64 / f64::from(self.sample_rate);
                if seconds > MAX_CONTEXT_SECONDS {
                    return fail(format!(
                        "streaming.context_frames {context} spans {seconds:.1} s of audio, more than {MAX_CONTEXT_SECONDS} s"
                    ));
                }
            }
        }
        let delay = lookahead.saturating_add(self.step_frames() - 1);
        let seconds = delay as f64 * self.hop as f64 / f64::from(self.sample_rate);
        if seconds > MAX_DELAY_SECONDS {
            return fail(format!(
                "streaming.lookahead_frames {lookahead} is too large: the model would delay the output by {seconds:.1} s, more than {MAX_DELAY_SECONDS} s"
            ));
        }
        Ok(())
    }

    /// The engine-facing spec. Fails exactly when [`Manifest::validate`] does.
    pub fn model_spec(&self) -> Result<ModelSpec, ManifestError> {
        self.validate()?;
        let window = WindowKind::parse(&self.window).unwrap_or(WindowKind::Hann);
        let features = match self.input.kind {
            InputKind::Magnitude => FeatureKind::Magnitude,
            InputKind::Complex => FeatureKind::Complex,
        };
        let result = match self.output.kind {
            OutputKind::Mask | OutputKind::Magnitude => ResultKind::Mask,
            OutputKind::Complex => ResultKind::Spectrum {
                residual: self.residual_index(),
            },
        };
        let spec = ModelSpec {
            name: self.name.clone(),
            sample_rate: self.sample_rate,
            n_fft: self.n_fft,
            hop: self.hop,
            window,
            channels: self.channels,
            sources: self.sources.clone(),
            bins: self.bins(),
            features,
            result,
            renormalize_masks: self.renormalize_masks,
            fallback_source: self.fallback_index(),
            delay_frames: self.delay_frames(),
            stereo_wiener_s: self.stereo_wiener.as_ref().map(|w| w.time_constant_s),
            stereo_wiener_em_steps: self.stereo_wiener.as_ref().map_or(0, |w| w.em_steps),
        };
        spec.validate().map_err(ManifestError)?;
        Ok(spec)
    }
}

#[cfg(test)]
#[path = "manifest_tests.rs"]
mod tests;
