//! Helpers shared by the end-to-end tests of the `demix` command line: building and running the
//! real binary, writing input files, reading stems back, and checking that a failed run left
//! nothing behind. Each test file uses a subset of them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

/// A model fixture from `models/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    workspace().join("models").join("fixtures").join(name)
}

/// The `demix` binary of the same profile as this test, built (once per test process) with
/// `cargo build -p demix` so it is never stale.
pub fn demix_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        // This test runs from <target>/<profile dir>/deps/; "debug" is the dev profile's dir.
        let profile = match test_profile_dir().file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev".to_string(),
            Some(other) => other.to_string(),
        };
        build_demix(&profile)
    })
}

/// The optimised `demix` binary (`--release` whatever this test's profile), built once per test
/// process; for tests that need real-time speed.
pub fn demix_release_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| build_demix("release"))
}

/// `<target>/<profile dir>` of the running test executable.
fn test_profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.ancestors()
        .nth(2)
        .expect("test executable lives in <target>/<profile>/deps")
        .to_path_buf()
}

/// Builds `demix` with `cargo build -p demix --profile PROFILE` into this test's target dir and
/// returns the binary's path.
fn build_demix(profile: &str) -> PathBuf {
    let target_dir = test_profile_dir()
        .parent()
        .expect("profile dir is inside the target dir")
        .to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace())
        .args(["build", "--quiet", "-p", "demix", "--bin", "demix"])
        .args(["--profile", profile])
        .arg("--target-dir")
        .arg(&target_dir)
        .status()
        .expect("cargo runs");
    assert!(
        status.success(),
        "cargo build -p demix --profile {profile} failed"
    );
    let profile_dir = if profile == "dev" { "debug" } else { profile };
    let binary = target_dir
        .join(profile_dir)
        .join(format!("demix{}", std::env::consts::EXE_SUFFIX));
    assert!(binary.exists(), "{} was not built", binary.display());
    binary
}

/// A `demix` command ready to run.
pub fn demix() -> Command {
    Command::new(demix_binary())
}

/// `demix separate INPUTS… -o OUT [--model MODEL]`, ready for more arguments (`--format`,
/// environment) and to run.
pub fn separate_command(inputs: &[&Path], out: &Path, model: Option<&Path>) -> Command {
    separate_command_of(demix_binary(), inputs, out, model)
}

/// [`separate_command`] for a given `demix` binary (for example [`demix_release_binary`]).
pub fn separate_command_of(
    binary: &Path,
    inputs: &[&Path],
    out: &Path,
    model: Option<&Path>,
) -> Command {
    let mut command = Command::new(binary);
    command.arg("separate").args(inputs).arg("-o").arg(out);
    if let Some(model) = model {
        command.arg("--model").arg(model);
    }
    command
}

/// Runs `demix` with `args` and collects its output.
pub fn run<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    demix().args(args).output().expect("demix runs")
}

/// How an input file stores its samples.
#[derive(Debug, Clone, Copy)]
pub enum Encoding {
    Int16,
    Int24,
    Float32,
}

/// A deterministic test signal: a few tones well below 4 kHz plus their sum's slow envelope,
/// peaking under 0.6, faded in and out over 20 ms so that resampling has no edge to smear.
pub fn test_signal(rate: u32, channels: usize, frames: usize) -> Vec<Vec<f32>> {
    let fade = (rate as usize / 50).min(frames / 2).max(1);
    (0..channels)
        .map(|ch| {
            (0..frames)
                .map(|i| {
                    let t = i as f32 / rate as f32;
                    let tone = |f: f32| (std::f32::consts::TAU * f * t).sin();
                    let x = 0.3 * tone(220.0 + 110.0 * ch as f32)
                        + 0.15 * tone(1_250.0)
                        + 0.1 * tone(3_100.0 - 200.0 * ch as f32) * tone(0.7);
                    let edge = (i.min(frames - 1 - i) as f32 / fade as f32).min(1.0);
                    x * edge
                })
                .collect()
        })
        .collect()
}

/// Writes `signal` (planar) as a WAV file and returns the samples as a decoder sees them (after
/// quantisation to the file's integer format).
pub fn write_wav(path: &Path, rate: u32, encoding: Encoding, signal: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let (bits, format) = match encoding {
        Encoding::Int16 => (16, hound::SampleFormat::Int),
        Encoding::Int24 => (24, hound::SampleFormat::Int),
        Encoding::Float32 => (32, hound::SampleFormat::Float),
    };
    let spec = hound::WavSpec {
        channels: signal.len() as u16,
        sample_rate: rate,
        bits_per_sample: bits,
        sample_format: format,
    };
    let mut writer = hound::WavWriter::create(path, spec).expect("create wav");
    let mut stored = vec![Vec::new(); signal.len()];
    for i in 0..signal[0].len() {
        for (ch, samples) in signal.iter().enumerate() {
            let x = samples[i];
            let value = match encoding {
                Encoding::Int16 => {
                    let v = (x * 32_767.0).round() as i16;
                    writer.write_sample(v).unwrap();
                    f32::from(v) / 32_768.0
                }
                Encoding::Int24 => {
                    let v = (x * 8_388_607.0).round() as i32;
                    writer.write_sample(v).unwrap();
                    v as f32 / 8_388_608.0
                }
                Encoding::Float32 => {
                    writer.write_sample(x).unwrap();
                    x
                }
            };
            stored[ch].push(value);
        }
    }
    writer.finalize().expect("finalize wav");
    stored
}

