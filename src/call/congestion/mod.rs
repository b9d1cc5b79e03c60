//! Send-side congestion control (issue 13), in the shape of webrtc-rs's own seam: the crate's
//! `CongestionControlInterceptor` records what left and resolves the far side's TWCC feedback;
//! [`estimator::DelayLossEstimator`] (a `BandwidthEstimator`) turns that into a target from delay
//! and loss; [`pacer::PriorityPacer`] releases packets at a multiple of the target, audio and
//! retransmissions first. Both publish what they know into one [`Congestion`], which the video
//! sender reads (the target, the pacer's queue) and the stats line shows.
//!
//! Why not the crate's `Gcc` and `PacerInterceptor` as they are: see the two modules (measured
//! through the link emulator; the README's congestion-control paragraph has the figures).

pub mod estimator;
pub mod pacer;
pub mod trendline;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// What the congestion controller knows, shared lock-free between the interceptors (on the peer
/// connection's task), the video sender thread and the stats line.
#[derive(Debug, Default)]
pub struct Congestion {
    /// The target the estimator set, bit/s (0: no estimate yet).
    target_bps: AtomicU64,
    /// The delay-based half of it, bit/s.
    delay_bps: AtomicU64,
    /// What the far side acknowledged receiving lately, bit/s.
    acked_bps: AtomicU64,
    /// The loss the feedback reports, parts per million (smoothed).
    loss_ppm: AtomicU64,
    /// The path's standing queue the estimator reads, µs (0: none or not known).
    path_queue_us: AtomicU64,
    /// Bytes waiting in the pacer.
    queued_bytes: AtomicU64,
    /// How long the pacer's queue takes to drain at its long-term rate, µs.
    queue_us: AtomicU64,
    /// Retransmissions the pacer shed (over its repair budget).
    repairs_shed: AtomicU64,
    /// Times the delay signal said the path's queue was growing.
    overuses: AtomicU64,
    /// Video frames the pacer discarded whole (stale, or a backlog left by a fall of the target):
    /// the far side's decoder lost its references, so the sender makes a keyframe at once.
    frames_discarded: AtomicU64,
    /// The camera's source leaves its target unused (`rate::source_idle`): set by the video sender,
    /// read by the estimator.
    source_idle: std::sync::atomic::AtomicBool,
    /// The sender shares a screen: its keyframes are hundreds of kB and go out unpaced (see the pacer).
    screen: std::sync::atomic::AtomicBool,
    /// A keyframe was made from a picture captured at this instant: video and repairs that waited
    /// in the pacer from before it are of no use to the far side's decoder (it starts afresh at the
    /// keyframe). Taken by the pacer; a lock, as an `Instant` needs one, written once per keyframe
    /// and taken only when `supersede_pending` says so (the pacer asks on every packet).
    superseded_before: std::sync::Mutex<Option<Instant>>,
    /// `superseded_before` holds an instant not yet taken.
    supersede_pending: std::sync::atomic::AtomicBool,
}

/// One reading of [`Congestion`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CongestionFigures {
    /// See [`Congestion`].
    pub target_bps: u64,
    /// See [`Congestion`].
    pub delay_bps: u64,
    /// See [`Congestion`].
    pub acked_bps: u64,
    /// Smoothed loss fraction.
    pub loss: f64,
    /// See [`Congestion`].
    pub queued_bytes: u64,
    /// The pacer's queue, ms to drain.
    pub queue_ms: f64,
    /// See [`Congestion`].
    pub overuses: u64,
    /// See [`Congestion`].
    pub repairs_shed: u64,
}

impl Congestion {
    /// Tells the pacer whether the video is a shared screen (set by the video sender).
    pub fn set_screen(&self, on: bool) {
        self.screen.store(on, Ordering::Relaxed);
    }

    /// Tells the pacer a keyframe was made from a picture captured at `captured`: what video and
    /// repairs waited from before then may go (see `pacer`).
    pub fn supersede_before(&self, captured: Instant) {
        let mut at = self.superseded_before.lock().unwrap_or_else(|p| p.into_inner());
        *at = Some(at.map_or(captured, |t| t.max(captured)));
        self.supersede_pending.store(true, Ordering::Release);
    }

