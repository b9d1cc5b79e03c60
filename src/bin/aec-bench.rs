//! aec-bench: scores the echo cancellers and noise suppressors we considered on the same offline
//! scenes (speech-like far and near ends, a simulated room, steady noise) and prints a table:
//! ERLE after convergence and over the first 2 s, convergence time, double-talk near-end SNR,
//! re-convergence after an echo-path jump, noise suppression gain, CPU per 10 ms frame, added delay.
//!
//! `cargo run --release --bin aec-bench` scores the stage we ship (`webrtc-audio-processing` 0.5 on
//! Debian's libwebrtc-audio-processing 0.3); `--features bench-candidates` adds the candidates we
//! measured and did not choose, `aec3` (pure-Rust AEC3) and `nnnoiseless` (RNNoise): optional, so
//! CI does not build them.

use peercall::media::processing::score::{self, EchoFigures, Processor, Scenes};
#[cfg(feature = "bench-candidates")]
use peercall::media::processing::FRAME;
use peercall::media::processing::{Stage, Switches};

/// The microphone as captured: the baseline.
struct Unprocessed;

impl Processor for Unprocessed {
    fn render(&mut self, _: &[f32]) -> Result<(), String> {
        Ok(())
    }
    fn capture(&mut self, _: &mut [f32]) -> Result<(), String> {
        Ok(())
    }
}

