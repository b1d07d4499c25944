//! The plugin's parameters and persisted fields, all usable from a host's generic UI. Reading
//! them is lock-free (atomics) except the two persisted strings, which only the main thread and
//! the model loader touch.

use std::sync::{Arc, PoisonError, RwLock};

use nice_plug::prelude::*;

use crate::loader::BuildKey;
use crate::processor::{MixSettings, Mode, SlotSettings, SLOTS};

/// Highest per-source gain, in dB.
pub const MAX_GAIN_DB: f32 = 12.0;
/// Lowest per-source gain before −inf, in dB.
pub const MIN_GAIN_DB: f32 = -60.0;

/// The mode preset as a host parameter.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeParam {
    /// Only the vocals.
    #[id = "isolate"]
    #[name = "Isolate vocals"]
    IsolateVocals,
    /// Everything but the vocals.
    #[id = "remove"]
    #[name = "Remove vocals"]
    RemoveVocals,
    /// The per-source gain, mute and solo parameters decide.
    #[id = "custom"]
    #[name = "Custom"]
    Custom,
}

impl From<ModeParam> for Mode {
    fn from(mode: ModeParam) -> Self {
        match mode {
            ModeParam::IsolateVocals => Mode::IsolateVocals,
            ModeParam::RemoveVocals => Mode::RemoveVocals,
            ModeParam::Custom => Mode::Custom,
        }
    }
}

/// The latency/quality preset: how much time the inference worker gets per frame.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatencyPreset {
    /// One hop of compute slack: lowest latency, misses deadlines first on a busy machine.
    #[id = "low"]
    #[name = "Low latency"]
    Low,
    /// Two hops.
    #[id = "normal"]
    #[name = "Normal"]
    Normal,
    /// Four hops: most robust.
    #[id = "safe"]
    #[name = "Safe"]
    Safe,
}

impl LatencyPreset {
    /// Compute slack in hops of the model's STFT.
    pub fn slack_hops(self) -> usize {
        match self {
            LatencyPreset::Low => 1,
            LatencyPreset::Normal => 2,
            LatencyPreset::Safe => 4,
        }
    }
}

/// One source's mixer strip: gain (−inf..+12 dB), mute, solo.
#[derive(Params)]
pub struct SourceParams {
    /// Linear gain; 0 is −inf dB.
    #[id = "gain"]
    pub gain: FloatParam,
    /// Silences the source.
    #[id = "mute"]
    pub mute: BoolParam,
    /// Solo: when any source is soloed, only soloed sources are heard.
    #[id = "solo"]
    pub solo: BoolParam,
}

impl SourceParams {
    fn new(label: &str) -> Self {
        let min_gain = nice_plug::util::db_to_gain(MIN_GAIN_DB);
        Self {
            gain: FloatParam::new(
                format!("{label} gain"),
                1.0,
                FloatRange::Skewed {
                    min: 0.0,
                    max: nice_plug::util::db_to_gain(MAX_GAIN_DB),
                    factor: FloatRange::gain_skew_factor(MIN_GAIN_DB, MAX_GAIN_DB),
                },
            )
            .with_unit(" dB")
            .with_value_to_string(Arc::new(move |gain| {
                if gain < min_gain {
                    "-inf".to_string()
                } else {
                    format!("{:.1}", nice_plug::util::gain_to_db(gain))
                }
            }))
            .with_string_to_value(formatters::s2v_f32_gain_to_db()),
            mute: BoolParam::new(format!("{label} mute"), false),
            solo: BoolParam::new(format!("{label} solo"), false),
        }
    }

    fn settings(&self) -> SlotSettings {
        SlotSettings {
            gain: self.gain.value(),
            mute: self.mute.value(),
            solo: self.solo.value(),
        }
    }
}

