//! The host-rate separator under hostile hosts: a random host rate (8 kHz to 192 kHz), mono or
//! stereo, a reference model, then random block sizes (including 0) filled with random samples
//! drawn from ordinary values, NaN, ±Inf, subnormals, ±1e30, ±f32::MAX and random bit patterns.
//! Every output sample must be finite, and nothing may panic. (This target found that values
//! near f32::MAX made the resampler panic; regression test
//! `huge_finite_samples_at_a_resampled_rate_do_not_panic` in tests/tests/faults.rs.)
#![no_main]

use demix_dsp::reference_models::{band_split, mask_spec, FixedMaskModel};
use demix_dsp::{DeadlinePolicy, EngineConfig, Separator};
use libfuzzer_sys::fuzz_target;

/// Host rates a DAW or audio file may use.
const RATES: [u32; 9] = [
    8_000, 11_025, 16_000, 22_050, 44_100, 48_000, 88_200, 96_000, 192_000,
];

/// Largest host block the harness asks for.
const MAX_BLOCK: usize = 4096;

/// Reads fuzz bytes front to back; zeros once they run out.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        b
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    fn sample(&mut self) -> f32 {
        match self.u8() % 12 {
            0 => f32::NAN,
            1 => f32::INFINITY,
            2 => f32::NEG_INFINITY,
            3 => f32::from_bits(u32::from(self.u16()) + 1),
            4 => -f32::from_bits(u32::from(self.u16()) + 1),
            5 => 1e30,
            6 => -1e30,
            7 => 1e30 * f32::from(self.u8()) / 255.0,
            8 => f32::from_bits(u32::from_le_bytes([
                self.u8(),
                self.u8(),
                self.u8(),
                self.u8(),
            ])),
            9 => f32::MAX,
            10 => -f32::MAX,
            _ => f32::from(self.u16() as i16) / 32768.0,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut bytes = Bytes(data);
    let setup = bytes.u8();
    let host_rate = RATES[usize::from(setup) % RATES.len()];
    let channels = 1 + usize::from(setup >> 4 & 1);
    let realtime = setup >> 5 & 1 == 1;
    let spec = mask_spec(&["a", "b", "c"], 256, 64, usize::from(setup >> 6));
    let model: Box<dyn demix_dsp::SeparationModel> = if setup & 0x80 == 0 {
        Box::new(band_split(spec))
    } else {
        Box::new(FixedMaskModel::identity(spec, 0))
    };
    let config = EngineConfig {
        compute_slack_hops: 2,
        deadline: if realtime {
            DeadlinePolicy::RealTime
        } else {
            DeadlinePolicy::Wait
        },
    };
    let mut separator = Separator::with_max_block(model, config, host_rate, channels, MAX_BLOCK)
        .expect("a reference model must build at every host rate");
    let lanes = separator.sources() * channels;
    let mut input = vec![vec![0.0f32; MAX_BLOCK]; channels];
    let mut output = vec![vec![0.0f32; MAX_BLOCK]; lanes];
    while !bytes.0.is_empty() {
        let op = bytes.u16();
        if op == u16::MAX {
            separator.reset();
            continue;
        }
        let len = usize::from(op) % (MAX_BLOCK + 1);
        for channel in input.iter_mut() {
            for x in channel[..len].iter_mut() {
                *x = bytes.sample();
            }
        }
        let ins: Vec<&[f32]> = input.iter().map(|c| &c[..len]).collect();
        let mut outs: Vec<&mut [f32]> = output.iter_mut().map(|c| &mut c[..len]).collect();
        separator.process(&ins, &mut outs);
        for (lane, out) in output.iter().enumerate() {
            if let Some(i) = out[..len].iter().position(|x| !x.is_finite()) {
                panic!(
                    "lane {lane} sample {i} of a {len}-sample block is {}",
                    out[i]
                );
            }
        }
    }
});
