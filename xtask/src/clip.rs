//! The demo song: seven seconds synthesised deterministically from code (drums, a bass line,
//! chords and a sung-vowel voice), so the repository ships no audio and the clip comes from no
//! recording or sound library.

use anyhow::{Context, Result};
use std::f64::consts::PI;
use std::path::Path;

/// Sample rate of the demo song, in Hz.
pub const SAMPLE_RATE: u32 = 44_100;

/// Length of the demo song in frames: 14 beats at 120 BPM, i.e. seven seconds.
pub const FRAMES: usize = SAMPLE_RATE as usize * BEATS / 2;

const BEATS: usize = 14;
const BEAT_SECONDS: f64 = 0.5;

/// Peak level of the mix (about −1 dBFS).
const PEAK: f32 = 0.89;

/// One stereo signal of [`FRAMES`] frames.
#[derive(Clone, PartialEq, Debug)]
pub struct Stereo {
    /// Left channel.
    pub left: Vec<f32>,
    /// Right channel.
    pub right: Vec<f32>,
}

impl Stereo {
    fn silent() -> Self {
        Stereo {
            left: vec![0.0; FRAMES],
            right: vec![0.0; FRAMES],
        }
    }

    /// Adds `value` at frame `index`, panned by `pan` (−1 left … 1 right, constant power);
    /// frames past the end are dropped.
    fn add(&mut self, index: usize, value: f64, pan: f64) {
        if index < FRAMES {
            let angle = (pan + 1.0) * PI / 4.0;
            self.left[index] += (value * angle.cos() * std::f64::consts::SQRT_2) as f32;
            self.right[index] += (value * angle.sin() * std::f64::consts::SQRT_2) as f32;
        }
    }

    fn peak(&self) -> f32 {
        self.left
            .iter()
            .chain(&self.right)
            .fold(0.0, |peak, sample| peak.max(sample.abs()))
    }

    fn scale(&mut self, gain: f32) {
        for sample in self.left.iter_mut().chain(self.right.iter_mut()) {
            *sample *= gain;
        }
    }
}

/// The demo song: its mix and the four parts it is the sum of.
pub struct Song {
    /// The sung-vowel melody.
    pub vocals: Stereo,
    /// Kick, snare and hi-hat.
    pub drums: Stereo,
    /// The bass line.
    pub bass: Stereo,
    /// The chord pad.
    pub other: Stereo,
    /// vocals + drums + bass + other, peaking at about −1 dBFS.
    pub mix: Stereo,
}

/// Synthesises the demo song. The result is the same on every call and every machine.
pub fn render() -> Song {
    let mut noise = Noise(0x9E37_79B9_7F4A_7C15);
    let mut song = Song {
        vocals: voice(&mut noise),
        drums: drums(&mut noise),
        bass: bass(),
        other: chords(),
        mix: Stereo::silent(),
    };
    for part in [&song.vocals, &song.drums, &song.bass, &song.other] {
        for (mix, sample) in song.mix.left.iter_mut().zip(&part.left) {
            *mix += sample;
        }
        for (mix, sample) in song.mix.right.iter_mut().zip(&part.right) {
            *mix += sample;
        }
    }
    let gain = PEAK / song.mix.peak();
    for part in [
        &mut song.vocals,
        &mut song.drums,
        &mut song.bass,
        &mut song.other,
        &mut song.mix,
    ] {
        part.scale(gain);
    }
    song
}

/// Writes `signal` as a 16-bit stereo WAV file at `path`, through a temporary file in the same
/// folder and a rename, so `path` never holds a partial file.
pub fn write_wav(path: &Path, signal: &Stereo) -> Result<()> {
    let folder = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(folder)
        .with_context(|| format!("could not create {}", folder.display()))?;
    let mut temp = tempfile::NamedTempFile::new_in(folder)
        .with_context(|| format!("could not write into {}", folder.display()))?;
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::new(std::io::BufWriter::new(temp.as_file_mut()), spec)?;
    for (left, right) in signal.left.iter().zip(&signal.right) {
        writer.write_sample(to_i16(*left))?;
        writer.write_sample(to_i16(*right))?;
    }
    writer
        .finalize()
        .with_context(|| format!("could not write {}", path.display()))?;
    crate::workspace::persist(temp, path, 0o644)
}

fn to_i16(sample: f32) -> i16 {
    (sample.clamp(-1.0, 1.0) * f32::from(i16::MAX)).round() as i16
}

