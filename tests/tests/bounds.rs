//! End-to-end bounds of `demix separate`: extreme sample rates, mono to 6-channel inputs, and
//! memory that does not grow with the length of the input (streaming read and write).
//!
//! The constant-memory check in CI compares 10 s with 3 min of input through the identity
//! fixture model. The full check the issue asks for — 10 s vs 60 min through the default model
//! — takes several minutes and 640 MB of input, so it is `#[ignore]`d; run it with
//! `cargo test --release -p demix-e2e --test bounds -- --ignored --nocapture`.

mod cli_common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use cli_common::*;

const IDENTITY: &str = "identity_stateful.onnx";

/// Adds up the stems of one track, channel by channel.
fn stem_sum(track: &Path, names: &[&str]) -> Vec<Vec<f32>> {
    let mut sum: Vec<Vec<f32>> = Vec::new();
    for name in names {
        let stem = read_wav(&track.join(name));
        if sum.is_empty() {
            sum = stem.channels.iter().map(|c| vec![0.0; c.len()]).collect();
        }
        for (acc, channel) in sum.iter_mut().zip(&stem.channels) {
            assert_eq!(acc.len(), channel.len(), "{name}: length differs");
            for (a, x) in acc.iter_mut().zip(channel) {
                *a += x;
            }
        }
    }
    sum
}

/// Channel and frame where two planar signals differ most, for failure messages.
fn worst_frame(a: &[Vec<f32>], b: &[Vec<f32>]) -> (usize, usize, f32, f32) {
    let mut worst = (0, 0, 0.0, 0.0);
    let mut most = -1.0f32;
    for (ch, (x, y)) in a.iter().zip(b).enumerate() {
        for (i, (p, q)) in x.iter().zip(y).enumerate() {
            if (p - q).abs() > most {
                most = (p - q).abs();
                worst = (ch, i, *p, *q);
            }
        }
    }
    worst
}

/// Writes 1.5 s (and a few samples) of stereo float test signal at `rate`.
fn rate_input(dir: &Path, rate: u32) -> (String, std::path::PathBuf, Vec<Vec<f32>>) {
    let name = format!("r{rate}");
    let path = dir.join(format!("{name}.wav"));
    let frames = rate as usize * 3 / 2 + 17;
    let input = write_wav(
        &path,
        rate,
        Encoding::Float32,
        &test_signal(rate, 2, frames),
    );
    (name, path, input)
}

#[test]
fn rates_from_8_to_192_khz_keep_length_and_stems_sum_to_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    for rate in [8_000, 22_050, 192_000] {
        let (name, path, input) = rate_input(dir.path(), rate);
        let output = separate_command(&[&path], &out, None)
            .args(["--format", "f32"])
            .output()
            .unwrap();
        assert_success(&output);
        let track = out.join(&name);
        let stems = names_in(&track);
        assert!(stems.len() >= 2, "{name}: stems {stems:?}");
        for stem in &stems {
            let wav = read_wav(&track.join(stem));
            assert_eq!(wav.spec.sample_rate, rate, "{name}/{stem}: rate");
            assert_eq!(wav.spec.channels, 2, "{name}/{stem}: channels");
            assert_eq!(wav.frames(), input[0].len(), "{name}/{stem}: length");
        }
        let stems: Vec<&str> = stems.iter().map(String::as_str).collect();
        let sum = stem_sum(&track, &stems);
        let err = max_abs_diff(&sum, &input);
        // Up to the resamplers' ripple (the model runs at 44.1 kHz).
        assert!(
            err < 1e-3,
            "{name}: stems sum to the input up to {err}, worst at {:?}",
            worst_frame(&sum, &input)
        );
    }
}

#[test]
fn a_16_khz_model_passes_its_band_from_8_to_192_khz_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    for rate in [8_000, 22_050, 192_000] {
        let (name, path, input) = rate_input(dir.path(), rate);
        let output = separate_command(&[&path], &out, Some(&fixture(IDENTITY)))
            .args(["--format", "f32"])
            .output()
            .unwrap();
        assert_success(&output);
        let track = out.join(&name);
        for stem in ["target.wav", "rest.wav"] {
            let wav = read_wav(&track.join(stem));
            assert_eq!(wav.spec.sample_rate, rate, "{name}/{stem}: rate");
            assert_eq!(wav.frames(), input[0].len(), "{name}/{stem}: length");
        }
        // The identity model passes everything to `target`; the content (below 3.3 kHz) lies
        // well inside the 16 kHz model's band, so it must survive both resamplers.
        let sum = stem_sum(&track, &["target.wav", "rest.wav"]);
        let err = max_abs_diff(&sum, &input);
        assert!(
            err < 5e-3,
            "{name}: stems sum to the input up to {err}, worst at {:?}",
            worst_frame(&sum, &input)
        );
    }
}

