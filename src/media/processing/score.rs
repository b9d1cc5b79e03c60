//! Scoring an echo canceller or noise suppressor on the offline scenes of `room`: echo return loss
//! enhancement (ERLE) and its convergence, the near end kept during double talk, re-convergence
//! after the echo path jumps, noise suppression gain, CPU per frame and the delay a stage adds.
//!
//! The tests and `aec-bench` share these, so the README's figures and the tests' thresholds are
//! the same measurement.

use super::room::{self, Room, RATE};
use super::stage::FRAME;
use std::time::{Duration, Instant};

/// Something that processes a microphone against the far end in 10 ms frames (a candidate).
pub trait Processor {
    /// One 10 ms frame of what the speaker played.
    fn render(&mut self, frame: &[f32]) -> Result<(), String>;
    /// One 10 ms microphone frame, processed in place.
    fn capture(&mut self, frame: &mut [f32]) -> Result<(), String>;
}

impl Processor for super::stage::Stage {
    fn render(&mut self, frame: &[f32]) -> Result<(), String> {
        super::stage::Stage::render(self, frame).map_err(|e| e.to_string())
    }

    fn capture(&mut self, frame: &mut [f32]) -> Result<(), String> {
        super::stage::Stage::capture(self, frame).map_err(|e| e.to_string())
    }
}

/// The scoring windows: 250 ms.
pub const WINDOW: usize = RATE / 4;

/// What a processor made of a scene, and the time it took.
pub struct Run {
    /// The processed microphone.
    pub out: Vec<f32>,
    /// Processing time (render + capture) per 10 ms frame.
    pub per_frame: Duration,
}

/// Runs `p` over a scene: each 10 ms, the far end's frame is rendered, then the microphone's captured.
pub fn run(p: &mut dyn Processor, far: &[f32], mic: &[f32]) -> Result<Run, String> {
    let frames = mic.len() / FRAME;
    let mut out = Vec::with_capacity(frames * FRAME);
    let mut frame = [0.0f32; FRAME];
    let started = Instant::now();
    for i in 0..frames {
        let span = i * FRAME..(i + 1) * FRAME;
        p.render(far.get(span.clone()).unwrap_or(&[0.0; FRAME]))?;
        frame.copy_from_slice(&mic[span]);
        p.capture(&mut frame)?;
        out.extend_from_slice(&frame);
    }
    Ok(Run { out, per_frame: started.elapsed() / frames.max(1) as u32 })
}

/// 10·log10 of a power ratio, floored so silence does not give infinities.
pub fn db(num: f64, den: f64) -> f64 {
    10.0 * (num.max(1e-20) / den.max(1e-20)).log10()
}

fn energy(x: &[f32]) -> f64 {
    x.iter().map(|&s| (s as f64) * (s as f64)).sum()
}

/// ERLE per 250 ms window where the echo is audible (above −60 dBFS): (window start in seconds, dB).
/// `mic` is the echo (plus a little noise) alone, `out` what the processor made of it.
pub fn erle_windows(echo: &[f32], mic: &[f32], out: &[f32]) -> Vec<(f32, f64)> {
    let floor = room::db_to_amplitude(-60.0) as f64;
    let len = mic.len().min(out.len());
    (0..len / WINDOW)
        .filter_map(|w| {
            let span = w * WINDOW..(w + 1) * WINDOW;
            let e = energy(&echo[span.clone()]);
            (e / WINDOW as f64 > floor * floor)
                .then(|| (w as f32 * 0.25, db(energy(&mic[span.clone()]), energy(&out[span]))))
        })
        .collect()
}

/// ERLE over the audible windows between `from` and `to` seconds, as total powers (not a mean of dB).
pub fn erle_between(echo: &[f32], mic: &[f32], out: &[f32], from: f32, to: f32) -> f64 {
    let (mut m, mut o) = (0.0, 0.0);
    for (t, _) in erle_windows(echo, mic, out) {
        if t >= from && t + 0.25 <= to {
            let span = (t * RATE as f32) as usize..(t * RATE as f32) as usize + WINDOW;
            m += energy(&mic[span.clone()]);
            o += energy(&out[span]);
        }
    }
    db(m, o)
}

/// The first time (seconds after `from`) from which the windowed ERLE holds ≥ `target` dB for a
/// second (four windows); `None` if it never does.
pub fn converged_after(windows: &[(f32, f64)], from: f32, target: f64) -> Option<f32> {
    let after: Vec<_> = windows.iter().filter(|(t, _)| *t >= from).collect();
    (0..after.len()).find_map(|i| {
        let next = &after[i..(i + 4).min(after.len())];
        (next.len() == 4 && next.iter().all(|(_, e)| *e >= target)).then(|| after[i].0 - from)
    })
}