/// All of Demix's parameters and persisted fields.
#[derive(Params)]
pub struct DemixParams {
    /// Path of the user model (`.onnx` with a manifest); empty for the embedded default.
    /// Saved with the state; changing it loads the model in the background.
    #[persist = "model_path"]
    pub model_path: Arc<RwLock<String>>,
    /// What the engine is doing: "running: …" or "bypass: <why the model failed>". Written by
    /// the plugin, saved with the state so hosts and users can read it.
    #[persist = "status"]
    pub status: Arc<RwLock<String>>,
    /// Mode preset.
    #[id = "mode"]
    pub mode: EnumParam<ModeParam>,
    /// Vocals strip.
    #[nested(id_prefix = "voc", group = "Vocals")]
    pub vocals: SourceParams,
    /// Drums strip.
    #[nested(id_prefix = "drm", group = "Drums")]
    pub drums: SourceParams,
    /// Bass strip.
    #[nested(id_prefix = "bas", group = "Bass")]
    pub bass: SourceParams,
    /// Other strip.
    #[nested(id_prefix = "oth", group = "Other")]
    pub other: SourceParams,
    /// Dry/wet: 0 = the input (delayed by the latency), 1 = the separated mix.
    #[id = "drywet"]
    pub dry_wet: FloatParam,
    /// Latency/quality preset.
    #[id = "latpre"]
    pub latency: EnumParam<LatencyPreset>,
    /// Output trim of the main bus, −24..+12 dB.
    #[id = "trim"]
    pub trim: FloatParam,
    /// Host bypass: the input delayed by the reported latency.
    #[id = "bypass"]
    pub bypass: BoolParam,
}

impl Default for DemixParams {
    fn default() -> Self {
        Self {
            model_path: Arc::new(RwLock::new(String::new())),
            status: Arc::new(RwLock::new("not active yet".to_string())),
            mode: EnumParam::new("Mode", ModeParam::IsolateVocals),
            vocals: SourceParams::new("Vocals"),
            drums: SourceParams::new("Drums"),
            bass: SourceParams::new("Bass"),
            other: SourceParams::new("Other"),
            dry_wet: FloatParam::new("Dry/wet", 1.0, FloatRange::Linear { min: 0.0, max: 1.0 })
                .with_unit("%")
                .with_value_to_string(formatters::v2s_f32_percentage(0))
                .with_string_to_value(formatters::s2v_f32_percentage()),
            latency: EnumParam::new("Latency", LatencyPreset::Normal).non_automatable(),
            trim: FloatParam::new(
                "Output trim",
                1.0,
                FloatRange::gain_range(-24.0, MAX_GAIN_DB),
            )
            .with_unit(" dB")
            .with_value_to_string(formatters::v2s_f32_gain_to_db(1))
            .with_string_to_value(formatters::s2v_f32_gain_to_db()),
            bypass: BoolParam::new("Bypass", false).make_bypass(),
        }
    }
}

impl DemixParams {
    /// The strips in slot order (vocals, drums, bass, other).
    pub fn sources(&self) -> [&SourceParams; SLOTS] {
        [&self.vocals, &self.drums, &self.bass, &self.other]
    }

    /// The mix settings for the next block. Lock-free: safe on the audio thread.
    pub fn mix_settings(&self) -> MixSettings {
        let sources = self.sources();
        MixSettings {
            mode: self.mode.value().into(),
            slots: std::array::from_fn(|k| sources[k].settings()),
            dry_wet: self.dry_wet.value(),
            trim: self.trim.value(),
            bypass: self.bypass.value(),
        }
    }

    /// The model and preset the separator should be built with. Takes a read lock: never on the
    /// audio thread.
    pub fn build_key(&self) -> BuildKey {
        BuildKey {
            model_path: self.model_path(),
            slack_hops: self.latency.value().slack_hops(),
        }
    }

    /// The user model path (empty for the embedded default).
    pub fn model_path(&self) -> String {
        self.model_path
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Chooses the model (empty for the embedded default); it loads in the background without
    /// stopping audio.
    pub fn set_model_path(&self, path: &str) {
        *self
            .model_path
            .write()
            .unwrap_or_else(PoisonError::into_inner) = path.to_string();
    }

    /// The engine status text.
    pub fn status(&self) -> String {
        self.status
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
