//! The call controls under the video: Hang Up (disabled without a call), mic mute, camera off, Share
//! screen (in a call; while sharing, a red "You are sharing …" with Stop), the statistics overlay and
//! auto-answer.

use super::palette;
use crate::call::Command;
use crate::ui::command::UiCommand;
use crate::ui::model::Model;
use eframe::egui;
use egui::{vec2, Button, RichText};

/// Draws the row of controls.
pub fn show(
    ui: &mut egui::Ui,
    model: &Model,
    (show_stats, auto_answer): (bool, bool),
    sharing: Option<&str>,
    out: &mut Vec<UiCommand>,
) {
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
        let in_call = matches!(model.call, crate::call::CallState::InCall { .. });
        match sharing {
            Some(what) => {
                let stop = Button::new(RichText::new("Stop sharing").color(egui::Color32::WHITE).strong())
                    .fill(palette::RED)
                    .min_size(size);
                if ui.add(stop).on_hover_text("Back to the camera").clicked() {
                    out.push(UiCommand::StopSharing);
                }
                let label = ui.colored_label(palette::RED, format!("You are sharing {what}"));
                // Read out when sharing starts, as the status line's notices are.
                ui.ctx()
                    .accesskit_node_builder(label.id, |node| node.set_live(egui::accesskit::Live::Polite));
            }
            None => {
                let share = Button::new("Share screen").min_size(size);
                let hint = if in_call {
                    "Show a screen or one window instead of the camera (S)"
                } else {
                    "In a call"
                };
                if ui.add_enabled(in_call, share).on_hover_text(hint).on_disabled_hover_text(hint).clicked() {
                    out.push(UiCommand::OpenSharePicker);
                }
            }
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