/// SNR of `out` against `near` over the windows where `near` talks, from `from` seconds on. With
/// `near` the near end alone through the same processor (its filters' phase, delay and gain then
/// cancel out), this is what double talk left of the local voice: residual echo and the voice
/// suppressed or distorted by the echo suppressor count as error.
pub fn near_snr(near: &[f32], out: &[f32], from: f32) -> f64 {
    let floor = room::db_to_amplitude(-50.0) as f64;
    let start = (from * RATE as f32) as usize / WINDOW;
    let len = near.len().min(out.len());
    let (mut signal, mut error) = (0.0, 0.0);
    for w in start..len / WINDOW {
        let span = w * WINDOW..(w + 1) * WINDOW;
        let s = energy(&near[span.clone()]);
        if s / WINDOW as f64 > floor * floor {
            signal += s;
            error += near[span.clone()]
                .iter()
                .zip(&out[span])
                .map(|(&a, &b)| ((a - b) as f64).powi(2))
                .sum::<f64>();
        }
    }
    db(signal, error)
}

/// Noise suppression gain: how much more the noise was turned down (in the voice's pauses) than the
/// voice (where it talks), in dB, from `from` seconds on (after the suppressor learnt the noise).
pub fn ns_gain(clean: &[f32], noisy: &[f32], out: &[f32], from: f32) -> f64 {
    let frame_rms = |x: &[f32]| room::rms(x);
    let start = (from * RATE as f32) as usize / FRAME;
    let len = clean.len().min(out.len()) / FRAME;
    let (mut pause_in, mut pause_out, mut talk_in, mut talk_out) = (0.0, 0.0, 0.0, 0.0);
    for f in start..len {
        let span = f * FRAME..(f + 1) * FRAME;
        let level = frame_rms(&clean[span.clone()]);
        if level < room::db_to_amplitude(-80.0) {
            pause_in += energy(&noisy[span.clone()]);
            pause_out += energy(&out[span]);
        } else if level > room::db_to_amplitude(-36.0) {
            talk_in += energy(&noisy[span.clone()]);
            talk_out += energy(&out[span]);
        }
    }
    db(pause_in, pause_out) - db(talk_in, talk_out)
}

/// The delay (ms) a processor adds: the peak of the cross-correlation of its output with its input
/// over 0–40 ms, on bursts of white noise (broadband, so a filter's phase cannot move the peak by a
/// pitch period as it can on a voice; not steady, so a noise suppressor lets the onsets through).
pub fn added_delay_ms(p: &mut dyn Processor) -> Result<f32, String> {
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(5);
    let input: Vec<f32> = (0..2 * RATE)
        .map(|i| {
            let on = (i % (RATE / 2)) < RATE / 6;
            if on {
                0.1 * rand::Rng::random_range(&mut rng, -1.0f32..1.0)
            } else {
                0.0
            }
        })
        .collect();
    let out = run(p, &vec![0.0; input.len()], &input)?.out;
    let max_lag = RATE / 25;
    let corr = |lag: usize| -> f64 {
        (0..out.len() - max_lag).map(|i| input[i] as f64 * out[i + lag] as f64).sum::<f64>()
    };
    let best = (0..max_lag).max_by(|&a, &b| corr(a).abs().total_cmp(&corr(b).abs())).unwrap_or(0);
    Ok(best as f32 * 1000.0 / RATE as f32)
}

/// The scenes every candidate is scored on.
pub struct Scenes {
    /// Far end alone for 10 s, echoed by a laptop-like room (80 ms, RT60 0.3 s, −10 dB) over a faint
    /// noise floor (−70 dBFS): ERLE and convergence.
    pub far_only: Scene,
    /// The far end throughout; the near end joins at 4 s (after convergence) for 6 s: double talk.
    pub double_talk: Scene,
    /// The far end alone; at 6 s the echo path jumps (80 → 140 ms, another room, RT60 0.4 s).
    pub jump: Scene,
    /// The near end alone over steady noise at −40 dBFS (SNR 14 dB): noise suppression.
    pub noisy: Scene,
}

/// One scene's signals.
pub struct Scene {
    /// What the speaker plays.
    pub far: Vec<f32>,
    /// The echo of it at the microphone.
    pub echo: Vec<f32>,
    /// The clean near-end voice at the microphone.
    pub near: Vec<f32>,
    /// What the microphone hears: echo + near end + noise.
    pub mic: Vec<f32>,
    /// The noise in `mic`.
    pub mic_floor: Vec<f32>,
}

/// When the echo path jumps in [`Scenes::jump`], in seconds.
pub const JUMP_AT: f32 = 6.0;
/// When the near end joins in [`Scenes::double_talk`], in seconds.
pub const NEAR_FROM: f32 = 4.0;

