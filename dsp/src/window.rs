//! Analysis windows and the synthesis window that makes overlap-add reconstruct exactly.

use std::f64::consts::PI;

/// Analysis window shapes a model manifest may declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// Periodic Hann window (as `torch.hann_window(n, periodic=True)`).
    Hann,
    /// Square root of the periodic Hann window.
    SqrtHann,
    /// All ones.
    Rectangular,
}

impl WindowKind {
    /// Parses the manifest spelling (`hann`, `sqrt_hann`, `rectangular`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "hann" => Some(Self::Hann),
            "sqrt_hann" => Some(Self::SqrtHann),
            "rectangular" => Some(Self::Rectangular),
            _ => None,
        }
    }

    /// The manifest spelling of this window.
    pub fn name(self) -> &'static str {
        match self {
            Self::Hann => "hann",
            Self::SqrtHann => "sqrt_hann",
            Self::Rectangular => "rectangular",
        }
    }

    /// The window's `len` coefficients. Allocates: call at set-up, never on the audio thread.
    pub fn coefficients(self, len: usize) -> Vec<f32> {
        (0..len)
            .map(|n| {
                let hann = 0.5 - 0.5 * (2.0 * PI * n as f64 / len as f64).cos();
                match self {
                    Self::Hann => hann as f32,
                    Self::SqrtHann => hann.sqrt() as f32,
                    Self::Rectangular => 1.0,
                }
            })
            .collect()
    }
}

/// The synthesis window `w_s[n] = w_a[n] / Σ_k w_a[n − k·hop]²`, which makes windowed
/// overlap-add of unmodified frames give back the input exactly. Returns `None` when the analysis
/// window leaves a sample uncovered (the sum is zero), i.e. the hop is too large for the window.
/// Allocates: set-up only.
pub fn synthesis_window(analysis: &[f32], hop: usize) -> Option<Vec<f32>> {
    let len = analysis.len();
    if hop == 0 || hop > len {
        return None;
    }
    let mut out = Vec::with_capacity(len);
    for n in 0..len {
        let mut sum = 0.0f64;
        let mut k = n % hop;
        while k < len {
            sum += (analysis[k] as f64).powi(2);
            k += hop;
        }
        if sum < 1e-9 {
            return None;
        }
        out.push((analysis[n] as f64 / sum) as f32);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hann_overlap_add_reconstructs() {
        for &(n, hop) in &[(2048usize, 512usize), (1024, 256), (6144, 1024), (16, 8)] {
            for kind in [WindowKind::Hann, WindowKind::SqrtHann] {
                let wa = kind.coefficients(n);
                let ws = synthesis_window(&wa, hop).expect("covered");
                for j in 0..hop {
                    let mut s = 0.0f64;
                    let mut k = j;
                    while k < n {
                        s += wa[k] as f64 * ws[k] as f64;
                        k += hop;
                    }
                    assert!(
                        (s - 1.0).abs() < 1e-6,
                        "{kind:?} n={n} hop={hop} j={j}: {s}"
                    );
                }
            }
        }
    }

    #[test]
    fn uncovered_hop_is_refused() {
        let wa = WindowKind::Hann.coefficients(8);
        assert!(synthesis_window(&wa, 9).is_none());
        assert!(synthesis_window(&wa, 0).is_none());
        // Periodic Hann is zero at n = 0, so a hop equal to the length leaves sample 0 uncovered.
        assert!(synthesis_window(&wa, 8).is_none());
    }

    #[test]
    fn names_round_trip() {
        for kind in [
            WindowKind::Hann,
            WindowKind::SqrtHann,
            WindowKind::Rectangular,
        ] {
            assert_eq!(WindowKind::parse(kind.name()), Some(kind));
        }
        assert_eq!(WindowKind::parse("blackman"), None);
    }
}
