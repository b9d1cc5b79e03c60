//! The room's user list: click a name (or focus it and press Enter) to call it; our own name is marked
//! and not clickable. For screen readers it is a list named "People in this room" whose items say who
//! each one is and where the call with them stands.

use super::palette;
use crate::call::Command;
use crate::ui::command::UiCommand;
use crate::ui::model::Model;
use eframe::egui;
use egui::{Key, Role, Sense, WidgetInfo};

/// The list's accessible name (the accessibility test looks for it).
pub const LIST_NAME: &str = "People in this room";

/// Draws the list.
pub fn show(ui: &mut egui::Ui, model: &Model, out: &mut Vec<UiCommand>) {
    ui.heading("In this room");
    ui.add_space(4.0);
    let rows = model.user_rows();
    if rows.is_empty() {
        ui.weak("Joining\u{2026}");
    }
    // With nothing focused, the arrow keys enter the list (Tab reaches it too): a keyboard user picks a
    // name with ↑/↓ (egui moves focus between the rows) and calls it with Enter.
    // The focus moves on the next frame: egui moves a focus given in this one a step further with the
    // same key press (↓ would pass the list and land in the chat line).
    let pending = ui.scope_id().with("enter-list");
    let entering: Option<bool> = ui.data_mut(|d| d.remove_temp(pending));
    // `Some(up)` when ↑ or ↓ was pressed with nothing focused.
    let arrow = ui.input(|i| {
        let (down, up) = (i.key_pressed(Key::ArrowDown), i.key_pressed(Key::ArrowUp));
        (i.modifiers.is_none() && (down || up)).then_some(up)
    });
    if let Some(up) = arrow.filter(|_| ui.ctx().memory(|m| m.focused().is_none())) {
        ui.data_mut(|d| d.insert_temp(pending, up));
        ui.ctx().request_repaint();
    }
    let list = ui.scope(|ui| {
        // The scope's own node becomes the list; the rows below are its items.
        ui.ctx().accesskit_node_builder(ui.unique_id(), |node| {
            node.set_role(Role::List);
            node.set_label(LIST_NAME);
            node.set_size_of_set(rows.len());
        });
        let mut focusable = Vec::new();
        for row in &rows {
            let size = egui::vec2(ui.available_width(), 26.0);
            // An id from the name, so focus stays on a person's row as it changes form (idle, in call).
            let id = ui.scope_id().with(("user-row", &row.name));
            let (rect, _) = ui.allocate_exact_size(size, Sense::hover());
            let sense = if row.callable {
                Sense::click()
            } else if row.in_call {
                // Reachable with Tab so a screen reader can read whom the call is with.
                Sense::focusable_noninteractive()
            } else {
                Sense::hover()
            };
            let response = ui.interact(rect, id, sense);
            if sense != Sense::hover() {
                focusable.push(response.id);
            }
            paint_row(ui, &response, row);
            let enabled = row.callable || row.in_call || row.is_me;
            // Built only when AccessKit asks (a screen reader is on), not every frame.
            response.widget_info(|| WidgetInfo::labeled(Role::ListItem, enabled, row.spoken()));
            // Asked before: the builder holds the context's lock, and has_focus takes it too.
            let selected = response.has_focus();
            ui.ctx().accesskit_node_builder(response.id, |node| {
                if row.callable {
                    node.set_description("press Enter to call");
                }
                node.set_selected(selected);
            });
            if response.clicked() {
                out.push(UiCommand::Engine(Command::Call(row.name.clone())));
            }
            if row.callable {
                response.on_hover_text(format!("Call {} (Enter)", row.name));
            }
        }
        focusable
    });
    if let Some(up) = entering {
        if let Some(&id) = if up { list.inner.last() } else { list.inner.first() } {
            ui.memory_mut(|m| m.request_focus(id));
        }
    }
}

/// A row as the eye sees it: the call's peer on a solid green, others as flat buttons.
fn paint_row(ui: &egui::Ui, response: &egui::Response, row: &crate::ui::view_model::UserRow) {
    let rect = response.rect;
    let painter = ui.painter();
    let (text, colour) = match row.note {
        Some(note) => {
            // A solid row (not a disabled button, which egui would fade).
            painter.rect_filled(rect, 4.0, palette::PEER_ROW);
            (format!("{} \u{b7} {note}", row.label), egui::Color32::WHITE)
        }
        None => {
            let visuals = ui.style().interact(response);
            if response.hovered() || response.has_focus() {
                painter.rect_filled(rect, 4.0, visuals.weak_bg_fill);
            }
            let colour = if row.callable { visuals.text_color() } else { ui.visuals().weak_text_color() };
            (row.label.clone(), colour)
        }
    };
    painter.text(
        rect.left_center() + egui::vec2(8.0, 0.0),
        egui::Align2::LEFT_CENTER,
        text,
        egui::TextStyle::Button.resolve(ui.style()),
        colour,
    );
    if response.has_focus() {
        let stroke = ui.visuals().selection.stroke;
        painter.rect_stroke(rect.shrink(1.0), 4.0, stroke, egui::StrokeKind::Inside);
    }
}
