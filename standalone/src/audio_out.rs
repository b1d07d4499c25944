//! Writing stems as WAV files safely: each stem goes to a hidden temporary file in the target
//! directory (`.vocals.wav.XXXXXX.partial`) and is renamed to its final name only once every
//! stem of the track is complete, so a failed or interrupted run never leaves a half-written
//! file under a final name. Temporaries are removed on error (their `Drop` deletes them).

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use tempfile::TempPath;

/// Sample format of the written stems.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SampleFormat {
    /// 16-bit integer PCM (samples beyond full scale are clipped).
    Wav16,
    /// 24-bit integer PCM (samples beyond full scale are clipped).
    Wav24,
    /// 32-bit float: lossless, never clips.
    F32,
}

impl SampleFormat {
    fn spec(self, sample_rate: u32, channels: usize) -> hound::WavSpec {
        let (bits_per_sample, sample_format) = match self {
            Self::Wav16 => (16, hound::SampleFormat::Int),
            Self::Wav24 => (24, hound::SampleFormat::Int),
            Self::F32 => (32, hound::SampleFormat::Float),
        };
        hound::WavSpec {
            channels: channels as u16,
            sample_rate,
            bits_per_sample,
            sample_format,
        }
    }

    /// Bytes one sample takes in the file.
    pub fn bytes_per_sample(self) -> u64 {
        match self {
            Self::Wav16 => 2,
            Self::Wav24 => 3,
            Self::F32 => 4,
        }
    }
}

/// Most audio bytes a WAV file can hold: its size fields are 32-bit.
pub const MAX_WAV_DATA_BYTES: u64 = u32::MAX as u64 - 1024;

/// One stem being written to its temporary file.
pub struct StemWriter {
    final_path: PathBuf,
    temp_path: TempPath,
    sync_handle: File,
    writer: hound::WavWriter<BufWriter<File>>,
    format: SampleFormat,
    data_bytes: u64,
    clipped: u64,
}

impl StemWriter {
    /// Creates the temporary file for `final_path` in the same directory (so the final rename
    /// is atomic) and writes the WAV header.
    pub fn create(
        final_path: &Path,
        format: SampleFormat,
        sample_rate: u32,
        channels: usize,
    ) -> Result<Self> {
        let dir = final_path.parent().unwrap_or(Path::new("."));
        let name = final_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let prefix = format!(".{name}.");
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(".partial");
        // Like any file the user creates (0o666 less the umask), not tempfile's private 0o600.
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
        let temp = builder
            .tempfile_in(dir)
            .with_context(|| format!("cannot create a file in '{}'", dir.display()))?;
        let (file, temp_path) = temp.into_parts();
        let sync_handle = file
            .try_clone()
            .with_context(|| format!("cannot write '{}'", temp_path.display()))?;
        let writer =
            hound::WavWriter::new(BufWriter::new(file), format.spec(sample_rate, channels))
                .with_context(|| format!("cannot write '{}'", temp_path.display()))?;
        Ok(Self {
            final_path: final_path.to_path_buf(),
            temp_path,
            sync_handle,
            writer,
            format,
            data_bytes: 0,
            clipped: 0,
        })
    }

    /// Appends planar samples (one slice per channel, equal lengths), interleaving them.
    pub fn write(&mut self, channels: &[&[f32]]) -> Result<()> {
        let frames = channels.first().map_or(0, |c| c.len());
        let bytes = (frames * channels.len()) as u64 * self.format.bytes_per_sample();
        if self.data_bytes + bytes > MAX_WAV_DATA_BYTES {
            bail!(
                "'{}' would exceed 4 GiB, the most a WAV file can hold; use a smaller \
                 --format (wav16) or split the input",
                self.final_path.display()
            );
        }
        self.data_bytes += bytes;
        let result = self.write_interleaved(channels, frames);
        result.with_context(|| format!("cannot write '{}'", self.temp_path.display()))
    }

    fn write_interleaved(&mut self, channels: &[&[f32]], frames: usize) -> hound::Result<()> {
        for i in 0..frames {
            for channel in channels {
                let x = channel[i];
                match self.format {
                    SampleFormat::F32 => self.writer.write_sample(x)?,
                    SampleFormat::Wav16 => {
                        let v = quantize(x, 32_767.0, &mut self.clipped);
                        self.writer.write_sample(v as i16)?
                    }
                    SampleFormat::Wav24 => {
                        let v = quantize(x, 8_388_607.0, &mut self.clipped);
                        self.writer.write_sample(v)?
                    }
                }
            }
        }
        Ok(())
    }

