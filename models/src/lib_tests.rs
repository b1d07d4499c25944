//! Loading: manifests from metadata and sidecars, every load error, and the description.
//! ONNX Runtime must be provisioned (`cargo xtask provision-ort`); without it these tests fail.

use super::*;
use std::time::Instant;

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR")))
}

fn load_file(path: &Path) -> Result<LoadedModel, LoadError> {
    load(
        &ModelChoice::File(path.to_path_buf()),
        &LoadOptions::default(),
    )
}

#[test]
fn every_fixture_with_a_manifest_loads_and_is_described() {
    for name in [
        "identity_stateful.onnx",
        "lookahead_stateful.onnx",
        "windowed.onnx",
        "magnitude_mono.onnx",
        "mdx_complex.onnx",
    ] {
        let path = fixture_path(name);
        let loaded = load_file(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(loaded.origin, path.display().to_string());
        assert_eq!(loaded.manifest_origin, "embedded metadata");
        assert_eq!(loaded.runtime, *runtime::loaded().unwrap());
        let text = describe(&loaded, 2);
        assert!(text.contains(&loaded.manifest.name), "{text}");
        assert!(text.contains("16000 Hz"), "{text}");
        assert!(text.contains("n_fft 64, hop 16, hann window"), "{text}");
    }
}

#[test]
fn the_description_has_tensors_streaming_and_latency() {
    let loaded = load_file(&fixture_path("identity_stateful.onnx")).unwrap();
    let text = describe(&loaded, 3);
    for expected in [
        "Model:        identity-stateful",
        "Channels:     2 (stereo)",
        "Sources:      target, rest (fallback: rest)",
        "Input:        magnitude mix: f32 [1, 2, 33, 1], 33 of 33 bins",
        "Output:       mask masks: f32 [1, 2, 2, 33, 1]",
        "State:        state_in -> state_out [1, 1, 4]",
        "Streaming:    stateful, one frame per call, lookahead 2 frames",
        // 63 + 16 · (2 + 3) samples at 16 kHz
        "Latency:      143 samples (8.9 ms)",
        "Parameters:   3",
        "Runtime:      ONNX Runtime 1.",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    let mdx = describe(&load_file(&fixture_path("mdx_complex.onnx")).unwrap(), 0);
    assert!(
        mdx.contains("Input:        complex spec: f32 [1, 4, 24, 4], 24 of 33 bins"),
        "{mdx}"
    );
    assert!(
        mdx.contains("residual source instrumental, scale 1.5"),
        "{mdx}"
    );
    assert!(
        mdx.contains("windowed, context 4 frames, step 2, lookahead 1"),
        "{mdx}"
    );
}

#[test]
fn a_graph_contradicting_its_manifest_is_refused_naming_the_tensor_and_shapes() {
    let path = fixture_path("bad_bins.onnx");
    let err = load_file(&path)
        .err()
        .expect("bad_bins.onnx must be refused");
    match &err {
        LoadError::ShapeMismatch {
            tensor,
            expected,
            actual,
            ..
        } => {
            assert_eq!(tensor, "mix");
            assert_eq!(expected, "f32 [1, 2, 33, 1]");
            assert_eq!(actual, "f32 [1, 2, 30, 1]");
        }
        other => panic!("expected a shape mismatch, got {other}"),
    }
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("`mix`"), "{text}");
}

#[test]
fn a_model_without_manifest_is_refused_with_where_it_was_looked_for() {
    let path = fixture_path("no_manifest.onnx");
    let err = load_file(&path).err().unwrap();
    assert!(matches!(err, LoadError::Manifest { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(
        text.contains("no `demix.manifest` metadata entry"),
        "{text}"
    );
    assert!(text.contains("no_manifest.demix.toml"), "{text}");
}

#[test]
fn a_sidecar_manifest_describes_a_bare_graph() {
    let loaded = load_file(&fixture_path("sidecar.onnx")).unwrap();
    assert_eq!(loaded.manifest.name, "sidecar-identity");
    assert!(loaded
        .manifest_origin
        .ends_with("fixtures/sidecar.demix.toml"));
}

#[test]
fn a_sidecar_wins_over_the_embedded_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.onnx");
    std::fs::copy(fixture_path("identity_stateful.onnx"), &model).unwrap();
    let sidecar_text = std::fs::read_to_string(fixture_path("sidecar.demix.toml"))
        .unwrap()
        .replace("sidecar-identity", "renamed by sidecar");
    // The file-name form of the sidecar works too.
    let sidecar = dir.path().join("model.onnx.demix.toml");
    std::fs::write(&sidecar, &sidecar_text).unwrap();
    assert_eq!(
        load_file(&model).unwrap().manifest.name,
        "renamed by sidecar"
    );

    // A broken sidecar is reported with its path and the key.
    std::fs::write(&sidecar, sidecar_text.replace("hop = 16", "hop = 0")).unwrap();
    let text = load_file(&model).err().unwrap().to_string();
    assert!(text.contains(&sidecar.display().to_string()), "{text}");
    assert!(
        text.contains("hop 0 must be within 1..=n_fft (64)"),
        "{text}"
    );

    // Two sidecars are ambiguous.
    std::fs::write(&sidecar, &sidecar_text).unwrap();
    std::fs::write(dir.path().join("model.demix.toml"), &sidecar_text).unwrap();
    let text = load_file(&model).err().unwrap().to_string();
    assert!(text.contains("two sidecar manifests"), "{text}");
}

#[test]
fn unreadable_and_non_onnx_files_are_clean_errors() {
    let missing = fixture_path("does_not_exist.onnx");
    let err = load_file(&missing).err().unwrap();
    assert!(matches!(err, LoadError::Io { .. }), "{err}");
    assert!(err.to_string().contains("does_not_exist.onnx"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let text_file = dir.path().join("notes.onnx");
    std::fs::write(&text_file, "this is not a model\n").unwrap();
    let err = load_file(&text_file).err().unwrap();
    assert!(matches!(err, LoadError::NotOnnx { .. }), "{err}");
    assert!(
        err.to_string().contains("notes.onnx is not an ONNX model"),
        "{err}"
    );
}

/// Encodes one length-delimited protobuf field.
fn field(number: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 128);
    let mut out = vec![(number << 3) | 2, payload.len() as u8];
    out.extend_from_slice(payload);
    out
}

#[test]
fn a_graph_onnx_runtime_cannot_parse_is_reported_as_corrupt() {
    // ir_version 8, a manifest (from the sidecar example), and a graph whose node is garbage.
    let manifest =
        Manifest::from_toml(&std::fs::read_to_string(fixture_path("sidecar.demix.toml")).unwrap())
            .unwrap()
            .to_json();
    let mut bytes = vec![0x08, 0x08];
    bytes.extend(field(7, &field(1, &[0xff, 0xff])));
    let entry: Vec<u8> = [field(1, b"demix.manifest"), {
        let mut value = vec![0x12];
        let mut len = manifest.len();
        while len >= 0x80 {
            value.push((len as u8 & 0x7f) | 0x80);
            len >>= 7;
        }
        value.push(len as u8);
        value.extend_from_slice(manifest.as_bytes());
        value
    }]
    .concat();
    let mut entry_field = vec![(14 << 3) | 2];
    let mut len = entry.len();
    while len >= 0x80 {
        entry_field.push((len as u8 & 0x7f) | 0x80);
        len >>= 7;
    }
    entry_field.push(len as u8);
    entry_field.extend(entry);
    bytes.extend(entry_field);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.onnx");
    std::fs::write(&path, &bytes).unwrap();
    let err = load_file(&path).err().unwrap();
    assert!(matches!(err, LoadError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("broken.onnx"), "{err}");
}

#[test]
fn an_unusable_explicit_runtime_library_is_a_clean_error() {
    let options = LoadOptions {
        ort_library: Some("/nonexistent/libonnxruntime.so".into()),
        intra_op_threads: 1,
    };
    let err = load(&ModelChoice::File(fixture_path("windowed.onnx")), &options)
        .err()
        .unwrap();
    assert!(matches!(err, LoadError::Runtime { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("windowed.onnx"), "{text}");
    assert!(
        text.contains("/nonexistent/libonnxruntime.so (explicit path): no such file"),
        "{text}"
    );
    assert!(text.contains("cargo xtask provision-ort"), "{text}");
}

#[test]
fn the_embedded_default_model_loads_and_runs_in_real_time_on_one_thread() {
    let loaded = load(&ModelChoice::EmbeddedDefault, &LoadOptions::default()).unwrap();
    assert_eq!(loaded.origin, "embedded default");
    let spec = loaded.model.spec().clone();
    assert_eq!(
        (spec.sample_rate, spec.n_fft, spec.hop),
        (44_100, 2048, 512)
    );
    assert_eq!((spec.channels, spec.sources.len(), spec.bins), (2, 4, 1025));
    // The shipped model looks 2 frames ahead (models/MODEL_CARD.md).
    assert_eq!(spec.delay_frames, 2);
    let mut model = loaded.model;
    struct Count(usize);
    impl demix_dsp::ResultSink for Count {
        fn emit(&mut self, result: &[f32]) {
            assert!(result.iter().all(|v| v.is_finite()));
            self.0 += 1;
        }
    }
    let mut sink = Count(0);
    let features: Vec<f32> = (0..spec.feature_len())
        .map(|i| (i % 97) as f32 * 0.01)
        .collect();
    // With one intra-op thread ONNX Runtime computes on the calling thread, so this thread's
    // CPU time is the model's cost, whatever else the machine is busy with.
    let mut wall = Vec::new();
    let mut cpu = Vec::new();
    for _ in 0..300 {
        let (start, start_cpu) = (Instant::now(), thread_cpu_ms());
        model.push_frame(&features, &mut sink).unwrap();
        wall.push(start.elapsed().as_secs_f64() * 1e3);
        cpu.push(thread_cpu_ms() - start_cpu);
    }
    assert_eq!(sink.0, 300 - spec.delay_frames);
    let stats = |times: &mut Vec<f64>| {
        times.sort_by(f64::total_cmp);
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        (mean, times[times.len() * 99 / 100])
    };
    let ((wall_mean, wall_p99), (cpu_mean, cpu_p99)) = (stats(&mut wall), stats(&mut cpu));
    let hop_ms = spec.hop as f64 * 1e3 / f64::from(spec.sample_rate);
    eprintln!(
        "default model per frame: wall {wall_mean:.3} ms mean, {wall_p99:.3} ms p99; \
         thread CPU {cpu_mean:.3} ms mean, {cpu_p99:.3} ms p99 (hop {hop_ms:.1} ms)"
    );
    assert!(
        cpu_mean < hop_ms,
        "{cpu_mean} ms of CPU per frame cannot keep up with {hop_ms} ms hops"
    );
}

/// CPU time consumed by the calling thread, in milliseconds.
fn thread_cpu_ms() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to fill; the clock id is a constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    ts.tv_sec as f64 * 1e3 + ts.tv_nsec as f64 * 1e-6
}

/// A sung-like voice (harmonics under three formants, vibrato, syllables on five notes) and a
/// drum-like part (kick, snare, hi-hat), 44.1 kHz.
fn voice_and_drums(seconds: f32) -> (Vec<f32>, Vec<f32>) {
    let rate = 44_100.0f32;
    let len = (seconds * rate) as usize;
    let notes = [220.0f32, 247.0, 262.0, 294.0, 330.0];
    let mut phase = 0.0f32;
    let mut voice = vec![0.0f32; len];
    for (t, v) in voice.iter_mut().enumerate() {
        let time = t as f32 / rate;
        let syllable = (time / 0.4) as usize;
        let within = time - syllable as f32 * 0.4;
        let envelope = (within / 0.03).min(1.0) * ((0.34 - within) / 0.03).clamp(0.0, 1.0);
        let f0 = notes[syllable % notes.len()]
            * (1.0 + 0.012 * (std::f32::consts::TAU * 5.5 * time).sin());
        phase += std::f32::consts::TAU * f0 / rate;
        let mut sample = 0.0;
        for h in 1..=20 {
            let f = f0 * h as f32;
            let formants = (-((f - 700.0) / 250.0).powi(2)).exp()
                + 0.7 * (-((f - 1_200.0) / 300.0).powi(2)).exp()
                + 0.2 * (-((f - 2_600.0) / 400.0).powi(2)).exp();
            sample += formants / h as f32 * (phase * h as f32).sin();
        }
        *v = 0.3 * envelope * sample;
    }
    // Kick: a click and a fast 150 → 50 Hz sweep on the beat; snare: a noise burst over a
    // 180 Hz body on the off-beat; hi-hat: short noise on every eighth.
    let mut noise = 12345u32;
    let mut drums = vec![0.0f32; len];
    let mut kick_phase = 0.0f32;
    for (t, d) in drums.iter_mut().enumerate() {
        let time = t as f32 / rate;
        noise = noise.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let white = (noise >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
        let since_kick = time % 1.0;
        if since_kick < 1.0 / rate {
            kick_phase = 0.0;
        }
        kick_phase += std::f32::consts::TAU * (50.0 + 100.0 * (-since_kick / 0.02).exp()) / rate;
        let kick =
            (-since_kick / 0.15).exp() * kick_phase.sin() + (-since_kick / 0.002).exp() * white;
        let since_snare = (time + 0.5) % 1.0;
        let snare = (-since_snare / 0.08).exp()
            * (0.7 * white + 0.4 * (std::f32::consts::TAU * 180.0 * since_snare).sin());
        let since_hat = time % 0.25;
        let hat = (-since_hat / 0.02).exp() * white;
        *d = 0.5 * kick + 0.5 * snare + 0.2 * hat;
    }
    (voice, drums)
}

fn global_sdr(reference: &[f32], estimate: &[f32]) -> f64 {
    let (mut signal, mut error) = (0.0f64, 0.0f64);
    for (&r, &e) in reference.iter().zip(estimate) {
        signal += f64::from(r) * f64::from(r);
        error += f64::from(r - e) * f64::from(r - e);
    }
    10.0 * (signal / error.max(1e-12)).log10()
}

/// Global SDR (dB) of the vocal and drum stems the embedded default model separates from
/// `voice_and_drums(8.0)` scaled by `gain`, over all but the first second, and of mixture/4.
fn embedded_model_voice_and_drums_sdr(gain: f32) -> [(&'static str, f64, f64); 2] {
    let loaded = load(&ModelChoice::EmbeddedDefault, &LoadOptions::default()).unwrap();
    let sources = loaded.model.spec().sources.clone();
    let config = demix_dsp::EngineConfig {
        compute_slack_hops: 0,
        deadline: demix_dsp::DeadlinePolicy::Wait,
    };
    let mut separator = demix_dsp::Separator::new(loaded.model, config, 44_100, 2).unwrap();
    let latency = separator.latency();
    let (voice, drums) = voice_and_drums(8.0);
    let voice: Vec<f32> = voice.iter().map(|v| v * gain).collect();
    let drums: Vec<f32> = drums.iter().map(|d| d * gain).collect();
    let mix: Vec<f32> = voice.iter().zip(&drums).map(|(v, d)| v + d).collect();
    let len = mix.len();
    let mut padded = mix.clone();
    padded.resize(len + latency, 0.0);
    let mut stems = vec![vec![0.0f32; padded.len()]; sources.len() * 2];
    for start in (0..padded.len()).step_by(4096) {
        let end = (start + 4096).min(padded.len());
        let input = [&padded[start..end], &padded[start..end]];
        let mut output: Vec<&mut [f32]> = stems.iter_mut().map(|s| &mut s[start..end]).collect();
        separator.process(&input, &mut output);
    }
    let quarter: Vec<f32> = mix.iter().map(|x| x / 4.0).collect();
    // Skip the first second: the recurrent state and the context windows start from silence.
    let skip = 44_100;
    [("vocals", &voice), ("drums", &drums)].map(|(name, reference)| {
        let source = sources.iter().position(|s| s == name).unwrap();
        let estimate = &stems[source * 2][latency..latency + len];
        let model = global_sdr(&reference[skip..], &estimate[skip..]);
        let baseline = global_sdr(&reference[skip..], &quarter[skip..]);
        (name, model, baseline)
    })
}

#[test]
fn the_embedded_default_model_separates_a_voice_and_drums_better_than_mixture_over_four() {
    for (name, model, baseline) in embedded_model_voice_and_drums_sdr(1.0) {
        eprintln!("{name}: default model {model:.2} dB, mixture/4 {baseline:.2} dB");
        assert!(
            model > baseline + 1.0,
            "{name}: model {model:.2} dB vs mixture/4 {baseline:.2} dB"
        );
    }
}

#[test]
fn the_embedded_default_model_separates_input_beyond_its_level_range_as_at_the_nearer_edge() {
    // The default model's graph keeps the level its network sees within -44..-17 dBFS RMS
    // (models/MODEL_CARD.md, "input level"): two levels beyond the same edge give the network the
    // same input, so the same separation; a level-dependent network gives two different ones.
    let (voice, drums) = voice_and_drums(8.0);
    let power = voice
        .iter()
        .zip(&drums)
        .map(|(v, d)| f64::from(v + d).powi(2))
        .sum::<f64>()
        / voice.len() as f64;
    let rms_dbfs = 10.0 * power.log10() as f32;
    for levels in [[-10.0f32, 0.0], [-52.0, -60.0]] {
        let [first, second] = levels
            .map(|dbfs| embedded_model_voice_and_drums_sdr(10f32.powf((dbfs - rms_dbfs) / 20.0)));
        for ((name, at_first, _), (_, at_second, _)) in first.iter().zip(&second) {
            eprintln!(
                "{name}: {at_first:.2} dB at {} dBFS RMS, {at_second:.2} dB at {} dBFS RMS",
                levels[0], levels[1]
            );
            assert!(
                (at_first - at_second).abs() < 0.1,
                "{name}: {at_first:.2} dB at {} dBFS RMS, {at_second:.2} dB at {} dBFS RMS",
                levels[0],
                levels[1]
            );
        }
    }
}
