use super::*;

/// One full block of covariance statistics and a partial one.
const BINS: usize = BLOCK_BINS + 3;

/// Deterministic pseudo-random complex values in -1..1.
fn noise(seed: &mut u64) -> Complex<f32> {
    let mut next = || {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    };
    Complex::new(next(), next())
}

/// Runs one frame through `wiener` and returns every source's estimate, `[source · 2 + channel]`.
fn estimates(
    wiener: &mut StereoWiener,
    left: &[Complex<f32>],
    right: &[Complex<f32>],
    masks: &[f32],
) -> Vec<Vec<Complex<f32>>> {
    let sources = masks.len() / (2 * BINS);
    let mut filter = vec![Complex::default(); wiener.filter_len()];
    wiener.update(left, right, masks, &mut filter);
    (0..sources * 2)
        .map(|lane| {
            let mut out = vec![Complex::default(); BINS];
            apply_filter(&filter, lane / 2, lane % 2, left, right, &mut out);
            out
        })
        .collect()
}

#[test]
fn estimates_sum_to_the_mix() {
    for em_steps in [0, 2] {
        estimates_sum_to_the_mix_with(em_steps);
    }
}

fn estimates_sum_to_the_mix_with(em_steps: usize) {
    let mut wiener = StereoWiener::new(3, BINS, 1.0, 86.0, em_steps);
    let mut seed = 7;
    for _ in 0..50 {
        let left: Vec<_> = (0..BINS).map(|_| noise(&mut seed) * 100.0).collect();
        let right: Vec<_> = (0..BINS).map(|_| noise(&mut seed) * 100.0).collect();
        let raw: Vec<f32> = (0..3 * 2 * BINS)
            .map(|_| noise(&mut seed).re.abs())
            .collect();
        // Masks summing to one per channel and bin, as the worker conditions them.
        let mut masks = raw.clone();
        for ch in 0..2 {
            for bin in 0..BINS {
                let sum: f32 = (0..3).map(|s| raw[(s * 2 + ch) * BINS + bin]).sum();
                for s in 0..3 {
                    masks[(s * 2 + ch) * BINS + bin] = raw[(s * 2 + ch) * BINS + bin] / sum;
                }
            }
        }
        let est = estimates(&mut wiener, &left, &right, &masks);
        for bin in 0..BINS {
            for (ch, mix) in [left[bin], right[bin]].into_iter().enumerate() {
                let sum: Complex<f32> = (0..3).map(|s| est[s * 2 + ch][bin]).sum();
                assert!(
                    (sum - mix).norm() <= 1e-3 * mix.norm().max(1.0),
                    "bin {bin} channel {ch}: {sum} against {mix}"
                );
            }
        }
    }
}

#[test]
fn sources_panned_apart_are_separated_by_placement() {
    // Two sources with the same spectrum, one hard left and one hard right: a per-channel mask
    // of ½ each cannot tell them apart, the spatial covariance can.
    let mut wiener = StereoWiener::new(2, BINS, 0.5, 86.0, 0);
    let masks = vec![0.5; 2 * 2 * BINS];
    let mut seed = 3;
    let mut left = vec![Complex::default(); BINS];
    let mut right = vec![Complex::default(); BINS];
    // Earlier, each played alone in turn and the model's masks favoured it (0.9 against 0.1):
    // the covariances learn where each one sits.
    let lean = |toward: usize| -> Vec<f32> {
        let mut m = masks.clone();
        for ch in 0..2 {
            for bin in 0..BINS {
                m[(toward * 2 + ch) * BINS + bin] = 0.9;
                m[((1 - toward) * 2 + ch) * BINS + bin] = 0.1;
            }
        }
        m
    };
    for frame in 0..200 {
        let toward = frame % 2;
        for bin in 0..BINS {
            let s = noise(&mut seed) * 10.0;
            (left[bin], right[bin]) = if toward == 0 {
                (s, Complex::default())
            } else {
                (Complex::default(), s)
            };
        }
        estimates(&mut wiener, &left, &right, &lean(toward));
    }
    // Now both play at once with plain ½ masks.
    for bin in 0..BINS {
        left[bin] = noise(&mut seed) * 10.0;
        right[bin] = noise(&mut seed) * 10.0;
    }
    let est = estimates(&mut wiener, &left, &right, &masks);
    let energy = |v: &[Complex<f32>]| v.iter().map(|z| z.norm_sqr()).sum::<f32>();
    let mix_left = energy(&left);
    // Source 0 keeps most of the left channel and little of the right; source 1 the opposite.
    assert!(
        energy(&est[0]) > 0.9 * mix_left,
        "source 0 left {}",
        energy(&est[0])
    );
    assert!(
        energy(&est[1]) < 0.01 * energy(&right),
        "source 0 right {}",
        energy(&est[1])
    );
    assert!(
        energy(&est[2]) < 0.01 * mix_left,
        "source 1 left {}",
        energy(&est[2])
    );
}

