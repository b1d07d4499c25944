//! Cost of the stereo Wiener post-filter on the inference worker: `StereoWiener::update` for the
//! default model's 4 sources × 1,025 bins, with 0 to 3 EM steps per frame, measured side by
//! side in interleaved rounds (so a busy stretch of a shared machine falls on all alike). Prints
//! the median over rounds in µs per frame, as a share of one core at a 512-sample hop at
//! 44.1 kHz, and as a ratio to the filter without EM steps.
//!
//! `cargo bench -p demix-dsp --bench post_filter [-- --rounds N]` (default 7 rounds of 400
//! frames each per setting).

use std::hint::black_box;
use std::time::Instant;

use demix_dsp::wiener::StereoWiener;
use realfft::num_complex::Complex;

const SOURCES: usize = 4;
const BINS: usize = 1025;
const FRAMES: usize = 400;
const HOP_S: f64 = 512.0 / 44_100.0;
const STEPS: [usize; 4] = [0, 1, 2, 3];

/// One frame's input to the filter: the mix's left and right spectra and the masks.
struct Frame {
    left: Vec<Complex<f32>>,
    right: Vec<Complex<f32>>,
    masks: Vec<f32>,
}

/// Deterministic pseudo-random values in 0..1.
fn uniform(seed: &mut u64) -> f32 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (*seed >> 40) as f32 / (1u64 << 24) as f32
}

fn main() {
    let mut rounds = 7usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--rounds" {
            rounds = args
                .next()
                .and_then(|v| v.parse().ok())
                .expect("--rounds takes a number");
        }
    }
    let mut seed = 1u64;
    // Frames of a noisy stereo mix and masks that sum to one per channel and bin.
    let frames: Vec<Frame> = (0..FRAMES)
        .map(|_| {
            let mut spectrum = || -> Vec<Complex<f32>> {
                (0..BINS)
                    .map(|_| Complex::new(uniform(&mut seed) - 0.5, uniform(&mut seed) - 0.5))
                    .collect()
            };
            let (left, right) = (spectrum(), spectrum());
            let raw: Vec<f32> = (0..SOURCES * 2 * BINS)
                .map(|_| uniform(&mut seed) + 0.01)
                .collect();
            let mut masks = raw.clone();
            for lane in 0..2 * BINS {
                let (channel, bin) = (lane / BINS, lane % BINS);
                let at = |src: usize| (src * 2 + channel) * BINS + bin;
                let sum: f32 = (0..SOURCES).map(|s| raw[at(s)]).sum();
                for s in 0..SOURCES {
                    masks[at(s)] = raw[at(s)] / sum;
                }
            }
            Frame { left, right, masks }
        })
        .collect();
    let mut filters: Vec<StereoWiener> = STEPS
        .iter()
        .map(|&steps| StereoWiener::new(SOURCES, BINS, 2.3, 1.0 / HOP_S, steps))
        .collect();
    let mut out = vec![Complex::default(); filters[0].filter_len()];
    let mut per_frame_us = vec![Vec::new(); STEPS.len()];
    for _ in 0..rounds {
        for (filter, times) in filters.iter_mut().zip(&mut per_frame_us) {
            let start = Instant::now();
            for frame in &frames {
                filter.update(&frame.left, &frame.right, &frame.masks, &mut out);
                black_box(&out);
            }
            times.push(start.elapsed().as_secs_f64() * 1e6 / FRAMES as f64);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let medians: Vec<f64> = per_frame_us.iter_mut().map(median).collect();
    println!(
        "stereo Wiener post-filter, {SOURCES} sources × {BINS} bins, {rounds} interleaved rounds of {FRAMES} frames"
    );
    for (steps, us) in STEPS.iter().zip(&medians) {
        println!(
            "  {steps} EM steps: median {us:7.1} µs per frame = {:.2} % of one core at a 512-sample hop, {:.2}× the filter without EM",
            us * 1e-6 / HOP_S * 100.0,
            us / medians[0]
        );
    }
}
