//! Streaming audio file decoding with symphonia (WAV, FLAC, MP3, OGG Vorbis, AAC/ALAC in MP4,
//! …): one packet at a time, so memory stays constant however long the file is. Files with more
//! than two channels are downmixed to stereo; every failure (unreadable, empty, not audio,
//! unsupported codec, corrupt or truncated data) becomes an error message naming the file.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use symphonia::core::audio::{AudioBuffer, AudioBufferRef, Channels, Signal};
use symphonia::core::codecs::{Decoder, DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::{FormatOptions, FormatReader};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// A decoder that hands out a file's audio block by block as planar `f32`, in one or two
/// channels (more are downmixed to stereo). Offline use only: it allocates and does I/O.
pub struct AudioReader {
    format: Box<dyn FormatReader>,
    decoder: Box<dyn Decoder>,
    track_id: u32,
    /// The first block is decoded by [`AudioReader::open`] (to learn the channel layout and to
    /// reject undecodable files early) and handed out by the first [`AudioReader::next_block`].
    first_block_pending: bool,
    stream: Stream,
}

/// What is known about the decoded stream, and its latest block.
struct Stream {
    path: PathBuf,
    sample_rate: u32,
    file_channels: usize,
    downmix: Downmix,
    declared_frames: Option<u64>,
    decoded_frames: u64,
    converted: Option<AudioBuffer<f32>>,
    block: Vec<Vec<f32>>,
    finished: bool,
}

impl AudioReader {
    /// Opens `path`, identifies its format and codec and decodes the first block. A decoder
    /// that crashes on crafted data is reported as damaged data, never as a panic.
    pub fn open(path: &Path) -> Result<Self> {
        contain_decoder_panic(|| Self::open_unguarded(path)).unwrap_or_else(|| damaged(path))
    }

    fn open_unguarded(path: &Path) -> Result<Self> {
        let shown = path.display();
        let file = File::open(path).with_context(|| format!("cannot open '{shown}'"))?;
        let metadata = file
            .metadata()
            .with_context(|| format!("cannot read '{shown}'"))?;
        if metadata.is_dir() {
            bail!("'{shown}' is a directory, not an audio file");
        }
        if metadata.len() == 0 {
            bail!("'{shown}' is empty (0 bytes), so it contains no audio");
        }
        let stream = MediaSourceStream::new(Box::new(file), Default::default());
        let mut hint = Hint::new();
        if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
            hint.with_extension(ext);
        }
        let format_options = FormatOptions {
            enable_gapless: true,
            ..Default::default()
        };
        let probed = symphonia::default::get_probe()
            .format(&hint, stream, &format_options, &MetadataOptions::default())
            .map_err(|e| match e {
                SymphoniaError::Unsupported(what) if what.starts_with("core (probe)") => anyhow!(
                    "'{shown}' is not an audio file Demix can read (no WAV, FLAC, MP3, OGG, \
                     MP4/AAC, AIFF or CAF header was recognised)"
                ),
                SymphoniaError::Unsupported(what) => {
                    anyhow!("'{shown}' uses an audio format Demix cannot decode ({what})")
                }
                // The file ended while the probe was still reading: a damaged known container,
                // or no known header at all.
                SymphoniaError::IoError(e) if e.kind() == ErrorKind::UnexpectedEof => {
                    match container_name(path) {
                        Some(kind) => anyhow!(
                            "'{shown}' is truncated or damaged: it starts like {kind} but ends \
                             before its audio could be read"
                        ),
                        None => anyhow!(
                            "'{shown}' is not an audio file Demix can read (no WAV, FLAC, MP3, \
                             OGG, MP4/AAC, AIFF or CAF header was recognised)"
                        ),
                    }
                }
                other => anyhow!("'{shown}' could not be read as audio: {other}"),
            })?;
        let format = probed.format;
        let track = format
            .tracks()
            .iter()
            .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
            .ok_or_else(|| anyhow!("'{shown}' contains no audio track"))?;
        let params = track.codec_params.clone();
        let track_id = track.id;
        let decoder = symphonia::default::get_codecs()
            .make(&params, &DecoderOptions::default())
            .map_err(|e| match e {
                SymphoniaError::Unsupported(what) => {
                    let codec = symphonia::default::get_codecs()
                        .get_codec(params.codec)
                        .map_or_else(
                            || format!("{:?}", params.codec),
                            |d| d.long_name.to_string(),
                        );
                    anyhow!("'{shown}' uses an audio codec Demix cannot decode ({codec}: {what})")
                }
                other => anyhow!("'{shown}' has invalid codec parameters: {other}"),
            })?;
        let mut reader = Self {
            format,
            decoder,
            track_id,
            first_block_pending: false,
            stream: Stream {
                path: path.to_path_buf(),
                sample_rate: params.sample_rate.unwrap_or(0),
                file_channels: params.channels.map_or(0, |c| c.count()),
                downmix: Downmix::new(Channels::empty(), 0),
                declared_frames: params.n_frames,
                decoded_frames: 0,
                converted: None,
                block: Vec::new(),
                finished: false,
            },
        };
        reader.first_block_pending = reader.decode_next()?;
        if reader.stream.sample_rate == 0 || reader.stream.file_channels == 0 {
            bail!("'{shown}' contains no decodable audio (no sample rate or channel layout)");
        }
        Ok(reader)
    }

    /// Sample rate of the file, in Hz.
    pub fn sample_rate(&self) -> u32 {
        self.stream.sample_rate
    }

    /// Channels in the file itself.
    pub fn file_channels(&self) -> usize {
        self.stream.file_channels
    }

    /// Channels handed out by [`AudioReader::next_block`]: the file's, or 2 when it has more.
    pub fn channels(&self) -> usize {
        self.stream.file_channels.min(2)
    }

    /// Sample frames the container declares, when it does.
    pub fn declared_frames(&self) -> Option<u64> {
        self.stream.declared_frames
    }

    /// Decodes the next block and returns its planar samples (`channels()` slices of equal
    /// length), or `None` at the end of the file. Fails on corrupt data and on a file that
    /// ends before the length its header declares.
    pub fn next_block(&mut self) -> Result<Option<&[Vec<f32>]>> {
        if self.first_block_pending {
            self.first_block_pending = false;
        } else {
            let decoded = contain_decoder_panic(|| self.decode_next())
                .unwrap_or_else(|| damaged(&self.stream.path))?;
            if !decoded {
                return Ok(None);
            }
        }
        Ok(Some(&self.stream.block))
    }

    /// Decodes packets until one yields samples; `false` at the end of the stream.
    fn decode_next(&mut self) -> Result<bool> {
        let stream = &mut self.stream;
        while !stream.finished {
            let packet = match self.format.next_packet() {
                Ok(packet) => packet,
                Err(SymphoniaError::IoError(e)) if e.kind() == ErrorKind::UnexpectedEof => {
                    stream.finish()?;
                    break;
                }
                Err(SymphoniaError::ResetRequired) => bail!(
                    "'{}' changes its stream parameters partway through (chained \
                     stream), which Demix does not support",
                    stream.path.display()
                ),
                Err(SymphoniaError::IoError(e)) => {
                    let path = stream.path.display();
                    return Err(e).with_context(|| format!("cannot read '{path}'"));
                }
                Err(e) => bail!(
                    "'{}' is corrupt after {}: {e}",
                    stream.path.display(),
                    stream.position_text(stream.decoded_frames)
                ),
            };
            if packet.track_id() != self.track_id {
                continue;
            }
            // A reader that has run out of bytes before its declared end hands out empty
            // packets; that is the end of the data.
            if packet.buf().is_empty() {
                stream.finish()?;
                break;
            }
            let decoded = match self.decoder.decode(&packet) {
                Ok(decoded) => decoded,
                Err(SymphoniaError::IoError(e)) if e.kind() == ErrorKind::UnexpectedEof => {
                    stream.finish()?;
                    break;
                }
                Err(e) => bail!(
                    "'{}' is corrupt after {}: {e}",
                    stream.path.display(),
                    stream.position_text(stream.decoded_frames)
                ),
            };
            if stream.store(decoded)? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl Stream {
    /// Converts a decoded buffer into the planar output block; `false` when it was empty.
    fn store(&mut self, decoded: AudioBufferRef<'_>) -> Result<bool> {
        let spec = *decoded.spec();
        let frames = decoded.frames();
        if frames == 0 {
            return Ok(false);
        }
        if self.sample_rate == 0 {
            self.sample_rate = spec.rate;
        }
        if self.file_channels == 0 {
            self.file_channels = spec.channels.count();
        }
        if spec.rate != self.sample_rate || spec.channels.count() != self.file_channels {
            bail!(
                "'{}' changes from {} Hz / {} channels to {} Hz / {} channels partway \
                 through, which Demix does not support",
                self.path.display(),
                self.sample_rate,
                self.file_channels,
                spec.rate,
                spec.channels.count()
            );
        }
        if self.downmix.inputs != self.file_channels {
            self.downmix = Downmix::new(spec.channels, self.file_channels);
        }
        let converted = match &mut self.converted {
            Some(buf) if buf.capacity() >= frames && *buf.spec() == spec => buf,
            slot => slot.insert(AudioBuffer::new(
                decoded.capacity().max(frames) as u64,
                spec,
            )),
        };
        decoded.convert(converted);
        let out_channels = self.file_channels.min(2);
        self.block.resize_with(out_channels, Vec::new);
        for (out, samples) in self.block.iter_mut().enumerate() {
            samples.clear();
            if self.file_channels <= 2 {
                samples.extend_from_slice(converted.chan(out));
            } else {
                samples.resize(frames, 0.0);
                for (ch, &gain) in self.downmix.gains[out].iter().enumerate() {
                    if gain != 0.0 {
                        for (dst, &x) in samples.iter_mut().zip(converted.chan(ch)) {
                            *dst += gain * x;
                        }
                    }
                }
            }
        }
        self.decoded_frames += frames as u64;
        Ok(true)
    }

    /// Called at the end of the stream: a file shorter than its header declares is truncated (or
    /// had damaged frames that the reader skipped).
    fn finish(&mut self) -> Result<()> {
        self.finished = true;
        match self.declared_frames {
            Some(declared) if self.decoded_frames < declared => bail!(
                "'{}' is truncated or damaged: its header declares {} of audio but only {} \
                 could be decoded",
                self.path.display(),
                self.position_text(declared),
                self.position_text(self.decoded_frames)
            ),
            _ => Ok(()),
        }
    }

    fn position_text(&self, frames: u64) -> String {
        if self.sample_rate == 0 {
            return format!("{frames} samples");
        }
        let seconds = frames as f64 / f64::from(self.sample_rate);
        format!(
            "{frames} samples ({}:{:06.3})",
            (seconds / 60.0).floor(),
            seconds % 60.0
        )
    }
}

/// The container a file's first bytes announce, if they match a known signature.
/// Runs decoder code and returns `None` if the decoder library panicked (crafted or damaged
/// input can make it). The default panic message is silenced meanwhile: the caller reports one
/// clear error instead.
fn contain_decoder_panic<T>(decode: impl FnOnce() -> Result<T>) -> Option<Result<T>> {
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode));
    std::panic::set_hook(previous_hook);
    outcome.ok()
}

/// The error for a file the decoder crashed on.
fn damaged<T>(path: &Path) -> Result<T> {
    Err(anyhow!(
        "'{}' is damaged or uses an unsupported variant of its format: the decoder could not \
         read it",
        path.display()
    ))
}

fn container_name(path: &Path) -> Option<&'static str> {
    let mut head = Vec::with_capacity(12);
    File::open(path)
        .ok()?
        .take(12)
        .read_to_end(&mut head)
        .ok()?;
    match head.as_slice() {
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'A', b'V', b'E'] => Some("a WAV file"),
        [b'f', b'L', b'a', b'C', ..] => Some("a FLAC file"),
        [b'O', b'g', b'g', b'S', ..] => Some("an OGG file"),
        [b'I', b'D', b'3', ..] => Some("an MP3 file"),
        [b'F', b'O', b'R', b'M', ..] => Some("an AIFF file"),
        [b'c', b'a', b'f', b'f', ..] => Some("a CAF file"),
        [_, _, _, _, b'f', b't', b'y', b'p', ..] => Some("an MP4 file"),
        _ => None,
    }
}

