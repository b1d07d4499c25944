//! A fixed delay line, for dry/bypass paths that must line up with the separated stems.

/// Delays one channel by a fixed number of samples. Built off the audio thread;
/// [`DelayLine::process`] is real-time safe (no allocation, no lock).
#[derive(Debug, Clone)]
pub struct DelayLine {
    buffer: Vec<f32>,
    position: usize,
}

impl DelayLine {
    /// A delay of `samples` samples, initially silent. Allocates.
    pub fn new(samples: usize) -> Self {
        Self {
            buffer: vec![0.0; samples],
            position: 0,
        }
    }

    /// The delay in samples.
    pub fn delay(&self) -> usize {
        self.buffer.len()
    }

    /// Replaces each sample of `block` by the one `delay()` samples earlier.
    pub fn process(&mut self, block: &mut [f32]) {
        if self.buffer.is_empty() {
            return;
        }
        for x in block.iter_mut() {
            std::mem::swap(x, &mut self.buffer[self.position]);
            self.position += 1;
            if self.position == self.buffer.len() {
                self.position = 0;
            }
        }
    }

    /// Silences the line.
    pub fn reset(&mut self) {
        self.buffer.fill(0.0);
        self.position = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::DelayLine;

    #[test]
    fn delays_by_exactly_its_length_across_blocks() {
        for delay in [0usize, 1, 7, 300] {
            let mut line = DelayLine::new(delay);
            let input: Vec<f32> = (1..=1000).map(|v| v as f32).collect();
            let mut out = input.clone();
            for block in out.chunks_mut(13) {
                line.process(block);
            }
            for (t, v) in out.iter().enumerate() {
                let expected = if t >= delay { input[t - delay] } else { 0.0 };
                assert_eq!(*v, expected);
            }
        }
    }
}