#[test]
fn silence_gives_silence_and_reset_forgets() {
    let mut wiener = StereoWiener::new(2, BINS, 1.0, 86.0, 0);
    let zeros = vec![Complex::default(); BINS];
    let masks = vec![0.5; 2 * 2 * BINS];
    for _ in 0..10_000 {
        estimates(&mut wiener, &zeros, &zeros, &masks);
    }
    for lane in estimates(&mut wiener, &zeros, &zeros, &masks) {
        assert!(lane.iter().all(|z| *z == Complex::default()), "{lane:?}");
    }
    let fresh = StereoWiener::new(2, BINS, 1.0, 86.0, 0);
    let mut seed = 11;
    let left: Vec<_> = (0..BINS).map(|_| noise(&mut seed)).collect();
    let right: Vec<_> = (0..BINS).map(|_| noise(&mut seed)).collect();
    estimates(&mut wiener, &left, &zeros, &masks);
    wiener.reset();
    let mut again = fresh;
    assert_eq!(
        estimates(&mut wiener, &left, &right, &masks),
        estimates(&mut again, &left, &right, &masks)
    );
}

/// Energy that source 1's estimate takes in a frame where only source 0 plays, after both have
/// played in turn from their places (source 0 mostly left, source 1 mostly right), with masks of
/// ½ for both: what the placement alone explains, refined by `em_steps` EM steps.
fn leak_into_the_silent_source(em_steps: usize) -> (f32, f32) {
    let mut wiener = StereoWiener::new(2, BINS, 0.5, 86.0, em_steps);
    let half = vec![0.5; 2 * 2 * BINS];
    let (mut seed, mut source_seed) = (11, 12);
    // Each source sits off-centre with a diffuse part (reverb), so its spatial covariance has
    // full rank and placement alone cannot tell the two apart completely.
    let mut place = |s: Complex<f32>, toward: usize| {
        let (near, far, diffuse) = (0.9, 0.3, 0.5);
        let (a, b) = (
            s * near + noise(&mut seed) * diffuse * 10.0,
            s * far + noise(&mut seed) * diffuse * 10.0,
        );
        if toward == 0 {
            (a, b)
        } else {
            (b, a)
        }
    };
    // Masks that favour the source playing (0.9 against 0.1), so the covariances learn where
    // each one sits.
    let lean = |toward: usize| -> Vec<f32> {
        (0..2 * 2 * BINS)
            .map(|at| if at / (2 * BINS) == toward { 0.9 } else { 0.1 })
            .collect()
    };
    let mut left = vec![Complex::default(); BINS];
    let mut right = vec![Complex::default(); BINS];
    for frame in 0..200 {
        for bin in 0..BINS {
            (left[bin], right[bin]) = place(noise(&mut source_seed) * 10.0, frame % 2);
        }
        estimates(&mut wiener, &left, &right, &lean(frame % 2));
    }
    for bin in 0..BINS {
        (left[bin], right[bin]) = place(noise(&mut source_seed) * 10.0, 0);
    }
    let est = estimates(&mut wiener, &left, &right, &half);
    let energy = |v: &[Complex<f32>]| v.iter().map(|z| z.norm_sqr()).sum::<f32>();
    (
        energy(&est[2]) + energy(&est[3]),
        energy(&left) + energy(&right),
    )
}

#[test]
fn em_steps_take_the_power_a_source_placement_cannot_explain_away_from_it() {
    let (plain, mix) = leak_into_the_silent_source(0);
    let (refined, _) = leak_into_the_silent_source(2);
    eprintln!(
        "silent source's share of the mix: {:.4} without EM, {:.4} with 2 steps",
        plain / mix,
        refined / mix
    );
    assert!(
        refined < 0.9 * plain,
        "silent source's share of the mix: {:.4} without EM, {:.4} with 2 steps",
        plain / mix,
        refined / mix
    );
}
