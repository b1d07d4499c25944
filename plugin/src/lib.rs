//! Demix as a VST3 and CLAP plugin: real-time source separation inside a DAW.
//!
//! Main stereo (or mono) in/out, plus optional auxiliary stereo outputs, one per source
//! (vocals, drums, bass, other), for multi-out routing. The DSP lives in [`DemixProcessor`], a
//! plain struct the [`Demix`] plugin wraps, so it is tested without a host. Separators are built
//! off the audio thread ([`loader`]) and handed over lock-free; the latency reported to the host
//! is always the exact delay of every output.

pub mod loader;
pub mod params;
pub mod processor;

use std::num::NonZeroU32;
use std::sync::Arc;

use nice_plug::prelude::*;

pub use loader::{BuildKey, ModelFactory, ModelLoader};
pub use params::DemixParams;
pub use processor::{DemixProcessor, HostConfig, MixSettings, Mode, SLOTS, SLOT_NAMES};

/// The stereo auxiliary outputs, one per slot.
const AUX_STEREO: [NonZeroU32; SLOTS] = [new_nonzero_u32(2); SLOTS];
const AUX_NAMES: [&str; SLOTS] = ["Vocals", "Drums", "Bass", "Other"];

/// Loads models with `demix-models`: the embedded default for an empty path, a user `.onnx`
/// (with its manifest) otherwise, one intra-op thread. Runs off the audio thread.
pub fn default_model_factory() -> ModelFactory {
    Arc::new(|path: &str| {
        let choice = if path.is_empty() {
            demix_models::ModelChoice::EmbeddedDefault
        } else {
            demix_models::ModelChoice::File(path.into())
        };
        let options = demix_models::LoadOptions {
            ort_library: None,
            intra_op_threads: 1,
        };
        let loaded = demix_models::load(&choice, &options).map_err(|e| {
            if path.is_empty() {
                format!("could not load the embedded default model: {e}")
            } else {
                format!("could not load model '{path}': {e}")
            }
        })?;
        let name = loaded.model.spec().name.clone();
        Ok((loaded.model, name))
    })
}

/// The nice-plug plugin: parameters, host latency, bus layouts and state around a
/// [`DemixProcessor`].
pub struct Demix {
    params: Arc<DemixParams>,
    factory: ModelFactory,
    loader: Option<ModelLoader>,
    processor: Option<DemixProcessor>,
    reported_latency: u32,
    /// Set when processing panicked: the plugin outputs silence until the host activates it
    /// again, so a panic never crosses into the host.
    faulted: bool,
}

impl Default for Demix {
    fn default() -> Self {
        Self {
            params: Arc::new(DemixParams::default()),
            factory: default_model_factory(),
            loader: None,
            processor: None,
            reported_latency: 0,
            faulted: false,
        }
    }
}

impl Demix {
    fn loader(&mut self) -> Option<&ModelLoader> {
        if self.loader.is_none() {
            let params = self.params.clone();
            match ModelLoader::spawn(
                self.factory.clone(),
                Box::new(move || params.build_key()),
                self.params.status.clone(),
            ) {
                Ok(loader) => self.loader = Some(loader),
                Err(e) => {
                    *self
                        .params
                        .status
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) =
                        format!("bypass: could not start the model loader thread: {e}");
                }
            }
        }
        self.loader.as_ref()
    }
}

impl Plugin for Demix {
    const NAME: &'static str = "Demix";
    const VENDOR: &'static str = "Demix";
    const URL: &'static str = "https://demix.invalid";
    const EMAIL: &'static str = "demix@demix.invalid";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    const AUDIO_IO_LAYOUTS: &'static [AudioIOLayout] = &[
        AudioIOLayout {
            main_input_channels: NonZeroU32::new(2),
            main_output_channels: NonZeroU32::new(2),
            aux_output_ports: &AUX_STEREO,
            names: PortNames {
                layout: Some("Stereo with stems"),
                aux_outputs: &AUX_NAMES,
                ..PortNames::const_default()
            },
            ..AudioIOLayout::const_default()
        },
        AudioIOLayout {
            main_input_channels: NonZeroU32::new(2),
            main_output_channels: NonZeroU32::new(2),
            ..AudioIOLayout::const_default()
        },
        AudioIOLayout {
            main_input_channels: NonZeroU32::new(1),
            main_output_channels: NonZeroU32::new(1),
            aux_output_ports: &AUX_STEREO,
            names: PortNames {
                layout: Some("Mono with stems"),
                aux_outputs: &AUX_NAMES,
                ..PortNames::const_default()
            },
            ..AudioIOLayout::const_default()
        },
        AudioIOLayout {
            main_input_channels: NonZeroU32::new(1),
            main_output_channels: NonZeroU32::new(1),
            ..AudioIOLayout::const_default()
        },
    ];

    type Editor = ();
    type SysExMessage = ();
    type BackgroundTask = ();

