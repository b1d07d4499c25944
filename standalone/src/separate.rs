//! `demix separate`: offline separation of audio files into stems.
//!
//! Streaming from end to end (decode a packet, separate it, write it), so memory stays constant
//! however long the file is. The engine's latency is trimmed at the start and flushed with zeros
//! at the end: every stem has exactly the input's length, rate and channel count (inputs with
//! more than two channels are downmixed to stereo first, with a warning).
//!
//! Safety of outputs: every problem that can be found before separating (unreadable or
//! undecodable input, unknown stem name, existing output without `--force`, two inputs mapping
//! to one output folder) is reported before any work starts. Stems are written under temporary
//! names and renamed into place only after the whole track succeeded. A file that turns out to
//! be corrupt or truncated partway is an error and nothing is written for it: Demix does not
//! guess where damaged audio belongs, so a stem set is either complete or absent.

use std::collections::HashSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use demix_dsp::{DeadlinePolicy, EngineConfig, SeparationModel, Separator};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::audio_in::AudioReader;
use crate::audio_out::{SampleFormat, StemWriter, MAX_WAV_DATA_BYTES};
use crate::model_args::ModelArgs;

/// Compute slack (hops) for offline separation: with [`DeadlinePolicy::Wait`] it costs no
/// quality, only lets the worker run further ahead of the audio.
pub const OFFLINE_SLACK_HOPS: usize = 8;

/// Largest block handed to the separator at once.
const BLOCK: usize = 4096;

/// Set by Ctrl-C: the current track stops, its temporary files are removed.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Arguments of `demix separate`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Each stem has exactly the input's length, sample rate and channels \
(inputs with more than two channels are downmixed to stereo). Existing files are never replaced \
without --force. Stems are written under temporary names and appear only once the whole track \
succeeded; a damaged or truncated input is an error and nothing is written for it."
)]
pub struct Args {
    /// Audio files to separate (WAV, FLAC, MP3, OGG Vorbis, …; any sample rate).
    #[arg(required = true, value_name = "FILES")]
    files: Vec<PathBuf>,
    /// Output folder; each track's stems go to <DIR>/<track name>/<stem>.wav.
    #[arg(short, long, value_name = "DIR", default_value = "separated")]
    output: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    /// Stems to write, comma-separated (default: all of the model's stems).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    stems: Option<Vec<String>>,
    /// Sample format of the written stems.
    #[arg(long, value_enum, default_value_t = SampleFormat::F32)]
    format: SampleFormat,
    /// Replace existing stem files.
    #[arg(long)]
    force: bool,
}

/// One input file and where its stems go.
struct Job {
    input: PathBuf,
    dir: PathBuf,
}

/// Runs `demix separate`.
pub fn run(args: Args) -> Result<()> {
    let loaded = args.model.load()?;
    let names = loaded.model.spec().sources.clone();
    let selected = select_stems(&names, args.stems.as_deref())?;
    let jobs = preflight(&args, &names, &selected)?;
    // Without a handler Ctrl-C still stops demix, only leaving hidden `.partial` files.
    if let Err(e) = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst)) {
        eprintln!("warning: Ctrl-C will not clean up temporary files: {e}");
    }
    eprintln!("model: {} ({})", loaded.manifest.name, loaded.origin);
    let mut first_model = Some(loaded);
    let mut failures = 0;
    for job in &jobs {
        let loaded = match first_model.take() {
            Some(loaded) => loaded,
            None => args.model.load()?,
        };
        if let Err(e) = separate_file(job, loaded.model, &names, &selected, &args) {
            if jobs.len() == 1 {
                return Err(e);
            }
            eprintln!("error: {e:#}");
            failures += 1;
        }
        if INTERRUPTED.load(Ordering::SeqCst) {
            bail!("interrupted; the stems of the unfinished track were not written");
        }
    }
    if failures > 0 {
        bail!("{failures} of {} files could not be separated", jobs.len());
    }
    Ok(())
}

/// Indices of the stems to write, in the model's order.
fn select_stems(names: &[String], wanted: Option<&[String]>) -> Result<Vec<usize>> {
    let Some(wanted) = wanted else {
        return Ok((0..names.len()).collect());
    };
    let mut selected = Vec::new();
    for name in wanted.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        let index = names.iter().position(|n| n == name).ok_or_else(|| {
            anyhow!(
                "unknown stem '{name}' in --stems; this model's stems are: {}",
                names.join(", ")
            )
        })?;
        if !selected.contains(&index) {
            selected.push(index);
        }
    }
    if selected.is_empty() {
        bail!(
            "--stems names no stem; this model's stems are: {}",
            names.join(", ")
        );
    }
    selected.sort_unstable();
    Ok(selected)
}

