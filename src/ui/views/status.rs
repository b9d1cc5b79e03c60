//! The status line at the bottom: signaling link, call and duration, ICE, and the last notice in words.

use super::palette;
use crate::ui::model::{Link, Model};
use eframe::egui;
use egui::accesskit::Live;
use std::time::Instant;

/// Draws the status line; `extra` are standing notices (the LAN address, a silent ring).
pub fn show(ui: &mut egui::Ui, model: &Model, extra: &[String]) {
    ui.horizontal_wrapped(|ui| {
        let dot = match model.link {
            Link::Connected if model.me.is_some() => palette::GREEN,
            Link::Reconnecting { .. } => palette::RED,
            _ => egui::Color32::from_rgb(202, 138, 4),
        };
        let (spot, _) = ui.allocate_exact_size(egui::vec2(10.0, 10.0), egui::Sense::hover());
        ui.painter().circle_filled(spot.center(), 4.5, dot);
        ui.label(model.status_line(Instant::now()));
        if let Some(notice) = &model.notice {
            ui.separator();
            let label = if notice.is_error {
                ui.colored_label(palette::RED, &notice.text)
            } else {
                ui.strong(&notice.text)
            };
            // Read out when it appears ("bob hung up"); the clock beside it, ticking each second, is not.
            let live = if notice.is_error { Live::Assertive } else { Live::Polite };
            ui.ctx().accesskit_node_builder(label.id, |node| node.set_live(live));
        }
        for text in extra {
            ui.separator();
            ui.weak(text);
        }
    });
}
