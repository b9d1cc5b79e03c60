//! `call-bench`: one headless call on loopback per video size, both peers in this process, and the
//! figures that matter printed as a table: setup time, glass-to-glass latency, fps, codec time, CPU, memory.
//!
//! Run: `cargo run --release --bin call-bench -- --seconds 20`. It never fails on a figure; it reports.

use clap::Parser;
use peercall::call::{CallState, Command, Counters, Engine, EngineConfig, VideoPreference};
use peercall::media::pattern::read_stamp;
use peercall::signaling::server::{Server, ServerConfig};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Measures a loopback call between two engines in one process.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Seconds to measure each call (after setup).
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Video sizes to measure, WIDTHxHEIGHT, at 30 fps.
    #[arg(long, value_delimiter = ',', default_value = "640x480,1280x720")]
    sizes: Vec<String>,
    /// Calls to place per size for the setup-time figure (the first one also measures media).
    #[arg(long, default_value_t = 5)]
    setups: u32,
    /// Video codecs to measure, each at every size (both peers prefer it).
    #[arg(long, value_delimiter = ',', default_value = "h264,vp8", value_enum)]
    codecs: Vec<VideoPreference>,
}

struct Figures {
    codec: VideoPreference,
    size: String,
    setup_ms: Vec<f64>,
    latency_ms: Vec<f64>,
    fps_in: f64,
    encode_ms: f64,
    decode_ms: f64,
    cpu_per_sec: f64,
    peak_rss_mb: f64,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "peercall=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut all = Vec::new();
    for size in &args.sizes {
        let (w, h) = size
            .split_once('x')
            .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
            .ok_or_else(|| anyhow::anyhow!("size must be WIDTHxHEIGHT, got {size}"))?;
        for codec in &args.codecs {
            all.push(runtime.block_on(measure(*codec, w, h, &args))?);
        }
    }
    println!();
    println!("| codec | video | setup p50 (ms) | setup max (ms) | glass-to-glass p50 / p95 (ms) | fps in | encode (ms/frame) | decode (ms/frame) | CPU s/s (both peers) | peak RSS (MB) |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for f in &all {
        println!(
            "| {} | {}@30 | {:.0} | {:.0} | {:.1} / {:.1} | {:.1} | {:.2} | {:.2} | {:.3} | {:.0} |",
            f.codec,
            f.size,
            percentile(&f.setup_ms, 50.0),
            percentile(&f.setup_ms, 100.0),
            percentile(&f.latency_ms, 50.0),
            percentile(&f.latency_ms, 95.0),
            f.fps_in,
            f.encode_ms,
            f.decode_ms,
            f.cpu_per_sec,
            f.peak_rss_mb
        );
    }
    Ok(())
}

