//! `cargo xtask demo`: the main job on a fresh machine. Installs what is missing, builds `demix`,
//! writes the generated demo song and separates it with the embedded default model.

use crate::{apt, clip, ort, workspace};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// File stem of the generated song; `demix separate` names the stem folder after it.
const SONG_NAME: &str = "demo-song";

/// Runs the demo and prints where the stems are.
pub fn run() -> Result<()> {
    let target_dir = workspace::target_dir();
    let demo_dir = target_dir.join("demo");
    const STEPS: usize = 5;

    workspace::step(1, STEPS, "System packages");
    apt::ensure(apt::BUILD_PACKAGES)?;

    workspace::step(2, STEPS, "ONNX Runtime");
    let runtime = ort::provision(&target_dir)?;

    workspace::step(3, STEPS, "Demo song");
    let song_path = write_song(&demo_dir)?;

    workspace::step(4, STEPS, "Building demix (release)");
    workspace::run(workspace::cargo().args(["build", "--release", "-p", "demix"]))?;

    workspace::step(5, STEPS, "Separating with the built-in model");
    let stems_dir = demo_dir.join("stems");
    workspace::run(
        std::process::Command::new(target_dir.join("release").join("demix"))
            .arg("separate")
            .arg(&song_path)
            .arg("--output")
            .arg(&stems_dir)
            .arg("--force")
            .env("ORT_DYLIB_PATH", &runtime),
    )?;

    let track_dir = stems_dir.join(SONG_NAME);
    let stems = wav_files(&track_dir)?;
    if stems.is_empty() {
        anyhow::bail!(
            "demix finished but wrote no stems to {}",
            track_dir.display()
        );
    }
    let reference_dir = demo_dir.join("reference");
    println!("\nDemo done.");
    println!("  input:  {}", song_path.display());
    println!("  stems:  {}", track_dir.display());
    for stem in &stems {
        let reference = reference_dir.join(stem.file_name().unwrap_or_default());
        match (reference.is_file(), sdr_db(&reference, stem)) {
            (true, Ok(sdr)) => println!(
                "          {}  (SDR {sdr:.1} dB against the part the song was made of)",
                stem.display()
            ),
            (true, Err(err)) => println!("          {}  (not scored: {err:#})", stem.display()),
            (false, _) => println!("          {}", stem.display()),
        }
    }
    println!(
        "  the parts the song was made of: {}",
        reference_dir.display()
    );
    Ok(())
}

/// Signal-to-distortion ratio of the WAV file `estimate` against the WAV file `reference`, in
/// dB, over the frames both have.
fn sdr_db(reference: &Path, estimate: &Path) -> Result<f64> {
    let reference = read_wav(reference)?;
    let estimate = read_wav(estimate)?;
    let (signal, error) =
        reference
            .iter()
            .zip(&estimate)
            .fold((0.0, 0.0), |(signal, error), (&r, &e)| {
                let (r, e) = (f64::from(r), f64::from(e));
                (signal + r * r, error + (r - e) * (r - e))
            });
    Ok(10.0 * ((signal + 1e-12) / (error + 1e-12)).log10())
}

/// All samples of a WAV file (interleaved), as floats in −1..1.
fn read_wav(path: &Path) -> Result<Vec<f32>> {
    let reader = hound::WavReader::open(path)
        .with_context(|| format!("could not read {}", path.display()))?;
    let spec = reader.spec();
    let samples: Result<Vec<f32>, _> = match spec.sample_format {
        hound::SampleFormat::Float => reader.into_samples::<f32>().collect(),
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            reader
                .into_samples::<i32>()
                .map(|sample| sample.map(|sample| sample as f32 * scale))
                .collect()
        }
    };
    samples.with_context(|| format!("could not read {}", path.display()))
}

/// Writes the demo song to `<demo_dir>/demo-song.wav` and its parts to `<demo_dir>/reference/`.
fn write_song(demo_dir: &Path) -> Result<PathBuf> {
    let song = clip::render();
    let song_path = demo_dir.join(format!("{SONG_NAME}.wav"));
    clip::write_wav(&song_path, &song.mix)?;
    let reference = demo_dir.join("reference");
    for (name, part) in [
        ("vocals", &song.vocals),
        ("drums", &song.drums),
        ("bass", &song.bass),
        ("other", &song.other),
    ] {
        clip::write_wav(&reference.join(format!("{name}.wav")), part)?;
    }
    println!(
        "Wrote {} ({} s, {} Hz stereo) and its parts in {}",
        song_path.display(),
        clip::FRAMES / clip::SAMPLE_RATE as usize,
        clip::SAMPLE_RATE,
        reference.display()
    );
    Ok(song_path)
}

/// The `.wav` files in `dir`, sorted by name.
fn wav_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("demix wrote no stem folder {}", dir.display()))?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "wav"))
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_song_and_its_four_parts_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let song = write_song(dir.path()).unwrap();
        assert_eq!(song, dir.path().join("demo-song.wav"));
        assert_eq!(
            hound::WavReader::open(&song).unwrap().duration() as usize,
            clip::FRAMES
        );
        let parts = wav_files(&dir.path().join("reference")).unwrap();
        let names: Vec<_> = parts
            .iter()
            .map(|path| path.file_stem().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["bass", "drums", "other", "vocals"]);
    }

    #[test]
    fn sdr_compares_an_estimate_with_its_reference() {
        let dir = tempfile::tempdir().unwrap();
        let song = clip::tests::song();
        let vocals = dir.path().join("vocals.wav");
        clip::write_wav(&vocals, &song.vocals).unwrap();
        assert!(sdr_db(&vocals, &vocals).unwrap() > 100.0);

        let half = clip::Stereo {
            left: song.vocals.left.iter().map(|x| x / 2.0).collect(),
            right: song.vocals.right.iter().map(|x| x / 2.0).collect(),
        };
        let half_path = dir.path().join("half.wav");
        clip::write_wav(&half_path, &half).unwrap();
        let sdr = sdr_db(&vocals, &half_path).unwrap();
        assert!(
            (sdr - 6.02).abs() < 0.05,
            "half the signal is 6 dB SDR, got {sdr}"
        );

        let mix = dir.path().join("mix.wav");
        clip::write_wav(&mix, &song.mix).unwrap();
        assert!(
            sdr_db(&vocals, &mix).unwrap() < 0.0,
            "the mix is no vocal estimate"
        );
    }
}
