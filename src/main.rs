//! The desktop app entry: parses arguments and starts the window or the headless engine.

use clap::Parser;
use peercall::call::quality::Expected;
use peercall::call::{EngineConfig, VideoPreference};
use peercall::headless::{self, HeadlessPlan};
use peercall::media::devices::{self, CameraSettings, MediaDevices, Selection};
use peercall::media::processing::Switches;
use peercall::media::screen::ScreenId;
use peercall::media::source::SyntheticVideo;
use peercall::media::y4m::Y4mClip;
use peercall::signaling::protocol::IceServer;
use peercall::ui::WindowOptions;
use std::time::Duration;

/// Peercall: 1:1 video calls. Without --headless it opens the window.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Run without a window: log in, place or take a call, print events and stats.
    #[arg(long)]
    headless: bool,
    /// Your display name in the room (the window remembers the last one; headless: "peercall").
    #[arg(long)]
    name: Option<String>,
    /// Signaling server URL; the path names the room (ws://host:6503/team-a). The window serves the
    /// server itself when the address is on this machine and nothing answers there.
    #[arg(long)]
    server: Option<String>,
    /// Headless: for a wss:// server with a self-signed certificate, a PEM file whose certificate to trust.
    #[arg(long, value_name = "PEM")]
    trust_cert: Option<std::path::PathBuf>,
    /// Window: join the room at once instead of showing the form.
    #[arg(long)]
    join: bool,
    /// Window: show the call-statistics overlay.
    #[arg(long)]
    stats: bool,
    /// Window: print frames drawn per second and UI time per frame every two seconds.
    #[arg(long)]
    frame_stats: bool,
    /// Call this user as soon as they are online (headless).
    #[arg(long, conflicts_with = "auto_answer")]
    call: Option<String>,
    /// Accept incoming calls without asking.
    #[arg(long)]
    auto_answer: bool,
    /// Hang up after this many seconds in a call and exit (headless).
    #[arg(long)]
    duration: Option<f64>,
    /// Exit when the first call ends (headless).
    #[arg(long)]
    once: bool,
    /// Synthetic video size and rate, WIDTHxHEIGHT@FPS.
    #[arg(long, default_value = "640x480@30", value_parser = parse_video)]
    video: (usize, usize, u32),
    /// Synthetic video to send (when the camera is `synthetic` or missing): `pattern`, the stamped
    /// test pattern (cheap: ~160 kbit/s at 640x480@30), or `camera`, a stamped camera-like scene
    /// (texture, motion, sensor noise: ~0.5–1.5 Mbit/s at 640x480@30, as a webcam).
    #[arg(long, value_enum, default_value_t = Scene::Pattern)]
    video_scene: Scene,
    /// Send this Y4M clip (4:2:0, as Chromium's --use-file-for-fake-video-capture reads) looped, at its
    /// own size and rate, instead of the synthetic video. Checked before anything starts.
    #[arg(long, value_name = "PATH", conflicts_with = "video_scene")]
    video_file: Option<std::path::PathBuf>,
    /// Frequency of the synthetic tone, Hz.
    #[arg(long, default_value_t = 440.0)]
    tone: f64,
    /// Video codec to put first: `auto` offers H.264 then VP8 and, when called, follows the caller's
    /// order; `h264` or `vp8` prefer that one wherever the far side has it. (Window: over the saved setting.)
    #[arg(long, value_enum)]
    video_codec: Option<VideoPreference>,
    /// Headless: camera to send, `default`, an id from --list-devices, or `synthetic` (the pattern).
    #[arg(long, default_value = "synthetic")]
    camera: String,
    /// Headless: microphone to send, `default`, an id from --list-devices, or `synthetic` (the tone).
    #[arg(long, default_value = "synthetic")]
    mic: String,
    /// Headless: play the far side's audio on a speaker (`default` or an id from --list-devices).
    #[arg(long, num_args = 0..=1, default_missing_value = "default")]
    speaker: Option<String>,
    /// Turn the microphone's echo cancellation off (on by default).
    #[arg(long)]
    no_aec: bool,
    /// Turn the microphone's noise suppression off (on by default).
    #[arg(long)]
    no_ns: bool,
    /// Turn the microphone's automatic gain control off (on by default).
    #[arg(long)]
    no_agc: bool,
    /// Print the cameras, microphones and speakers found, and exit.
    #[arg(long)]
    list_devices: bool,
    /// Headless: share a screen or window instead of the camera, by an id from --list-screens
    /// (`screen:0`, `window:0x400001`); without an id, the first screen. If it cannot be captured
    /// (no display, Wayland), the error is printed and the camera goes on.
    #[arg(long, value_name = "ID", num_args = 0..=1, default_missing_value = "screen:0")]
    share_screen: Option<String>,
    /// Print the screens and windows that can be shared, with their ids, and exit.
    #[arg(long)]
    list_screens: bool,
    /// Local address for ICE host candidates (0.0.0.0:0 = every interface but loopback).
    #[arg(long, default_value = "0.0.0.0:0")]
    bind: Vec<String>,
    /// A STUN or TURN server, e.g. stun:stun.example.org:3478 or turn:turn.example.org:3478?transport=udp
    /// (repeat for more). The signaling server may hand out more, with fresh TURN credentials.
    #[arg(long = "ice-server", value_name = "URL")]
    ice_servers: Vec<String>,
    /// Username for the TURN servers given with --ice-server.
    #[arg(long, default_value = "")]
    ice_username: String,
    /// Credential (password) for the TURN servers given with --ice-server.
    #[arg(long, default_value = "")]
    ice_credential: String,
    /// `all` (default) or `relay`: with relay, media only goes through TURN (hides your address).
    #[arg(long, default_value = "all", value_parser = ["all", "relay"])]
    ice_transport_policy: String,
}

