//! Offline test signals for the audio-processing stage: speech-like voices, steady noise, and a
//! simulated room (delay, decaying impulse response, gain) that turns the far end into echo.
//!
//! Deterministic (seeded), so the tests and `aec-bench` score every candidate on the same signals.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use realfft::RealFftPlanner;

/// The stage's rate: everything here is 48 kHz mono.
pub const RATE: usize = 48_000;

/// A speech-like voice: syllables of a glottal pulse train (pitch gliding around `f0`) shaped by three
/// formant resonators that move each syllable, some fricatives, pauses between phrases; about −26 dBFS
/// RMS while talking. Not speech, but what an echo canceller and a noise suppressor care about:
/// harmonic, non-stationary, with pauses.
pub fn speech_like(seed: u64, f0: f32, seconds: f32) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let total = (seconds * RATE as f32) as usize;
    let mut out = Vec::with_capacity(total);
    let mut phase = 0.0f32;
    let mut syllables_left = rng.random_range(3..7);
    while out.len() < total {
        if syllables_left == 0 {
            let pause = rng.random_range(0.15..0.45) * RATE as f32;
            out.extend(std::iter::repeat_n(0.0, pause as usize));
            syllables_left = rng.random_range(3..7);
            continue;
        }
        syllables_left -= 1;
        let len = (rng.random_range(0.12..0.30) * RATE as f32) as usize;
        let voiced = rng.random_bool(0.85);
        let pitch_from = f0 * rng.random_range(0.8..1.25);
        let pitch_to = pitch_from * rng.random_range(0.85..1.15);
        let formants = [
            (rng.random_range(300.0..800.0), 1.0),
            (rng.random_range(900.0..2300.0), 0.5),
            (rng.random_range(2500.0..3200.0), 0.25),
        ];
        let mut filters: Vec<(Resonator, f32)> =
            formants.iter().map(|&(f, g)| (Resonator::new(f, 8.0), g)).collect();
        for i in 0..len {
            let t = i as f32 / len as f32;
            let pitch = pitch_from + (pitch_to - pitch_from) * t;
            let excitation = if voiced {
                phase += pitch / RATE as f32;
                if phase >= 1.0 {
                    phase -= 1.0;
                }
                // A sawtooth-like glottal wave plus a little breath.
                (1.0 - 2.0 * phase) + 0.05 * rng.random_range(-1.0..1.0)
            } else {
                rng.random_range(-1.0f32..1.0)
            };
            let shaped: f32 = filters.iter_mut().map(|(r, g)| *g * r.step(excitation)).sum();
            // Raised-cosine syllable envelope: onsets and decays, never a click.
            let envelope = 0.5 - 0.5 * (2.0 * std::f32::consts::PI * t).cos();
            out.push(shaped * envelope);
        }
    }
    out.truncate(total);
    normalise_active(&mut out, -26.0);
    out
}

/// Steady noise (a fan, a road): white plus a low-passed rumble, at `dbfs` RMS.
pub fn steady_noise(seed: u64, seconds: f32, dbfs: f32) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut low = 0.0f32;
    let mut out: Vec<f32> = (0..(seconds * RATE as f32) as usize)
        .map(|_| {
            let white = rng.random_range(-1.0f32..1.0);
            low = 0.98 * low + 0.02 * white;
            0.3 * white + 4.0 * low
        })
        .collect();
    let gain = db_to_amplitude(dbfs) / rms(&out).max(1e-9);
    out.iter_mut().for_each(|s| *s *= gain);
    out
}

/// The loudspeaker-to-microphone path of a room: a delay, a decaying impulse response, a gain.
#[derive(Clone, Debug)]
pub struct Room {
    /// Render-to-capture delay in milliseconds (what the devices add plus the air).
    pub delay_ms: f32,
    /// Reverberation time: the impulse response falls 60 dB in this many seconds.
    pub rt60_s: f32,
    /// Echo level relative to the far end, in dB (a laptop is near −10 dB).
    pub gain_db: f32,
    /// Seeds the response's reflections.
    pub seed: u64,
}

impl Room {
    /// The impulse response, delay included: a direct path, then a tail of seeded reflections under an
    /// exponential envelope reaching −60 dB at `rt60_s` (direct-to-reverberant ratio near +2.5 dB at
    /// RT60 0.3 s: a laptop's speaker close to its microphone).
    pub fn impulse_response(&self) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(self.seed);
        let delay = (self.delay_ms / 1000.0 * RATE as f32) as usize;
        let tail = (self.rt60_s * RATE as f32) as usize;
        let mut h = vec![0.0f32; delay + tail];
        h[delay] = 1.0;
        for (i, tap) in h[delay + 1..].iter_mut().enumerate() {
            let t = i as f32 / RATE as f32;
            // 10^(-3 t / RT60): −60 dB in amplitude at RT60.
            let envelope = 10f32.powf(-3.0 * t / self.rt60_s);
            *tap = 0.04 * envelope * rng.random_range(-1.0f32..1.0);
        }
        let energy = h.iter().map(|x| x * x).sum::<f32>().sqrt();
        let gain = db_to_amplitude(self.gain_db) / energy;
        h.iter_mut().for_each(|x| *x *= gain);
        h
    }

    /// What the microphone hears of `far` played in this room.
    pub fn echo_of(&self, far: &[f32]) -> Vec<f32> {
        convolve(far, &self.impulse_response())
    }
}