/// A small deterministic noise source (xorshift64*), so the song needs no random seed.
struct Noise(u64);

impl Noise {
    /// The next value, uniform in −1..1.
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
        bits as f64 / (1u64 << 52) as f64 - 1.0
    }
}

fn frame(seconds: f64) -> usize {
    (seconds * f64::from(SAMPLE_RATE)).round() as usize
}

fn midi_hz(note: f64) -> f64 {
    440.0 * 2f64.powf((note - 69.0) / 12.0)
}

/// Attack/release envelope of a note `length` seconds long, at `t` seconds into it.
fn envelope(t: f64, length: f64, attack: f64, release: f64) -> f64 {
    (t / attack).min(1.0) * ((length - t) / release).clamp(0.0, 1.0)
}

/// The chord of each bar (four beats): A minor, F, C, G, as MIDI notes.
const CHORDS: [[f64; 3]; 4] = [
    [57.0, 60.0, 64.0],
    [57.0, 60.0, 65.0],
    [55.0, 60.0, 64.0],
    [55.0, 59.0, 62.0],
];

/// Bass root of each bar: A1, F1, C2, G1.
const ROOTS: [f64; 4] = [33.0, 29.0, 36.0, 31.0];

/// The melody, one note per two beats, with the vowel it is sung on.
const MELODY: [(f64, Vowel); 7] = [
    (64.0, Vowel::A),
    (69.0, Vowel::O),
    (72.0, Vowel::E),
    (69.0, Vowel::A),
    (67.0, Vowel::I),
    (64.0, Vowel::O),
    (71.0, Vowel::U),
];

/// Seconds each melody note sounds, out of the one second it is given.
const MELODY_NOTE_SECONDS: f64 = 0.9;

#[derive(Clone, Copy)]
enum Vowel {
    A,
    E,
    I,
    O,
    U,
}

impl Vowel {
    /// Centre frequencies of the first three formants, in Hz.
    fn formants(self) -> [f64; 3] {
        match self {
            Vowel::A => [730.0, 1090.0, 2440.0],
            Vowel::E => [530.0, 1840.0, 2480.0],
            Vowel::I => [270.0, 2290.0, 3010.0],
            Vowel::O => [570.0, 840.0, 2410.0],
            Vowel::U => [300.0, 870.0, 2240.0],
        }
    }

    /// Gain of the vocal tract at `hz`: three resonances over a small floor.
    fn gain(self, hz: f64) -> f64 {
        const WEIGHTS: [f64; 3] = [1.0, 0.6, 0.3];
        const BANDWIDTHS: [f64; 3] = [90.0, 110.0, 160.0];
        let resonances: f64 = self
            .formants()
            .iter()
            .zip(WEIGHTS.iter().zip(BANDWIDTHS))
            .map(|(centre, (weight, width))| {
                weight / (1.0 + ((hz - centre) / (width / 2.0)).powi(2)).sqrt()
            })
            .sum();
        resonances + 0.01
    }
}

/// A voice singing the melody on vowels: a harmonic source shaped by formants, with delayed
/// vibrato and a little breath noise.
fn voice(noise: &mut Noise) -> Stereo {
    let mut out = Stereo::silent();
    for (index, &(note, vowel)) in MELODY.iter().enumerate() {
        let start = frame(index as f64 * 2.0 * BEAT_SECONDS);
        let f0 = midi_hz(note);
        let harmonics: Vec<f64> = (1..)
            .take_while(|k| f64::from(*k) * f0 < 5000.0)
            .map(|k| vowel.gain(f64::from(k) * f0) / f64::from(k))
            .collect();
        let norm = harmonics.iter().map(|a| a * a).sum::<f64>().sqrt();
        let mut phase = 0.0;
        for i in 0..frame(MELODY_NOTE_SECONDS) {
            let t = i as f64 / f64::from(SAMPLE_RATE);
            let vibrato = 0.3 * (t / 0.25).min(1.0) * (2.0 * PI * 5.5 * t).sin();
            phase += 2.0 * PI * f0 * 2f64.powf(vibrato / 12.0) / f64::from(SAMPLE_RATE);
            let tone: f64 = harmonics
                .iter()
                .enumerate()
                .map(|(k, amplitude)| amplitude * ((k + 1) as f64 * phase).sin())
                .sum::<f64>()
                / norm;
            let env = envelope(t, MELODY_NOTE_SECONDS, 0.05, 0.08);
            out.add(start + i, 0.3 * env * (tone + 0.03 * noise.next()), 0.0);
        }
    }
    out
}

