//! The device pickers: camera, microphone and speaker, chosen in a small window, remembered in the
//! settings, and switched during a call without renegotiation (the engine's sources follow
//! [`MediaDevices`]; the speaker is reopened on the same audio stream).
//!
//! Settings keep each device as an id string: `None` is the system default, `"synthetic"` the test
//! pattern or tone, `"none"` (speaker only) plays nothing.

use super::settings::Settings;
use crate::call::{Command, Engine, EngineConfig, VideoPreference};
use crate::media::devices::{
    list_cameras, list_microphones, list_speakers, CameraSettings, DeviceChoice, MediaDevices, Selection,
    Speaker,
};
use crate::media::source::SyntheticVideo;
use eframe::egui;
use tokio::sync::watch;

/// The settings word for the synthetic pattern or tone.
const SYNTHETIC: &str = "synthetic";
/// The settings word for "no speaker".
const NO_SPEAKER: &str = "none";

/// One entry of a picker: what settings store, and what people read.
type Entry = (Option<String>, String);

/// The devices of a session and the pickers' window.
pub struct DevicePanel {
    media: MediaDevices,
    video_status: watch::Receiver<DeviceChoice>,
    audio_status: watch::Receiver<DeviceChoice>,
    speaker: Option<Speaker>,
    /// Why the speaker is not playing, in words.
    speaker_notice: Option<String>,
    /// Whether the pickers' window is open.
    pub open: bool,
    cameras: Vec<Entry>,
    microphones: Vec<Entry>,
    speakers: Vec<Entry>,
}

fn selection(setting: &Option<String>) -> Selection {
    match setting.as_deref() {
        None => Selection::Default,
        Some(SYNTHETIC) => Selection::Synthetic,
        Some(id) => Selection::Device(id.to_owned()),
    }
}

impl DevicePanel {
    /// Devices as the settings say, `stand_in` (the pattern, the scene or a clip) at `video` (width,
    /// height, fps) and the tone at `tone` Hz standing in where a device is missing.
    pub fn new(
        settings: &Settings,
        video: (usize, usize, u32),
        tone: f64,
        stand_in: &SyntheticVideo,
    ) -> Self {
        let (width, height, fps) = video;
        let want = CameraSettings { width: width as u32, height: height as u32, fps };
        let media = MediaDevices::new(selection(&settings.camera), selection(&settings.microphone), want)
            .with_tone(tone)
            .with_video_stand_in(stand_in.clone());
        media.processing().set_switches(settings.audio_processing);
        Self {
            video_status: media.video_status(),
            audio_status: media.audio_status(),
            media,
            speaker: None,
            speaker_notice: None,
            open: false,
            cameras: Vec::new(),
            microphones: Vec::new(),
            speakers: Vec::new(),
        }
    }

    /// The devices themselves (screen sharing switches the video source through them).
    pub fn media(&self) -> &MediaDevices {
        &self.media
    }

    /// Makes the engine's sources come from these devices.
    pub fn apply(&self, config: &mut EngineConfig) {
        config.video_source = self.media.video_factory();
        config.audio_source = self.media.audio_factory();
    }

    /// Plays `engine`'s remote audio on the speaker the settings name.
    pub fn start_speaker(&mut self, engine: &Engine, settings: &Settings) {
        self.speaker = None;
        self.speaker_notice = None;
        if settings.speaker.as_deref() == Some(NO_SPEAKER) {
            return;
        }
        // What the speaker plays is the echo canceller's reference.
        let reference = Some(self.media.processing().reference().clone());
        match Speaker::play_with_reference(settings.speaker.as_deref(), engine.remote_audio(), reference) {
            Ok(s) => self.speaker = Some(s),
            Err(e) => self.speaker_notice = Some(format!("{e}: the other side is not heard")),
        }
    }

    /// A fallback is in use (the pickers' button shows a mark).
    pub fn has_notice(&self) -> bool {
        self.speaker_notice.is_some()
            || self.speaker.as_ref().is_some_and(|s| s.failure().is_some())
            || self.video_status.borrow().notice.is_some()
            || self.audio_status.borrow().notice.is_some()
            || self.media.processing().notice().is_some()
    }

    /// The top bar's microphone meter (while a microphone is captured), and "you are muted" when
    /// the voice detector hears someone talk into a muted microphone.
    pub fn microphone_meter(&self, ui: &mut egui::Ui, muted: bool) {
        let processing = self.media.processing();
        if self.audio_status.borrow().synthetic {
            return;
        }
        level_bar(ui, processing.level_dbfs(), 80.0);
        if muted && processing.voice() {
            ui.colored_label(super::views::palette::RED, "You are muted");
        }
    }

    fn refresh_lists(&mut self) {
        let default = (None, "System default".to_owned());
        self.cameras = std::iter::once(default.clone())
            .chain(list_cameras().into_iter().map(|c| (Some(c.id), c.name)))
            .chain([(Some(SYNTHETIC.to_owned()), "Test pattern".to_owned())])
            .collect();
        self.microphones = std::iter::once(default.clone())
            .chain(list_microphones().into_iter().map(|m| (Some(m.id), m.name)))
            .chain([(Some(SYNTHETIC.to_owned()), "Test tone".to_owned())])
            .collect();
        self.speakers = std::iter::once(default)
            .chain(list_speakers().into_iter().map(|s| (Some(s.id), s.name)))
            .chain([(Some(NO_SPEAKER.to_owned()), "None".to_owned())])
            .collect();
    }