/// Frames per FLAC block written by [`write_flac`].
pub const FLAC_BLOCK: usize = 4096;

/// Writes `signal` (planar) as a 16-bit FLAC file and returns the samples as a decoder sees
/// them. The length must be a whole number of [`FLAC_BLOCK`]s: flacenc records a shorter final
/// block as the stream's minimum block size, which symphonia then reads as a variable-block
/// stream and refuses.
pub fn write_flac(path: &Path, rate: u32, signal: &[Vec<f32>]) -> Vec<Vec<f32>> {
    use flacenc::component::BitRepr;
    use flacenc::error::Verify;
    assert_eq!(
        signal[0].len() % FLAC_BLOCK,
        0,
        "FLAC test files hold whole blocks"
    );
    let channels = signal.len();
    let mut interleaved = Vec::new();
    let mut stored = vec![Vec::new(); channels];
    for i in 0..signal[0].len() {
        for (ch, samples) in signal.iter().enumerate() {
            let v = (samples[i] * 32_767.0).round() as i32;
            interleaved.push(v);
            stored[ch].push(v as f32 / 32_768.0);
        }
    }
    let config = flacenc::config::Encoder::default()
        .into_verified()
        .expect("default FLAC config");
    let source =
        flacenc::source::MemSource::from_samples(&interleaved, channels, 16, rate as usize);
    let stream =
        flacenc::encode_with_fixed_block_size(&config, source, FLAC_BLOCK).expect("FLAC encoding");
    let mut sink = flacenc::bitsink::ByteSink::new();
    stream.write(&mut sink).expect("FLAC serialisation");
    std::fs::write(path, sink.as_slice()).expect("write flac");
    stored
}

/// A WAV file read back: its spec and planar samples as floats (integers scaled to ±1).
pub struct Wav {
    pub spec: hound::WavSpec,
    pub channels: Vec<Vec<f32>>,
}

impl Wav {
    pub fn frames(&self) -> usize {
        self.channels.first().map_or(0, Vec::len)
    }
}

/// Reads a WAV file written by `demix`.
pub fn read_wav(path: &Path) -> Wav {
    let mut reader = hound::WavReader::open(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let spec = reader.spec();
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader.samples::<f32>().map(|s| s.unwrap()).collect(),
        hound::SampleFormat::Int => {
            let scale = (1u32 << (spec.bits_per_sample - 1)) as f32;
            reader
                .samples::<i32>()
                .map(|s| s.unwrap() as f32 / scale)
                .collect()
        }
    };
    let n = spec.channels as usize;
    let channels = (0..n)
        .map(|ch| interleaved.iter().skip(ch).step_by(n).copied().collect())
        .collect();
    Wav { spec, channels }
}

/// Largest absolute difference between two planar signals (which must have the same shape).
pub fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len(), "channel counts differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            assert_eq!(x.len(), y.len(), "lengths differ");
            x.iter()
                .zip(y)
                .fold(0.0f32, |m, (p, q)| m.max((p - q).abs()))
        })
        .fold(0.0, f32::max)
}

/// Every file (not folder) below `dir`, recursively; empty when `dir` does not exist.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Names of the files directly in `dir`, sorted.
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Text of a run's stderr.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts a run succeeded, showing its stderr otherwise.
pub fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "demix failed ({}):\n{}",
        output.status,
        stderr(output)
    );
}

/// Asserts a run failed cleanly: exit code 1, an `error:` message on stderr containing every
/// one of `needles` (case-insensitive), no panic, and no stem or temporary file under `out`.
pub fn assert_clean_failure(output: &Output, needles: &[&str], out: &Path) {
    let text = stderr(output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "exit status; stderr:\n{text}"
    );
    assert!(text.contains("error:"), "no error message:\n{text}");
    assert!(!text.contains("panicked"), "demix panicked:\n{text}");
    let lower = text.to_lowercase();
    for needle in needles {
        assert!(
            lower.contains(&needle.to_lowercase()),
            "stderr does not mention '{needle}':\n{text}"
        );
    }
    let left: Vec<PathBuf> = files_under(out)
        .into_iter()
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.ends_with(".wav") || name.contains(".partial")
        })
        .collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
}
