//! Proves the audio-thread entry points never allocate: every `process` call below runs inside
//! `assert_no_alloc`, which aborts the test binary on any allocation or deallocation.

use assert_no_alloc::{assert_no_alloc, AllocDisabler};
use demix_dsp::reference_models::{band_split, mask_spec};
use demix_dsp::{
    DeadlinePolicy, DelayLine, EngineConfig, ModelError, ModelSpec, ResultSink, SeparationModel,
    Separator,
};
use std::time::Duration;

#[global_allocator]
static ALLOCATOR: AllocDisabler = AllocDisabler;

/// Misses deadlines on purpose: every 5th frame takes 40 ms.
struct Stalling(demix_dsp::reference_models::FixedMaskModel, usize);

impl SeparationModel for Stalling {
    fn spec(&self) -> &ModelSpec {
        self.0.spec()
    }
    fn push_frame(&mut self, f: &[f32], sink: &mut dyn ResultSink) -> Result<(), ModelError> {
        self.1 += 1;
        if self.1.is_multiple_of(5) {
            std::thread::sleep(Duration::from_millis(40));
        }
        self.0.push_frame(f, sink)
    }
    fn reset(&mut self) {
        self.0.reset()
    }
}

#[test]
fn process_never_allocates_at_any_rate_block_size_or_deadline_miss() {
    let config = EngineConfig {
        compute_slack_hops: 1,
        deadline: DeadlinePolicy::RealTime,
    };
    for rate in [44_100u32, 48_000, 96_000] {
        for channels in [1usize, 2] {
            // With the stereo Wiener post-filter (and its EM steps), which runs on stereo audio.
            let spec = ModelSpec {
                stereo_wiener_s: Some(2.0),
                stereo_wiener_em_steps: 2,
                ..mask_spec(&["a", "b", "c", "d"], 2048, 512, 2)
            };
            let model = Stalling(band_split(spec), 0);
            let mut sep = Separator::new(Box::new(model), config, rate, channels).unwrap();
            let mut dry = DelayLine::new(sep.latency());
            let input = vec![vec![0.25f32; 8192]; channels];
            let mut output = vec![vec![0.0f32; 8192]; 4 * channels];
            let mut dry_block = vec![0.0f32; 8192];
            for (i, &block) in [1usize, 128, 511, 8192, 64, 3000]
                .iter()
                .cycle()
                .take(60)
                .enumerate()
            {
                // The slice tables are built outside the checked region, as a host would.
                let ins: Vec<&[f32]> = input.iter().map(|c| &c[..block]).collect();
                let mut outs: Vec<&mut [f32]> =
                    output.iter_mut().map(|c| &mut c[..block]).collect();
                assert_no_alloc(|| {
                    sep.process(&ins, &mut outs);
                    dry.process(&mut dry_block[..block]);
                    if i == 30 {
                        sep.reset();
                    }
                });
                std::thread::sleep(Duration::from_micros(500));
            }
            assert!(
                sep.stats().deadline_misses() > 0,
                "the stalling model must miss"
            );
            assert!(output.iter().flatten().all(|v| v.is_finite()));
        }
    }
}
