//! Frame figures for `--frame-stats`: frames drawn per second and the UI thread's time per frame,
//! printed every two seconds, so the window test and docs/figures-window.md can quote them.

use std::time::{Duration, Instant};

/// How often a line is printed.
const PERIOD: Duration = Duration::from_secs(2);

/// Collects per-frame times and prints a summary line each [`PERIOD`].
pub struct FrameStats {
    since: Instant,
    frames: u32,
    ui_total: Duration,
    ui_max: Duration,
    cpu_total: f32,
}

impl FrameStats {
    /// Starts counting now.
    pub fn new() -> Self {
        Self {
            since: Instant::now(),
            frames: 0,
            ui_total: Duration::ZERO,
            ui_max: Duration::ZERO,
            cpu_total: 0.0,
        }
    }

    /// Records one frame: `ui` is the time our drawing code took, `cpu` eframe's figure for the whole
    /// previous frame on the UI thread (drawing, tessellation, GL calls; vsync waits excluded).
    pub fn record(&mut self, ui: Duration, cpu: Option<f32>) {
        self.frames += 1;
        self.ui_total += ui;
        self.ui_max = self.ui_max.max(ui);
        self.cpu_total += cpu.unwrap_or(0.0);
        let elapsed = self.since.elapsed();
        if elapsed >= PERIOD {
            let n = self.frames.max(1) as f64;
            println!(
                "frame-stats fps={:.1} ui_ms_mean={:.2} ui_ms_max={:.2} frame_cpu_ms_mean={:.2}",
                self.frames as f64 / elapsed.as_secs_f64(),
                self.ui_total.as_secs_f64() * 1000.0 / n,
                self.ui_max.as_secs_f64() * 1000.0,
                self.cpu_total as f64 * 1000.0 / n,
            );
            *self = Self::new();
        }
    }
}