/// Gains that fold a multichannel layout down to stereo: left-side speakers go left, right-side
/// speakers right, centre speakers to both at −3 dB, LFE is dropped; each output is normalised
/// so that its gains sum to one (a full-scale signal on every speaker cannot clip).
struct Downmix {
    inputs: usize,
    gains: [Vec<f32>; 2],
}

impl Downmix {
    fn new(layout: Channels, count: usize) -> Self {
        let left = Channels::FRONT_LEFT
            | Channels::REAR_LEFT
            | Channels::FRONT_LEFT_CENTRE
            | Channels::SIDE_LEFT
            | Channels::TOP_FRONT_LEFT
            | Channels::TOP_REAR_LEFT
            | Channels::REAR_LEFT_CENTRE
            | Channels::FRONT_LEFT_WIDE
            | Channels::FRONT_LEFT_HIGH;
        let right = Channels::FRONT_RIGHT
            | Channels::REAR_RIGHT
            | Channels::FRONT_RIGHT_CENTRE
            | Channels::SIDE_RIGHT
            | Channels::TOP_FRONT_RIGHT
            | Channels::TOP_REAR_RIGHT
            | Channels::REAR_RIGHT_CENTRE
            | Channels::FRONT_RIGHT_WIDE
            | Channels::FRONT_RIGHT_HIGH;
        let lfe = Channels::LFE1 | Channels::LFE2;
        let positions: Vec<Channels> = layout.iter().collect();
        let (mut to_left, mut to_right) = (Vec::with_capacity(count), Vec::with_capacity(count));
        for ch in 0..count {
            let (l, r) = match positions.get(ch) {
                Some(&p) if left.contains(p) => (1.0, 0.0),
                Some(&p) if right.contains(p) => (0.0, 1.0),
                Some(&p) if lfe.contains(p) => (0.0, 0.0),
                Some(_) => (
                    std::f32::consts::FRAC_1_SQRT_2,
                    std::f32::consts::FRAC_1_SQRT_2,
                ),
                // No layout: alternate left and right.
                None if ch % 2 == 0 => (1.0, 0.0),
                None => (0.0, 1.0),
            };
            to_left.push(l);
            to_right.push(r);
        }
        let mut gains = [to_left, to_right];
        for side in &mut gains {
            let sum: f32 = side.iter().sum();
            if sum > 0.0 {
                side.iter_mut().for_each(|g| *g /= sum);
            }
        }
        Self {
            inputs: count,
            gains,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write_wav(path: &Path, channels: u16, rate: u32, frames: usize) -> Vec<Vec<f32>> {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut writer = hound::WavWriter::create(path, spec).unwrap();
        let mut planar = vec![Vec::new(); channels as usize];
        for i in 0..frames {
            for (ch, samples) in planar.iter_mut().enumerate() {
                let x = ((i * (ch + 1)) as f32 * 0.01).sin() * 0.5;
                writer.write_sample(x).unwrap();
                samples.push(x);
            }
        }
        writer.finalize().unwrap();
        planar
    }

    fn read_all(path: &Path) -> Result<(AudioReader, Vec<Vec<f32>>)> {
        let mut reader = AudioReader::open(path)?;
        let mut all = vec![Vec::new(); reader.channels()];
        while let Some(block) = reader.next_block()? {
            for (dst, src) in all.iter_mut().zip(block) {
                dst.extend_from_slice(src);
            }
        }
        Ok((reader, all))
    }

    #[test]
    fn decodes_a_stereo_wav_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let written = write_wav(&path, 2, 44_100, 10_000);
        let (reader, read) = read_all(&path).unwrap();
        assert_eq!(reader.sample_rate(), 44_100);
        assert_eq!(reader.channels(), 2);
        assert_eq!(reader.declared_frames(), Some(10_000));
        assert_eq!(read, written);
    }

    #[test]
    fn downmixes_six_channels_to_stereo() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("surround.wav");
        let written = write_wav(&path, 6, 48_000, 2_000);
        let (reader, read) = read_all(&path).unwrap();
        assert_eq!(reader.file_channels(), 6);
        assert_eq!(reader.channels(), 2);
        // Default 6-channel layout: FL FR FC LFE RL RR. Left = (FL + FC/√2 + RL) / (2 + 1/√2).
        let c = std::f32::consts::FRAC_1_SQRT_2;
        let norm = 2.0 + c;
        for i in [0, 17, 1999] {
            let left = (written[0][i] + c * written[2][i] + written[4][i]) / norm;
            let right = (written[1][i] + c * written[2][i] + written[5][i]) / norm;
            assert!((read[0][i] - left).abs() < 1e-6);
            assert!((read[1][i] - right).abs() < 1e-6);
        }
    }

    #[test]
    fn rejects_truncated_wav() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.wav");
        write_wav(&path, 2, 44_100, 10_000);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = read_all(&path).err().expect("truncated file accepted");
        assert!(format!("{err:#}").contains("truncated"), "{err:#}");
    }

    #[test]
    fn a_known_header_that_ends_early_is_called_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut.ogg");
        std::fs::write(&path, b"OggS\0\x02\0\0").unwrap();
        let err = AudioReader::open(&path).err().unwrap();
        assert!(format!("{err:#}").contains("truncated"), "{err:#}");
    }

    #[test]
    fn rejects_empty_and_non_audio_files() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.wav");
        File::create(&empty).unwrap();
        let err = AudioReader::open(&empty).err().unwrap();
        assert!(format!("{err:#}").contains("empty"), "{err:#}");
        let text = dir.path().join("notes.mp3");
        File::create(&text)
            .unwrap()
            .write_all(b"just some text, certainly not audio\n")
            .unwrap();
        let err = AudioReader::open(&text).err().unwrap();
        assert!(format!("{err:#}").contains("not an audio file"), "{err:#}");
    }
}
