//! The eframe app: owns the runtime handle, the engine handle, the model and the textures; each frame
//! it drains engine events, uploads new pictures, draws the views and carries out what they asked.

use super::bridge::{self, Bridge};
use super::command::UiCommand;
use super::devices::DevicePanel;
use super::embedded::{self, Embedded};
use super::model::Model;
use super::perf::FrameStats;
use super::ring::Ringer;
use super::settings::Settings;
use super::sharing::SharePanel;
use super::views::{self, video::VideoTexture};
use super::WindowOptions;
use crate::call::{CallState, Command, Engine, EngineConfig, EngineError, Event};
use crate::media::frame::RgbaFrame;
use eframe::egui;
use egui::{Key, ViewportCommand};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::sync::watch;

/// Height of the row of call controls under the video.
const CONTROLS_HEIGHT: f32 = 44.0;

/// The window's state between frames.
pub struct PeercallApp {
    rt: Handle,
    options: WindowOptions,
    settings: Settings,
    /// Something the login form or the status line should say (settings file, built-in server).
    notice: Option<String>,
    session: Option<Session>,
    embedded: Option<Embedded>,
    ringer: Ringer,
    perf: Option<FrameStats>,
    title: String,
    /// The form's name field takes the keys the next time the form shows (at start and after Leave).
    focus_name: bool,
}

/// A joined room: the engine and what the window shows of it.
struct Session {
    engine: Engine,
    model: Model,
    bridge: Bridge,
    remote_rx: watch::Receiver<Option<RgbaFrame>>,
    local_rx: watch::Receiver<Option<RgbaFrame>>,
    remote: VideoTexture,
    local: VideoTexture,
    draft: String,
    devices: DevicePanel,
    sharing: SharePanel,
}

impl PeercallApp {
    /// Loads the settings, applies the command line over them, and joins at once with `--join`.
    pub fn new(cc: &eframe::CreationContext<'_>, rt: Handle, options: WindowOptions) -> Self {
        let (mut settings, notice) = Settings::load();
        if let Some(name) = &options.name {
            settings.name = name.clone();
        }
        if let Some(server) = &options.server {
            settings.server = server.clone();
        }
        settings.auto_answer |= options.auto_answer;
        let (on, allowed) = (&mut settings.audio_processing, options.audio_processing);
        on.echo_cancellation &= allowed.echo_cancellation;
        on.noise_suppression &= allowed.noise_suppression;
        on.gain_control &= allowed.gain_control;
        settings.show_stats |= options.show_stats;
        cc.egui_ctx.all_styles_mut(|style| {
            style.spacing.item_spacing = egui::vec2(8.0, 6.0);
            style.spacing.button_padding = egui::vec2(10.0, 5.0);
        });
        let mut app = Self {
            rt,
            perf: options.frame_stats.then(FrameStats::new),
            options,
            settings,
            notice,
            session: None,
            embedded: None,
            ringer: Ringer::new(),
            focus_name: true,
            title: String::new(),
        };
        if app.options.join {
            app.join(&cc.egui_ctx);
        }
        app
    }

