//! `codec-bench`: what each video codec costs on this machine, without a call around it: encode and
//! decode milliseconds per frame, bitrate reached and PSNR, on stamped synthetic video at 30 fps.
//!
//! Run: `cargo run --release --bin codec-bench -- --frames 300` (add `--cpu-used -4,-6,-8,-10,-12` to
//! sweep libvpx's speed). What the camera-like scene costs, bitrate against PSNR:
//! `cargo run --release --bin codec-bench -- --content camera --sizes 640x480 --codecs h264,vp8
//! --kbps 300,600,1000,1500`. It never fails on a figure; it reports.

use clap::Parser;
use peercall::media::codec::vpx::{VpxEncoder, VpxOptions};
use peercall::media::codec::{new_decoder, new_encoder, EncoderSettings, VideoCodec, VideoEncoder};
use peercall::media::frame::I420Frame;
use peercall::media::pattern::{grainy, psnr_luma, read_stamp, render, Stamp};
use peercall::media::scene::{Scene, DEFAULT_SEED};
use std::time::{Duration, Instant};

/// Encodes and decodes the test pattern with each codec and prints the cost.
#[derive(Parser, Debug)]
#[command(about)]
struct Args {
    /// Frames to encode per row (30 fps content).
    #[arg(long, default_value_t = 300)]
    frames: u32,
    /// Picture sizes, WIDTHxHEIGHT.
    #[arg(long, value_delimiter = ',', default_value = "640x480,1280x720")]
    sizes: Vec<String>,
    /// Codecs: h264, vp8, vp9.
    #[arg(long, value_delimiter = ',', default_value = "h264,vp8,vp9")]
    codecs: Vec<String>,
    /// libvpx speeds to try (default: what calls use); applies to VP8 and VP9 alike.
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
    cpu_used: Vec<i32>,
    /// libvpx encoder threads (default: what calls use).
    #[arg(long)]
    threads: Option<u32>,
    /// Content: `grain` (the pattern with grain: a call's bitrate), `plain` (the bare pattern, which
    /// the encoders compress to a fraction of it) or `camera` (the camera-like scene: texture, motion
    /// and sensor noise, as a webcam's picture).
    #[arg(long, default_value = "grain")]
    content: String,
    /// Target bitrates to sweep, kbit/s (default: what a call starts at for the size).
    #[arg(long, value_delimiter = ',')]
    kbps: Vec<u32>,
}

/// Draws frame `stamp` of the chosen content.
type Draw = Box<dyn Fn(Stamp) -> I420Frame>;

/// The content at one size (the scene makes its textures once per size).
fn content(name: &str, w: usize, h: usize) -> anyhow::Result<Draw> {
    Ok(match name {
        "grain" => Box::new(move |s| grainy(s, w, h)),
        "plain" => Box::new(move |s| render(s, w, h)),
        "camera" => {
            let scene = Scene::new(w, h, DEFAULT_SEED);
            anyhow::ensure!(scene.size() == (w, h), "the scene needs multiples of 16, at least 256x128");
            Box::new(move |s| scene.render(s))
        }
        other => anyhow::bail!("unknown content {other} (grain, plain, camera)"),
    })
}

