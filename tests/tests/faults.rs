//! End-to-end fault injection for `demix separate`: the output disk fills up or is read-only,
//! the bounce is interrupted by SIGTERM or SIGINT, the model file is garbage; plus regression
//! tests for the crashes the fuzz targets in `fuzz/` found. In every case Demix must stop with a
//! clear message, leave no stem (final or temporary) behind and never touch the input.
//!
//! The disk tests mount a small tmpfs, which needs root (or CAP_SYS_ADMIN): they fail, rather
//! than skip, where that is not available, because then they would prove nothing.

mod cli_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use cli_common::*;

const IDENTITY: &str = "identity_stateful.onnx";
const RATE: u32 = 16_000;

/// A tmpfs of `size` bytes mounted on a fresh temporary folder; unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().expect("temporary mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("the mount command runs");
        assert!(
            status.success(),
            "cannot mount a tmpfs on {} ({status}): the disk fault tests need root",
            dir.path().display()
        );
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount_read_only(&self) {
        let status = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(self.path())
            .status()
            .expect("the mount command runs");
        assert!(status.success(), "cannot remount the tmpfs read-only");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.path()).status();
    }
}

/// `demix separate INPUT -o OUT --model <identity fixture> --format f32`.
fn separate_identity(input: &Path, out: &Path) -> Command {
    let mut command = separate_command(&[input], out, Some(&fixture(IDENTITY)));
    command.args(["--format", "f32"]);
    command
}

/// A 16 kHz stereo 16-bit WAV file of `seconds` and its bytes.
fn input_wav(dir: &Path, name: &str, seconds: f32) -> (PathBuf, Vec<u8>) {
    let path = dir.join(name);
    let frames = (seconds * RATE as f32) as usize;
    write_wav(&path, RATE, Encoding::Int16, &test_signal(RATE, 2, frames));
    let bytes = std::fs::read(&path).unwrap();
    (path, bytes)
}

#[test]
fn full_output_disk_is_a_clear_error_and_leaves_no_stem() {
    let dir = tempfile::tempdir().unwrap();
    let (input, before) = input_wav(dir.path(), "song.wav", 5.0);
    // Each f32 stem needs 640 KB; the disk holds 64 KiB.
    let disk = Tmpfs::mount("64k");
    let out = disk.path().join("out");
    let output = separate_identity(&input, &out).output().unwrap();
    assert_clean_failure(&output, &["no space left"], &out);
    assert_eq!(std::fs::read(&input).unwrap(), before, "input changed");
}

#[test]
fn read_only_output_disk_is_a_clear_error_and_leaves_no_stem() {
    let dir = tempfile::tempdir().unwrap();
    let (input, before) = input_wav(dir.path(), "song.wav", 2.0);
    let disk = Tmpfs::mount("16m");
    let out = disk.path().join("out");
    std::fs::create_dir(&out).unwrap();
    disk.remount_read_only();
    let output = separate_identity(&input, &out).output().unwrap();
    assert_clean_failure(&output, &["read-only"], &out);
    assert_eq!(std::fs::read(&input).unwrap(), before, "input changed");
}