    fn join(&mut self, ctx: &egui::Context) {
        self.settings.name = self.settings.name.trim().to_owned();
        self.settings.server = self.settings.server.trim().to_owned();
        if let Err(e) = self.settings.save() {
            self.notice = Some(e);
        }
        if let (Some(port), None) = (embedded::local_port(&self.settings.server), &self.embedded) {
            match self.rt.block_on(embedded::ensure(port)) {
                Ok(server) => self.embedded = server,
                Err(e) => {
                    self.notice = Some(e);
                    return;
                }
            }
        }
        let (w, h, fps) = self.options.video;
        let mut config = EngineConfig::new(&self.settings.name, &self.settings.server);
        let mut devices =
            DevicePanel::new(&self.settings, (w, h, fps), self.options.tone, &self.options.synthetic_video);
        devices.apply(&mut config);
        config.peer.bind_addrs = self.options.bind.clone();
        let ice = self.settings.ice_servers.iter().chain(&self.options.ice_servers);
        config.peer.ice_servers.extend(ice.cloned().map(Into::into));
        config.peer.relay_only = self.settings.relay_only || self.options.relay_only;
        // The command line wins over the saved setting.
        let saved =
            Some(self.settings.trusted_cert.trim()).filter(|p| !p.is_empty()).map(std::path::PathBuf::from);
        config.trusted_cert = self.options.trusted_cert.clone().or(saved);
        config.video_codec = self.options.video_codec.unwrap_or(self.settings.video_codec);
        // The engine answers by itself; the checkbox switches it mid-session (`SetAutoAnswer`).
        config.auto_answer = self.settings.auto_answer;
        let engine = {
            let _runtime = self.rt.enter();
            Engine::start(config)
        };
        devices.start_speaker(&engine, &self.settings);
        let bridge = bridge::start(&self.rt, &engine, ctx.clone());
        // The engine may have logged in before the bridge subscribed (a local server is quick), and
        // those events are gone; what they said is in the engine's watches, read after subscribing.
        let mut model = Model::new(&self.settings.name, &self.settings.server);
        let now = Instant::now();
        if let Some(name) = engine.name().borrow().clone() {
            model.apply(Event::Registered { name }, now);
        }
        let users = engine.users().borrow().clone();
        if !users.is_empty() {
            model.apply(Event::UserList(users), now);
        }
        model.apply(Event::CallState(engine.state().borrow().clone()), now);
        self.session = Some(Session {
            remote_rx: engine.remote_video(),
            local_rx: engine.local_video(),
            model,
            engine,
            bridge,
            remote: VideoTexture::new("remote video"),
            local: VideoTexture::new("local video"),
            draft: String::new(),
            sharing: SharePanel::new(devices.media().clone()),
            devices,
        });
    }

    fn leave(&mut self) {
        if let Some(session) = self.session.take() {
            session.engine.send(Command::Shutdown);
        }
        self.ringer.set(false);
        self.focus_name = true;
    }

    fn save_settings(&mut self) {
        if let Err(e) = self.settings.save() {
            self.notice = Some(e);
        }
    }

    fn execute(&mut self, command: UiCommand, ctx: &egui::Context) {
        match command {
            UiCommand::Join => self.join(ctx),
            UiCommand::Leave => self.leave(),
            UiCommand::ToggleStats => {
                self.settings.show_stats = !self.settings.show_stats;
                self.save_settings();
            }
            UiCommand::SetAutoAnswer(on) => {
                self.settings.auto_answer = on;
                self.save_settings();
                if let Some(session) = &self.session {
                    session.engine.send(Command::SetAutoAnswer(on));
                }
            }
            in_room => {
                if let Some(session) = self.session.as_mut() {
                    if !session.sharing.execute(&in_room, ctx) {
                        session.execute(in_room);
                    }
                }
            }
        }
    }

    /// Keys that work anywhere: Esc ends or declines the call, Enter accepts one (when no button has
    /// the focus, which Enter presses); M mutes and V turns the camera off unless a text field has the
    /// keys, and S opens the screen-sharing picker in a call. Enter on a focused name in the user list
    /// calls it (`views::users`).
    fn keys(&self, ctx: &egui::Context, out: &mut Vec<UiCommand>) {
        let Some(session) = &self.session else { return };
        let controls = session.model.controls();
        if ctx.input(|i| i.key_pressed(Key::Escape)) {
            if controls.answer_prompt {
                out.push(UiCommand::Engine(Command::Decline));
            } else if controls.hang_up {
                out.push(UiCommand::Engine(Command::HangUp));
            }
        }
        let nothing_focused = ctx.memory(|m| m.focused().is_none());
        if controls.answer_prompt && nothing_focused && ctx.input(|i| i.key_pressed(Key::Enter)) {
            out.push(UiCommand::Engine(Command::Accept));
        }
        let plain = |key| ctx.input(|i| i.key_pressed(key) && i.modifiers.is_none());
        // Not egui_wants_keyboard_input: that is any focus, and the user list's rows take the focus too.
        if !ctx.text_edit_focused() {
            if plain(Key::M) {
                out.push(UiCommand::ToggleMute);
            }
            if plain(Key::V) {
                out.push(UiCommand::ToggleCamera);
            }
            if plain(Key::S) && matches!(session.model.call, CallState::InCall { .. }) {
                out.push(UiCommand::OpenSharePicker);
            }
        }
    }

