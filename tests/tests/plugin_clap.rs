//! End-to-end: the bundled `target/bundled/Demix.clap` loaded by a real CLAP host library
//! (clack-host), activated at 48 kHz with 128-sample blocks. Checks the latency the plugin
//! reports through the latency extension, that "isolate vocals" matches `demix separate`'s
//! vocals (same engine, same model) once aligned by that latency, that a parameter value event
//! switches the mode at the right sample, that the state (parameters and model path) survives a
//! save/load into a fresh instance, and that a model that cannot load leaves the plugin in an
//! exactly aligned bypass that says why. Needs the bundle: `cargo xtask bundle demix-plugin
//! --release` (run by `cargo xtask test`).

mod cli_common;

use std::cell::Cell;
use std::ffi::CStr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use clack_extensions::latency::{HostLatency, HostLatencyImpl, PluginLatency};
use clack_extensions::params::{ParamInfoBuffer, PluginParams};
use clack_extensions::render::{PluginRender, RenderMode};
use clack_extensions::state::PluginState;
use clack_host::events::event_types::ParamValueEvent;
use clack_host::prelude::*;
use cli_common::*;
use demix_dsp::{DeadlinePolicy, EngineConfig, Separator};
use demix_models::{LoadOptions, ModelChoice};

const PLUGIN_ID: &CStr = c"org.demix.demix";
const RATE: u32 = 48_000;
const BLOCK: usize = 128;
/// Main output plus one stereo auxiliary output per stem.
const OUTPUT_PORTS: usize = 5;
/// The compute slack of the plugin's default latency preset ("Normal").
const DEFAULT_SLACK_HOPS: usize = 2;
/// The plugin's gain ramps, in samples at 48 kHz (10 ms).
const RAMP: usize = 480;

#[derive(Default)]
struct Shared {
    restart_requested: AtomicBool,
}

impl SharedHandler<'_> for Shared {
    fn request_restart(&self) {
        self.restart_requested.store(true, Ordering::SeqCst);
    }
    fn request_process(&self) {}
    fn request_callback(&self) {}
}

#[derive(Default)]
struct MainThread {
    latency_changes: Cell<u32>,
}

impl MainThreadHandler<'_> for MainThread {}

impl HostLatencyImpl for MainThread {
    fn changed(&self) {
        self.latency_changes.set(self.latency_changes.get() + 1);
    }
}

struct TestHost;

impl HostHandlers for TestHost {
    type Shared<'a> = Shared;
    type MainThread<'a> = MainThread;
    type AudioProcessor<'a> = ();

    fn declare_extensions(builder: &mut HostExtensions<Self>, _shared: &Self::Shared<'_>) {
        builder.register::<HostLatency>();
    }
}

/// `<target>/bundled/`, found from this test executable (`<target>/<profile>/deps/…`).
fn bundled_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.ancestors()
        .nth(3)
        .expect("test executable lives in <target>/<profile>/deps")
        .join("bundled")
}

fn load_entry() -> PluginEntry {
    let path = bundled_dir().join("Demix.clap");
    assert!(
        path.is_file(),
        "{} is missing: run `cargo xtask bundle demix-plugin --release` first",
        path.display()
    );
    // SAFETY: the file is the CLAP plugin this workspace builds.
    unsafe { PluginEntry::load(&path) }
        .unwrap_or_else(|e| panic!("cannot load {}: {e}", path.display()))
}

/// One plugin instance with the extensions the tests use.
struct Demix {
    instance: PluginInstance<TestHost>,
    latency: PluginLatency,
    params: PluginParams,
    state: PluginState,
    render: PluginRender,
}

impl Demix {
    fn new(entry: &PluginEntry) -> Self {
        let host = HostInfo::new("demix-e2e", "Demix", "https://demix.invalid", "0.1.0").unwrap();
        let instance = PluginInstance::<TestHost>::new(
            |_| Shared::default(),
            |_| MainThread::default(),
            entry,
            PLUGIN_ID,
            &host,
        )
        .expect("the plugin instantiates");
        let handle = instance.plugin_shared_handle();
        let latency = handle.get_extension().expect("latency extension");
        let params = handle.get_extension().expect("params extension");
        let state = handle.get_extension().expect("state extension");
        let render = handle.get_extension().expect("render extension");
        Self {
            instance,
            latency,
            params,
            state,
            render,
        }
    }