/// Starts a bounce of a 2-minute input, sends `signal` once its first temporary stem exists,
/// and checks that demix stops, says so, and leaves neither a stem nor a temporary file.
fn interrupt_bounce(signal: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (input, before) = input_wav(dir.path(), "long.wav", 120.0);
    let out = dir.path().join("out");
    let mut child = separate_identity(&input, &out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let track = out.join("long");
    loop {
        let partial = names_in_if_any(&track)
            .iter()
            .any(|n| n.ends_with(".partial"));
        if partial {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "demix finished before it could be interrupted"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no temporary stem appeared within 2 minutes"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = Command::new("kill")
        .args(["-s", signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -s {signal} failed");
    let output: Output = child.wait_with_output().unwrap();
    let text = stderr(&output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "exit status; stderr:\n{text}"
    );
    assert!(
        text.contains("interrupted"),
        "no interruption message:\n{text}"
    );
    let left = files_under(&out);
    assert!(left.is_empty(), "files left after {signal}: {left:?}");
    assert_eq!(std::fs::read(&input).unwrap(), before, "input changed");
}

/// Names in `dir`, or none while it does not exist yet.
fn names_in_if_any(dir: &Path) -> Vec<String> {
    if dir.is_dir() {
        names_in(dir)
    } else {
        Vec::new()
    }
}

#[test]
fn sigterm_during_a_bounce_leaves_no_stem() {
    interrupt_bounce("TERM");
}

#[test]
fn sigint_during_a_bounce_leaves_no_stem() {
    interrupt_bounce("INT");
}

#[test]
fn garbage_and_truncated_model_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (input, before) = input_wav(dir.path(), "song.wav", 0.5);
    let good = std::fs::read(fixture(IDENTITY)).unwrap();
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let cases: [(&str, &[u8]); 4] = [
        ("garbage.onnx", &noise),
        ("truncated.onnx", &good[..good.len() / 2]),
        ("empty.onnx", &[]),
        ("text.onnx", b"this is not a model\n"),
    ];
    for (name, bytes) in cases {
        let model = dir.path().join(name);
        std::fs::write(&model, bytes).unwrap();
        let out = dir.path().join(format!("out-{name}"));
        let output = separate_command(&[&input], &out, Some(&model))
            .output()
            .unwrap();
        assert_clean_failure(&output, &[name], &out);
    }
    assert_eq!(std::fs::read(&input).unwrap(), before, "input changed");
}

/// Found by `cargo fuzz run decode_audio`: 34 bytes of ADTS (raw AAC) framing that make
/// symphonia's ADTS reader panic (`step_by(0)`) while probing.
const CRAFTED_ADTS: [u8; 34] = [
    0x20, 0x10, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x40, 0x20, 0x1d, 0x01, 0x00, 0x40, 0x20,
    0x1d, 0xff, 0xf1, 0x00, 0x00, 0xd9, 0x0c, 0x20, 0x1d, 0xff, 0xf1, 0x00, 0x00, 0xb2, 0x00, 0x00,
    0x03, 0x00,
];

#[test]
fn crafted_adts_file_is_refused_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("crafted.aac");
    std::fs::write(&input, CRAFTED_ADTS).unwrap();
    let out = dir.path().join("out");
    let output = separate_identity(&input, &out).output().unwrap();
    assert_clean_failure(&output, &["crafted.aac"], &out);
}

/// Found by `cargo fuzz run decode_audio`: a FLAC header whose PICTURE block declares 3.9 GB
/// of image data. Symphonia allocates that much (zeroed, so untouched pages cost nothing where
/// memory is overcommitted) before finding the file too short.
const FLAC_HUGE_PICTURE: [u8; 41] = [
    102, 76, 97, 67, 6, 0, 128, 187, 0, 0, 0, 202, 235, 8, 0, 12, 0, 16, 0, 224, 255, 255, 0, 135,
    20, 180, 26, 43, 31, 104, 4, 116, 225, 69, 247, 79, 29, 255, 250, 224, 12,
];

#[test]
fn flac_declaring_a_huge_picture_is_refused_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("picture.flac");
    std::fs::write(&input, FLAC_HUGE_PICTURE).unwrap();
    let out = dir.path().join("out");
    let output = separate_identity(&input, &out).output().unwrap();
    assert_clean_failure(&output, &["picture.flac", "truncated or damaged"], &out);
}

#[test]
fn huge_finite_samples_at_a_resampled_rate_do_not_panic() {
    use demix_dsp::reference_models::{band_split, mask_spec};
    use demix_dsp::{DeadlinePolicy, EngineConfig, Separator};
    // Found by `cargo fuzz run engine`: values near f32::MAX overflowed the resampler's FFT.
    let config = EngineConfig {
        compute_slack_hops: 2,
        deadline: DeadlinePolicy::Wait,
    };
    for rate in [8_000, 48_000, 192_000] {
        let model = Box::new(band_split(mask_spec(&["a", "b"], 256, 64, 0)));
        let mut separator = Separator::with_max_block(model, config, rate, 2, 1024).unwrap();
        let input: Vec<f32> = (0..1024)
            .map(|i| if i % 2 == 0 { f32::MAX } else { -f32::MAX })
            .collect();
        let mut outputs = vec![vec![0.0f32; input.len()]; 4];
        for _ in 0..8 {
            let mut outs: Vec<&mut [f32]> = outputs.iter_mut().map(|o| &mut o[..]).collect();
            separator.process(&[&input, &input], &mut outs);
            assert!(
                outputs.iter().flatten().all(|x| x.is_finite()),
                "{rate} Hz: non-finite output"
            );
        }
    }
}

#[test]
fn float_wav_with_huge_samples_is_separated_without_a_panic() {
    // The same resampler overflow through the CLI: a float WAV may hold any finite value.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("huge.wav");
    let rate = 48_000;
    let huge: Vec<f32> = (0..rate as usize)
        .map(|i| if i % 2 == 0 { f32::MAX } else { -3.0e38 })
        .collect();
    write_wav(&input, rate, Encoding::Float32, &[huge.clone(), huge]);
    let out = dir.path().join("out");
    let output = separate_identity(&input, &out).output().unwrap();
    assert_success(&output);
    for stem in files_under(&out) {
        let wav = read_wav(&stem);
        assert_eq!(wav.frames(), rate as usize, "{stem:?}: length");
        assert!(
            wav.channels.iter().flatten().all(|x| x.is_finite()),
            "{stem:?}: non-finite samples"
        );
    }
}