impl Scenes {
    /// Makes the scenes (about a second of work unoptimised: FFT convolutions).
    pub fn new() -> Self {
        let laptop = Room { delay_ms: 80.0, rt60_s: 0.3, gain_db: -10.0, seed: 11 };
        let far_voice = room::speech_like(1, 110.0, 12.0);
        let near_voice = room::speech_like(2, 210.0, 12.0);
        let floor = room::steady_noise(3, 12.0, -70.0);

        let far_only = {
            let far = far_voice[..10 * RATE].to_vec();
            let echo = laptop.echo_of(&far);
            let mic = room::mix(&[&echo, &floor]);
            Scene { near: vec![0.0; far.len()], far, echo, mic, mic_floor: floor.clone() }
        };
        let double_talk = {
            let far = far_voice[..10 * RATE].to_vec();
            let echo = laptop.echo_of(&far);
            let near = room::splice(&vec![0.0; far.len()], &near_voice, (NEAR_FROM * RATE as f32) as usize);
            let mic = room::mix(&[&echo, &near, &floor]);
            Scene { far, echo, near, mic, mic_floor: floor.clone() }
        };
        let jump = {
            let far = far_voice[..12 * RATE].to_vec();
            let other = Room { delay_ms: 140.0, rt60_s: 0.4, gain_db: -8.0, seed: 12 };
            let echo =
                room::splice(&laptop.echo_of(&far), &other.echo_of(&far), (JUMP_AT * RATE as f32) as usize);
            let mic = room::mix(&[&echo, &floor]);
            Scene { near: vec![0.0; far.len()], far, echo, mic, mic_floor: floor.clone() }
        };
        let noisy = {
            let near = near_voice[..10 * RATE].to_vec();
            let noise = room::steady_noise(4, 10.0, -40.0);
            let mic = room::mix(&[&near, &noise]);
            Scene { far: vec![0.0; near.len()], echo: vec![0.0; near.len()], near, mic, mic_floor: noise }
        };
        Self { far_only, double_talk, jump, noisy }
    }
}

impl Default for Scenes {
    fn default() -> Self {
        Self::new()
    }
}

/// How a canceller did on the echo scenes.
#[derive(Clone, Debug)]
pub struct EchoFigures {
    /// ERLE from 4 s to the end of the far-end-only scene (steady state), dB.
    pub steady_db: f64,
    /// ERLE over the first 2 s, dB.
    pub first_2s_db: f64,
    /// When the windowed ERLE first holds ≥ 15 dB for a second, seconds.
    pub converged_s: Option<f32>,
    /// Near-end SNR during double talk after processing, dB.
    pub double_talk_snr_db: f64,
    /// The same for the unprocessed microphone against the clean near end (the echo is the error), dB.
    pub double_talk_snr_raw_db: f64,
    /// Seconds after the echo path jumps until ERLE holds ≥ 15 dB again.
    pub reconverged_s: Option<f32>,
    /// ERLE over the 2 s after the jump, dB.
    pub after_jump_2s_db: f64,
    /// Processing time per 10 ms frame on the far-end-only scene.
    pub per_frame: Duration,
}

/// Scores a canceller on the three echo scenes, a fresh one (from `make`) for each.
pub fn score_echo(make: &dyn Fn() -> Box<dyn Processor>, s: &Scenes) -> Result<EchoFigures, String> {
    let far = run(make().as_mut(), &s.far_only.far, &s.far_only.mic)?;
    let windows = erle_windows(&s.far_only.echo, &s.far_only.mic, &far.out);
    let dt = run(make().as_mut(), &s.double_talk.far, &s.double_talk.mic)?;
    // The near end alone (no far end, the same noise floor) through a fresh processor: the reference.
    let silent_far = vec![0.0; s.double_talk.near.len()];
    let near_alone = room::mix(&[&s.double_talk.near, &s.double_talk.mic_floor]);
    let near_ref = run(make().as_mut(), &silent_far, &near_alone)?;
    let jump = run(make().as_mut(), &s.jump.far, &s.jump.mic)?;
    let jump_windows = erle_windows(&s.jump.echo, &s.jump.mic, &jump.out);
    Ok(EchoFigures {
        steady_db: erle_between(&s.far_only.echo, &s.far_only.mic, &far.out, 4.0, 10.0),
        first_2s_db: erle_between(&s.far_only.echo, &s.far_only.mic, &far.out, 0.0, 2.0),
        converged_s: converged_after(&windows, 0.0, 15.0),
        double_talk_snr_db: near_snr(&near_ref.out, &dt.out, NEAR_FROM + 0.5),
        double_talk_snr_raw_db: near_snr(&s.double_talk.near, &s.double_talk.mic, NEAR_FROM + 0.5),
        reconverged_s: converged_after(&jump_windows, JUMP_AT, 15.0),
        after_jump_2s_db: erle_between(&s.jump.echo, &s.jump.mic, &jump.out, JUMP_AT, JUMP_AT + 2.0),
        per_frame: far.per_frame,
    })
}

/// How a suppressor did on the noisy scene.
#[derive(Clone, Debug)]
pub struct NoiseFigures {
    /// Noise suppression gain from 2 s on, dB.
    pub gain_db: f64,
    /// The delay the processor adds, ms.
    pub delay_ms: f32,
    /// Processing time per 10 ms frame.
    pub per_frame: Duration,
}

/// Scores a suppressor on the noisy scene (and its added delay, a fresh one from `make` each).
pub fn score_noise(make: &dyn Fn() -> Box<dyn Processor>, s: &Scenes) -> Result<NoiseFigures, String> {
    let noisy = run(make().as_mut(), &s.noisy.far, &s.noisy.mic)?;
    Ok(NoiseFigures {
        gain_db: ns_gain(&s.noisy.near, &s.noisy.mic, &noisy.out, 2.0),
        delay_ms: added_delay_ms(make().as_mut())?,
        per_frame: noisy.per_frame,
    })
}
