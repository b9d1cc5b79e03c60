//! The video panes: the remote picture large with its aspect kept, our own small in a corner and
//! mirrored (as a mirror, which is what people expect of themselves), and the statistics overlay.

use super::palette;
use crate::media::frame::RgbaFrame;
use crate::ui::model::Model;
use eframe::egui;
use egui::{pos2, vec2, Align2, Color32, FontId, Rect, Sense, Stroke, TextureOptions};

/// One picture on the GPU. It is uploaded only when a new frame arrived, never per repaint.
pub struct VideoTexture {
    name: &'static str,
    texture: Option<egui::TextureHandle>,
}

impl VideoTexture {
    /// An empty pane; `name` labels the texture for egui's debugging views.
    pub fn new(name: &'static str) -> Self {
        Self { name, texture: None }
    }

    /// Uploads `frame`, or forgets the picture when there is none (the call ended).
    pub fn update(&mut self, ctx: &egui::Context, frame: Option<&RgbaFrame>) {
        let Some(frame) = frame else {
            self.texture = None;
            return;
        };
        // Decoded pictures are opaque (alpha 255), so premultiplied and straight alpha are the same.
        let image = egui::ColorImage::from_rgba_premultiplied([frame.width, frame.height], &frame.pixels);
        match &mut self.texture {
            Some(texture) => texture.set(image, TextureOptions::LINEAR),
            None => self.texture = Some(ctx.load_texture(self.name, image, TextureOptions::LINEAR)),
        }
    }

    fn get(&self) -> Option<(egui::TextureId, egui::Vec2)> {
        self.texture.as_ref().map(|t| (t.id(), t.size_vec2()))
    }
}

/// The largest rect of `size`'s aspect that fits in `area`, centred.
pub fn fit(area: Rect, size: egui::Vec2) -> Rect {
    if size.x <= 0.0 || size.y <= 0.0 {
        return area;
    }
    let scale = (area.width() / size.x).min(area.height() / size.y);
    Rect::from_center_size(area.center(), size * scale)
}

/// Draws both panes into the rest of `ui`.
pub fn show(ui: &mut egui::Ui, model: &Model, remote: &VideoTexture, local: &VideoTexture, show_stats: bool) {
    let (area, pane) = ui.allocate_exact_size(ui.available_size(), Sense::hover());
    // One node for the pictures: a screen reader hears what the pane shows (or says, with no picture).
    let caption = model.pane_caption();
    let spoken = match (&model.call, remote.get()) {
        (crate::call::CallState::InCall { peer }, Some(_)) => format!("{peer}'s video"),
        _ if caption.is_empty() => "video".to_owned(),
        _ => caption.clone(),
    };
    pane.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Video, true, &spoken));
    let painter = ui.painter_at(area);
    painter.rect_filled(area, 8.0, palette::PANE);
    let full_uv = Rect::from_min_max(pos2(0.0, 0.0), pos2(1.0, 1.0));
    match remote.get() {
        Some((id, size)) => {
            painter.image(id, fit(area, size), full_uv, Color32::WHITE);
        }
        None => {
            painter.text(
                area.center(),
                Align2::CENTER_CENTER,
                caption,
                FontId::proportional(20.0),
                Color32::from_gray(170),
            );
        }
    }
    if let Some((id, size)) = local.get() {
        let width = (area.width() * 0.22).clamp(120.0, 320.0);
        let height = width * size.y / size.x.max(1.0);
        let margin = 12.0;
        let rect = Rect::from_min_size(area.max - vec2(width + margin, height + margin), vec2(width, height));
        // Mirrored: u runs right to left.
        let mirrored = Rect::from_min_max(pos2(1.0, 0.0), pos2(0.0, 1.0));
        painter.image(id, rect, mirrored, Color32::WHITE);
        painter.rect_stroke(rect, 4.0, Stroke::new(1.5, Color32::from_gray(230)), egui::StrokeKind::Outside);
        if model.camera_off {
            painter.text(
                rect.center(),
                Align2::CENTER_CENTER,
                "camera off",
                FontId::proportional(14.0),
                Color32::GRAY,
            );
        }
    }
    if show_stats {
        if let Some(stats) = &model.stats {
            // Over the picture's corner, not the pane's, so it reads as part of the video.
            let picture = remote.get().map(|(_, size)| fit(area, size)).unwrap_or(area);
            super::stats::paint(&painter, picture, stats);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_keeps_the_aspect_and_centres() {
        let area = Rect::from_min_size(pos2(0.0, 0.0), vec2(1000.0, 500.0));
        let r = fit(area, vec2(640.0, 480.0));
        assert!((r.width() / r.height() - 4.0 / 3.0).abs() < 1e-4);
        assert_eq!(r.height(), 500.0);
        assert_eq!(r.center(), area.center());
    }
}