async fn measure(
    codec: VideoPreference,
    width: usize,
    height: usize,
    args: &Args,
) -> anyhow::Result<Figures> {
    let server = Server::bind(ServerConfig::ephemeral()).await?;
    let url = format!("ws://{}/", server.local_addr());
    let server = server.spawn();
    let engine = |name: &str, answer: bool| {
        let mut config =
            EngineConfig::new(name, url.as_str()).with_pattern(width, height, 30).with_video_codec(codec);
        config.peer.bind_addrs = vec!["127.0.0.1:0".to_owned()];
        config.auto_answer = answer;
        Engine::start(config)
    };
    let (alice, bob) = (engine("alice", false), engine("bob", true));
    wait_until(Duration::from_secs(10), || {
        alice.users().borrow().len() == 2 && bob.users().borrow().len() == 2
    })
    .await
    .map_err(|_| anyhow::anyhow!("the engines did not see each other"))?;

    // Setup: call command → first decoded remote frame at the caller.
    let mut setup_ms = Vec::new();
    for round in 0..args.setups.max(1) {
        let started = Instant::now();
        let mut video = alice.remote_video();
        alice.send(Command::Call("bob".into()));
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if video.changed().await.is_err() || video.borrow().is_some() {
                    return;
                }
            }
        })
        .await
        .map_err(|_| {
            let counters = alice.counters().borrow().clone();
            anyhow::anyhow!(
                "no remote frame within 10 s (round {round}); alice is {}, her counters: {counters:?}",
                *alice.state().borrow()
            )
        })?;
        setup_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        if round + 1 < args.setups {
            alice.send(Command::HangUp);
            wait_until(Duration::from_secs(5), || {
                alice.state().borrow().is_idle() && bob.state().borrow().is_idle()
            })
            .await
            .map_err(|_| anyhow::anyhow!("hang-up did not finish"))?;
        }
    }
    if !matches!(*alice.state().borrow(), CallState::InCall { .. }) {
        wait_until(Duration::from_secs(5), || matches!(*alice.state().borrow(), CallState::InCall { .. }))
            .await
            .map_err(|_| anyhow::anyhow!("the call did not settle"))?;
    }
    // Let the start settle (first keyframe, rate control) before measuring.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let counters: Vec<Arc<Counters>> =
        [&alice, &bob].iter().filter_map(|e| e.counters().borrow().clone()).collect();
    let before: Vec<[u64; 4]> = counters.iter().map(|c| snapshot(c)).collect();
    let cpu_before = cpu_seconds();
    let started = Instant::now();

    // Glass-to-glass at bob: every new picture's stamp against the time it finished decoding.
    let mut video = bob.remote_video();
    let mut latency_ms = Vec::new();
    let mut last_frame = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.seconds);
    while let Ok(Ok(())) = tokio::time::timeout_at(deadline, video.changed()).await {
        let Some(frame) = video.borrow_and_update().clone() else { continue };
        if let Some(stamp) = read_stamp(&frame) {
            if last_frame != Some(stamp.frame_no) {
                last_frame = Some(stamp.frame_no);
                latency_ms.push(stamp.age_us(frame.decoded_at_us) as f64 / 1000.0);
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    let after: Vec<[u64; 4]> = counters.iter().map(|c| snapshot(c)).collect();
    // Sum over both peers: frames decoded, decode µs, frames sent, encode µs.
    let delta =
        |i: usize| -> f64 { after.iter().zip(&before).map(|(a, b)| a[i].saturating_sub(b[i]) as f64).sum() };
    let figures = Figures {
        codec,
        size: format!("{width}x{height}"),
        setup_ms,
        latency_ms,
        fps_in: delta(0) / counters.len().max(1) as f64 / elapsed,
        encode_ms: delta(3) / delta(2).max(1.0) / 1000.0,
        decode_ms: delta(1) / delta(0).max(1.0) / 1000.0,
        cpu_per_sec: cpu / elapsed,
        peak_rss_mb: peak_rss_bytes() as f64 / 1e6,
    };
    tokio::join!(alice.shutdown(), bob.shutdown());
    server.shutdown().await?;
    eprintln!(
        "{}: setup {:?} ms, {} latency samples",
        figures.size,
        figures.setup_ms.iter().map(|v| v.round()).collect::<Vec<_>>(),
        figures.latency_ms.len()
    );
    Ok(figures)
}

fn snapshot(c: &Counters) -> [u64; 4] {
    let l = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    [l(&c.frames_decoded), l(&c.decode_us), l(&c.frames_sent), l(&c.encode_us)]
}

async fn wait_until(limit: Duration, mut ready: impl FnMut() -> bool) -> Result<(), ()> {
    let deadline = Instant::now() + limit;
    while !ready() {
        if Instant::now() > deadline {
            return Err(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// The nearest-rank percentile of `values` (NaN for none), as the receiver figures compute it.
fn percentile(values: &[f64], p: f64) -> f64 {
    peercall::call::quality::percentile(&mut values.to_vec(), p).unwrap_or(f64::NAN)
}

/// User + system CPU time of this process, seconds.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct we hand it and nothing else.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Peak resident set size of this process (VmHWM), bytes.
fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}
