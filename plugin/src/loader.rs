//! Building separators off the audio thread: synchronously at activation, and on a background
//! thread per instance when the model or the latency preset changes while audio runs. Finished
//! separators reach the audio thread through [`crate::processor::BuilderLink`]; the ones it
//! replaces come back here to be dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use demix_dsp::{DeadlinePolicy, EngineConfig, SeparationModel, Separator, StatsHandle};

use crate::processor::{hand_over_rings, BuilderLink, DemixProcessor, HostConfig, MixSettings};
use crate::processor::{Prepared, MAX_CHANNELS};

/// Loads a model: the path of a user `.onnx` file, or `""` for the embedded default. Returns the
/// model and a display name, or a message saying why it cannot be used. Runs off the audio
/// thread.
pub type ModelFactory =
    Arc<dyn Fn(&str) -> Result<(Box<dyn SeparationModel>, String), String> + Send + Sync>;

/// How often the background builder looks for a changed model or latency preset.
const POLL: Duration = Duration::from_millis(20);

/// What a separator is built from, besides the host configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildKey {
    /// User model path, or `""` for the embedded default.
    pub model_path: String,
    /// Compute slack given to the inference worker, in hops.
    pub slack_hops: usize,
}

/// A build's result: what goes to the audio thread and the text the user sees.
pub struct BuildOutcome {
    /// The separator (or the bypass that stands in for it).
    pub prepared: Box<Prepared>,
    /// "running: …" or "bypass: <why>".
    pub status: String,
}

/// Loads the model and builds a separator for `host`. Never panics; a failure yields the bypass
/// with a status saying why. Allocates and may take long: off the audio thread only.
pub fn build(
    factory: &ModelFactory,
    key: &BuildKey,
    host: &HostConfig,
    generation: u64,
) -> BuildOutcome {
    let attempt = || -> Result<(Prepared, String), String> {
        if !(1..=MAX_CHANNELS).contains(&host.channels) {
            return Err(format!("{} host channels are not supported", host.channels));
        }
        let (model, name) = factory(&key.model_path)?;
        let config = EngineConfig {
            compute_slack_hops: key.slack_hops,
            deadline: if host.realtime {
                DeadlinePolicy::RealTime
            } else {
                DeadlinePolicy::Wait
            },
        };
        let separator = Separator::with_max_block(
            model,
            config,
            host.sample_rate,
            host.channels,
            host.max_block,
        )
        .map_err(|e| format!("model '{name}' cannot run: {e}"))?;
        let latency = separator.latency();
        let sources = separator.source_names().join(", ");
        let prepared = Prepared::new(separator, host, generation)
            .map_err(|e| format!("model '{name}': {e}"))?
            .built_from(key.clone());
        let ms = latency as f64 * 1000.0 / f64::from(host.sample_rate);
        let status = format!(
            "running: {name} ({sources}); latency {latency} samples ({ms:.1} ms) at {} Hz",
            host.sample_rate
        );
        Ok((prepared, status))
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(attempt))
        .unwrap_or_else(|_| Err("the model loader panicked".to_string()));
    match outcome {
        Ok((prepared, status)) => BuildOutcome {
            prepared: Box::new(prepared),
            status,
        },
        Err(why) => BuildOutcome {
            prepared: Box::new(Prepared::bypass(generation).built_from(key.clone())),
            status: format!("bypass: {why}"),
        },
    }
}

struct Control {
    generation: u64,
    host: Option<HostConfig>,
    built: Option<BuildKey>,
    link: Option<BuilderLink>,
}

struct Shared {
    control: Mutex<Control>,
    factory: ModelFactory,
    wanted: Box<dyn Fn() -> BuildKey + Send + Sync>,
    status: Arc<RwLock<String>>,
    /// Counters of the separator last handed to the audio thread, watched for model faults.
    watched: Mutex<Option<StatsHandle>>,
}

impl Shared {
    fn control(&self) -> MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_status(&self, status: String) {
        *self.status.write().unwrap_or_else(PoisonError::into_inner) = status;
    }

    /// Records the status of a new build and starts watching its separator for faults.
    fn built(&self, status: String, stats: Option<StatsHandle>) {
        *self.watched.lock().unwrap_or_else(PoisonError::into_inner) = stats;
        self.set_status(status);
    }

