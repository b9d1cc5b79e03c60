//! `codec-bench`: what each video codec costs on this machine, without a call around it: encode and
//! decode milliseconds per frame, bitrate reached and PSNR, on the stamped test pattern at 30 fps.
//!
//! Run: `cargo run --release --bin codec-bench -- --frames 300` (add `--cpu-used -4,-6,-8,-10,-12` to
//! sweep libvpx's speed). It never fails on a figure; it reports.

use clap::Parser;
use peercall::media::codec::vpx::{VpxEncoder, VpxOptions};
use peercall::media::codec::{new_decoder, new_encoder, EncoderSettings, VideoCodec, VideoEncoder};
use peercall::media::pattern::{psnr_luma, read_stamp, render, Stamp};
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
}

struct Row {
    what: String,
    encode_ms: f64,
    decode_ms: f64,
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
        for name in &args.codecs {
            let codec = match name.to_ascii_lowercase().as_str() {
                "h264" => VideoCodec::H264,
                "vp8" => VideoCodec::Vp8,
                "vp9" => VideoCodec::Vp9,
                other => anyhow::bail!("unknown codec {other} (h264, vp8, vp9)"),
            };
            let settings = EncoderSettings::for_size(w, h, 30);
            if codec == VideoCodec::H264 {
                rows.push(measure(
                    format!("{codec} {w}x{h}"),
                    new_encoder(codec, settings)?,
                    codec,
                    w,
                    h,
                    args.frames,
                )?);
                continue;
            }
            let default = VpxOptions::for_codec(codec);
            let speeds =
                if args.cpu_used.is_empty() { vec![default.cpu_used] } else { args.cpu_used.clone() };
            for cpu_used in speeds {
                let options = VpxOptions { cpu_used, threads: args.threads.unwrap_or(default.threads) };
                let encoder = Box::new(VpxEncoder::with_options(codec, settings, options)?);
                let what = format!("{codec} {w}x{h} cpu-used {cpu_used}, {} thread(s)", options.threads);
                rows.push(measure(what, encoder, codec, w, h, args.frames)?);
            }
        }
    }
    println!("| codec, size | encode (ms/frame) | decode (ms/frame) | + RGBA (ms/frame) | kbit/s | PSNR (dB) | keyframes | dropped | stamps |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.0} | {:.1} | {} | {} | {} |",
            r.what,
            r.encode_ms,
            r.decode_ms,
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

fn measure(
    what: String,
    mut encoder: Box<dyn VideoEncoder>,
    codec: VideoCodec,
    w: usize,
    h: usize,
    frames: u32,
) -> anyhow::Result<Row> {
    let mut decoder = new_decoder(codec)?;
    let (mut encode, mut decode, mut rgba) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let (mut bytes, mut keyframes, mut dropped, mut decoded, mut psnr_sum) = (0usize, 0, 0, 0u32, 0.0);
    let mut stamps_ok = true;
    for n in 0..frames {
        let stamp = Stamp { frame_no: n, capture_us: n as u64 * 33_333 };
        let sent = render(stamp, w, h);
        let started = Instant::now();
        let Some(frame) = encoder.encode(&sent)? else {
            dropped += 1;
            continue;
        };
        encode += started.elapsed();
        bytes += frame.data.len();
        keyframes += frame.keyframe as usize;
        let started = Instant::now();
        let Some(picture) = decoder.decode(&frame.data)? else { continue };
        decode += started.elapsed();
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
        encode_ms: encode.as_secs_f64() * 1000.0 / encoded,
        decode_ms: decode.as_secs_f64() * 1000.0 / decoded_f,
        rgba_ms: rgba.as_secs_f64() * 1000.0 / decoded_f,
        kbps: bytes as f64 * 8.0 * 30.0 / frames as f64 / 1000.0,
        psnr: psnr_sum / decoded_f,
        keyframes,
        dropped,
        stamps_ok: stamps_ok && decoded > 0,
    })
}
