//! The desktop window (eframe/egui, glow renderer): views only. It starts the call engine on its own
//! Tokio runtime, sends it commands and draws its events and frames; it holds no network or codec code.
//!
//! - [`app`]: the eframe app: drains events, uploads new pictures, draws, carries out commands.
//! - `model` / `view_model`: what the window knows (built from engine events) and what it shows
//!   (enabled buttons, status text), both pure and unit-tested.
//! - `views/`: one file per piece of the window (login form, user list, chat, video, controls...).
//! - `bridge`: engine events and picture changes to the UI thread, waking it instead of spinning.
//! - `devices`: camera, microphone and speaker pickers, and the speaker playing the call.
//! - `sharing`: the screen-sharing picker (screens and windows with thumbnails) and its state.
//! - `embedded`: the signaling server built into the app. `settings`: what persists. `ring`: the ring.
//! - `desktop`: the desktop's text scale. Screen readers see the window through AccessKit (eframe's
//!   `accesskit` feature): the views give their parts roles and names.

use eframe::egui;
pub mod app;
mod bridge;
mod command;
mod desktop;
mod devices;
mod embedded;
mod model;
mod perf;
mod ring;
pub mod settings;
mod sharing;
mod view_model;
mod views;

use anyhow::Context as _;
use std::time::Duration;

/// How the window was started (command line); settings fill what is not given.
#[derive(Clone, Debug, Default)]
pub struct WindowOptions {
    /// Display name, over the saved one.
    pub name: Option<String>,
    /// Server URL, over the saved one.
    pub server: Option<String>,
    /// Turn auto-answer on.
    pub auto_answer: bool,
    /// Show the statistics overlay.
    pub show_stats: bool,
    /// Skip the form and join at once.
    pub join: bool,
    /// Synthetic video: width, height, fps.
    pub video: (usize, usize, u32),
    /// Which synthetic video is sent when the camera is `synthetic` or missing (a clip is already checked).
    pub synthetic_video: crate::media::source::SyntheticVideo,
    /// Synthetic tone frequency, Hz.
    pub tone: f64,
    /// Local addresses for ICE host candidates.
    pub bind: Vec<String>,
    /// Print frame figures (fps, UI time per frame) every two seconds on stdout.
    pub frame_stats: bool,
    /// STUN/TURN servers from the command line, besides the saved ones.
    pub ice_servers: Vec<crate::signaling::protocol::IceServer>,
    /// Relay-only from the command line (`--ice-transport-policy relay`).
    pub relay_only: bool,
    /// A certificate to trust for `wss://` servers (self-signed deployments).
    pub trusted_cert: Option<std::path::PathBuf>,
    /// The video codec to put first, over the saved setting.
    pub video_codec: Option<crate::call::VideoPreference>,
    /// Parts of the microphone's processing turned off for this run (`--no-aec`, `--no-ns`,
    /// `--no-agc`): `false` fields switch that part off over the settings.
    pub audio_processing: crate::media::processing::Switches,
}

/// Opens the window and runs until it is closed.
pub fn run(options: WindowOptions) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("peercall-rt")
        .enable_all()
        .build()
        .context("could not start the async runtime")?;
    let mut viewport = egui::ViewportBuilder::default()
        .with_title("Peercall")
        .with_app_id("peercall")
        .with_inner_size([1120.0, 720.0])
        .with_min_inner_size([820.0, 480.0]);
    match eframe::icon_data::from_png_bytes(include_bytes!("../../assets/peercall.png")) {
        Ok(icon) => viewport = viewport.with_icon(icon),
        Err(e) => tracing::warn!(%e, "the window icon could not be read"),
    }
    let native = eframe::NativeOptions { viewport, renderer: eframe::Renderer::Glow, ..Default::default() };
    let rt = runtime.handle().clone();
    let result = eframe::run_native(
        "Peercall",
        native,
        Box::new(move |cc| {
            if let Some(scale) = desktop::text_scale() {
                cc.egui_ctx.set_zoom_factor(scale);
            }
            Ok(Box::new(app::PeercallApp::new(cc, rt, options)))
        }),
    );
    runtime.shutdown_timeout(Duration::from_millis(500));
    result.map_err(|e| {
        anyhow::anyhow!("could not open the window: {e} (is a display available? try --headless)")
    })
}