#[cfg(feature = "bench-candidates")]
/// RNNoise (nnnoiseless): noise only; it takes ±32768-scaled 10 ms frames and lags one frame.
struct Rnnoise(Box<nnnoiseless::DenoiseState<'static>>, Vec<f32>, Vec<f32>);

#[cfg(feature = "bench-candidates")]
impl Processor for Rnnoise {
    fn render(&mut self, _: &[f32]) -> Result<(), String> {
        Ok(())
    }
    fn capture(&mut self, frame: &mut [f32]) -> Result<(), String> {
        self.1.iter_mut().zip(frame.iter()).for_each(|(d, s)| *d = s * 32768.0);
        self.0.process_frame(&mut self.2, &self.1);
        frame.iter_mut().zip(&self.2).for_each(|(d, s)| *d = s / 32768.0);
        Ok(())
    }
}

#[cfg(feature = "bench-candidates")]
mod aec3_chain {
    //! The `aec3` crate's linear chain (high-pass, AEC3, NS, AGC2, post filter), AEC3 bypassed when off.
    use super::Processor;
    use aec3::graph::NodeControlState;
    use aec3::nodes::audio::AudioFormat;
    use aec3::pipelines::linear::{self, LinearPipeline};

    pub struct Aec3(LinearPipeline, Vec<f32>);

    impl Aec3 {
        pub fn chain(aec: bool, ns: bool, agc: bool) -> Box<dyn Processor> {
            let format = AudioFormat::ten_ms(48_000, 1);
            let built = linear::builder(format, format)
                .enable_noise_suppression(ns)
                .enable_gain_controller2(agc)
                .build()
                .and_then(|mut p| {
                    if !aec {
                        let id = p.handles().aec3.node_id();
                        p.set_node_state(id, NodeControlState::Bypassed)?;
                    }
                    Ok(p)
                });
            match built {
                Ok(p) => Box::new(Aec3(p, vec![0.0; super::FRAME])),
                Err(e) => {
                    eprintln!("aec3: {e}");
                    std::process::exit(1)
                }
            }
        }
    }

    impl Processor for Aec3 {
        fn render(&mut self, frame: &[f32]) -> Result<(), String> {
            self.0.handle_render_frame(frame).map_err(|e| e.to_string())
        }
        fn capture(&mut self, frame: &mut [f32]) -> Result<(), String> {
            self.0.process_capture_frame(frame, &mut self.1).map_err(|e| e.to_string())?;
            frame.copy_from_slice(&self.1);
            Ok(())
        }
    }
}

fn stage(switches: Switches) -> Box<dyn Processor> {
    match Stage::new(switches) {
        Ok(s) => Box::new(s),
        Err(e) => {
            eprintln!("aec3: {e}");
            std::process::exit(1);
        }
    }
}

fn secs(t: Option<f32>) -> String {
    t.map(|t| format!("{t:.2} s")).unwrap_or_else(|| "never".into())
}

fn echo_row(name: &str, f: &EchoFigures) {
    println!(
        "| {name} | {:.1} | {:.1} | {} | {:.1} (raw {:.1}) | {} | {:.1} | {:.0} |",
        f.steady_db,
        f.first_2s_db,
        secs(f.converged_s),
        f.double_talk_snr_db,
        f.double_talk_snr_raw_db,
        secs(f.reconverged_s),
        f.after_jump_2s_db,
        f.per_frame.as_secs_f64() * 1e6,
    );
}

fn main() {
    let scenes = Scenes::new();
    let aec_only = Switches { echo_cancellation: true, noise_suppression: false, gain_control: false };
    let ns_only = Switches { echo_cancellation: false, noise_suppression: true, gain_control: false };

    println!(
        "Echo: far end 80 ms / RT60 0.3 s / -10 dB room; jump at {} s to 140 ms / RT60 0.4 s",
        score::JUMP_AT
    );
    println!("| canceller | ERLE steady dB | ERLE first 2 s dB | converged (>=15 dB) | double-talk near SNR dB | re-converged after jump | ERLE 2 s after jump dB | us per 10 ms |");
    println!("|---|---|---|---|---|---|---|---|");
    let report = |name: &str, make: &dyn Fn() -> Box<dyn Processor>| match score::score_echo(make, &scenes) {
        Ok(f) => echo_row(name, &f),
        Err(e) => println!("| {name} | failed: {e} |"),
    };
    report("none", &|| Box::new(Unprocessed));
    report("webrtc-audio-processing 0.5 (AEC + HPF)", &|| stage(aec_only));
    report("webrtc-audio-processing 0.5 (full chain)", &|| stage(Switches::default()));
    #[cfg(feature = "bench-candidates")]
    {
        report("aec3 0.4 (AEC3 + HPF)", &|| aec3_chain::Aec3::chain(true, false, false));
        report("aec3 0.4 (full chain)", &|| aec3_chain::Aec3::chain(true, true, true));
    }

    println!();
    println!("Noise: near end over steady noise at -40 dBFS (SNR 14 dB), scored from 2 s");
    println!("| suppressor | NS gain dB | added delay ms | us per 10 ms |");
    println!("|---|---|---|---|");
    let noise = |name: &str, make: &dyn Fn() -> Box<dyn Processor>| match score::score_noise(make, &scenes) {
        Ok(f) => println!(
            "| {name} | {:.1} | {:.1} | {:.0} |",
            f.gain_db,
            f.delay_ms,
            f.per_frame.as_secs_f64() * 1e6
        ),
        Err(e) => println!("| {name} | failed: {e} |"),
    };
    noise("none", &|| Box::new(Unprocessed));
    noise("webrtc-audio-processing 0.5 (NS + HPF)", &|| stage(ns_only));
    noise("webrtc-audio-processing 0.5 (AEC + HPF)", &|| stage(aec_only));
    noise("webrtc-audio-processing 0.5 (full chain)", &|| stage(Switches::default()));
    #[cfg(feature = "bench-candidates")]
    {
        noise("aec3 0.4 (NS + HPF)", &|| aec3_chain::Aec3::chain(false, true, false));
        noise("aec3 0.4 (AEC3 + HPF)", &|| aec3_chain::Aec3::chain(true, false, false));
        noise("aec3 0.4 (full chain)", &|| aec3_chain::Aec3::chain(true, true, true));
        noise("nnnoiseless 0.5 (RNNoise)", &|| {
            Box::new(Rnnoise(nnnoiseless::DenoiseState::new(), vec![0.0; FRAME], vec![0.0; FRAME]))
        });
    }
}