    /// What the status line says besides the session: where others can join, a silent ring, a settings problem.
    fn standing_notices(&self) -> Vec<String> {
        let embedded = self.embedded.as_ref().map(|e| &e.lan_hint);
        let sharing = self.session.as_ref().and_then(|s| s.sharing.notice());
        embedded.into_iter().chain(&self.ringer.notice).chain(&self.notice).cloned().chain(sharing).collect()
    }

    fn draw_room(&mut self, ui: &mut egui::Ui, out: &mut Vec<UiCommand>) {
        let extra = self.standing_notices();
        let (show_stats, auto_answer) = (self.settings.show_stats, self.settings.auto_answer);
        let Some(session) = self.session.as_mut() else { return };
        let model = &session.model;
        egui::Panel::top("top").show(ui, |ui| {
            ui.add_space(4.0);
            ui.horizontal(|ui| {
                ui.strong("Peercall");
                ui.weak("\u{b7}");
                ui.label(format!("you are {}", model.me.as_deref().unwrap_or(&model.asked_name)));
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    if ui.button("Leave").on_hover_text("Leave the room and change name or server").clicked()
                    {
                        out.push(UiCommand::Leave);
                    }
                    // Red while a stand-in replaces a missing device: the window says why.
                    let mut label = egui::RichText::new("Devices");
                    if session.devices.has_notice() {
                        label = label.color(views::palette::RED);
                    }
                    if ui.button(label).on_hover_text("Camera, microphone and speaker").clicked() {
                        session.devices.open = !session.devices.open;
                    }
                    session.devices.microphone_meter(ui, model.muted);
                });
            });
            ui.add_space(2.0);
        });
        egui::Panel::bottom("status").show(ui, |ui| {
            ui.add_space(3.0);
            views::status::show(ui, model, &extra);
            ui.add_space(1.0);
        });
        egui::Panel::left("side").resizable(true).default_size(250.0).min_size(180.0).show(ui, |ui| {
            ui.add_space(6.0);
            views::users::show(ui, model, out);
            ui.add_space(8.0);
            ui.separator();
            views::chat::show(ui, model, &mut session.draft, model.controls().chat, out);
        });
        egui::CentralPanel::default().show(ui, |ui| {
            let video_size =
                egui::vec2(ui.available_width(), (ui.available_height() - CONTROLS_HEIGHT).max(60.0));
            ui.allocate_ui(video_size, |ui| {
                views::video::show(ui, model, &session.remote, &session.local, show_stats);
            });
            ui.add_space(6.0);
            let sharing = session.sharing.sharing();
            views::controls::show(ui, model, (show_stats, auto_answer), sharing.as_deref(), out);
        });
        if let (CallState::Ringing { peer }, false) = (&model.call, auto_answer) {
            views::incoming::show(ui.ctx(), peer, out);
        }
        session.sharing.show(ui.ctx(), out);
        if session.devices.show(ui.ctx(), &mut self.settings, &session.engine) {
            if let Err(e) = self.settings.save() {
                self.notice = Some(e);
            }
        }
    }
}