    /// Completes the file (header sizes, flush to disk). It keeps its temporary name until
    /// [`FinishedStem::commit`].
    pub fn finish(self) -> Result<FinishedStem> {
        let temp = self.temp_path.display().to_string();
        self.writer
            .finalize()
            .with_context(|| format!("cannot write '{temp}'"))?;
        self.sync_handle
            .sync_all()
            .with_context(|| format!("cannot write '{temp}'"))?;
        Ok(FinishedStem {
            final_path: self.final_path,
            temp_path: self.temp_path,
            clipped: self.clipped,
        })
    }
}

/// Rounds `x · scale` to an integer, clamping (and counting) samples beyond full scale.
fn quantize(x: f32, scale: f32, clipped: &mut u64) -> i32 {
    let v = (x * scale).round();
    if v > scale || v < -scale - 1.0 {
        *clipped += 1;
    }
    v.clamp(-scale - 1.0, scale) as i32
}

/// A complete stem under its temporary name, ready to be renamed into place.
pub struct FinishedStem {
    final_path: PathBuf,
    temp_path: TempPath,
    clipped: u64,
}

impl FinishedStem {
    /// Samples clipped when converting to an integer format.
    pub fn clipped(&self) -> u64 {
        self.clipped
    }

    /// The name the stem gets.
    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    /// Renames the file to its final name. Without `overwrite`, an existing file there is
    /// never replaced (the rename fails instead).
    pub fn commit(self, overwrite: bool) -> Result<PathBuf> {
        let target = self.final_path;
        let result = if overwrite {
            self.temp_path.persist(&target)
        } else {
            self.temp_path.persist_noclobber(&target)
        };
        match result {
            Ok(()) => Ok(target),
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => bail!(
                "'{}' already exists; use --force to overwrite it",
                target.display()
            ),
            Err(e) => Err(e.error).with_context(|| format!("cannot create '{}'", target.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn writes_under_a_temporary_name_until_committed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("vocals.wav");
        let mut writer = StemWriter::create(&target, SampleFormat::F32, 48_000, 2).unwrap();
        writer.write(&[&[0.25, -0.5], &[1.5, 0.0]]).unwrap();
        let names = leftovers(dir.path());
        assert_eq!(names.len(), 1);
        assert!(names[0].starts_with(".vocals.wav.") && names[0].ends_with(".partial"));
        assert!(!target.exists());
        let finished = writer.finish().unwrap();
        assert!(!target.exists());
        finished.commit(false).unwrap();
        assert_eq!(leftovers(dir.path()), vec!["vocals.wav".to_string()]);
        let mut reader = hound::WavReader::open(&target).unwrap();
        assert_eq!(reader.spec().sample_rate, 48_000);
        let samples: Vec<f32> = reader.samples::<f32>().map(|s| s.unwrap()).collect();
        assert_eq!(samples, vec![0.25, 1.5, -0.5, 0.0]);
    }

    #[test]
    fn dropping_an_unfinished_stem_removes_the_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("drums.wav");
        let mut writer = StemWriter::create(&target, SampleFormat::Wav16, 44_100, 1).unwrap();
        writer.write(&[&[0.1; 100]]).unwrap();
        drop(writer);
        let finished = StemWriter::create(&target, SampleFormat::Wav16, 44_100, 1)
            .unwrap()
            .finish()
            .unwrap();
        drop(finished);
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn commit_without_overwrite_keeps_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("bass.wav");
        std::fs::write(&target, b"precious").unwrap();
        let finished = StemWriter::create(&target, SampleFormat::Wav24, 44_100, 1)
            .unwrap()
            .finish()
            .unwrap();
        let err = finished.commit(false).unwrap_err();
        assert!(format!("{err:#}").contains("already exists"));
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
        assert_eq!(leftovers(dir.path()), vec!["bass.wav".to_string()]);
        let finished = StemWriter::create(&target, SampleFormat::Wav24, 44_100, 1)
            .unwrap()
            .finish()
            .unwrap();
        finished.commit(true).unwrap();
        assert_ne!(std::fs::read(&target).unwrap(), b"precious");
    }

    #[test]
    fn integer_formats_round_and_count_clipping() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("other.wav");
        let mut writer = StemWriter::create(&target, SampleFormat::Wav24, 44_100, 1).unwrap();
        writer.write(&[&[0.5, -1.0, 1.25, -2.0]]).unwrap();
        let finished = writer.finish().unwrap();
        assert_eq!(finished.clipped(), 2);
        finished.commit(false).unwrap();
        let mut reader = hound::WavReader::open(&target).unwrap();
        assert_eq!(reader.spec().bits_per_sample, 24);
        let samples: Vec<i32> = reader.samples::<i32>().map(|s| s.unwrap()).collect();
        assert_eq!(samples, vec![4_194_304, -8_388_607, 8_388_607, -8_388_608]);
    }
}
