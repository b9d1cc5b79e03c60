//! The first-run form: display name, server address, auto-answer, Join. The name field takes the keys
//! when the form opens, each field is named by the label above it, and Enter in a field joins.

use crate::ui::command::UiCommand;
use crate::ui::settings::Settings;
use eframe::egui;

/// Draws the form into the middle of `ui`; Enter in a field joins like the button.
/// `focus_name`: the form has just appeared, so its name field takes the keys (once, not every frame:
/// a click elsewhere must stick).
pub fn show(
    ui: &mut egui::Ui,
    settings: &mut Settings,
    notice: Option<&str>,
    focus_name: bool,
    out: &mut Vec<UiCommand>,
) {
    egui::CentralPanel::default().show(ui, |ui| {
        ui.vertical_centered(|ui| {
            ui.add_space((ui.available_height() * 0.18).max(12.0));
            ui.heading(egui::RichText::new("Peercall").size(30.0).strong());
            ui.label("Video calls with the people on your network.");
            ui.add_space(24.0);
        });
        let width = 380.0f32.min(ui.available_width());
        let left = (ui.available_width() - width) / 2.0;
        ui.horizontal(|ui| {
            ui.add_space(left.max(0.0));
            ui.vertical(|ui| {
                ui.set_width(width);
                let mut enter = false;
                let name = field(ui, "Your name", &mut settings.name, "", width);
                if focus_name {
                    name.request_focus();
                }
                enter |= name.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                ui.add_space(8.0);
                let server = field(ui, "Server", &mut settings.server, "ws://127.0.0.1:6503/", width);
                enter |= server.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                ui.small("An address on this machine uses the server built into Peercall.");
                if settings.server.trim_start().starts_with("wss://") {
                    ui.add_space(8.0);
                    let (label, hint) = ("Certificate to trust (optional)", "/path/to/server-cert.pem");
                    let cert = field(ui, label, &mut settings.trusted_cert, hint, width);
                    enter |= cert.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                    ui.small("For a server with a self-signed certificate; public ones need nothing here.");
                }
                ui.add_space(8.0);
                ui.checkbox(&mut settings.auto_answer, "Answer calls automatically");
                ui.add_space(16.0);
                let ready = !settings.name.trim().is_empty() && !settings.server.trim().is_empty();
                let join = ui.add_enabled(
                    ready,
                    egui::Button::new(egui::RichText::new("Join").size(16.0))
                        .min_size(egui::vec2(width, 32.0)),
                );
                if join.clicked() || (ready && enter) {
                    out.push(UiCommand::Join);
                }
                if let Some(notice) = notice {
                    ui.add_space(12.0);
                    ui.colored_label(super::palette::RED, notice);
                }
            });
        });
    });
}

/// A caption and the line under it, named by the caption for screen readers.
fn field(ui: &mut egui::Ui, caption: &str, text: &mut String, hint: &str, width: f32) -> egui::Response {
    let label = ui.label(caption);
    ui.add(egui::TextEdit::singleline(text).hint_text(hint).desired_width(width)).labelled_by(label.id)
}
