//! Small models written in plain Rust, with known behaviour: used by tests, benchmarks and fault
//! injection to check the engine without ONNX Runtime.

use crate::model::{FeatureKind, ModelError, ModelSpec, ResultKind, ResultSink, SeparationModel};
use crate::window::WindowKind;
use std::collections::VecDeque;

/// The spec of a magnitude-in, mask-out stereo model with the given STFT and delay.
pub fn mask_spec(sources: &[&str], n_fft: usize, hop: usize, delay_frames: usize) -> ModelSpec {
    ModelSpec {
        name: "reference".into(),
        sample_rate: 44_100,
        n_fft,
        hop,
        window: WindowKind::Hann,
        channels: 2,
        sources: sources.iter().map(|s| s.to_string()).collect(),
        bins: n_fft / 2 + 1,
        features: FeatureKind::Magnitude,
        result: ResultKind::Mask,
        renormalize_masks: true,
        fallback_source: sources.len() - 1,
        delay_frames,
        stereo_wiener_s: None,
        stereo_wiener_em_steps: 0,
    }
}

/// A model that gives every source the same fixed mask per bin and emits each frame's result
/// `spec.delay_frames` frames late, like a model with lookahead.
pub struct FixedMaskModel {
    spec: ModelSpec,
    masks: Vec<f32>,
    queue: VecDeque<()>,
}

impl FixedMaskModel {
    /// `masks` is `[source][bin]` (applied to every channel).
    pub fn new(spec: ModelSpec, masks: Vec<Vec<f32>>) -> Self {
        let mut flat = Vec::with_capacity(spec.result_len());
        for source in &masks {
            for _ in 0..spec.channels {
                flat.extend_from_slice(&source[..spec.bins]);
            }
        }
        Self {
            spec,
            masks: flat,
            queue: VecDeque::new(),
        }
    }

    /// One source passes everything (mask 1), the others get 0.
    pub fn identity(spec: ModelSpec, passing_source: usize) -> Self {
        let masks = (0..spec.sources.len())
            .map(|s| vec![if s == passing_source { 1.0 } else { 0.0 }; spec.bins])
            .collect();
        Self::new(spec, masks)
    }
}

impl SeparationModel for FixedMaskModel {
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    fn push_frame(
        &mut self,
        features: &[f32],
        sink: &mut dyn ResultSink,
    ) -> Result<(), ModelError> {
        if features.len() != self.spec.feature_len() {
            return Err(ModelError(format!(
                "expected {} feature values, got {}",
                self.spec.feature_len(),
                features.len()
            )));
        }
        self.queue.push_back(());
        while self.queue.len() > self.spec.delay_frames {
            self.queue.pop_front();
            sink.emit(&self.masks);
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.queue.clear();
    }
}

/// Splits the spectrum by frequency: source `s` gets the bins of band `s` (equal-width bands).
/// Its output depends on the input, so it checks that masks reach the right frame.
pub fn band_split(spec: ModelSpec) -> FixedMaskModel {
    let sources = spec.sources.len();
    let bins = spec.bins;
    let masks = (0..sources)
        .map(|s| {
            (0..bins)
                .map(|b| if b * sources / bins == s { 1.0 } else { 0.0 })
                .collect()
        })
        .collect();
    FixedMaskModel::new(spec, masks)
}
