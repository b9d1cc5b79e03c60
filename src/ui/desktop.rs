//! What the desktop asks of the window beyond winit's own reading: the text scale.
//!
//! winit already gives egui the desktop's scale as `pixels_per_point`: on X11 from `Xft.dpi` (the
//! X resources) or the XSETTINGS `Xft/DPI` that GNOME and others set from their "large text" and
//! scaling settings, on Wayland from the compositor. GTK apps also follow `GDK_DPI_SCALE` (a text-only
//! factor people set in their session); egui cannot scale text alone without clipping fixed-size
//! controls, so it becomes egui's zoom factor (Ctrl+plus / Ctrl+minus change that zoom further).

/// The desktop's extra text scale (`GDK_DPI_SCALE`), when one is set and sane.
pub fn text_scale() -> Option<f32> {
    std::env::var("GDK_DPI_SCALE").ok().as_deref().and_then(parse_scale)
}

/// A scale factor from its text: a positive number from 0.5 to 4 (GTK takes any positive number;
/// past those bounds the window would not fit on a screen or not be readable).
fn parse_scale(text: &str) -> Option<f32> {
    let scale: f32 = text.trim().parse().ok()?;
    (0.5..=4.0).contains(&scale).then_some(scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_scale_from_the_environment_text() {
        assert_eq!(parse_scale("1.25"), Some(1.25));
        assert_eq!(parse_scale(" 2 "), Some(2.0));
        assert_eq!(parse_scale("0"), None);
        assert_eq!(parse_scale("large"), None);
        assert_eq!(parse_scale("40"), None);
    }
}
