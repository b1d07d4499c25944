//! A deterministic synthetic stereo "song" for benchmarks: bass line, kick and hi-hat, a
//! vibrato lead voice and a sustained pad, all from closed-form formulas and a fixed-seed noise
//! generator, so every run (and every machine) processes the same samples.

use std::f32::consts::TAU;

/// Generates the test signal block by block at a given rate.
pub struct TestSignal {
    rate: f32,
    position: u64,
    noise: u32,
}

impl TestSignal {
    /// A generator at `rate` Hz, starting at time zero.
    pub fn new(rate: u32) -> Self {
        Self {
            rate: rate as f32,
            position: 0,
            noise: 0x2545_f491,
        }
    }

    /// Fills the next `left.len()` samples (both slices must have the same length). Does not
    /// allocate.
    pub fn fill(&mut self, left: &mut [f32], right: &mut [f32]) {
        for (l, r) in left.iter_mut().zip(right.iter_mut()) {
            let t = self.position as f32 / self.rate;
            // Beats of 0.5 s; the bass walks through four notes per bar.
            let beat = t * 2.0;
            let in_beat = beat.fract() / 2.0;
            let bar_step = (beat as u64 % 4) as f32;
            let bass_freq = 55.0 * 2f32.powf([0.0, 3.0, 5.0, 7.0][bar_step as usize] / 12.0);
            let bass = 0.25 * (TAU * bass_freq * t).sin() * (-in_beat * 3.0).exp();
            let kick = 0.35
                * (TAU * 50.0 * in_beat * (1.0 + 2.0 * (-in_beat * 30.0).exp())).sin()
                * (-in_beat * 12.0).exp();
            let hat_phase = (t * 8.0).fract() / 8.0;
            let hat = 0.08 * self.next_noise() * (-hat_phase * 80.0).exp();
            let vibrato = 1.0 + 0.01 * (TAU * 5.5 * t).sin();
            let voice_freq = 220.0 * 2f32.powf(((t / 2.0) as u64 % 5) as f32 * 2.0 / 12.0);
            let phase = TAU * voice_freq * vibrato * t;
            let voice =
                0.12 * (phase.sin() + 0.5 * (2.0 * phase).sin() + 0.25 * (3.0 * phase).sin());
            let pad = 0.05 * ((TAU * 261.6 * t).sin() + (TAU * 329.6 * t).sin());
            let centre = bass + kick + voice;
            *l = centre + 0.7 * hat + 1.2 * pad;
            *r = centre + 1.3 * hat + 0.8 * pad;
            self.position += 1;
        }
    }

    /// Xorshift noise in −1..1.
    fn next_noise(&mut self) -> f32 {
        let mut x = self.noise;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.noise = x;
        x as f32 / u32::MAX as f32 * 2.0 - 1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_deterministic_bounded_and_not_silent() {
        let render = || {
            let mut signal = TestSignal::new(48_000);
            let (mut l, mut r) = (vec![0.0; 48_000], vec![0.0; 48_000]);
            // Two uneven blocks give the same result as one.
            signal.fill(&mut l[..1000], &mut r[..1000]);
            signal.fill(&mut l[1000..], &mut r[1000..]);
            (l, r)
        };
        let (l, r) = render();
        assert_eq!((l.clone(), r.clone()), render());
        let peak = l.iter().chain(&r).fold(0.0f32, |m, x| m.max(x.abs()));
        let rms = (l.iter().map(|x| x * x).sum::<f32>() / l.len() as f32).sqrt();
        assert!(peak < 1.0, "peak {peak}");
        assert!(rms > 0.05, "rms {rms}");
        assert_ne!(l, r);
    }
}