    /// The last [`Congestion::supersede_before`] instant not yet taken.
    fn take_superseded(&self) -> Option<Instant> {
        if !self.supersede_pending.swap(false, Ordering::Acquire) {
            return None;
        }
        self.superseded_before.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Tells the estimator whether the camera leaves its target unused (set by the video sender).
    pub fn set_source_idle(&self, idle: bool) {
        self.source_idle.store(idle, Ordering::Relaxed);
    }

    /// Whether the camera leaves its target unused.
    pub fn source_idle(&self) -> bool {
        self.source_idle.load(Ordering::Relaxed)
    }

    /// Whether the video is a shared screen.
    pub fn screen(&self) -> bool {
        self.screen.load(Ordering::Relaxed)
    }

    /// The target now (bit/s), if the estimator has said one.
    pub fn target_bps(&self) -> Option<u32> {
        match self.target_bps.load(Ordering::Relaxed) {
            0 => None,
            bps => Some(bps.min(u64::from(u32::MAX)) as u32),
        }
    }

    /// Video frames the pacer discarded so far.
    pub fn frames_discarded(&self) -> u64 {
        self.frames_discarded.load(Ordering::Relaxed)
    }

    /// The path's standing queue the estimator reads, ms (0 if none or not known).
    pub fn path_queue_ms(&self) -> f64 {
        self.path_queue_us.load(Ordering::Relaxed) as f64 / 1000.0
    }

    /// The smoothed loss the feedback reports (0-1).
    pub fn loss(&self) -> f64 {
        self.loss_ppm.load(Ordering::Relaxed) as f64 / 1e6
    }

    /// How long the pacer's queue takes to drain, ms.
    pub fn queue_ms(&self) -> f64 {
        self.queue_us.load(Ordering::Relaxed) as f64 / 1000.0
    }

    /// Everything at once, for the stats line.
    pub fn figures(&self) -> CongestionFigures {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CongestionFigures {
            target_bps: l(&self.target_bps),
            delay_bps: l(&self.delay_bps),
            acked_bps: l(&self.acked_bps),
            loss: self.loss(),
            queued_bytes: l(&self.queued_bytes),
            queue_ms: self.queue_ms(),
            overuses: l(&self.overuses),
            repairs_shed: l(&self.repairs_shed),
        }
    }

    fn publish_estimate(&self, e: &estimator::Reading) {
        let s = |a: &AtomicU64, v: f64| a.store(v.max(0.0) as u64, Ordering::Relaxed);
        s(&self.target_bps, e.target_bps);
        s(&self.delay_bps, e.delay_bps);
        s(&self.acked_bps, e.acked_bps.unwrap_or(0.0));
        s(&self.loss_ppm, e.loss * 1e6);
        s(&self.path_queue_us, e.queue_ms.unwrap_or(0.0) * 1000.0);
        self.overuses.store(e.overuses, Ordering::Relaxed);
    }

    fn publish_queue(&self, bytes: u64, drain_us: u64, repairs_shed: u64, frames_discarded: u64) {
        self.queued_bytes.store(bytes, Ordering::Relaxed);
        self.queue_us.store(drain_us, Ordering::Relaxed);
        self.repairs_shed.store(repairs_shed, Ordering::Relaxed);
        self.frames_discarded.store(frames_discarded, Ordering::Relaxed);
    }
}

/// The estimator's ceiling: far above any call's need; the acknowledged-rate cap keeps the target
/// near what the link delivers.
pub const MAX_BPS: f64 = 20_000_000.0;

/// Sets up transport-wide congestion control both ways on `registry`: the crate's TWCC sender
/// (sequence numbers) and receiver (feedback for the far side's controller), its send history and
/// feedback ingest driving our [`estimator::DelayLossEstimator`], and our [`pacer::PriorityPacer`]
/// at the pacer's slot. Both publish into `congestion`.
pub fn configure(
    registry: rtc::interceptor::Registry,
    media_engine: &mut webrtc::peer_connection::MediaEngine,
    congestion: &Arc<Congestion>,
) -> Result<rtc::interceptor::Registry, webrtc::error::Error> {
    use rtc::interceptor::{CongestionControlBuilder, Slot};
    let estimator = estimator::DelayLossEstimator::new(MAX_BPS).publishing(Arc::clone(congestion));
    let registry =
        rtc::peer_connection::configuration::interceptor_registry::configure_twcc(registry, media_engine)?;
    Ok(registry
        .with(Slot::CongestionControl, CongestionControlBuilder::new(estimator).build())
        .with(Slot::Pacer, pacer::PriorityPacer::new(estimator::START_BPS, Arc::clone(congestion))))
}
