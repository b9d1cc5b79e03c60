//! The incoming-call prompt: who calls, Accept or Decline. Decline tells the caller.

use super::palette;
use crate::call::Command;
use crate::ui::command::UiCommand;
use eframe::egui;
use egui::{Button, RichText};

/// Shows the prompt over the window for a call from `from`.
pub fn show(ctx: &egui::Context, from: &str, out: &mut Vec<UiCommand>) {
    egui::Modal::new(egui::Id::unique("incoming-call")).show(ctx, |ui| {
        ui.set_width(300.0);
        ui.vertical_centered(|ui| {
            ui.add_space(6.0);
            ui.heading(format!("{from} is calling"));
            ui.add_space(14.0);
            ui.horizontal(|ui| {
                let size = egui::vec2(140.0, 34.0);
                let accept = Button::new(RichText::new("Accept").color(egui::Color32::WHITE).strong())
                    .fill(palette::GREEN)
                    .min_size(size);
                if ui.add(accept).clicked() {
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