/// Kick on beats 1 and 3 (and the "and" of 2), snare on 2 and 4, hi-hat on every eighth.
fn drums(noise: &mut Noise) -> Stereo {
    let mut out = Stereo::silent();
    for beat in 0..BEATS {
        let at = beat as f64 * BEAT_SECONDS;
        match beat % 4 {
            0 | 2 => kick(&mut out, at),
            _ => snare(&mut out, at, noise),
        }
        if beat % 4 == 1 {
            kick(&mut out, at + BEAT_SECONDS / 2.0);
        }
        hat(&mut out, at, 0.2, noise);
        hat(&mut out, at + BEAT_SECONDS / 2.0, 0.3, noise);
    }
    out
}

fn kick(out: &mut Stereo, at: f64) {
    let start = frame(at);
    for i in 0..frame(0.35) {
        let t = i as f64 / f64::from(SAMPLE_RATE);
        let phase = 2.0 * PI * (45.0 * t + 110.0 * (1.0 - (-25.0 * t).exp()) / 25.0);
        let env = (t / 0.002).min(1.0) * (-9.0 * t).exp();
        out.add(start + i, 0.9 * env * phase.sin(), 0.0);
    }
}

fn snare(out: &mut Stereo, at: f64, noise: &mut Noise) {
    let start = frame(at);
    for i in 0..frame(0.25) {
        let t = i as f64 / f64::from(SAMPLE_RATE);
        let attack = (t / 0.001).min(1.0);
        let body = 0.35 * (-25.0 * t).exp() * (2.0 * PI * 190.0 * t).sin();
        let rattle = 0.45 * (-18.0 * t).exp() * noise.next();
        out.add(start + i, attack * (body + rattle), 0.05);
    }
}

fn hat(out: &mut Stereo, at: f64, level: f64, noise: &mut Noise) {
    let start = frame(at);
    let mut previous = 0.0;
    for i in 0..frame(0.06) {
        let t = i as f64 / f64::from(SAMPLE_RATE);
        let white = noise.next();
        let high = (white - previous) / 2.0;
        previous = white;
        out.add(start + i, level * (-70.0 * t).exp() * high, 0.35);
    }
}

/// Eighth notes on the bar's root, with octave and fifth pickups.
fn bass() -> Stereo {
    const PATTERN: [f64; 8] = [0.0, 0.0, 12.0, 0.0, 0.0, 0.0, 12.0, 7.0];
    let mut out = Stereo::silent();
    for eighth in 0..BEATS * 2 {
        let bar = eighth / 8;
        let f0 = midi_hz(ROOTS[bar % 4] + PATTERN[eighth % 8]);
        let start = frame(eighth as f64 * BEAT_SECONDS / 2.0);
        let length = 0.23;
        for i in 0..frame(length) {
            let t = i as f64 / f64::from(SAMPLE_RATE);
            let tone: f64 = (1..=10)
                .map(|h| {
                    let h = f64::from(h);
                    (-0.25 * h).exp() / h * (2.0 * PI * h * f0 * t).sin()
                })
                .sum();
            let env = envelope(t, length, 0.005, 0.02) * (-4.0 * t).exp();
            out.add(start + i, 0.35 * env * tone, 0.0);
        }
    }
    out
}