    /// The id of the parameter called `name`.
    fn param(&mut self, name: &str) -> ClapId {
        let handle = self.instance.plugin_handle();
        let mut buffer = ParamInfoBuffer::new();
        (0..self.params.count(&handle))
            .filter_map(|i| {
                self.params
                    .get_info(&handle, i, &mut buffer)
                    .map(|p| (p.id, p.name.to_vec()))
            })
            .find(|(_, n)| String::from_utf8_lossy(n).trim_end_matches('\0') == name)
            .map(|(id, _)| id)
            .unwrap_or_else(|| panic!("no parameter named {name}"))
    }

    /// Every parameter's value, by id.
    fn param_values(&mut self) -> Vec<(ClapId, f64)> {
        let handle = self.instance.plugin_handle();
        let mut buffer = ParamInfoBuffer::new();
        let ids: Vec<ClapId> = (0..self.params.count(&handle))
            .filter_map(|i| self.params.get_info(&handle, i, &mut buffer).map(|p| p.id))
            .collect();
        ids.into_iter()
            .map(|id| (id, self.params.get_value(&handle, id).expect("param value")))
            .collect()
    }

    /// The plugin's state as JSON. The stream holds the JSON's length (u64, little endian)
    /// followed by the JSON, since CLAP streams do not tell their length.
    fn save_state(&mut self) -> serde_json::Value {
        let mut bytes = Vec::new();
        self.state
            .save(&self.instance.plugin_handle(), &mut bytes)
            .expect("state saves");
        let (length, json) = bytes.split_at(8);
        let length = u64::from_le_bytes(length.try_into().unwrap());
        assert_eq!(length as usize, json.len(), "length prefix");
        serde_json::from_slice(json).expect("the state is JSON")
    }

    fn load_state(&mut self, state: &serde_json::Value) {
        let json = serde_json::to_vec(state).unwrap();
        let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(&json);
        self.state
            .load(&self.instance.plugin_handle(), &mut &bytes[..])
            .expect("state loads");
    }

    /// Switches to offline rendering, where the engine waits for every model result (a DAW's
    /// bounce), so the output is deterministic however fast this test feeds blocks.
    fn render_offline(&mut self) {
        self.render
            .set(&self.instance.plugin_handle(), RenderMode::Offline)
            .expect("offline render mode");
    }

    /// Activates at 48 kHz / 128 samples, processes `input` (stereo, planar) with the given
    /// parameter events (`(sample, id, value)`), and returns the reported latency and the ten
    /// output channels: main L/R, then each stem's L/R.
    fn process(
        &mut self,
        input: &[Vec<f32>],
        events: &[(usize, ClapId, f64)],
    ) -> (u32, Vec<Vec<f32>>) {
        self.process_at(RATE, input, events)
    }

