//! What the engine needs to know about, and ask of, a separation model. The `demix-models`
//! crate implements [`SeparationModel`] on ONNX Runtime; tests implement it in plain Rust.

use crate::window::WindowKind;

/// What the engine hands the model for each STFT frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureKind {
    /// Linear magnitudes, laid out `[channel][bin]` (`channels · bins` values).
    Magnitude,
    /// Complex spectra, laid out `[channel][bin][re, im]` (`channels · bins · 2` values).
    Complex,
}

/// What the model hands back for each STFT frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultKind {
    /// Real masks, laid out `[source][channel][bin]`; the engine multiplies the mix by them.
    Mask,
    /// Complex source spectra, laid out `[source][channel][bin][re, im]`.
    /// `residual`, when set, is a source the model leaves empty and the engine fills with
    /// mix − the other sources.
    Spectrum {
        /// Index of the source computed as the mix minus the others.
        residual: Option<usize>,
    },
}

/// The engine-facing description of a model: STFT settings, layout and streaming delay.
/// Built from a manifest by `demix-models`; immutable once the engine runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    /// Display name.
    pub name: String,
    /// Rate the model works at, in Hz.
    pub sample_rate: u32,
    /// FFT size (frame length) in samples.
    pub n_fft: usize,
    /// Hop between frames in samples.
    pub hop: usize,
    /// Analysis window.
    pub window: WindowKind,
    /// Channels the model sees (1 or 2).
    pub channels: usize,
    /// Ordered source names.
    pub sources: Vec<String>,
    /// Bins given to the model (the lowest ones); at most `n_fft / 2 + 1`.
    pub bins: usize,
    /// Per-frame input layout.
    pub features: FeatureKind,
    /// Per-frame output layout.
    pub result: ResultKind,
    /// Divide masks by their sum per bin so the stems sum to the mix.
    pub renormalize_masks: bool,
    /// Source that takes bins above `bins`, and the whole mix when no result exists.
    pub fallback_source: usize,
    /// Frames between a frame's arrival and the moment the model can emit its result, without
    /// compute time: `lookahead + step − 1` (windowed) or `lookahead` (stateful).
    pub delay_frames: usize,
    /// Mask models on stereo audio: refine the masks with the stereo Wiener post-filter
    /// ([`crate::wiener`]), its covariances averaged with this time constant in seconds.
    pub stereo_wiener_s: Option<f64>,
    /// EM steps per frame refining the stereo Wiener filter's source powers (0: none; only with
    /// `stereo_wiener_s`).
    pub stereo_wiener_em_steps: usize,
}

impl ModelSpec {
    /// Number of bins of a full spectrum.
    pub fn spectrum_bins(&self) -> usize {
        self.n_fft / 2 + 1
    }

    /// Values per frame handed to the model.
    pub fn feature_len(&self) -> usize {
        match self.features {
            FeatureKind::Magnitude => self.channels * self.bins,
            FeatureKind::Complex => self.channels * self.bins * 2,
        }
    }

    /// Values per frame handed back by the model.
    pub fn result_len(&self) -> usize {
        let per_source = self.channels * self.bins;
        match self.result {
            ResultKind::Mask => self.sources.len() * per_source,
            ResultKind::Spectrum { .. } => self.sources.len() * per_source * 2,
        }
    }

    /// Checks the internal consistency of the spec; the message names the offending field.
    pub fn validate(&self) -> Result<(), String> {
        if self.n_fft < 2 || self.hop == 0 || self.hop > self.n_fft {
            return Err(format!(
                "n_fft {} and hop {} do not form a valid STFT (need 0 < hop <= n_fft)",
                self.n_fft, self.hop
            ));
        }
        if !(1..=2).contains(&self.channels) {
            return Err(format!("channels must be 1 or 2, got {}", self.channels));
        }
        if self.sources.is_empty() {
            return Err("sources must name at least one source".into());
        }
        if self.bins == 0 || self.bins > self.spectrum_bins() {
            return Err(format!(
                "bins {} must be within 1..={} for n_fft {}",
                self.bins,
                self.spectrum_bins(),
                self.n_fft
            ));
        }
        if self.fallback_source >= self.sources.len() {
            return Err(format!(
                "fallback source index {} out of range for {} sources",
                self.fallback_source,
                self.sources.len()
            ));
        }
        if let ResultKind::Spectrum { residual: Some(r) } = self.result {
            if r >= self.sources.len() {
                return Err(format!("residual source index {r} out of range"));
            }
        }
        if let Some(seconds) = self.stereo_wiener_s {
            let longest = crate::wiener::MAX_TIME_CONSTANT_S;
            if !(seconds.is_finite() && seconds > 0.0 && seconds <= longest) {
                return Err(format!(
                    "the stereo Wiener time constant must be above 0 and at most {longest} s, got {seconds}"
                ));
            }
            if self.result != ResultKind::Mask {
                return Err("the stereo Wiener post-filter needs a mask model".into());
            }
        }
        let most = crate::wiener::MAX_EM_STEPS;
        if self.stereo_wiener_em_steps > most {
            return Err(format!(
                "the stereo Wiener filter takes at most {most} EM steps per frame, got {}",
                self.stereo_wiener_em_steps
            ));
        }
        if self.stereo_wiener_em_steps > 0 && self.stereo_wiener_s.is_none() {
            return Err("EM steps need the stereo Wiener post-filter".into());
        }
        if self.sample_rate == 0 {
            return Err("sample_rate must be positive".into());
        }
        Ok(())
    }
}

/// Error a model reports for one inference call. The engine treats the frame as missed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ModelError(pub String);

/// Receives the model's finished frames, in frame order.
pub trait ResultSink {
    /// Hands over the result of the oldest frame still waiting for one (`spec.result_len()`
    /// values).
    fn emit(&mut self, result: &[f32]);
}

/// A separation model driven frame by frame. Runs on the inference worker thread only: it may
/// allocate and take its time, it never runs on the audio thread.
pub trait SeparationModel: Send {
    /// The model's STFT settings and layouts.
    fn spec(&self) -> &ModelSpec;

    /// Feeds the features of the next frame (`spec.feature_len()` values). The model emits, in
    /// order, the results that became available: exactly one per frame overall, each result for
    /// frame `m` no later than the push of frame `m + spec.delay_frames`.
    fn push_frame(&mut self, features: &[f32], sink: &mut dyn ResultSink)
        -> Result<(), ModelError>;

    /// Forgets all history (recurrent state, context), as at start-up.
    fn reset(&mut self);
}