impl eframe::App for PeercallApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        let auto_answer = self.settings.auto_answer;
        let Some(session) = self.session.as_mut() else {
            return self.set_title(ctx, "Peercall".to_owned());
        };
        let now = Instant::now();
        for event in session.bridge.events.try_iter() {
            session.model.apply(event, now);
        }
        let ringing = matches!(session.model.call, CallState::Ringing { .. }) && !auto_answer;
        let in_call = matches!(session.model.call, CallState::InCall { .. });
        if !in_call && !matches!(session.model.call, CallState::Connecting { .. }) {
            session.sharing.call_ended();
        }
        let title = session.model.title();
        self.ringer.set(ringing);
        self.set_title(ctx, title);
        if in_call {
            // The microphone meter and "you are muted" follow the voice: ten times a second.
            ctx.request_repaint_after(Duration::from_millis(100));
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        let started = Instant::now();
        let ctx = ui.ctx().clone();
        if let Some(session) = self.session.as_mut() {
            // Upload only what is new: a repaint for any other reason reuses the textures.
            if session.remote_rx.has_changed().unwrap_or(false) {
                let frame = session.remote_rx.borrow_and_update().clone();
                session.remote.update(&ctx, frame.as_ref());
            }
            if session.local_rx.has_changed().unwrap_or(false) {
                let frame = session.local_rx.borrow_and_update().clone();
                session.local.update(&ctx, frame.as_ref());
            }
        }
        let mut commands = Vec::new();
        self.keys(&ctx, &mut commands);
        if self.session.is_some() {
            self.draw_room(ui, &mut commands);
        } else {
            let focus_name = std::mem::take(&mut self.focus_name);
            views::login::show(ui, &mut self.settings, self.notice.as_deref(), focus_name, &mut commands);
        }
        for command in commands {
            self.execute(command, &ctx);
        }
        views::name_window(&ctx, &self.title);
        if let Some(perf) = &mut self.perf {
            perf.record(started.elapsed(), frame.info().cpu_usage);
        }
    }

    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        let engine = self.session.take().map(|s| s.engine);
        self.ringer.set(false);
        let embedded = self.embedded.take();
        self.rt.block_on(async move {
            if let Some(engine) = engine {
                // The hang-up reaches the server and the socket closes before the process goes.
                let _ = tokio::time::timeout(Duration::from_secs(3), engine.shutdown()).await;
            }
            if let Some(server) = embedded {
                let _ = tokio::time::timeout(Duration::from_secs(1), server.shutdown()).await;
            }
        });
    }
}

impl Session {
    /// Carries out a command about the room: everything that goes to the engine.
    fn execute(&mut self, command: UiCommand) {
        let engine_command = match command {
            UiCommand::Engine(c) => c,
            UiCommand::SendChat => {
                let text = self.draft.trim().to_owned();
                self.draft.clear();
                if text.is_empty() {
                    return;
                }
                Command::Chat(text)
            }
            UiCommand::ToggleMute => {
                self.model.muted = !self.model.muted;
                Command::SetAudioMuted(self.model.muted)
            }
            UiCommand::ToggleCamera => {
                self.model.camera_off = !self.model.camera_off;
                Command::SetVideoOff(self.model.camera_off)
            }
            // The app's own business, handled before it gets here.
            UiCommand::Join
            | UiCommand::Leave
            | UiCommand::ToggleStats
            | UiCommand::SetAutoAnswer(_)
            | UiCommand::OpenSharePicker
            | UiCommand::ShareScreen(_)
            | UiCommand::StopSharing => return,
        };
        if !self.engine.send(engine_command) {
            let stopped = Event::Error(EngineError::Stopped);
            self.model.apply(stopped, Instant::now());
        }
    }
}

impl PeercallApp {
    fn set_title(&mut self, ctx: &egui::Context, title: String) {
        if title != self.title {
            ctx.send_viewport_cmd(ViewportCommand::Title(title.clone()));
            self.title = title;
        }
    }
}
