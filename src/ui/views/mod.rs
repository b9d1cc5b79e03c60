//! The window's pieces, one file each. Every view reads the model and pushes [`super::command::UiCommand`]s.

pub mod chat;
pub mod controls;
pub mod incoming;
pub mod login;
pub mod stats;
pub mod status;
pub mod users;
pub mod video;

use eframe::egui;

/// Names the window for screen readers by its title ("Peercall — ada in lobby — in call with bob"):
/// AccessKit's root node has no name of its own, and Orca reads it when the window takes the focus.
pub fn name_window(ctx: &egui::Context, title: &str) {
    ctx.accesskit_node_builder(egui::accesskit_root_id(), |node| node.set_label(title));
}

/// Colours shared by the views.
pub mod palette {
    use eframe::egui::Color32;

    /// Accent for the call in progress and positive actions (Accept, the peer's row).
    pub const GREEN: Color32 = Color32::from_rgb(22, 163, 74);
    /// Ending actions (Hang Up, Decline) and error text.
    pub const RED: Color32 = Color32::from_rgb(220, 38, 38);
    /// The fill of the call peer's row in the user list (the window test looks for it).
    pub const PEER_ROW: Color32 = Color32::from_rgb(21, 94, 53);
    /// Behind the video.
    pub const PANE: Color32 = Color32::from_rgb(18, 18, 22);
}