/// Checks every input and output before any work: all problems are reported together.
fn preflight(args: &Args, names: &[String], selected: &[usize]) -> Result<Vec<Job>> {
    let mut problems = Vec::new();
    let mut jobs = Vec::new();
    let mut dirs = HashSet::new();
    for input in &args.files {
        let track = input
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "track".into());
        let dir = args.output.join(&track);
        if !dirs.insert(dir.clone()) {
            problems.push(format!(
                "two inputs are both named '{track}', so both would be written to '{}'; \
                 separate them in two runs with different --output folders",
                dir.display()
            ));
            continue;
        }
        match AudioReader::open(input) {
            Ok(reader) => {
                if let Some(problem) = size_problem(&reader, input, args.format) {
                    problems.push(problem);
                }
            }
            Err(e) => {
                problems.push(format!("{e:#}"));
                continue;
            }
        }
        if dir.exists() && !dir.is_dir() {
            problems.push(format!(
                "cannot write stems to '{}': it exists and is not a folder",
                dir.display()
            ));
        }
        for &s in selected {
            let target = stem_path(&dir, &names[s]);
            if !args.force && target.exists() {
                problems.push(format!(
                    "'{}' already exists; use --force to overwrite it",
                    target.display()
                ));
            }
        }
        jobs.push(Job {
            input: input.clone(),
            dir,
        });
    }
    match problems.len() {
        0 => Ok(jobs),
        1 => Err(anyhow!(problems.remove(0))),
        n => {
            for problem in problems {
                eprintln!("error: {problem}");
            }
            bail!("{n} problems found (above); nothing was separated")
        }
    }
}

/// A stem that cannot fit in a WAV file (4 GiB), found from the declared length.
fn size_problem(reader: &AudioReader, input: &Path, format: SampleFormat) -> Option<String> {
    let frames = reader.declared_frames()?;
    let bytes = frames * reader.channels() as u64 * format.bytes_per_sample();
    (bytes > MAX_WAV_DATA_BYTES).then(|| {
        format!(
            "'{}' is too long: its stems would exceed 4 GiB, the most a WAV file can hold \
             (use --format wav16 or split the file)",
            input.display()
        )
    })
}

fn stem_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.wav"))
}

/// Separates one file; on any error nothing is left under a final name.
fn separate_file(
    job: &Job,
    model: Box<dyn SeparationModel>,
    names: &[String],
    selected: &[usize],
    args: &Args,
) -> Result<()> {
    let started = Instant::now();
    let mut reader = AudioReader::open(&job.input)?;
    let input = job.input.display();
    if reader.file_channels() > 2 {
        eprintln!(
            "warning: '{input}' has {} channels; it is downmixed to stereo and its stems are \
             stereo",
            reader.file_channels()
        );
    }
    let channels = reader.channels();
    let rate = reader.sample_rate();
    let config = EngineConfig {
        compute_slack_hops: OFFLINE_SLACK_HOPS,
        deadline: DeadlinePolicy::Wait,
    };
    let layout = if channels == 1 { "mono" } else { "stereo" };
    let mut separator = Separator::new(model, config, rate, channels)
        .with_context(|| format!("cannot separate '{input}' ({rate} Hz {layout})"))?;
    let created_dir = !job.dir.exists();
    std::fs::create_dir_all(&job.dir)
        .with_context(|| format!("cannot create the output folder '{}'", job.dir.display()))?;
    let result = write_stems(&mut reader, &mut separator, job, names, selected, args);
    if result.is_err() && created_dir {
        // Only succeeds when empty: never removes anything but the folder made above.
        let _ = std::fs::remove_dir(&job.dir);
    }
    let (frames, paths) = result?;
    let seconds = frames as f64 / f64::from(rate);
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{input}: {:.1} s of audio separated in {elapsed:.1} s ({:.1}x real time) into {}/",
        seconds,
        seconds / elapsed.max(1e-9),
        job.dir.display()
    );
    for path in paths {
        println!("  {}", path.display());
    }
    Ok(())
}

