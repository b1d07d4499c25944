//! End-to-end: `demix separate` on bad input, bad models, a missing ONNX Runtime and an
//! unwritable output folder. Each must fail with exit code 1 and a clear message naming the
//! problem, never panic, and leave no stem or temporary file behind.

mod cli_common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Output;

use cli_common::*;

const RATE: u32 = 16_000;
const IDENTITY: &str = "identity_stateful.onnx";

/// Runs `demix separate INPUT -o OUT --model <identity fixture> EXTRA…`.
fn separate(input: &Path, out: &Path, extra: &[&OsStr]) -> Output {
    separate_command(&[input], out, Some(&fixture(IDENTITY)))
        .args(extra)
        .output()
        .expect("demix runs")
}

/// Runs `demix separate INPUT -o OUT --model MODEL`.
fn separate_with_model(input: &Path, out: &Path, model: &Path) -> Output {
    separate_command(&[input], out, Some(model))
        .output()
        .expect("demix runs")
}

/// A valid 16 kHz stereo 16-bit WAV file of `frames` samples.
fn good_wav(dir: &Path, name: &str, frames: usize) -> PathBuf {
    let path = dir.join(name);
    write_wav(&path, RATE, Encoding::Int16, &test_signal(RATE, 2, frames));
    path
}

/// Deterministic pseudo-random bytes.
fn noise_bytes(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9u32;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Writes `bytes` to an input file called `name`, separates it, and checks that the run fails
/// cleanly with each of `expected` in its message.
fn assert_input_rejected(name: &str, bytes: &[u8], expected: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join(name);
    std::fs::write(&input, bytes).unwrap();
    let out = dir.path().join("out");
    let output = separate(&input, &out, &[]);
    assert_clean_failure(&output, expected, &out);
}

/// The bytes of a valid WAV file of `frames` samples (see [`good_wav`]).
fn good_wav_bytes(frames: usize) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::read(good_wav(dir.path(), "good.wav", frames)).unwrap()
}

#[test]
fn random_bytes_named_wav_are_rejected() {
    assert_input_rejected(
        "noise.wav",
        &noise_bytes(50_000),
        &["noise.wav", "not an audio file"],
    );
}

#[test]
fn corrupt_flac_data_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let flac = dir.path().join("good.flac");
    write_flac(&flac, RATE, &test_signal(RATE, 2, 16 * FLAC_BLOCK));
    let mut bytes = std::fs::read(&flac).unwrap();
    let middle = bytes.len() / 2;
    for (b, noise) in bytes[middle..middle + 4_000]
        .iter_mut()
        .zip(noise_bytes(4_000))
    {
        *b ^= noise | 1;
    }
    assert_input_rejected("damaged.flac", &bytes, &["damaged.flac", "damaged"]);
}

#[test]
fn truncated_wav_is_rejected() {
    let bytes = good_wav_bytes(40_000);
    assert_input_rejected(
        "cut.wav",
        &bytes[..bytes.len() * 2 / 3],
        &["cut.wav", "truncated"],
    );
}

#[test]
fn empty_file_is_rejected() {
    assert_input_rejected("empty.wav", &[], &["empty.wav", "empty"]);
}

#[test]
fn unsupported_wav_codec_is_rejected() {
    let mut bytes = good_wav_bytes(1_000);
    // The format tag sits right after "fmt " and the chunk size: bytes 20..22.
    assert_eq!(&bytes[12..16], b"fmt ");
    bytes[20..22].copy_from_slice(&0x1234u16.to_le_bytes());
    assert_input_rejected("odd.wav", &bytes, &["odd.wav", "cannot decode"]);
}

#[test]
fn text_file_named_mp3_is_rejected() {
    let text = "Shopping list:\n- milk\n- strings for the guitar\n".repeat(40);
    assert_input_rejected(
        "notes.mp3",
        text.as_bytes(),
        &["notes.mp3", "not an audio file"],
    );
}

#[test]
fn missing_input_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("missing.wav");
    let out = dir.path().join("out");
    let output = separate(&input, &out, &[]);
    assert_clean_failure(&output, &["missing.wav", "cannot open"], &out);
}