    /// Reports, once per build, a model that failed or crashed while audio ran: the engine then
    /// keeps the output aligned with the last mask or the unseparated mix, and the user must
    /// know why the separation stopped.
    fn report_fault(&self) {
        let mut watched = self.watched.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(stats) = watched.as_ref() else {
            return;
        };
        let what = if stats.model_panicked() {
            "crashed".to_string()
        } else if stats.model_errors() > 0 {
            format!("failed {} time(s)", stats.model_errors())
        } else {
            return;
        };
        let misses = stats.deadline_misses();
        *watched = None;
        drop(watched);
        self.set_status(format!(
            "fault: the model {what} during playback; the output stays aligned but falls back to \
             the last mask or the unseparated mix ({misses} frames so far). Reload the model or \
             re-activate the plugin."
        ));
    }
}

/// Builds separators for one plugin instance: [`ModelLoader::activate`] on the host's
/// activation, and a background thread that rebuilds when the wanted [`BuildKey`] changes and
/// drops the separators the audio thread retired. Nothing here runs on the audio thread.
pub struct ModelLoader {
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ModelLoader {
    /// Starts the background thread. `wanted` reads the current model path and latency preset
    /// (from the parameters); `status` receives the user-facing status text.
    pub fn spawn(
        factory: ModelFactory,
        wanted: Box<dyn Fn() -> BuildKey + Send + Sync>,
        status: Arc<RwLock<String>>,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            control: Mutex::new(Control {
                generation: 0,
                host: None,
                built: None,
                link: None,
            }),
            factory,
            wanted,
            status,
            watched: Mutex::new(None),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let shared = shared.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("demix-model-loader".into())
                .spawn(move || run(&shared, &stop))?
        };
        Ok(Self {
            shared,
            stop,
            thread: Some(thread),
        })
    }

    /// The model and preset the parameters ask for now.
    pub fn wanted(&self) -> BuildKey {
        (self.shared.wanted)()
    }

    /// Builds a processor for `host` now (the host is activating the plugin; allocation and
    /// blocking are allowed). A model that fails to load gives a bypass processor whose latency
    /// is `fallback_latency`; the status says why.
    pub fn activate(
        &self,
        host: HostConfig,
        settings: &MixSettings,
        fallback_latency: usize,
    ) -> DemixProcessor {
        let key = (self.shared.wanted)();
        let generation = {
            let mut control = self.shared.control();
            control.generation += 1;
            control.host = Some(host);
            control.built = None;
            control.link = None;
            control.generation
        };
        let outcome = build(&self.shared.factory, &key, &host, generation);
        let stats = outcome.prepared.separator().map(Separator::stats);
        let (audio, builder) = hand_over_rings();
        let processor =
            DemixProcessor::new(host, outcome.prepared, audio, settings, fallback_latency);
        let mut control = self.shared.control();
        if control.generation == generation {
            control.built = Some(key);
            control.link = Some(builder);
        }
        drop(control);
        self.shared.built(outcome.status, stats);
        processor
    }
}