    /// Draws the pickers' window when open; returns `true` when a choice changed (save the settings).
    pub fn show(&mut self, ctx: &egui::Context, settings: &mut Settings, engine: &Engine) -> bool {
        if !self.open {
            return false;
        }
        if self.cameras.is_empty() {
            // Listing asks the drivers, so only when the window opens, not every frame.
            self.refresh_lists();
        }
        let mut open = self.open;
        let mut changed = (false, false, false);
        let mut codec_changed = false;
        let mut processing_changed = false;
        egui::Window::new("Devices").open(&mut open).resizable(false).collapsible(false).show(ctx, |ui| {
            egui::Grid::new("device pickers").num_columns(2).spacing([12.0, 8.0]).show(ui, |ui| {
                changed.0 = picker(ui, "Camera", &self.cameras, &mut settings.camera);
                ui.end_row();
                changed.1 = picker(ui, "Microphone", &self.microphones, &mut settings.microphone);
                ui.end_row();
                changed.2 = picker(ui, "Speaker", &self.speakers, &mut settings.speaker);
                ui.end_row();
                codec_changed = codec_picker(ui, &mut settings.video_codec);
                ui.end_row();
                ui.label("Processing");
                ui.vertical(|ui| {
                    let s = &mut settings.audio_processing;
                    processing_changed |=
                        ui.checkbox(&mut s.echo_cancellation, "Echo cancellation").changed();
                    processing_changed |=
                        ui.checkbox(&mut s.noise_suppression, "Noise suppression").changed();
                    processing_changed |= ui.checkbox(&mut s.gain_control, "Automatic gain").changed();
                });
                ui.end_row();
                ui.label("Level");
                level_bar(ui, self.media.processing().level_dbfs(), 260.0);
                ui.end_row();
            });
            if let Some(notice) = self.media.processing().notice() {
                ui.colored_label(super::views::palette::RED, notice);
            }
            ui.add_space(4.0);
            let video = self.video_status.borrow().clone();
            let audio = self.audio_status.borrow().clone();
            status_line(ui, "Sending video from", &video);
            status_line(ui, "Sending audio from", &audio);
            match (&self.speaker, &self.speaker_notice) {
                (Some(s), _) => match s.failure() {
                    Some(failure) => {
                        ui.colored_label(super::views::palette::RED, failure);
                    }
                    None => {
                        ui.label(format!("Playing on {}", s.name()));
                    }
                },
                (None, Some(notice)) => {
                    ui.colored_label(super::views::palette::RED, notice);
                }
                (None, None) => {
                    ui.label("Not playing the other side's audio");
                }
            }
            if ui.button("Refresh list").clicked() {
                self.refresh_lists();
            }
        });
        self.open = open;
        if changed.0 {
            self.media.set_camera(selection(&settings.camera));
        }
        if changed.1 {
            self.media.set_microphone(selection(&settings.microphone));
        }
        if changed.2 {
            self.start_speaker(engine, settings);
        }
        if codec_changed {
            engine.send(Command::SetVideoCodec(settings.video_codec));
        }
        if processing_changed {
            self.media.processing().set_switches(settings.audio_processing);
        }
        if self.open {
            // The level meter moves while the window is open.
            ctx.request_repaint_after(std::time::Duration::from_millis(100));
        }
        changed.0 || changed.1 || changed.2 || codec_changed || processing_changed
    }
}

/// The video codec to put first; takes effect from the next call (a call keeps what it negotiated).
fn codec_picker(ui: &mut egui::Ui, value: &mut VideoPreference) -> bool {
    let caption = ui.label("Video codec");
    let words = |p: VideoPreference| match p {
        VideoPreference::Auto => "Automatic (H.264, or the caller's choice)",
        VideoPreference::H264 => "Prefer H.264",
        VideoPreference::Vp8 => "Prefer VP8",
    };
    let before = *value;
    let combo = egui::ComboBox::from_id_salt("Video codec")
        .selected_text(words(*value))
        .width(260.0)
        .show_ui(ui, |ui| {
            for p in [VideoPreference::Auto, VideoPreference::H264, VideoPreference::Vp8] {
                ui.selectable_value(value, p, words(p));
            }
        });
    combo.response.labelled_by(caption.id).on_hover_text("Used from the next call on");
    *value != before
}

/// One labelled drop-down; returns `true` when the choice changed.
fn picker(ui: &mut egui::Ui, label: &str, entries: &[Entry], value: &mut Option<String>) -> bool {
    let caption = ui.label(label);
    let current = entries
        .iter()
        .find(|(id, _)| id == value)
        .map(|(_, name)| name.clone())
        .unwrap_or_else(|| value.clone().unwrap_or_default());
    let before = value.clone();
    let combo = egui::ComboBox::from_id_salt(label).selected_text(current).width(260.0).show_ui(ui, |ui| {
        for (id, name) in entries {
            ui.selectable_value(value, id.clone(), name);
        }
    });
    // A screen reader names the drop-down by the caption above it ("Camera"), not by its choice.
    combo.response.labelled_by(caption.id);
    *value != before
}

/// A level meter: −60 dBFS (empty) to 0 dBFS (full), with the level in words for screen readers.
fn level_bar(ui: &mut egui::Ui, dbfs: f32, width: f32) {
    let fill = ((dbfs + 60.0) / 60.0).clamp(0.0, 1.0);
    let words =
        if dbfs <= -60.0 { "microphone silent".to_owned() } else { format!("microphone {dbfs:.0} dBFS") };
    ui.add(egui::ProgressBar::new(fill).desired_width(width).desired_height(10.0)).on_hover_text(words);
}

fn status_line(ui: &mut egui::Ui, what: &str, choice: &DeviceChoice) {
    ui.label(format!("{what} {}", choice.source));
    if let Some(notice) = &choice.notice {
        ui.colored_label(super::views::palette::RED, notice);
    }
}