#[test]
fn one_bad_input_stops_the_whole_batch_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let good = good_wav(dir.path(), "good.wav", 5_000);
    let bad = dir.path().join("bad.wav");
    std::fs::File::create(&bad).unwrap();
    let out = dir.path().join("out");
    let output = separate_command(&[&good, &bad], &out, Some(&fixture(IDENTITY)))
        .output()
        .unwrap();
    assert_clean_failure(&output, &["bad.wav"], &out);
}

#[test]
fn model_contradicting_its_manifest_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let input = good_wav(dir.path(), "song.wav", 5_000);
    let out = dir.path().join("out");
    let model = fixture("bad_bins.onnx");
    let output = separate_with_model(&input, &out, &model);
    // The manifest promises 33 bins, the graph's input `mix` takes 30.
    assert_clean_failure(&output, &["mix", "33", "30"], &out);
}

#[test]
fn missing_model_file_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let input = good_wav(dir.path(), "song.wav", 5_000);
    let out = dir.path().join("out");
    let model = dir.path().join("nowhere.onnx");
    let output = separate_with_model(&input, &out, &model);
    assert_clean_failure(&output, &["nowhere.onnx"], &out);
}

#[test]
fn missing_onnx_runtime_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let input = good_wav(dir.path(), "song.wav", 5_000);
    let out = dir.path().join("out");
    let output = separate(
        &input,
        &out,
        &[
            OsStr::new("--ort-library"),
            OsStr::new("/nonexistent/libonnxruntime.so"),
        ],
    );
    assert_clean_failure(
        &output,
        &["ONNX Runtime", "/nonexistent/libonnxruntime.so"],
        &out,
    );
}

#[test]
fn garbage_onnx_runtime_libraries_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let input = good_wav(dir.path(), "song.wav", 5_000);
    let out = dir.path().join("out");
    let garbage = dir.path().join("libonnxruntime.so");
    std::fs::write(&garbage, noise_bytes(4096)).unwrap();
    let output = separate_command(&[&input], &out, Some(&fixture(IDENTITY)))
        .env("ORT_DYLIB_PATH", &garbage)
        .arg("--ort-library")
        .arg(&garbage)
        .output()
        .unwrap();
    assert_clean_failure(&output, &["ONNX Runtime", "libonnxruntime.so"], &out);
}

#[test]
fn unusable_ort_dylib_path_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let input = good_wav(dir.path(), "song.wav", 5_000);
    let out = dir.path().join("out");
    let garbage = dir.path().join("libonnxruntime.so");
    std::fs::write(&garbage, noise_bytes(4096)).unwrap();
    // Without --ort-library the search goes on to the next places and finds the real library.
    let output = separate_command(&[&input], &out, Some(&fixture(IDENTITY)))
        .env("ORT_DYLIB_PATH", &garbage)
        .output()
        .unwrap();
    assert_success(&output);
    let text = stderr(&output);
    assert!(
        text.contains("warning: ORT_DYLIB_PATH=") && text.contains(&garbage.display().to_string()),
        "{text}"
    );
}

#[test]
fn unwritable_output_folder_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let input = good_wav(dir.path(), "song.wav", 5_000);
    // A folder below a regular file cannot be created, even by root.
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, b"not a folder").unwrap();
    let out = blocker.join("out");
    let output = separate(&input, &out, &[]);
    assert_clean_failure(&output, &["cannot create", "a-file"], &out);
    assert_eq!(files_under(dir.path()), [blocker.clone(), input]);
    assert_eq!(std::fs::read(&blocker).unwrap(), b"not a folder");
}

#[test]
fn track_folder_that_is_a_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let input = good_wav(dir.path(), "song.wav", 5_000);
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("song"), b"in the way").unwrap();
    let output = separate(&input, &out, &[]);
    assert_clean_failure(&output, &["not a folder"], &out);
}

#[test]
fn usage_errors_exit_with_code_2() {
    let output = demix().arg("separate").output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let output = demix()
        .args(["separate", "x.wav", "--format", "mp3"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("wav16"), "{}", stderr(&output));
}
