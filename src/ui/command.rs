//! What a click or a key asks for. Views only push these; the app carries them out after drawing
//! (egui_demo_app's pattern), so no view touches the engine, the settings file or the runtime.

use crate::call::Command;
use crate::media::screen::ScreenId;

/// One request from the views.
#[derive(Clone, Debug, PartialEq)]
pub enum UiCommand {
    /// Join the room with the login form's name and server.
    Join,
    /// Leave the room and go back to the login form.
    Leave,
    /// Pass a command to the engine.
    Engine(Command),
    /// Send the chat draft to the room.
    SendChat,
    /// Toggle the microphone.
    ToggleMute,
    /// Toggle the camera.
    ToggleCamera,
    /// Show or hide the statistics overlay.
    ToggleStats,
    /// Turn auto-answer on or off.
    SetAutoAnswer(bool),
    /// Open the screen-sharing picker (lists screens and windows with thumbnails).
    OpenSharePicker,
    /// Share this screen or window instead of the camera.
    ShareScreen(ScreenId),
    /// Back to the camera.
    StopSharing,
}
