//! The room's text chat: the log, newest at the bottom, and a line to type in (Enter sends).

use crate::ui::command::UiCommand;
use crate::ui::model::Model;
use eframe::egui;

/// Draws the chat into the rest of `ui`.
pub fn show(ui: &mut egui::Ui, model: &Model, draft: &mut String, enabled: bool, out: &mut Vec<UiCommand>) {
    let heading = ui.heading("Chat");
    ui.add_space(4.0);
    let input_height = 34.0;
    egui::ScrollArea::vertical()
        .max_height((ui.available_height() - input_height).max(40.0))
        .stick_to_bottom(true)
        .auto_shrink([false, false])
        .show(ui, |ui| {
            if model.chat.is_empty() {
                ui.weak("Messages to everyone in the room appear here.");
            }
            for line in &model.chat {
                ui.horizontal_wrapped(|ui| {
                    ui.spacing_mut().item_spacing.x = 4.0;
                    let name = egui::RichText::new(format!("{}:", line.from)).strong();
                    ui.label(if line.mine { name.weak() } else { name });
                    ui.label(&line.text);
                });
            }
        });
    ui.add_space(4.0);
    let edit = ui.add_enabled(
        enabled,
        egui::TextEdit::singleline(draft).hint_text("Message the room").desired_width(f32::INFINITY),
    );
    // Named for screen readers by the heading (the hint alone leaves AT-SPI's name empty).
    let edit = edit.labelled_by(heading.id);
    if edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)) {
        out.push(UiCommand::SendChat);
        edit.request_focus();
    }
}