    /// [`Demix::process`] at another sample rate.
    fn process_at(
        &mut self,
        rate: u32,
        input: &[Vec<f32>],
        events: &[(usize, ClapId, f64)],
    ) -> (u32, Vec<Vec<f32>>) {
        let config = PluginAudioConfiguration {
            sample_rate: f64::from(rate),
            min_frames_count: 1,
            max_frames_count: BLOCK as u32,
        };
        let mut stopped = self
            .instance
            .activate(|_, _| (), config)
            .expect("activates");
        let latency = self.latency.get(&self.instance.plugin_handle());
        // The plugin announces its latency at activation and asks for a restart so the host
        // picks it up; restart like a DAW does. The engine is kept and the latency stays.
        let restart = |h: &Shared| h.restart_requested.swap(false, Ordering::SeqCst);
        if self.instance.access_shared_handler(restart) {
            self.instance.deactivate(stopped);
            stopped = self
                .instance
                .activate(|_, _| (), config)
                .expect("reactivates");
            assert_eq!(self.latency.get(&self.instance.plugin_handle()), latency);
            assert!(
                !self.instance.access_shared_handler(restart),
                "no restart loop"
            );
        }
        let mut processor = stopped.start_processing().expect("starts processing");
        let len = input[0].len();
        let mut output = vec![vec![0.0f32; len]; 2 * OUTPUT_PORTS];
        let mut in_ports = AudioPorts::with_capacity(2, 1);
        let mut out_ports = AudioPorts::with_capacity(2 * OUTPUT_PORTS, OUTPUT_PORTS);
        let mut in_block = vec![vec![0.0f32; BLOCK]; 2];
        let mut out_block = vec![vec![0.0f32; BLOCK]; 2 * OUTPUT_PORTS];
        let mut in_events = EventBuffer::new();
        let mut out_events = EventBuffer::new();
        for start in (0..len).step_by(BLOCK) {
            let n = BLOCK.min(len - start);
            for (block, channel) in in_block.iter_mut().zip(input) {
                block[..n].copy_from_slice(&channel[start..start + n]);
            }
            in_events.clear();
            for &(at, id, value) in events.iter().filter(|e| (start..start + n).contains(&e.0)) {
                let time = (at - start) as u32;
                in_events.push(&ParamValueEvent::new(time, id, Pckn::match_all(), value));
            }
            let audio_in = in_ports.with_input_buffers([AudioPortBuffer {
                latency: 0,
                channels: AudioPortBufferType::f32_input_only(
                    in_block
                        .iter_mut()
                        .map(|b| InputChannel::variable(&mut b[..n])),
                ),
            }]);
            let mut audio_out =
                out_ports.with_output_buffers(out_block.chunks_mut(2).map(|port| {
                    AudioPortBuffer {
                        latency: 0,
                        channels: AudioPortBufferType::f32_output_only(
                            port.iter_mut().map(|b| &mut b[..n]),
                        ),
                    }
                }));
            processor
                .process(
                    &audio_in,
                    &mut audio_out,
                    &in_events.as_input(),
                    &mut out_events.as_output(),
                    None,
                    None,
                )
                .expect("process succeeds");
            for (out, block) in output.iter_mut().zip(&out_block) {
                out[start..start + n].copy_from_slice(&block[..n]);
            }
        }
        let stopped = processor.stop_processing();
        self.instance.deactivate(stopped);
        (latency, output)
    }
}

/// The latency `Separator` reports for `choice` at 48 kHz stereo with the default preset.
fn engine_latency(choice: ModelChoice) -> usize {
    engine_latency_with(RATE, DEFAULT_SLACK_HOPS, choice)
}

/// The latency `Separator` reports for `choice` at `rate` stereo with the default preset.
fn engine_latency_at(rate: u32, choice: ModelChoice) -> usize {
    engine_latency_with(rate, DEFAULT_SLACK_HOPS, choice)
}

/// The latency `Separator` reports for `choice` at `rate` stereo with `slack` hops of compute
/// slack, for the test's host blocks of `BLOCK` samples.
fn engine_latency_with(rate: u32, slack: usize, choice: ModelChoice) -> usize {
    let loaded = demix_models::load(&choice, &LoadOptions::default()).expect("model loads");
    let config = EngineConfig {
        compute_slack_hops: slack,
        deadline: DeadlinePolicy::Wait,
    };
    Separator::with_max_block(loaded.model, config, rate, 2, BLOCK)
        .expect("separator builds")
        .latency()
}

/// The dev clip (44.1 kHz, fed as 48 kHz: the check is plugin vs CLI on identical samples), or
/// a generated clip when the shared data set is not there.
fn clip() -> Vec<Vec<f32>> {
    let path = workspace().join("../shared/eval/dev/d03_tracker_vocals/mixture.wav");
    if path.is_file() {
        read_wav(&path).channels
    } else {
        eprintln!(
            "WARNING: {} is missing: the plugin is checked on a generated clip instead of the \
             dev clip",
            path.display()
        );
        test_signal(RATE, 2, 6 * RATE as usize)
    }
}