/// A soft pad holding each bar's chord, detuned between left and right for width.
fn chords() -> Stereo {
    let mut out = Stereo::silent();
    let bar_seconds = 4.0 * BEAT_SECONDS;
    for bar in 0..BEATS.div_ceil(4) {
        let start = frame(bar as f64 * bar_seconds);
        for &note in &CHORDS[bar % 4] {
            for (pan, cents) in [(-0.7, -4.0), (0.7, 4.0)] {
                let f0 = midi_hz(note + cents / 100.0);
                for i in 0..frame(bar_seconds) {
                    let t = i as f64 / f64::from(SAMPLE_RATE);
                    let tone: f64 = (1..=6)
                        .map(|h| {
                            let h = f64::from(h);
                            h.powf(-1.5) * (2.0 * PI * h * f0 * t).sin()
                        })
                        .sum();
                    let env = envelope(t, bar_seconds, 0.08, 0.12);
                    out.add(start + i, 0.04 * env * tone, pan);
                }
            }
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The song, rendered once for all tests.
    pub(crate) fn song() -> &'static Song {
        static SONG: std::sync::OnceLock<Song> = std::sync::OnceLock::new();
        SONG.get_or_init(render)
    }

    /// Power of `signal` at `hz` (Goertzel).
    fn power_at(signal: &[f32], hz: f64) -> f64 {
        let coefficient = 2.0 * (2.0 * PI * hz / f64::from(SAMPLE_RATE)).cos();
        let (mut s1, mut s2) = (0.0, 0.0);
        for &x in signal {
            let s0 = f64::from(x) + coefficient * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        s1 * s1 + s2 * s2 - coefficient * s1 * s2
    }

    fn seconds(from: f64, to: f64) -> std::ops::Range<usize> {
        frame(from)..frame(to)
    }

    #[test]
    fn the_song_is_deterministic_and_peaks_just_below_full_scale() {
        let song = song();
        assert_eq!(song.mix.left.len(), FRAMES);
        assert_eq!(song.mix.right.len(), FRAMES);
        assert_eq!(FRAMES, 7 * 44_100);
        assert!((song.mix.peak() - PEAK).abs() < 1e-6);
        assert!(song
            .mix
            .left
            .iter()
            .chain(&song.mix.right)
            .all(|x| x.is_finite()));
        assert_eq!(render().mix, song.mix, "a second render is identical");
    }

    #[test]
    fn the_mix_is_the_sum_of_the_parts() {
        let song = song();
        for i in (0..FRAMES).step_by(7) {
            let sum =
                song.vocals.left[i] + song.drums.left[i] + song.bass.left[i] + song.other.left[i];
            assert!((song.mix.left[i] - sum).abs() < 1e-5, "frame {i}");
            let sum = song.vocals.right[i]
                + song.drums.right[i]
                + song.bass.right[i]
                + song.other.right[i];
            assert!((song.mix.right[i] - sum).abs() < 1e-5, "frame {i}");
        }
        for part in [&song.vocals, &song.drums, &song.bass, &song.other] {
            assert!(part.peak() > 0.05, "every part is clearly audible");
        }
    }

    #[test]
    fn the_voice_sings_the_melody_and_rests_between_notes() {
        let song = song();
        let second_note = &song.vocals.left[seconds(1.3, 1.8)];
        assert!(power_at(second_note, 440.0) > 10.0 * power_at(second_note, 392.0));
        assert!(song.vocals.left[seconds(0.91, 0.99)]
            .iter()
            .all(|&x| x == 0.0));
        assert!(song.vocals.right[seconds(1.91, 1.99)]
            .iter()
            .all(|&x| x == 0.0));
    }

    #[test]
    fn the_bass_plays_the_root_of_the_first_bar() {
        let song = song();
        let first_bar = &song.bass.left[seconds(0.0, 2.0)];
        assert!(power_at(first_bar, 55.0) > 10.0 * power_at(first_bar, 61.7));
    }

    #[test]
    fn drum_hits_fall_on_the_beat() {
        let song = song();
        let energy = |range: std::ops::Range<usize>| -> f32 {
            song.drums.left[range].iter().map(|x| x * x).sum()
        };
        let kick = energy(seconds(0.0, 0.02));
        let before_snare = energy(seconds(0.47, 0.49));
        let snare = energy(seconds(0.5, 0.52));
        assert!(kick > 20.0 * before_snare, "{kick} vs {before_snare}");
        assert!(snare > 20.0 * before_snare, "{snare} vs {before_snare}");
    }

    #[test]
    fn wav_files_round_trip_and_replace_old_ones_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/song.wav");
        let song = song();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"an older file").unwrap();
        write_wav(&path, &song.mix).unwrap();
        let mut reader = hound::WavReader::open(&path).unwrap();
        let spec = reader.spec();
        assert_eq!(
            (spec.channels, spec.sample_rate, spec.bits_per_sample),
            (2, 44_100, 16)
        );
        let samples: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
        assert_eq!(samples.len(), 2 * FRAMES);
        for i in (0..FRAMES).step_by(101) {
            assert_eq!(samples[2 * i], to_i16(song.mix.left[i]));
            assert_eq!(samples[2 * i + 1], to_i16(song.mix.right[i]));
        }
        let leftovers = std::fs::read_dir(path.parent().unwrap()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file is left behind");
    }
}
