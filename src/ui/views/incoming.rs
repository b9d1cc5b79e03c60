//! The incoming-call prompt: who calls, Accept or Decline. Decline tells the caller. Screen readers
//! hear it at once: the dialog is an alert whose heading is an assertive live region.

use super::palette;
use crate::call::Command;
use crate::ui::command::UiCommand;
use eframe::egui;
use egui::{accesskit::Live, Button, RichText, Role, UiKind};

/// Shows the prompt over the window for a call from `from`.
pub fn show(ctx: &egui::Context, from: &str, out: &mut Vec<UiCommand>) {
    egui::Modal::new(egui::Id::unique("incoming-call")).show(ctx, |ui| {
        ui.set_width(300.0);
        let question = format!("{from} is calling");
        // The modal's own node (egui makes it a dialog): an alert named by the question.
        if let Some(dialog) = ui.stack().iter().find(|s| s.kind() == Some(UiKind::Modal)).map(|s| s.unique_id)
        {
            ui.ctx().accesskit_node_builder(dialog, |node| {
                node.set_role(Role::AlertDialog);
                node.set_label(question.clone());
                node.set_modal();
            });
        }
        ui.vertical_centered(|ui| {
            ui.add_space(6.0);
            let heading = ui.heading(&question);
            ui.ctx().accesskit_node_builder(heading.id, |node| node.set_live(Live::Assertive));
            ui.add_space(14.0);
            ui.horizontal(|ui| {
                let size = egui::vec2(140.0, 34.0);
                let accept = Button::new(RichText::new("Accept").color(egui::Color32::WHITE).strong())
                    .fill(palette::GREEN)
                    .min_size(size);
                if ui.add(accept).on_hover_text("Enter").clicked() {
                    out.push(UiCommand::Engine(Command::Accept));
                }
                let decline = Button::new(RichText::new("Decline").color(egui::Color32::WHITE).strong())
                    .fill(palette::RED)
                    .min_size(size);
                if ui.add(decline).on_hover_text("Esc").clicked() {
                    out.push(UiCommand::Engine(Command::Decline));
                }
            });
            ui.add_space(4.0);
        });
    });
}