/// Signal-to-distortion ratio of `estimate` against `reference`, in dB.
fn sdr(reference: &[f32], estimate: &[f32]) -> f64 {
    let (mut signal, mut error) = (0.0f64, 0.0f64);
    for (&r, &e) in reference.iter().zip(estimate) {
        signal += f64::from(r) * f64::from(r);
        error += f64::from(r - e) * f64::from(r - e);
    }
    10.0 * (signal / error.max(1e-20)).log10()
}

#[test]
fn latency_isolate_vocals_and_automation_match_the_cli() {
    let entry = load_entry();
    let mut demix = Demix::new(&entry);
    demix.render_offline();
    let input = clip();
    let frames = input[0].len();

    // `demix separate` on the same samples at the same rate.
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("clip.wav");
    write_wav(&wav, RATE, Encoding::Float32, &input);
    let out = dir.path().join("out");
    let result = run([
        "separate".as_ref(),
        wav.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--format".as_ref(),
        "f32".as_ref(),
    ]);
    assert_success(&result);
    let stem = |name: &str| read_wav(&out.join("clip").join(format!("{name}.wav"))).channels;
    let vocals = stem("vocals");
    let drums = stem("drums");
    let others: Vec<Vec<f32>> = {
        let (b, o) = (stem("bass"), stem("other"));
        (0..2)
            .map(|c| {
                (0..frames)
                    .map(|t| drums[c][t] + b[c][t] + o[c][t])
                    .collect()
            })
            .collect()
    };

    // Halfway through, a parameter event switches the mode to "Remove vocals".
    let mode = demix.param("Mode");
    let switch = (frames / 2) / BLOCK * BLOCK;
    let expected_latency = engine_latency(ModelChoice::EmbeddedDefault);
    let mut padded = input.clone();
    for channel in padded.iter_mut() {
        channel.resize(frames + expected_latency, 0.0);
    }
    let (latency, output) = demix.process(&padded, &[(switch, mode, 1.0)]);
    assert_eq!(latency as usize, expected_latency, "reported latency");
    let latency = latency as usize;

    // Output sample `t + latency` is input sample `t`. The mode applies in output time.
    let switch_in_input = switch - latency;
    for c in 0..2 {
        let main = &output[c][latency..];
        let isolated = sdr(&vocals[c][..switch_in_input], &main[..switch_in_input]);
        assert!(
            isolated >= 40.0,
            "isolate vocals vs CLI vocals, channel {c}: {isolated:.1} dB"
        );
        let after = switch_in_input + RAMP;
        let removed = sdr(&others[c][after..], &main[after..frames]);
        eprintln!("channel {c}: isolate vs CLI {isolated:.1} dB, remove vs CLI {removed:.1} dB");
        assert!(
            removed >= 40.0,
            "remove vocals vs CLI drums+bass+other, channel {c}: {removed:.1} dB"
        );
        // The stem outputs carry each stem times its gain: the vocals until the switch, then
        // the drums (and no vocals).
        let aux = |slot: usize| &output[2 * (1 + slot) + c][latency..latency + frames];
        let stem_sdr = sdr(&vocals[c][..switch_in_input], &aux(0)[..switch_in_input]);
        assert!(
            stem_sdr >= 40.0,
            "vocals output vs CLI vocals, channel {c}: {stem_sdr:.1} dB"
        );
        let stem_sdr = sdr(&drums[c][after..], &aux(1)[after..]);
        assert!(
            stem_sdr >= 40.0,
            "drums output vs CLI drums, channel {c}: {stem_sdr:.1} dB"
        );
        assert!(
            aux(0)[after..].iter().all(|&x| x == 0.0),
            "vocals muted after the switch"
        );
        assert!(
            aux(1)[..switch_in_input].iter().all(|&x| x == 0.0),
            "drums muted before"
        );
    }
}

