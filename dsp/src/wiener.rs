//! The stereo Wiener post-filter: turns a mask model's per-channel masks into a 2 × 2 filter per
//! source and bin that also uses each source's inter-channel covariance, tracked causally over
//! past frames. Sources panned apart are then separated by their placement as well as by their
//! spectra. It adds no latency, and the filtered sources sum to the mix.
//!
//! Per bin, with mix `x = (x_L, x_R)` and masks `m_jc`: the source's masked image
//! `y_j = (m_jL x_L, m_jR x_R)` updates its running spatial covariance
//! `R_j = E[y_j y_jᴴ] / E[½|y_j|²]`, where `E` is a one-pole average over frames (the time
//! constant the manifest gives) and over the bins of a block of [`BLOCK_BINS`] (placement
//! changes slowly with frequency, and the pooled estimate is steadier); its power is
//! `v_j = ½(m_jL + m_jR) · ½|x|²`; and its filter is `W_j = v_j R_j (Σ_k v_k R_k)⁻¹`, so that
//! `ŝ_j = W_j x`. With `em_steps` above 0 the powers are then refined by expectation-maximisation,
//! as in multichannel Wiener filtering: each step takes `v_j` from the estimate's posterior
//! second moment, `½(|ŝ_j|² + tr(V_j − W_j V_j))` with `V_j = v_j R_j` (over `½ tr R_j`), and
//! solves the filter again; the covariances `R_j` stay the running ones. The worker computes it in
//! double precision (the covariance of a source heard in one place is nearly singular), the audio
//! thread only applies it.
//! `models/training/evaluate.py` computes the same.

use realfft::num_complex::Complex;

/// Added to every power average so the covariances stay invertible and never subnormal.
const POWER_FLOOR: f64 = 1e-12;

/// Diagonal loading of the mix covariance, relative to its trace.
const LOADING: f64 = 1e-6;

/// Longest time constant a model may ask for, in seconds.
pub const MAX_TIME_CONSTANT_S: f64 = 600.0;

/// Most EM steps per frame a model may ask for.
pub const MAX_EM_STEPS: usize = 8;

/// Bins whose statistics pool into one covariance (11 kHz at 44.1 kHz with a 2048-point FFT);
/// the last block holds the bins left over.
pub const BLOCK_BINS: usize = 512;

/// Running spatial covariances of every source. Built with the engine and handed to its
/// inference worker, the only thread that uses it; [`StereoWiener::update`] and
/// [`StereoWiener::reset`] never allocate.
pub struct StereoWiener {
    sources: usize,
    bins: usize,
    /// Blocks of [`BLOCK_BINS`] bins (the last may be shorter).
    blocks: usize,
    /// Weight of the past in each one-pole average, per frame.
    smoothing: f64,
    /// EM refinements of the source powers per frame.
    em_steps: usize,
    /// Per source and block: running sums over the block's bins of `E|y_L|²`, `E|y_R|²`,
    /// `E[y_L y_R*]`, `E[½|y|²]`.
    left_power: Vec<f64>,
    right_power: Vec<f64>,
    cross: Vec<Complex<f64>>,
    power: Vec<f64>,
    /// Per source, for the bin being solved: `v_j / E[½|y_j|²]`.
    gains: Vec<f64>,
    /// Per source, for the bin being solved: the filter `W_j` (row-major 2 × 2).
    filters: Vec<[Complex<f64>; 4]>,
}

impl StereoWiener {
    /// A filter for `sources` sources over the lowest `bins` bins, forgetting the past with
    /// `time_constant_s` seconds at `frames_per_second` frames a second, refining the source
    /// powers with `em_steps` EM steps per frame. Allocates; not real-time safe.
    pub fn new(
        sources: usize,
        bins: usize,
        time_constant_s: f64,
        frames_per_second: f64,
        em_steps: usize,
    ) -> Self {
        let smoothing = (-1.0 / (time_constant_s * frames_per_second)).exp();
        let blocks = bins.div_ceil(BLOCK_BINS);
        let mut wiener = Self {
            sources,
            bins,
            blocks,
            smoothing,
            em_steps,
            left_power: vec![0.0; sources * blocks],
            right_power: vec![0.0; sources * blocks],
            cross: vec![Complex::default(); sources * blocks],
            power: vec![0.0; sources * blocks],
            gains: vec![0.0; sources],
            filters: vec![[Complex::default(); 4]; sources],
        };
        wiener.reset();
        wiener
    }

    /// Forgets the covariances: every source starts as spatially white. Real-time safe.
    pub fn reset(&mut self) {
        let (bins, blocks) = (self.bins, self.blocks);
        for (at, ((left, right), power)) in self
            .left_power
            .iter_mut()
            .zip(self.right_power.iter_mut())
            .zip(self.power.iter_mut())
            .enumerate()
        {
            let floor = POWER_FLOOR * block_len(bins, at % blocks) as f64;
            (*left, *right, *power) = (floor, floor, floor);
        }
        self.cross.fill(Complex::default());
    }

    /// Values of one frame's filter: `[source][out channel][in channel][bin]`.
    pub fn filter_len(&self) -> usize {
        self.sources * 4 * self.bins
    }