/// `--video-scene`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Scene {
    /// The stamped test pattern.
    Pattern,
    /// The stamped camera-like scene.
    Camera,
}

/// The synthetic video the arguments ask for; a clip is opened and checked here, before any call.
fn synthetic_video(args: &Args) -> anyhow::Result<SyntheticVideo> {
    Ok(match (&args.video_file, args.video_scene) {
        (Some(path), _) => SyntheticVideo::File(std::sync::Arc::new(Y4mClip::open(path)?)),
        (None, Scene::Pattern) => SyntheticVideo::Pattern,
        (None, Scene::Camera) => SyntheticVideo::Scene,
    })
}

/// The `--ice-server` URLs as one server entry with the given credentials (none when no URL was given).
fn cli_ice_servers(urls: &[String], username: &str, credential: &str) -> Vec<IceServer> {
    if urls.is_empty() {
        return Vec::new();
    }
    vec![IceServer { urls: urls.to_vec(), username: username.to_owned(), credential: credential.to_owned() }]
}

fn parse_video(s: &str) -> Result<(usize, usize, u32), String> {
    let err = || format!("expected WIDTHxHEIGHT@FPS like 1280x720@30, got {s:?}");
    let (size, fps) = s.split_once('@').ok_or_else(err)?;
    let (w, h) = size.split_once('x').ok_or_else(err)?;
    Ok((w.parse().map_err(|_| err())?, h.parse().map_err(|_| err())?, fps.parse().map_err(|_| err())?))
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "peercall=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    match run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("peercall: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A device argument as a selection: `synthetic`, `default`, or a device id.
fn selection(arg: &str) -> Selection {
    match arg {
        "synthetic" => Selection::Synthetic,
        "default" => Selection::Default,
        id => Selection::Device(id.to_owned()),
    }
}

fn list_devices() {
    println!("cameras:");
    for c in devices::list_cameras() {
        println!("  {}  {}", c.id, c.name);
    }
    println!("microphones:");
    for m in devices::list_microphones() {
        println!("  {}  {}", m.id, m.name);
    }
    println!("speakers:");
    for s in devices::list_speakers() {
        println!("  {}  {}", s.id, s.name);
    }
}

fn list_screens() -> anyhow::Result<()> {
    let targets = peercall::media::screen::Display::detect().list()?;
    for t in targets {
        println!("  {:<18} {}x{}  {}", t.id.to_string(), t.width, t.height, t.name);
    }
    Ok(())
}

fn run(args: Args) -> anyhow::Result<()> {
    if args.list_devices {
        list_devices();
        return Ok(());
    }
    if args.list_screens {
        return list_screens();
    }
    let share: Option<ScreenId> =
        args.share_screen.as_deref().map(str::parse).transpose().map_err(|e: String| anyhow::anyhow!(e))?;
    let synthetic = synthetic_video(&args)?;
    let processing = Switches {
        echo_cancellation: !args.no_aec,
        noise_suppression: !args.no_ns,
        gain_control: !args.no_agc,
    };
    if !args.headless {
        return peercall::ui::run(WindowOptions {
            name: args.name,
            server: args.server,
            auto_answer: args.auto_answer,
            show_stats: args.stats,
            join: args.join,
            video: args.video,
            synthetic_video: synthetic,
            tone: args.tone,
            bind: args.bind,
            frame_stats: args.frame_stats,
            ice_servers: cli_ice_servers(&args.ice_servers, &args.ice_username, &args.ice_credential),
            relay_only: args.ice_transport_policy == "relay",
            trusted_cert: args.trust_cert,
            video_codec: args.video_codec,
            audio_processing: processing,
        });
    }
    let (w, h, fps) = args.video;
    let name = args.name.unwrap_or_else(|| "peercall".to_owned());
    let server = args.server.unwrap_or_else(|| "ws://127.0.0.1:6503/".to_owned());
    let mut config =
        EngineConfig::new(name, server).with_synthetic_video(&synthetic, w, h, fps).with_tone(args.tone);
    config.auto_answer = args.auto_answer;
    config.video_codec = args.video_codec.unwrap_or_default();
    config.trusted_cert = args.trust_cert;
    config.peer.bind_addrs = args.bind;
    let ice_servers = cli_ice_servers(&args.ice_servers, &args.ice_username, &args.ice_credential);
    config.peer.ice_servers.extend(ice_servers.into_iter().map(Into::into));
    config.peer.relay_only = args.ice_transport_policy == "relay";
    let (camera, mic) = (selection(&args.camera), selection(&args.mic));
    let wants_devices = camera != Selection::Synthetic || mic != Selection::Synthetic || share.is_some();
    let media = wants_devices.then(|| {
        let media = MediaDevices::new(camera, mic, CameraSettings { width: w as u32, height: h as u32, fps })
            .with_video_stand_in(synthetic.clone());
        media.processing().set_switches(processing);
        config.video_source = media.video_factory();
        config.audio_source = media.audio_factory();
        if let Some(id) = share {
            // Said now, before any call, where it cannot work (no display, Wayland); the call still
            // goes on with the camera, which the source itself falls back to.
            match media.list_screens() {
                Ok(targets) if !targets.iter().any(|t| t.id == id) => {
                    println!("sharing: {id} is not on this display; the camera goes on (see --list-screens)")
                }
                Ok(_) => {}
                Err(e) => println!("sharing: {e}; the camera goes on"),
            }
            media.share_screen(id);
        }
        media
    });
    let plan = HeadlessPlan {
        call: args.call,
        duration: args.duration.map(Duration::from_secs_f64),
        exit_after_call: args.once || args.duration.is_some(),
        speaker: args.speaker.map(|s| (s != "default").then_some(s)),
        devices: media,
        expected: Expected { width: w as u32, height: h as u32, fps: fps as f64 },
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(headless::run(config, plan))
}