#[test]
fn state_round_trips_and_a_model_that_fails_bypasses_with_the_reason() {
    let entry = load_entry();
    let mut first = Demix::new(&entry);
    let (drums, bass_mute, dry_wet) = (
        first.param("Drums gain"),
        first.param("Bass mute"),
        first.param("Dry/wet"),
    );
    let quiet = vec![vec![0.0f32; 4 * BLOCK]; 2];
    first.process(
        &quiet,
        &[(0, drums, 0.25), (0, bass_mute, 1.0), (BLOCK, dry_wet, 0.5)],
    );
    let mut state = first.save_state();
    assert_eq!(
        state["fields"]["model_path"], "\"\"",
        "embedded default: empty path"
    );
    let status = state["fields"]["status"].as_str().unwrap().to_string();
    assert!(status.starts_with("\"running: "), "{status}");

    // A user model file: the path survives save → load → save, and so do the parameters.
    let model = fixture("identity_stateful.onnx");
    let model_field = serde_json::to_string(model.to_str().unwrap()).unwrap();
    state["fields"]["model_path"] = model_field.clone().into();
    let mut second = Demix::new(&entry);
    second.load_state(&state);
    assert_eq!(
        second.param_values(),
        first.param_values(),
        "parameters after loading"
    );
    let (latency, _) = second.process(&quiet, &[]);
    assert_eq!(
        latency as usize,
        engine_latency(ModelChoice::File(model.clone()))
    );
    let saved = second.save_state();
    assert_eq!(saved["fields"]["model_path"], model_field.as_str());
    assert_eq!(saved["params"], state["params"]);
    let status = saved["fields"]["status"].as_str().unwrap().to_string();
    assert!(status.starts_with("\"running: "), "{status}");

    // A model that cannot load: bypass, the output is the input delayed by exactly the reported
    // latency, and the state says why.
    let missing = Path::new("/nonexistent/demix/model.onnx");
    state["fields"]["model_path"] = serde_json::to_string(missing.to_str().unwrap())
        .unwrap()
        .into();
    let mut third = Demix::new(&entry);
    third.load_state(&state);
    let ramp: Vec<f32> = (0..3000).map(|t| ((t as f32) * 0.01).sin() * 0.5).collect();
    let (latency, output) = third.process(&[ramp.clone(), ramp.clone()], &[]);
    let latency = latency as usize;
    for channel in &output[..2] {
        assert!(channel[..latency].iter().all(|&x| x == 0.0));
        assert_eq!(
            &channel[latency..],
            &ramp[..ramp.len() - latency],
            "bypass is the delayed input"
        );
    }
    let status = third.save_state()["fields"]["status"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(status.starts_with("\"bypass: "), "{status}");
    assert!(status.contains("/nonexistent/demix/model.onnx"), "{status}");
}

#[test]
fn a_sample_rate_change_rebuilds_the_engine_with_its_exact_latency() {
    let entry = load_entry();
    let mut demix = Demix::new(&entry);
    let quiet = vec![vec![0.0f32; 8 * BLOCK]; 2];
    for rate in [48_000, 44_100, 96_000, 88_200] {
        let (latency, output) = demix.process_at(rate, &quiet, &[]);
        let expected = engine_latency_at(rate, ModelChoice::EmbeddedDefault);
        assert_eq!(latency as usize, expected, "latency at {rate} Hz");
        assert!(output.iter().flatten().all(|x| x.is_finite()));
    }
}

#[test]
fn the_latency_preset_changes_the_reported_latency() {
    let entry = load_entry();
    let mut demix = Demix::new(&entry);
    let preset = demix.param("Latency");
    let quiet = vec![vec![0.0f32; 8 * BLOCK]; 2];
    // "Safe" (index 2) gives the worker four hops of slack.
    let (normal, _) = demix.process(&quiet, &[(0, preset, 2.0)]);
    assert_eq!(
        normal as usize,
        engine_latency(ModelChoice::EmbeddedDefault)
    );
    let (safe, output) = demix.process(&quiet, &[]);
    let expected = engine_latency_with(RATE, 4, ModelChoice::EmbeddedDefault);
    assert_eq!(
        safe as usize, expected,
        "latency after switching to the safe preset"
    );
    assert!(safe > normal);
    assert!(output.iter().flatten().all(|x| x.is_finite()));
}