    /// Takes one frame: the mix's `left` and `right` spectra (at least `bins` bins) and the
    /// masks, laid out `[source][channel][bin]`. Updates the covariances and writes the frame's
    /// filter into `filter` ([`StereoWiener::filter_len`] values, see [`apply_filter`]).
    pub fn update(
        &mut self,
        left: &[Complex<f32>],
        right: &[Complex<f32>],
        masks: &[f32],
        filter: &mut [Complex<f32>],
    ) {
        let (bins, blocks, past) = (self.bins, self.blocks, self.smoothing);
        let new = 1.0 - past;
        let mask = |src: usize, channel: usize, bin: usize| {
            f64::from(masks[(src * 2 + channel) * bins + bin])
        };
        // The frame's share of every running sum.
        for stat in [&mut self.left_power, &mut self.right_power, &mut self.power] {
            stat.iter_mut().for_each(|v| *v *= past);
        }
        self.cross.iter_mut().for_each(|v| *v *= past);
        for bin in 0..bins {
            let (xl, xr) = (widen(left[bin]), widen(right[bin]));
            for src in 0..self.sources {
                let at = src * blocks + bin / BLOCK_BINS;
                let (yl, yr) = (xl * mask(src, 0, bin), xr * mask(src, 1, bin));
                let (pl, pr) = (yl.norm_sqr(), yr.norm_sqr());
                self.left_power[at] += new * (pl + POWER_FLOOR);
                self.right_power[at] += new * (pr + POWER_FLOOR);
                self.cross[at] += yl * yr.conj() * new;
                self.power[at] += new * (0.5 * (pl + pr) + POWER_FLOOR);
            }
        }
        // Each bin's filter from its block's statistics: `v_j R_j` is `v_j` times the block's
        // covariance sums over its power sum (the block's size cancels).
        for bin in 0..bins {
            let block = bin / BLOCK_BINS;
            let (xl, xr) = (widen(left[bin]), widen(right[bin]));
            let mix_power = 0.5 * (xl.norm_sqr() + xr.norm_sqr());
            for src in 0..self.sources {
                let at = src * blocks + block;
                self.gains[src] =
                    0.5 * (mask(src, 0, bin) + mask(src, 1, bin)) * mix_power / self.power[at];
            }
            self.solve(block);
            for _ in 0..self.em_steps {
                for src in 0..self.sources {
                    let at = src * blocks + block;
                    // V_j = gain · [[a, q], [q*, b]] from the block's sums.
                    let gain = self.gains[src];
                    let (a, b, q) = (self.left_power[at], self.right_power[at], self.cross[at]);
                    let w = &self.filters[src];
                    let (sl, sr) = (w[0] * xl + w[1] * xr, w[2] * xl + w[3] * xr);
                    let trace = gain * (a + b);
                    let trace_wv = gain * (w[0] * a + w[1] * q.conj() + w[2] * q + w[3] * b).re;
                    let second = sl.norm_sqr() + sr.norm_sqr() + (trace - trace_wv).max(0.0);
                    self.gains[src] = gain * second / trace.max(POWER_FLOOR);
                }
                self.solve(block);
            }
            for (src, w) in self.filters.iter().enumerate() {
                for (k, w) in w.iter().enumerate() {
                    filter[(src * 4 + k) * bins + bin] = Complex::new(w.re as f32, w.im as f32);
                }
            }
        }
    }

    /// Each source's filter `W_j = v_j R_j (Σ_k v_k R_k)⁻¹` for one bin of `block`, from
    /// `self.gains`, into `self.filters`: `v_j R_j` is the gain times the block's covariance
    /// sums (the block's size cancels).
    fn solve(&mut self, block: usize) {
        let blocks = self.blocks;
        let (mut c_ll, mut c_rr, mut c_lr) = (0.0, 0.0, Complex::<f64>::default());
        for src in 0..self.sources {
            let at = src * blocks + block;
            let gain = self.gains[src];
            c_ll += gain * self.left_power[at];
            c_rr += gain * self.right_power[at];
            c_lr += self.cross[at] * gain;
        }
        let loading = LOADING * (c_ll + c_rr) + POWER_FLOOR;
        c_ll += loading;
        c_rr += loading;
        let det = c_ll * c_rr - c_lr.norm_sqr();
        for src in 0..self.sources {
            let at = src * blocks + block;
            let scale = self.gains[src] / det;
            let (a, b, q) = (self.left_power[at], self.right_power[at], self.cross[at]);
            self.filters[src] = [
                (q * -c_lr.conj() + a * c_rr) * scale,
                (q * c_ll - c_lr * a) * scale,
                (q.conj() * c_rr - c_lr.conj() * b) * scale,
                (c_lr * -q.conj() + b * c_ll) * scale,
            ];
        }
    }
}

/// Writes source `src`'s spectrum for output channel `channel` (0 left, 1 right) into `out`:
/// the frame's `filter` (from [`StereoWiener::update`], `bins` bins) applied to the mix's `left`
/// and `right` spectra. Real-time safe.
pub fn apply_filter(
    filter: &[Complex<f32>],
    src: usize,
    channel: usize,
    left: &[Complex<f32>],
    right: &[Complex<f32>],
    out: &mut [Complex<f32>],
) {
    let bins = out.len();
    let row = &filter[(src * 4 + channel * 2) * bins..][..2 * bins];
    let (from_left, from_right) = row.split_at(bins);
    for ((((o, &wl), &wr), &xl), &xr) in out
        .iter_mut()
        .zip(from_left)
        .zip(from_right)
        .zip(left)
        .zip(right)
    {
        *o = wl * xl + wr * xr;
    }
}

/// Bins in block `block` of a spectrum of `bins` bins.
fn block_len(bins: usize, block: usize) -> usize {
    BLOCK_BINS.min(bins - block * BLOCK_BINS)
}

fn widen(z: Complex<f32>) -> Complex<f64> {
    Complex::new(f64::from(z.re), f64::from(z.im))
}

#[cfg(test)]
#[path = "wiener_tests.rs"]
mod tests;