struct Row {
    what: String,
    draw_ms: f64,
    encode_ms: f64,
    encode_cpu_ms: f64,
    decode_ms: f64,
    decode_cpu_ms: f64,
    rgba_ms: f64,
    kbps: f64,
    psnr: f64,
    keyframes: usize,
    dropped: u32,
    stamps_ok: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut rows = Vec::new();
    for size in &args.sizes {
        let (w, h) = size
            .split_once('x')
            .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
            .ok_or_else(|| anyhow::anyhow!("size must be WIDTHxHEIGHT, got {size}"))?;
        let draw = content(&args.content, w, h)?;
        let rates: Vec<Option<u32>> = if args.kbps.is_empty() {
            vec![None]
        } else {
            args.kbps.iter().map(|k| Some(k * 1000)).collect()
        };
        for (name, bitrate) in args.codecs.iter().flat_map(|c| rates.iter().map(move |r| (c, *r))) {
            let codec = match name.to_ascii_lowercase().as_str() {
                "h264" => VideoCodec::H264,
                "vp8" => VideoCodec::Vp8,
                "vp9" => VideoCodec::Vp9,
                other => anyhow::bail!("unknown codec {other} (h264, vp8, vp9)"),
            };
            let mut settings = EncoderSettings::for_size(w, h, 30);
            settings.bitrate_bps = bitrate.unwrap_or(settings.bitrate_bps);
            let target = bitrate.map(|b| format!(" @ {} kbit/s", b / 1000)).unwrap_or_default();
            if codec == VideoCodec::H264 {
                let encoder = new_encoder(codec, settings)?;
                rows.push(measure(
                    format!("{codec} {w}x{h}{target}"),
                    encoder,
                    codec,
                    (w, h),
                    args.frames,
                    &draw,
                )?);
                continue;
            }
            let default = VpxOptions::for_codec(codec);
            let speeds =
                if args.cpu_used.is_empty() { vec![default.cpu_used] } else { args.cpu_used.clone() };
            for cpu_used in speeds {
                let options = VpxOptions { cpu_used, threads: args.threads.unwrap_or(default.threads) };
                let encoder = Box::new(VpxEncoder::with_options(codec, settings, options)?);
                let what =
                    format!("{codec} {w}x{h}{target} cpu-used {cpu_used}, {} thread(s)", options.threads);
                rows.push(measure(what, encoder, codec, (w, h), args.frames, &draw)?);
            }
        }
    }
    println!(
        "(target {} kbit/s at 640x480, {} at 1280x720 unless a row says; {} frames of `{}` content at 30 fps; CPU = process CPU time, \
         which holds on a busy machine where wall time does not)",
        EncoderSettings::for_size(640, 480, 30).bitrate_bps / 1000,
        EncoderSettings::for_size(1280, 720, 30).bitrate_bps / 1000,
        args.frames,
        args.content
    );
    println!("| codec, size | draw (ms/frame) | encode wall / CPU (ms/frame) | decode wall / CPU (ms/frame) | + RGBA (ms/frame) | kbit/s | PSNR (dB) | keyframes | dropped | stamps |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {:.2} | {:.2} / {:.2} | {:.2} / {:.2} | {:.2} | {:.0} | {:.1} | {} | {} | {} |",
            r.what,
            r.draw_ms,
            r.encode_ms,
            r.encode_cpu_ms,
            r.decode_ms,
            r.decode_cpu_ms,
            r.rgba_ms,
            r.kbps,
            r.psnr,
            r.keyframes,
            r.dropped,
            if r.stamps_ok { "all read" } else { "MISREAD" }
        );
    }
    Ok(())
}

/// CPU time this process has used (all its threads: libvpx's workers count too).
fn cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec through the pointer, which points at a live local.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn measure(
    what: String,
    mut encoder: Box<dyn VideoEncoder>,
    codec: VideoCodec,
    (w, h): (usize, usize),
    frames: u32,
    draw: &Draw,
) -> anyhow::Result<Row> {
    let mut decoder = new_decoder(codec)?;
    let (mut encode, mut decode, mut rgba) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut drawing = Duration::ZERO;
    let (mut encode_cpu, mut decode_cpu) = (Duration::ZERO, Duration::ZERO);
    let (mut bytes, mut keyframes, mut dropped, mut decoded, mut psnr_sum) = (0usize, 0, 0, 0u32, 0.0);
    let mut stamps_ok = true;
    for n in 0..frames {
        let stamp = Stamp { frame_no: n, capture_us: n as u64 * 33_333 };
        let started = Instant::now();
        let sent = draw(stamp);
        drawing += started.elapsed();
        let (started, cpu) = (Instant::now(), cpu_time());
        let Some(frame) = encoder.encode(&sent)? else {
            dropped += 1;
            continue;
        };
        encode += started.elapsed();
        encode_cpu += cpu_time().saturating_sub(cpu);
        bytes += frame.data.len();
        keyframes += frame.keyframe as usize;
        let (started, cpu) = (Instant::now(), cpu_time());
        let Some(picture) = decoder.decode(&frame.data)? else { continue };
        decode += started.elapsed();
        decode_cpu += cpu_time().saturating_sub(cpu);
        let started = Instant::now();
        let pixels = picture.planes.to_rgba()?;
        rgba += started.elapsed();
        let shown = peercall::media::frame::RgbaFrame::new(w, h, pixels, Duration::ZERO);
        stamps_ok &= read_stamp(&shown) == Some(stamp);
        psnr_sum += psnr_luma(&shown, &sent);
        decoded += 1;
    }
    let encoded = (frames - dropped).max(1) as f64;
    let decoded_f = decoded.max(1) as f64;
    Ok(Row {
        what,
        draw_ms: drawing.as_secs_f64() * 1000.0 / frames.max(1) as f64,
        encode_ms: encode.as_secs_f64() * 1000.0 / encoded,
        encode_cpu_ms: encode_cpu.as_secs_f64() * 1000.0 / encoded,
        decode_ms: decode.as_secs_f64() * 1000.0 / decoded_f,
        decode_cpu_ms: decode_cpu.as_secs_f64() * 1000.0 / decoded_f,
        rgba_ms: rgba.as_secs_f64() * 1000.0 / decoded_f,
        kbps: bytes as f64 * 8.0 * 30.0 / frames as f64 / 1000.0,
        psnr: psnr_sum / decoded_f,
        keyframes,
        dropped,
        stamps_ok: stamps_ok && decoded > 0,
    })
}
