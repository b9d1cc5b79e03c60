//! Mono sample-rate conversion between a device's native rate and the 48 kHz Opus runs at.
//!
//! A thin streaming layer over rubato's FFT resampler (fixed ratio, the fastest of its kinds): it
//! takes any number of samples, runs the resampler on whole input chunks, and hands out whatever
//! is ready. Equal rates pass straight through.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

/// The resampler refused the pair of rates (zero, or a ratio it cannot build).
#[derive(Debug, thiserror::Error)]
#[error("cannot resample {from} Hz to {to} Hz: {detail}")]
pub struct ResampleError {
    /// Input rate.
    pub from: u32,
    /// Output rate.
    pub to: u32,
    /// rubato's words.
    pub detail: String,
}

/// A streaming mono resampler from one fixed rate to another.
pub struct MonoResampler {
    inner: Option<Fft<f32>>,
    /// Input waiting for a whole chunk.
    pending: Vec<f32>,
    /// The resampler's output for one chunk.
    out: Vec<f32>,
}

impl MonoResampler {
    /// A resampler from `from` Hz to `to` Hz, working in chunks of 10 ms of input (short chunks keep
    /// the added delay small).
    pub fn new(from: u32, to: u32) -> Result<Self, ResampleError> {
        if from == to {
            return Ok(Self { inner: None, pending: Vec::new(), out: Vec::new() });
        }
        let chunk = (from as usize / 100).max(16);
        let inner = Fft::<f32>::new(from as usize, to as usize, chunk, 1, FixedSync::Input)
            .map_err(|e| ResampleError { from, to, detail: e.to_string() })?;
        let out = vec![0.0; inner.output_frames_max()];
        Ok(Self { inner: Some(inner), pending: Vec::with_capacity(chunk * 2), out })
    }

    /// Samples of delay the resampler adds (at the output rate).
    pub fn delay(&self) -> usize {
        self.inner.as_ref().map_or(0, |r| r.output_delay())
    }

    /// Feeds `input` and appends every output sample ready so far to `output`.
    pub fn process(&mut self, input: &[f32], output: &mut impl Extend<f32>) {
        let Some(inner) = self.inner.as_mut() else {
            output.extend(input.iter().copied());
            return;
        };
        self.pending.extend_from_slice(input);
        let chunk = inner.input_frames_next();
        let mut start = 0;
        while self.pending.len() - start >= chunk {
            let block = &self.pending[start..start + chunk];
            start += chunk;
            let out_len = self.out.len();
            let (Ok(input), Ok(mut out)) = (
                InterleavedSlice::new(block, 1, chunk),
                InterleavedSlice::new_mut(&mut self.out[..], 1, out_len),
            ) else {
                continue;
            };
            match inner.process_into_buffer(&input, &mut out, None) {
                Ok((_, written)) => output.extend(self.out[..written].iter().copied()),
                // Cannot happen with the sizes the resampler itself asked for; skipping a chunk is
                // a 10 ms dropout, not a reason to stop the call.
                Err(e) => tracing::warn!(%e, "resampling failed for one chunk"),
            }
        }
        self.pending.drain(..start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::tone::{dominant_frequency, tone_power};

    #[test]
    fn a_44k1_tone_comes_out_at_48k_with_its_pitch_and_level() {
        let mut r = MonoResampler::new(44_100, 48_000).expect("resampler");
        let input: Vec<f32> =
            (0..44_100).map(|i| (std::f32::consts::TAU * 1000.0 * i as f32 / 44_100.0).sin() * 0.5).collect();
        let mut out = Vec::new();
        for piece in input.chunks(441 * 3 + 7) {
            r.process(piece, &mut out);
        }
        assert!((out.len() as i64 - 48_000).abs() < 1000, "{} samples", out.len());
        let pcm: Vec<i16> = out[2000..].iter().map(|&s| (s * i16::MAX as f32) as i16).collect();
        assert_eq!(dominant_frequency(&pcm, (1..20).map(|k| k as f64 * 250.0)), Some(1000.0));
        // A half-scale sine has Goertzel power ~0.0625 in this normalisation.
        let p = tone_power(&pcm, 1000.0);
        assert!((0.05..0.075).contains(&p), "power {p}");
    }

    #[test]
    fn equal_rates_pass_through() {
        let mut r = MonoResampler::new(48_000, 48_000).expect("resampler");
        let mut out = Vec::new();
        r.process(&[0.1, 0.2, 0.3], &mut out);
        assert_eq!(out, vec![0.1, 0.2, 0.3]);
        assert_eq!(r.delay(), 0);
    }
}