#[test]
fn mono_stereo_and_six_channel_inputs_are_handled() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let rate = 16_000;
    let frames = 20_000;
    let tone = test_signal(rate, 1, frames).remove(0);
    for channels in [1usize, 2, 6] {
        let name = format!("ch{channels}");
        let path = dir.path().join(format!("{name}.wav"));
        // Every channel carries the same signal, so any normalised downmix returns it.
        let input = write_wav(
            &path,
            rate,
            Encoding::Float32,
            &vec![tone.clone(); channels],
        );
        let output = separate_command(&[&path], &out, Some(&fixture(IDENTITY)))
            .args(["--format", "f32"])
            .output()
            .unwrap();
        assert_success(&output);
        let text = stderr(&output);
        let expected_channels = channels.min(2);
        if channels > 2 {
            assert!(
                text.contains("warning:")
                    && text.contains("6 channels")
                    && text.contains("downmixed"),
                "no downmix warning:\n{text}"
            );
        } else {
            assert!(!text.contains("downmixed"), "unexpected warning:\n{text}");
        }
        let track = out.join(&name);
        let target = read_wav(&track.join("target.wav"));
        assert_eq!(target.spec.channels as usize, expected_channels, "{name}");
        assert_eq!(target.frames(), frames, "{name}: length");
        let err = max_abs_diff(
            &stem_sum(&track, &["target.wav", "rest.wav"]),
            &input[..expected_channels],
        );
        assert!(err < 1e-4, "{name}: stems sum to the input up to {err}");
    }
}

/// Peak resident memory of a `demix` run, in bytes, read from `/proc/<pid>/status` (`VmHWM`,
/// the high-water mark) until the process exits; the run must succeed.
#[cfg(target_os = "linux")]
fn peak_rss(mut command: Command, log: &Path) -> u64 {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    let status = loop {
        if let Ok(text) = std::fs::read_to_string(&status_file) {
            let hwm = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok());
            peak_kib = peak_kib.max(hwm.unwrap_or(0));
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(status.success(), "demix failed ({status}):\n{text}");
    peak_kib * 1024
}

/// Writes `seconds` of 44.1 kHz stereo 16-bit test signal sample by sample, so that even an
/// hour never sits in the test's memory.
fn write_long_wav(path: &Path, seconds: usize) {
    let rate = 44_100u32;
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).unwrap();
    // One second of the test signal, repeated: its tones are whole cycles per second.
    let second = test_signal(rate, 2, rate as usize);
    for _ in 0..seconds {
        for i in 0..rate as usize {
            for channel in &second {
                writer
                    .write_sample((channel[i] * 32_767.0).round() as i16)
                    .unwrap();
            }
        }
    }
    writer.finalize().unwrap();
}

/// Peak RSS of separating `short_s` and `long_s` seconds of input with `model` (the default
/// model when `None`), in bytes.
#[cfg(target_os = "linux")]
fn rss_short_and_long(model: Option<&Path>, short_s: usize, long_s: usize) -> (u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let mut peaks = Vec::new();
    for seconds in [short_s, long_s] {
        let input = dir.path().join(format!("len{seconds}.wav"));
        write_long_wav(&input, seconds);
        let out = dir.path().join(format!("out{seconds}"));
        let mut command = separate_command(&[&input], &out, model);
        command.args(["--format", "wav16"]);
        peaks.push(peak_rss(command, &dir.path().join("log.txt")));
        let stems = files_under(&out);
        assert!(!stems.is_empty(), "no stems written");
        for stem in stems {
            let wav = hound::WavReader::open(&stem).unwrap();
            assert_eq!(
                wav.duration() as usize,
                seconds * 44_100,
                "{stem:?}: length"
            );
        }
        std::fs::remove_dir_all(&out).unwrap();
        std::fs::remove_file(&input).unwrap();
    }
    (peaks[0], peaks[1])
}

const MB: f64 = 1e6;

#[cfg(target_os = "linux")]
#[test]
fn memory_does_not_grow_from_10_s_to_3_min() {
    let (short, long) = rss_short_and_long(Some(&fixture(IDENTITY)), 10, 180);
    println!(
        "peak RSS: 10 s {:.1} MB, 3 min {:.1} MB",
        short as f64 / MB,
        long as f64 / MB
    );
    // Holding the stems of the extra 170 s would take 60 MB per stem in f32.
    let grown = long.saturating_sub(short) as f64 / MB;
    assert!(grown < 20.0, "peak RSS grew by {grown:.1} MB");
}

#[cfg(target_os = "linux")]
#[test]
#[ignore = "separates an hour of audio with the default model: several minutes in release mode"]
fn memory_does_not_grow_from_10_s_to_60_min_with_the_default_model() {
    let (short, long) = rss_short_and_long(None, 10, 3_600);
    println!(
        "peak RSS with the default model: 10 s {:.1} MB, 60 min {:.1} MB",
        short as f64 / MB,
        long as f64 / MB
    );
    let grown = long.saturating_sub(short) as f64 / MB;
    assert!(grown < 50.0, "peak RSS grew by {grown:.1} MB");
}
