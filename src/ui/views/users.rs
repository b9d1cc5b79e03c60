//! The room's user list: click a name to call it; our own name is marked and not clickable.

use super::palette;
use crate::call::Command;
use crate::ui::command::UiCommand;
use crate::ui::model::Model;
use eframe::egui;

/// Draws the list.
pub fn show(ui: &mut egui::Ui, model: &Model, out: &mut Vec<UiCommand>) {
    ui.heading("In this room");
    ui.add_space(4.0);
    let rows = model.user_rows();
    if rows.is_empty() {
        ui.weak("Joining\u{2026}");
    }
    for row in rows {
        let size = egui::vec2(ui.available_width(), 26.0);
        if let Some(note) = row.note {
            // The call's peer: a solid row (not a disabled button, which egui would fade).
            let (rect, _) = ui.allocate_exact_size(size, egui::Sense::hover());
            ui.painter().rect_filled(rect, 4.0, palette::PEER_ROW);
            ui.painter().text(
                rect.left_center() + egui::vec2(8.0, 0.0),
                egui::Align2::LEFT_CENTER,
                format!("{} \u{b7} {note}", row.label),
                egui::FontId::proportional(14.0),
                egui::Color32::WHITE,
            );
            continue;
        }
        let text =
            if row.is_me { egui::RichText::new(&row.label).weak() } else { egui::RichText::new(&row.label) };
        let button = egui::Button::new(text).frame_when_inactive(false).min_size(size);
        let response = ui.add_enabled(row.callable, button);
        if response.clicked() {
            out.push(UiCommand::Engine(Command::Call(row.name.clone())));
        }
        if row.callable {
            response.on_hover_text(format!("Call {}", row.name));
        }
    }
}
