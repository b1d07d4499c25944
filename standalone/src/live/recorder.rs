//! `--record DIR`: a writer thread that drains the recorder ring (filled by the output callback)
//! into one WAV file per stem plus `input.wav`, the audio the separator heard. Files are written
//! under hidden temporary names and renamed into place when the session ends; existing files are
//! never overwritten, and a failed recording leaves no partial file behind.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rtrb::Consumer;

/// Name (without `.wav`) of the recording of the separator's input.
pub const INPUT_NAME: &str = "input";
/// Seconds of audio the recorder ring holds while the writer catches up.
pub const RING_SECONDS: usize = 4;

/// A running recorder. [`Recorder::finish`] ends it.
pub struct Recorder {
    stop: Arc<AtomicBool>,
    failed: Arc<AtomicBool>,
    thread: JoinHandle<Result<Vec<PathBuf>>>,
}

struct Track {
    temporary: PathBuf,
    target: PathBuf,
    writer: Option<hound::WavWriter<BufWriter<File>>>,
}

impl Recorder {
    /// Checks `dir` (created if missing), refuses existing targets, creates the temporary files
    /// and starts the writer thread on `consumer`, whose frames hold the input's `channels`
    /// followed by `channels` for each of `stems`. Not real-time safe.
    pub fn start(
        dir: &Path,
        stems: &[String],
        channels: usize,
        rate: u32,
        consumer: Consumer<f32>,
    ) -> Result<Self> {
        if stems.iter().any(|s| s == INPUT_NAME) {
            bail!("the model has a stem called `{INPUT_NAME}`, which would clash with the recording of the input");
        }
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the recording folder {}", dir.display()))?;
        let names: Vec<&str> = std::iter::once(INPUT_NAME)
            .chain(stems.iter().map(String::as_str))
            .collect();
        for name in &names {
            let target = dir.join(format!("{name}.wav"));
            if target.exists() {
                bail!(
                    "{} already exists; choose another --record folder or move the old recording",
                    target.display()
                );
            }
        }
        let spec = hound::WavSpec {
            channels: channels as u16,
            sample_rate: rate,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut tracks = Vec::with_capacity(names.len());
        for name in &names {
            let temporary = dir.join(format!(".{name}.wav.partial"));
            let target = dir.join(format!("{name}.wav"));
            let writer = hound::WavWriter::create(&temporary, spec);
            let writer = match writer {
                Ok(w) => w,
                Err(e) => {
                    remove_all(&tracks);
                    bail!("cannot create {}: {e}", temporary.display());
                }
            };
            tracks.push(Track {
                temporary,
                target,
                writer: Some(writer),
            });
        }
        let stop = Arc::new(AtomicBool::new(false));
        let failed = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            let failed = failed.clone();
            std::thread::Builder::new()
                .name("demix-recorder".into())
                .spawn(move || {
                    let result = write_loop(consumer, &mut tracks, channels, &stop);
                    if result.is_err() {
                        failed.store(true, Ordering::Relaxed);
                        remove_all(&tracks);
                    }
                    result
                })
                .context("cannot start the recorder thread")?
        };
        Ok(Self {
            stop,
            failed,
            thread,
        })
    }

    /// Whether writing failed (the session should stop; [`Recorder::finish`] says why).
    pub fn has_failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Writes what is still queued, closes the files and renames them into place. Call it after
    /// the audio streams stopped. Returns the files written.
    pub fn finish(self) -> Result<Vec<PathBuf>> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.join() {
            Ok(result) => result,
            Err(_) => bail!("the recorder thread panicked"),
        }
    }
}

fn write_loop(
    mut consumer: Consumer<f32>,
    tracks: &mut [Track],
    channels: usize,
    stop: &AtomicBool,
) -> Result<Vec<PathBuf>> {
    let lanes = tracks.len() * channels;
    loop {
        // Read the flag first: everything queued before it was set is then drained below.
        let stopping = stop.load(Ordering::Relaxed);
        let queued = consumer.slots() / lanes * lanes;
        if queued > 0 {
            let chunk = consumer.read_chunk(queued)?;
            let (first, second) = chunk.as_slices();
            for (i, &x) in first.iter().chain(second).enumerate() {
                let track = &mut tracks[(i % lanes) / channels];
                if let Some(writer) = track.writer.as_mut() {
                    writer
                        .write_sample(x)
                        .with_context(|| format!("cannot write {}", track.temporary.display()))?;
                }
            }
            chunk.commit_all();
        } else if stopping {
            break;
        } else {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    for track in tracks.iter_mut() {
        if let Some(writer) = track.writer.take() {
            writer
                .finalize()
                .with_context(|| format!("cannot finish {}", track.temporary.display()))?;
        }
    }
    let mut written = Vec::with_capacity(tracks.len());
    for track in tracks.iter() {
        std::fs::rename(&track.temporary, &track.target).with_context(|| {
            format!(
                "cannot rename {} to {}",
                track.temporary.display(),
                track.target.display()
            )
        })?;
        written.push(track.target.clone());
    }
    Ok(written)
}

fn remove_all(tracks: &[Track]) {
    for track in tracks {
        let _ = std::fs::remove_file(&track.temporary);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_each_lane_pair_to_its_file_and_renames_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let stems = vec!["low".to_string(), "high".to_string()];
        let (mut producer, consumer) = rtrb::RingBuffer::new(1024);
        let recorder = Recorder::start(dir.path(), &stems, 2, 48_000, consumer).unwrap();
        assert!(
            !dir.path().join("low.wav").exists(),
            "renamed only at the end"
        );
        for frame in 0..100 {
            for lane in 0..6 {
                while producer.push((frame * 10 + lane) as f32).is_err() {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        let written = recorder.finish().unwrap();
        assert_eq!(written.len(), 3);
        for (track, name) in ["input", "low", "high"].iter().enumerate() {
            let mut reader =
                hound::WavReader::open(dir.path().join(format!("{name}.wav"))).unwrap();
            assert_eq!(reader.spec().channels, 2);
            let samples: Vec<f32> = reader.samples::<f32>().map(Result::unwrap).collect();
            assert_eq!(samples.len(), 200);
            assert_eq!(samples[0], (track * 2) as f32);
            assert_eq!(samples[199], (99 * 10 + track * 2 + 1) as f32);
        }
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with('.')
            })
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn refuses_to_overwrite_an_existing_recording() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("high.wav"), b"keep me").unwrap();
        let stems = vec!["low".to_string(), "high".to_string()];
        let (_producer, consumer) = rtrb::RingBuffer::new(16);
        let err = Recorder::start(dir.path(), &stems, 1, 48_000, consumer)
            .err()
            .unwrap();
        assert!(err.to_string().contains("already exists"), "{err}");
        assert_eq!(
            std::fs::read(dir.path().join("high.wav")).unwrap(),
            b"keep me"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
