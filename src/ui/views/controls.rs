//! The call controls under the video: Hang Up (disabled without a call), mic mute, camera off, the
//! statistics overlay and auto-answer.

use super::palette;
use crate::call::Command;
use crate::ui::command::UiCommand;
use crate::ui::model::Model;
use eframe::egui;
use egui::{vec2, Button, RichText};

/// Draws the row of controls.
pub fn show(ui: &mut egui::Ui, model: &Model, show_stats: bool, auto_answer: bool, out: &mut Vec<UiCommand>) {
    let controls = model.controls();
    ui.horizontal(|ui| {
        ui.spacing_mut().item_spacing.x = 8.0;
        let size = vec2(88.0, 30.0);
        let hang_up = Button::new(RichText::new("Hang Up").color(egui::Color32::WHITE).strong())
            .fill(if controls.hang_up { palette::RED } else { ui.visuals().widgets.inactive.bg_fill })
            .min_size(size);
        if ui.add_enabled(controls.hang_up, hang_up).on_hover_text("End the call (Esc)").clicked() {
            out.push(UiCommand::Engine(Command::HangUp));
        }
        let mic = if model.muted { "Unmute mic" } else { "Mute mic" };
        if ui.add(Button::selectable(model.muted, mic).min_size(size)).on_hover_text("M").clicked() {
            out.push(UiCommand::ToggleMute);
        }
        let camera = if model.camera_off { "Camera on" } else { "Camera off" };
        if ui.add(Button::selectable(model.camera_off, camera).min_size(size)).on_hover_text("V").clicked() {
            out.push(UiCommand::ToggleCamera);
        }
        if ui.add(Button::selectable(show_stats, "Statistics").min_size(size)).clicked() {
            out.push(UiCommand::ToggleStats);
        }
        let mut auto = auto_answer;
        if ui.checkbox(&mut auto, "Answer automatically").changed() {
            out.push(UiCommand::SetAutoAnswer(auto));
        }
    });
}