    fn params(&self) -> Arc<dyn Params> {
        self.params.clone()
    }

    fn activate(
        &mut self,
        audio_io_layout: &AudioIOLayout,
        buffer_config: &BufferConfig,
        context: &mut impl ActivateContext<Self>,
    ) -> bool {
        // No panic may unwind into the host: a failed activation is refused instead.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.activate_unguarded(audio_io_layout, buffer_config, context)
        }))
        .unwrap_or(false)
    }

    fn reset(&mut self) {
        if let Some(processor) = self.processor.as_mut() {
            let reset =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| processor.reset()));
            self.faulted |= reset.is_err();
        }
    }

    fn process(
        &mut self,
        buffer: &mut Buffer,
        aux: &mut AuxiliaryBuffers,
        context: &mut impl ProcessContext<Self>,
    ) -> ProcessStatus {
        if !self.faulted {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.process_unguarded(buffer, aux, context)
            }));
            match outcome {
                Ok(status) => return status,
                Err(_) => self.faulted = true,
            }
        }
        for channel in buffer.as_slice() {
            channel.fill(0.0);
        }
        for bus in aux.outputs.iter_mut() {
            for channel in bus.as_slice() {
                channel.fill(0.0);
            }
        }
        ProcessStatus::Normal
    }
}

impl Demix {
    fn activate_unguarded(
        &mut self,
        audio_io_layout: &AudioIOLayout,
        buffer_config: &BufferConfig,
        context: &mut impl ActivateContext<Self>,
    ) -> bool {
        self.faulted = false;
        let host = HostConfig {
            sample_rate: buffer_config.sample_rate.round() as u32,
            channels: audio_io_layout
                .main_input_channels
                .map_or(2, NonZeroU32::get) as usize,
            max_block: buffer_config.max_buffer_size.max(1) as usize,
            realtime: buffer_config.process_mode != ProcessMode::Offline,
        };
        let settings = self.params.mix_settings();
        let fallback_latency = self.processor.as_ref().map_or(0, DemixProcessor::latency);
        // A re-activation for the same configuration (e.g. the restart that follows a latency
        // change) keeps the running engine; a model that failed to load is tried again.
        let wanted = self.params.build_key();
        let keep = self.processor.as_mut().is_some_and(|p| {
            p.accept_handed_over();
            *p.host() == host && p.separator().is_some() && p.built_from() == Some(&wanted)
        });
        if !keep {
            let Some(loader) = self.loader() else {
                return false;
            };
            let processor = loader.activate(host, &settings, fallback_latency);
            self.processor = Some(processor);
        }
        let latency = self.processor.as_ref().map_or(0, DemixProcessor::latency) as u32;
        context.set_latency_samples(latency);
        self.reported_latency = latency;
        true
    }

    fn process_unguarded(
        &mut self,
        buffer: &mut Buffer,
        aux: &mut AuxiliaryBuffers,
        context: &mut impl ProcessContext<Self>,
    ) -> ProcessStatus {
        let Some(processor) = self.processor.as_mut() else {
            for channel in buffer.as_slice() {
                channel.fill(0.0);
            }
            return ProcessStatus::Normal;
        };
        let settings = self.params.mix_settings();
        let buses_used = aux.outputs.len().min(SLOTS);
        let mut buses: [&mut [&mut [f32]]; SLOTS] = Default::default();
        for (slot, bus) in buses.iter_mut().zip(aux.outputs.iter_mut()) {
            *slot = bus.as_slice();
        }
        processor.process(buffer.as_slice(), &mut buses[..buses_used], &settings);
        let latency = processor.latency() as u32;
        if latency != self.reported_latency {
            self.reported_latency = latency;
            context.set_latency_samples(latency);
        }
        ProcessStatus::KeepAlive
    }
}

impl ClapPlugin for Demix {
    const CLAP_ID: &'static str = "org.demix.demix";
    const CLAP_DESCRIPTION: Option<&'static str> =
        Some("Real-time music source separation: isolate or remove vocals, drums, bass");
    const CLAP_MANUAL_URL: Option<&'static str> = None;
    const CLAP_SUPPORT_URL: Option<&'static str> = None;
    const CLAP_FEATURES: &'static [ClapFeature] = &[
        ClapFeature::AudioEffect,
        ClapFeature::Stereo,
        ClapFeature::Mono,
        ClapFeature::Utility,
    ];
}

impl Vst3Plugin for Demix {
    const VST3_CLASS_ID: [u8; 16] = *b"DemixSeparator01";
    const VST3_SUBCATEGORIES: &'static [Vst3SubCategory] =
        &[Vst3SubCategory::Fx, Vst3SubCategory::Tools];
}

nice_export_clap!(Demix);
nice_export_vst3!(Demix);

#[cfg(test)]
#[global_allocator]
static ALLOCATOR: assert_no_alloc::AllocDisabler = assert_no_alloc::AllocDisabler;