/// `signal` convolved with `response`, cut to the signal's length (one FFT: fast even unoptimised).
pub fn convolve(signal: &[f32], response: &[f32]) -> Vec<f32> {
    let n = (signal.len() + response.len()).next_power_of_two();
    let mut planner = RealFftPlanner::<f32>::new();
    let forward = planner.plan_fft_forward(n);
    let inverse = planner.plan_fft_inverse(n);
    let spectrum_of = |x: &[f32]| {
        let mut padded = vec![0.0f32; n];
        padded[..x.len()].copy_from_slice(x);
        let mut spectrum = forward.make_output_vec();
        // Lengths come from the plan itself: the transform cannot fail.
        let _ = forward.process(&mut padded, &mut spectrum);
        spectrum
    };
    let a = spectrum_of(signal);
    let b = spectrum_of(response);
    let mut product: Vec<_> = a.iter().zip(&b).map(|(x, y)| x * y).collect();
    let mut out = inverse.make_output_vec();
    let _ = inverse.process(&mut product, &mut out);
    out.truncate(signal.len());
    let scale = 1.0 / n as f32;
    out.iter_mut().for_each(|s| *s *= scale);
    out
}

/// Sample-wise sum of signals (the shortest sets the length).
pub fn mix(signals: &[&[f32]]) -> Vec<f32> {
    let len = signals.iter().map(|s| s.len()).min().unwrap_or(0);
    (0..len).map(|i| signals.iter().map(|s| s[i]).sum()).collect()
}

/// `a` until sample `at`, `b` from there on: an echo path that changes mid-call.
pub fn splice(a: &[f32], b: &[f32], at: usize) -> Vec<f32> {
    a[..at.min(a.len())].iter().chain(b.get(at..).unwrap_or(&[])).copied().collect()
}

/// `seconds` of silence.
pub fn silence(seconds: f32) -> Vec<f32> {
    vec![0.0; (seconds * RATE as f32) as usize]
}

/// Root mean square.
pub fn rms(x: &[f32]) -> f32 {
    if x.is_empty() {
        return 0.0;
    }
    (x.iter().map(|s| s * s).sum::<f32>() / x.len() as f32).sqrt()
}

/// dBFS to a linear amplitude.
pub fn db_to_amplitude(db: f32) -> f32 {
    10f32.powf(db / 20.0)
}

/// Scales `x` so its RMS over the talking parts (10 ms frames above −60 dB of the peak frame) is `dbfs`.
fn normalise_active(x: &mut [f32], dbfs: f32) {
    let frames: Vec<f32> = x.chunks(RATE / 100).map(rms).collect();
    let peak = frames.iter().cloned().fold(0.0, f32::max);
    let active: Vec<f32> = frames.into_iter().filter(|&r| r > peak * 1e-3).collect();
    let level = (active.iter().map(|r| r * r).sum::<f32>() / active.len().max(1) as f32).sqrt();
    let gain = db_to_amplitude(dbfs) / level.max(1e-9);
    x.iter_mut().for_each(|s| *s *= gain);
}

/// A two-pole resonator (a formant): constant peak gain band-pass, RBJ's cookbook.
struct Resonator {
    b0: f32,
    b2: f32,
    a1: f32,
    a2: f32,
    x1: f32,
    x2: f32,
    y1: f32,
    y2: f32,
}

impl Resonator {
    fn new(freq: f32, q: f32) -> Self {
        let w = 2.0 * std::f32::consts::PI * freq / RATE as f32;
        let alpha = w.sin() / (2.0 * q);
        let a0 = 1.0 + alpha;
        Resonator {
            b0: alpha / a0,
            b2: -alpha / a0,
            a1: -2.0 * w.cos() / a0,
            a2: (1.0 - alpha) / a0,
            x1: 0.0,
            x2: 0.0,
            y1: 0.0,
            y2: 0.0,
        }
    }

    fn step(&mut self, x: f32) -> f32 {
        let y = self.b0 * x + self.b2 * self.x2 - self.a1 * self.y1 - self.a2 * self.y2;
        self.x2 = self.x1;
        self.x1 = x;
        self.y2 = self.y1;
        self.y1 = y;
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speech_talks_at_its_level_with_pauses() {
        let voice = speech_like(1, 120.0, 4.0);
        let frames: Vec<f32> = voice.chunks(480).map(rms).collect();
        let silent = frames.iter().filter(|&&r| r < 1e-4).count();
        assert!(silent > frames.len() / 20, "pauses: {silent} of {} frames", frames.len());
        let loud = frames.iter().cloned().fold(0.0, f32::max);
        assert!(loud > db_to_amplitude(-26.0) && loud < 1.0, "peak frame {loud}");
    }

    #[test]
    fn the_room_delays_and_attenuates() {
        let mut click = vec![0.0f32; RATE];
        click[100] = 1.0;
        let room = Room { delay_ms: 50.0, rt60_s: 0.3, gain_db: -10.0, seed: 3 };
        let echo = room.echo_of(&click);
        let first = echo.iter().position(|s| s.abs() > 1e-3).unwrap_or(0);
        assert_eq!(first, 100 + 2400, "the echo starts 50 ms after the click");
        let energy_db = 10.0 * echo.iter().map(|s| s * s).sum::<f32>().log10();
        assert!((energy_db + 10.0).abs() < 0.5, "echo energy {energy_db} dB");
    }
}
