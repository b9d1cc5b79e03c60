//! Screen sharing in the window: the picker (each screen and window by name, with a thumbnail), what
//! is shared now for the "you are sharing" line, and the notice when sharing stopped by itself.
//! The switch itself is [`MediaDevices::share_screen`]: the call's video source follows it at its
//! next frame, on the same track.

use super::command::UiCommand;
use super::views::palette;
use crate::media::devices::{MediaDevices, ScreenShare};
use crate::media::screen::{ScreenId, ScreenTarget};
use eframe::egui;
use tokio::sync::watch;

/// Thumbnails are at most this size (pixels).
const THUMB: (usize, usize) = (192, 120);

/// The picker and the sharing state of a session.
pub struct SharePanel {
    media: MediaDevices,
    status: watch::Receiver<ScreenShare>,
    /// Whether the picker is open.
    open: bool,
    /// What the picker offers, with thumbnails; or why nothing can be shared.
    choices: Result<Vec<(ScreenTarget, Option<egui::TextureHandle>)>, String>,
}

impl SharePanel {
    /// Sharing through `media` (the session's devices).
    pub fn new(media: MediaDevices) -> Self {
        Self { status: media.screen_status(), media, open: false, choices: Ok(Vec::new()) }
    }

    /// What is shared now, by name ("Screen 1 (1280x800)", a window's title).
    pub fn sharing(&self) -> Option<String> {
        let status = self.status.borrow();
        status.sharing.as_ref().map(|t| t.name.clone()).or_else(|| status.requested.map(|id| id.to_string()))
    }

    /// Why sharing stopped by itself or could not start, in words.
    pub fn notice(&self) -> Option<String> {
        self.status.borrow().notice.clone()
    }

    /// Carries out a sharing command; `false` if it was not one.
    pub fn execute(&mut self, command: &UiCommand, ctx: &egui::Context) -> bool {
        match command {
            UiCommand::OpenSharePicker => self.open_picker(ctx),
            UiCommand::ShareScreen(id) => {
                self.open = false;
                self.media.share_screen(*id);
            }
            UiCommand::StopSharing => self.media.stop_sharing(),
            _ => return false,
        }
        true
    }

    /// A call ended: sharing ends with it (the next call starts with the camera).
    pub fn call_ended(&mut self) {
        let active = {
            let s = self.status.borrow();
            s.sharing.is_some() || s.requested.is_some()
        };
        if active {
            self.media.stop_sharing();
        }
        self.open = false;
    }

    fn open_picker(&mut self, ctx: &egui::Context) {
        self.open = true;
        let display = self.media.display();
        self.choices = display.list().map_err(|e| e.to_string()).map(|targets| {
            targets
                .into_iter()
                .map(|target| {
                    // A thumbnail costs one grab; a window that cannot be read now is listed without one.
                    let thumbnail = display.open(target.id).and_then(|mut c| c.grab()).ok().map(|image| {
                        let small = image.thumbnail(THUMB.0, THUMB.1);
                        let picture = egui::ColorImage::from_rgba_unmultiplied(
                            [small.width, small.height],
                            &small.pixels,
                        );
                        ctx.load_texture(
                            format!("share {}", target.id),
                            picture,
                            egui::TextureOptions::LINEAR,
                        )
                    });
                    (target, thumbnail)
                })
                .collect()
        });
    }

    /// Draws the picker when open; a choice becomes a command.
    pub fn show(&mut self, ctx: &egui::Context, out: &mut Vec<UiCommand>) {
        if !self.open {
            return;
        }
        let mut open = self.open;
        egui::Window::new("Share your screen").open(&mut open).collapsible(false).resizable(false).show(
            ctx,
            |ui| {
                match &self.choices {
                    Err(why) => {
                        ui.colored_label(palette::RED, why);
                    }
                    Ok(choices) if choices.is_empty() => {
                        ui.label("Nothing to share was found on this display.");
                    }
                    Ok(choices) => {
                        ui.label("Choose what the other side sees:");
                        egui::ScrollArea::vertical().max_height(440.0).show(ui, |ui| {
                            egui::Grid::new("share choices").num_columns(3).spacing([10.0, 10.0]).show(
                                ui,
                                |ui| {
                                    for (i, (target, thumbnail)) in choices.iter().enumerate() {
                                        if let Some(id) = choice(ui, target, thumbnail.as_ref()) {
                                            out.push(UiCommand::ShareScreen(id));
                                        }
                                        if i % 3 == 2 {
                                            ui.end_row();
                                        }
                                    }
                                },
                            );
                        });
                    }
                }
                if ui.button("Refresh list").clicked() {
                    out.push(UiCommand::OpenSharePicker);
                }
            },
        );
        self.open &= open;
    }
}

/// One card of the picker: the thumbnail, the name under it; the whole card is the button.
fn choice(
    ui: &mut egui::Ui,
    target: &ScreenTarget,
    thumbnail: Option<&egui::TextureHandle>,
) -> Option<ScreenId> {
    let kind = if target.is_screen() { "Screen" } else { "Window" };
    let clicked = ui
        .vertical(|ui| {
            ui.set_width(THUMB.0 as f32 + 8.0);
            let picture = match thumbnail {
                Some(t) => ui.add(egui::Button::image(egui::Image::new((t.id(), t.size_vec2())))),
                None => ui.add_sized([THUMB.0 as f32, THUMB.1 as f32], egui::Button::new("(no preview)")),
            };
            let described = format!("{kind}: {} ({}x{})", target.name, target.width, target.height);
            // The thumbnail has no text of its own: a screen reader hears what it shares.
            picture.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, &described));
            let picture = picture.on_hover_text(&described);
            let name =
                ui.add(egui::Button::new(egui::RichText::new(&target.name).small()).frame(false).truncate());
            picture.clicked() || name.clicked()
        })
        .inner;
    clicked.then_some(target.id)
}