/// Streams the file through the separator into the stem writers and renames them into place.
/// Returns the number of frames and the written paths.
fn write_stems(
    reader: &mut AudioReader,
    separator: &mut Separator,
    job: &Job,
    names: &[String],
    selected: &[usize],
    args: &Args,
) -> Result<(u64, Vec<PathBuf>)> {
    let channels = reader.channels();
    let rate = reader.sample_rate();
    let mut writers = selected
        .iter()
        .map(|&s| StemWriter::create(&stem_path(&job.dir, &names[s]), args.format, rate, channels))
        .collect::<Result<Vec<_>>>()?;
    let progress = progress_bar(reader.declared_frames(), &job.input);
    let mut trim = Trim {
        skip: separator.latency() as u64,
        remaining: 0,
    };
    let mut outputs = vec![vec![0.0f32; BLOCK]; separator.sources() * channels];
    let mut frames = 0u64;
    while let Some(block) = reader.next_block()? {
        let len = block.first().map_or(0, |c| c.len());
        let mut pos = 0;
        while pos < len {
            let n = (len - pos).min(BLOCK);
            let inputs: Vec<&[f32]> = block.iter().map(|c| &c[pos..pos + n]).collect();
            trim.remaining += n as u64;
            run_block(
                separator,
                &inputs,
                &mut outputs,
                &mut trim,
                &mut writers,
                selected,
            )?;
            pos += n;
        }
        frames += len as u64;
        progress.set_position(frames);
        if INTERRUPTED.load(Ordering::SeqCst) {
            bail!("interrupted while separating '{}'", job.input.display());
        }
    }
    // Flush: the last `latency` output samples come out while zeros go in.
    let zeros = vec![0.0f32; BLOCK];
    while trim.remaining > 0 {
        let n = (trim.skip + trim.remaining).min(BLOCK as u64) as usize;
        let inputs: Vec<&[f32]> = (0..channels).map(|_| &zeros[..n]).collect();
        run_block(
            separator,
            &inputs,
            &mut outputs,
            &mut trim,
            &mut writers,
            selected,
        )?;
    }
    progress.finish_and_clear();
    check_model_health(separator, &job.input)?;
    let finished = writers
        .into_iter()
        .map(StemWriter::finish)
        .collect::<Result<Vec<_>>>()?;
    let mut paths = Vec::new();
    for stem in finished {
        if stem.clipped() > 0 {
            eprintln!(
                "warning: {} samples clipped in '{}'; use --format f32 to keep them",
                stem.clipped(),
                stem.final_path().display()
            );
        }
        paths.push(stem.commit(args.force)?);
    }
    Ok((frames, paths))
}

/// Output bookkeeping: `skip` samples of latency still to drop, `remaining` input samples fed
/// so far whose output has not been written yet.
struct Trim {
    skip: u64,
    remaining: u64,
}

/// Separates one block and writes the part of it that is not latency.
fn run_block(
    separator: &mut Separator,
    inputs: &[&[f32]],
    outputs: &mut [Vec<f32>],
    trim: &mut Trim,
    writers: &mut [StemWriter],
    selected: &[usize],
) -> Result<()> {
    let n = inputs.first().map_or(0, |c| c.len());
    let mut out: Vec<&mut [f32]> = outputs.iter_mut().map(|o| &mut o[..n]).collect();
    separator.process(inputs, &mut out);
    let drop = trim.skip.min(n as u64) as usize;
    trim.skip -= drop as u64;
    let keep = ((n - drop) as u64).min(trim.remaining) as usize;
    let channels = inputs.len();
    for (writer, &s) in writers.iter_mut().zip(selected) {
        let planes: Vec<&[f32]> = (0..channels)
            .map(|ch| &out[s * channels + ch][drop..drop + keep])
            .collect();
        writer.write(&planes)?;
    }
    trim.remaining -= keep as u64;
    Ok(())
}

/// Under [`DeadlinePolicy::Wait`] every frame gets its model result unless the model failed;
/// then the stems would silently fall back to unseparated audio, so that is an error.
fn check_model_health(separator: &Separator, input: &Path) -> Result<()> {
    let stats = separator.stats();
    let failed = stats.deadline_misses() + stats.model_errors() + stats.invalid_results();
    if stats.model_panicked() || failed > 0 {
        bail!(
            "the model failed while separating '{}' ({} inference errors, {} invalid results, \
             {} frames without a result{}); no stems were written",
            input.display(),
            stats.model_errors(),
            stats.invalid_results(),
            stats.deadline_misses(),
            if stats.model_panicked() {
                ", the model crashed"
            } else {
                ""
            }
        );
    }
    Ok(())
}