impl Drop for ModelLoader {
    /// Stops the background thread and waits for a build in progress to finish.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(shared: &Shared, stop: &AtomicBool) {
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(POLL);
        shared.report_fault();
        let retired = shared
            .control()
            .link
            .as_mut()
            .map(BuilderLink::collect_retired);
        drop(retired);
        let job = {
            let control = shared.control();
            match control.host {
                Some(host) if control.link.is_some() => {
                    let wanted = (shared.wanted)();
                    (control.built.as_ref() != Some(&wanted)).then_some((
                        control.generation,
                        host,
                        wanted,
                    ))
                }
                _ => None,
            }
        };
        if let Some((generation, host, key)) = job {
            let outcome = build(&shared.factory, &key, &host, generation);
            let stats = outcome.prepared.separator().map(Separator::stats);
            let mut control = shared.control();
            if control.generation != generation {
                continue;
            }
            let Some(link) = control.link.as_mut() else {
                continue;
            };
            // A full ring means the audio thread is not running: keep the key unbuilt and
            // retry later rather than lose the change.
            match link.send(outcome.prepared) {
                Ok(()) => {
                    control.built = Some(key);
                    drop(control);
                    shared.built(outcome.status, stats);
                }
                Err(refused) => {
                    drop(control);
                    drop(refused);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Instant;

    use demix_dsp::reference_models::{mask_spec, FixedMaskModel};

    use super::*;

    fn test_factory() -> ModelFactory {
        Arc::new(|path: &str| {
            if path.is_empty() {
                let spec = mask_spec(&["vocals", "drums", "bass", "other"], 512, 128, 1);
                Ok((
                    Box::new(FixedMaskModel::identity(spec, 0)) as _,
                    "test".into(),
                ))
            } else {
                Err(format!("could not load model '{path}': no such file"))
            }
        })
    }

    fn pump_until(processor: &mut DemixProcessor, done: impl Fn(&DemixProcessor) -> bool) {
        let mut block = vec![vec![0.0f32; 128]; 2];
        let started = Instant::now();
        while !done(processor) {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "loader never delivered"
            );
            let mut main: Vec<&mut [f32]> = block.iter_mut().map(|c| &mut c[..]).collect();
            processor.process(&mut main, &mut [], &MixSettings::default());
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// A real-time 48 kHz stereo host with 128-sample blocks.
    fn real_time_host() -> HostConfig {
        HostConfig {
            sample_rate: 48_000,
            channels: 2,
            max_block: 128,
            realtime: true,
        }
    }

    #[test]
    fn rebuilds_on_preset_change_and_bypasses_a_model_that_fails() {
        let key = Arc::new(Mutex::new(BuildKey {
            model_path: String::new(),
            slack_hops: 1,
        }));
        let status = Arc::new(RwLock::new(String::new()));
        let wanted = {
            let key = key.clone();
            Box::new(move || key.lock().unwrap().clone())
        };
        let loader = ModelLoader::spawn(test_factory(), wanted, status.clone()).unwrap();
        let host = real_time_host();
        let mut processor = loader.activate(host, &MixSettings::default(), 0);
        assert_eq!(processor.built_from(), Some(&loader.wanted()));
        assert!(status.read().unwrap().starts_with("running: test"));
        let low = processor.latency();

        key.lock().unwrap().slack_hops = 4;
        assert_ne!(processor.built_from(), Some(&loader.wanted()));
        pump_until(&mut processor, |p| p.latency() != low);
        let expected = build(&test_factory(), &key.lock().unwrap(), &host, 0)
            .prepared
            .separator()
            .unwrap()
            .latency();
        assert_eq!(processor.latency(), expected);
        assert_eq!(processor.built_from(), Some(&loader.wanted()));
        assert!(expected > low);

        key.lock().unwrap().model_path = "/nowhere/model.onnx".into();
        pump_until(&mut processor, |p| p.separator().is_none());
        assert_eq!(
            processor.latency(),
            expected,
            "bypass keeps the reported latency"
        );
        let text = status.read().unwrap().clone();
        assert!(text.starts_with("bypass: "), "{text}");
        assert!(text.contains("/nowhere/model.onnx"), "{text}");

        // A fresh activation with the failing model starts in bypass with the old latency.
        let processor = loader.activate(host, &MixSettings::default(), expected);
        assert!(processor.separator().is_none());
        assert_eq!(processor.latency(), expected);
    }

    /// Fails every inference call from its 20th frame on.
    struct FailsMidStream(FixedMaskModel, usize);

    impl SeparationModel for FailsMidStream {
        fn spec(&self) -> &demix_dsp::ModelSpec {
            self.0.spec()
        }
        fn push_frame(
            &mut self,
            features: &[f32],
            sink: &mut dyn demix_dsp::ResultSink,
        ) -> Result<(), demix_dsp::ModelError> {
            self.1 += 1;
            if self.1 >= 20 {
                return Err(demix_dsp::ModelError("injected failure".into()));
            }
            self.0.push_frame(features, sink)
        }
        fn reset(&mut self) {
            self.0.reset()
        }
    }

    #[test]
    fn a_model_failing_mid_stream_is_reported_in_the_status() {
        let factory: ModelFactory = Arc::new(|_: &str| {
            let spec = mask_spec(&["vocals", "drums", "bass", "other"], 512, 128, 1);
            let model = FailsMidStream(FixedMaskModel::identity(spec, 0), 0);
            Ok((Box::new(model) as _, "failing".to_string()))
        });
        let status = Arc::new(RwLock::new(String::new()));
        let wanted = Box::new(|| BuildKey {
            model_path: String::new(),
            slack_hops: 1,
        });
        let loader = ModelLoader::spawn(factory, wanted, status.clone()).unwrap();
        let mut processor = loader.activate(real_time_host(), &MixSettings::default(), 0);
        assert!(status.read().unwrap().starts_with("running: "));
        pump_until(&mut processor, |_| {
            status.read().unwrap().starts_with("fault: ")
        });
        let text = status.read().unwrap().clone();
        assert!(text.contains("failed"), "{text}");
        assert!(processor.separator().is_some(), "the engine keeps running");
    }
}
