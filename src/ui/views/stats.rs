//! The call-statistics overlay: resolution, codecs, frame rates, bitrates, round trip, loss and congestion control, drawn over
//! the top-left corner of the remote picture.

use crate::call::CallStats;
use eframe::egui;
use egui::{vec2, Align2, Color32, FontId, Rect};

/// The overlay's lines for one second of statistics.
pub fn lines(s: &CallStats) -> Vec<String> {
    let resolution = s.resolution_in.map(|(w, h)| format!("{w}\u{d7}{h}")).unwrap_or_else(|| "-".into());
    let rtt = s.rtt_ms.map(|r| format!("{r:.1} ms")).unwrap_or_else(|| "-".into());
    let codec = |c: Option<crate::media::codec::VideoCodec>| c.map(|c| format!("  {c}")).unwrap_or_default();
    let mut out = vec![
        format!("in   {resolution}{}  {:.0} fps  {:.0} kbit/s", codec(s.codec_in), s.fps_in, s.kbps_in),
        format!("out  {:.0} fps  {:.0} kbit/s{}", s.fps_out, s.kbps_out, codec(s.codec_out)),
        format!("rtt  {rtt}   lost {} packets", s.packets_lost),
    ];
    if let Some(latency) = s.latency_ms {
        out.push(format!("glass-to-glass {latency:.0} ms"));
    }
    let kbps = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));
    out.push(format!(
        "send target {} / estimate {} kbit/s  pacer {:.0} ms  limited: {}",
        kbps(s.target_kbps),
        kbps(s.estimate_kbps),
        s.pacer_queue_ms,
        s.quality_limitation.as_str()
    ));
    out
}

/// Paints the overlay into `area`'s top-left corner.
pub fn paint(painter: &egui::Painter, area: Rect, stats: &CallStats) {
    let font = FontId::monospace(13.0);
    let line_h = 17.0;
    let lines = lines(stats);
    let width = lines.iter().map(|l| l.chars().count()).max().unwrap_or(0) as f32 * 8.0 + 16.0;
    let rect =
        Rect::from_min_size(area.min + vec2(12.0, 12.0), vec2(width, lines.len() as f32 * line_h + 12.0));
    painter.rect_filled(rect, 6.0, Color32::from_black_alpha(170));
    for (i, line) in lines.iter().enumerate() {
        let pos = rect.min + vec2(8.0, 6.0 + i as f32 * line_h);
        painter.text(pos, Align2::LEFT_TOP, line, font.clone(), Color32::from_gray(235));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_reads_resolution_rates_rtt_and_loss() {
        let s = CallStats {
            fps_in: 29.7,
            kbps_in: 1510.0,
            fps_out: 30.0,
            kbps_out: 1490.0,
            rtt_ms: Some(0.6),
            packets_lost: 3,
            resolution_in: Some((1280, 720)),
            codec_in: Some(crate::media::codec::VideoCodec::Vp8),
            codec_out: Some(crate::media::codec::VideoCodec::H264),
            target_kbps: Some(250.0),
            estimate_kbps: Some(310.0),
            pacer_queue_ms: 12.0,
            quality_limitation: crate::call::rate::QualityLimitation::Bandwidth,
            ..Default::default()
        };
        let text = lines(&s).join("\n");
        for part in [
            "1280\u{d7}720  VP8",
            "30 fps",
            "1510 kbit/s",
            "kbit/s  H.264",
            "rtt  0.6 ms",
            "lost 3 packets",
            "target 250 / estimate 310 kbit/s  pacer 12 ms  limited: bandwidth",
        ] {
            assert!(text.contains(part), "{part:?} in {text}");
        }
    }
}