/// A progress bar on stderr, hidden when stderr is not a terminal.
fn progress_bar(frames: Option<u64>, input: &Path) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let name = input
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let bar = match frames {
        Some(total) => ProgressBar::new(total).with_style(
            ProgressStyle::with_template("{msg} [{bar:40}] {percent:>3}% eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner(),
    };
    bar.set_draw_target(ProgressDrawTarget::stderr());
    bar.with_message(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use demix_dsp::reference_models::{band_split, mask_spec, FixedMaskModel};

    const SOURCES: [&str; 3] = ["low", "mid", "high"];

    fn names() -> Vec<String> {
        SOURCES.iter().map(|s| s.to_string()).collect()
    }

    fn args(output: &Path, stems: Option<Vec<String>>) -> Args {
        Args {
            files: Vec::new(),
            output: output.to_path_buf(),
            model: ModelArgs {
                model: None,
                ort_library: None,
                threads: 1,
            },
            stems,
            format: SampleFormat::F32,
            force: false,
        }
    }

    fn input_file(dir: &Path, rate: u32, channels: usize, frames: usize) -> (PathBuf, Vec<f32>) {
        let path = dir.join("in.wav");
        let spec = hound::WavSpec {
            channels: channels as u16,
            sample_rate: rate,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut writer = hound::WavWriter::create(&path, spec).unwrap();
        let mut samples = Vec::new();
        let mut x = 1u32;
        for _ in 0..frames * channels {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let v = (x >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
            writer.write_sample(v).unwrap();
            samples.push(v);
        }
        writer.finalize().unwrap();
        (path, samples)
    }

    fn read(path: &Path) -> (hound::WavSpec, Vec<f32>) {
        let mut reader = hound::WavReader::open(path).unwrap();
        let samples = reader.samples::<f32>().map(|s| s.unwrap()).collect();
        (reader.spec(), samples)
    }

    #[test]
    fn stems_are_trimmed_to_the_input_and_sum_to_it() {
        // Lengths below, at and far above the latency (n_fft − 1 + hop · (1 + slack) = 1535).
        for (channels, frames) in [(2, 100), (1, 1_535), (2, 20_011)] {
            let dir = tempfile::tempdir().unwrap();
            let (input, samples) = input_file(dir.path(), 44_100, channels, frames);
            let job = Job {
                input,
                dir: dir.path().join("out").join("in"),
            };
            let model = band_split(mask_spec(&SOURCES, 512, 128, 1));
            let args = args(&dir.path().join("out"), None);
            separate_file(&job, Box::new(model), &names(), &[0, 1, 2], &args).unwrap();
            let mut sum = vec![0.0f32; samples.len()];
            for name in SOURCES {
                let (spec, stem) = read(&job.dir.join(format!("{name}.wav")));
                assert_eq!(spec.channels as usize, channels);
                assert_eq!(spec.sample_rate, 44_100);
                assert_eq!(stem.len(), samples.len(), "{name}: {frames} frames");
                sum.iter_mut().zip(&stem).for_each(|(a, x)| *a += x);
            }
            let err = sum
                .iter()
                .zip(&samples)
                .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                err < 1e-5,
                "{channels} channels, {frames} frames: error {err}"
            );
        }
    }

    #[test]
    fn identity_model_stem_is_the_input_and_only_selected_stems_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let (input, samples) = input_file(dir.path(), 44_100, 2, 9_000);
        let job = Job {
            input,
            dir: dir.path().join("in"),
        };
        let model = FixedMaskModel::identity(mask_spec(&SOURCES, 1024, 256, 2), 1);
        let args = args(dir.path(), None);
        separate_file(&job, Box::new(model), &names(), &[1], &args).unwrap();
        let written: Vec<_> = std::fs::read_dir(&job.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(written, ["mid.wav"]);
        let (_, stem) = read(&job.dir.join("mid.wav"));
        let err = stem
            .iter()
            .zip(&samples)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(err < 1e-5, "error {err}");
    }

    #[test]
    fn failure_leaves_no_files_and_removes_the_new_folder() {
        let dir = tempfile::tempdir().unwrap();
        let (input, _) = input_file(dir.path(), 44_100, 2, 30_000);
        let bytes = std::fs::read(&input).unwrap();
        std::fs::write(&input, &bytes[..bytes.len() / 2]).unwrap();
        let job = Job {
            input,
            dir: dir.path().join("out").join("in"),
        };
        let model = band_split(mask_spec(&SOURCES, 512, 128, 0));
        let args = args(&dir.path().join("out"), None);
        let err = separate_file(&job, Box::new(model), &names(), &[0, 1, 2], &args).unwrap_err();
        assert!(format!("{err:#}").contains("truncated"), "{err:#}");
        assert!(!job.dir.exists());
    }

    #[test]
    fn stem_selection_follows_the_model_order() {
        let names = names();
        assert_eq!(select_stems(&names, None).unwrap(), [0, 1, 2]);
        let wanted = ["high", "low", "high"].map(String::from);
        assert_eq!(select_stems(&names, Some(&wanted)).unwrap(), [0, 2]);
        let err = select_stems(&names, Some(&["vocals".to_string()])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown stem 'vocals' in --stems; this model's stems are: low, mid, high"
        );
        assert!(select_stems(&names, Some(&[String::new()])).is_err());
    }
}
