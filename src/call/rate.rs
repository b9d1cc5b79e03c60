//! How the video encoder follows the congestion controller's target (`call::congestion`): a ladder
//! of bitrate, then frame rate, then picture size, as browsers step down (and back up the same way,
//! a rung at a time, each step up held back until the target has stayed clear of it for a while,
//! so the picture does not flap at a rung's edge); and when to drop a frame at the sender rather
//! than queue it behind a full pacer.

use std::time::{Duration, Instant};

/// One rung: what the sender does at a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rung {
    /// The picture is sent at 1/scale of its size each way (1, 2 or 4).
    pub scale: usize,
    /// Of every `keep_of.1` frames, `keep_of.0` are sent (3 of 3, 2 of 3, 1 of 2).
    pub keep_of: (u32, u32),
}

/// The rungs from the full picture down, and the least share of the full picture's rate each
/// needs. Below about an eighth of a picture's natural rate openh264 stops following the target (it
/// skips frames on its own and its keyframes stay large), so a smaller picture does better there;
/// a frame-rate step comes before each size step (a person minds a smaller picture more than a
/// slower one, down to 20 fps).
const RUNGS: [(Rung, f64); 6] = [
    (Rung { scale: 1, keep_of: (1, 1) }, 0.5),
    (Rung { scale: 1, keep_of: (2, 3) }, 0.3),
    (Rung { scale: 2, keep_of: (1, 1) }, 0.12),
    (Rung { scale: 2, keep_of: (2, 3) }, 0.07),
    (Rung { scale: 4, keep_of: (1, 1) }, 0.035),
    (Rung { scale: 4, keep_of: (1, 2) }, 0.0),
];

/// A step up needs the target this far above the rung's own need...
const UP_MARGIN: f64 = 1.3;
/// ...for this long. (2 s took 8 s to climb back from the smallest picture after a deep drop.)
const UP_HOLD: Duration = Duration::from_secs(1);
/// ...or this long, from a rung the call's first keyframe guessed: a 2.5 Mbit/s link's call,
/// stepped to 320x240 by its first keyframe at the 300 kbit/s start, spent 1.8 s there with 1 s
/// (its estimate doubling each second passes each rung's need within half a second).
const UP_HOLD_AFTER_GUESS: Duration = Duration::from_millis(500);
/// A source sending under this share of the target is not limited by it (a still or simple
/// picture): the picture is not shrunk for a target it does not use. The test pattern needs ~130
/// kbit/s at 640x480; with the target capped near what it sends (1.5 × acknowledged, so such a
/// source sends ~2/3 of it) it was shrunk to 320x240. At 0.8 a 170 kbit/s source under a
/// 200 kbit/s target (audio's share taken off) was read as held back and halved; an encoder its
/// target does hold back sends 90-100 % of it.
const APP_LIMITED: f64 = 0.88;
/// A source sending under this share of its target (its cap is 1.5 × what it sends, so ~2/3)
/// climbs a rung after [`UP_HOLD`] if the rung above would fit (see [`Rung::cost`]): the 720p
/// pattern shrunk at the call's start to 640x360 stayed there, sending 50 of its 256 kbit/s. Below
/// [`APP_LIMITED`], so the two never alternate.
const APP_IDLE: f64 = 0.75;

impl Rung {
    /// What this rung's picture costs to send against the full picture at full rate, at the same
    /// quality: bits grow about as pixels^0.75 (a picture of four times the pixels takes ~2.8 times
    /// the bits) and a frame-rate step saves less than the frames it skips (each difference is
    /// larger). What a rung sends, times the ratio of the costs, is what the rung above needs.
    fn cost(self) -> f64 {
        let pixels = 1.0 / (self.scale * self.scale) as f64;
        let frames = f64::from(self.keep_of.0) / f64::from(self.keep_of.1);
        pixels.powf(0.75) * frames.powf(0.7)
    }
}

/// The pacer's queue, in ms to drain, past which new frames are dropped at the sender: a frame
/// queued behind that much would arrive late anyway, and skipping it lets the queue drain
/// (libwebrtc drops at its pacer's queue bound too). Two frame intervals at 15 fps.
pub const MAX_PACER_QUEUE_MS: f64 = 130.0;

/// A path's standing queue over which, with [`OVERFLOWING_LOSS`] of the packets lost, the link is
/// dropping what comes to it (see [`link_overflowing`]), ms.
pub const OVERFLOWING_QUEUE_MS: f64 = 150.0;
/// See [`OVERFLOWING_QUEUE_MS`]: less than the loss the estimator leaves to random loss on its own
/// (30 %), but with the queue that long it is the queue's.
pub const OVERFLOWING_LOSS: f64 = 0.1;

/// Whether the link drops what comes to it: the path's queue is long (`path_queue_ms` over its
/// base) and a share `loss` of what is sent is lost, i.e. the link's drop-tail queue is full.
pub fn link_overflowing(path_queue_ms: f64, loss: f64) -> bool {
    path_queue_ms > OVERFLOWING_QUEUE_MS && loss > OVERFLOWING_LOSS
}

/// How long the camera holds its frames back for one overflow: the full queue's length is not
/// known here (the standing reading lags a queue that grows, by its 300 ms window: it read 175 ms
/// when the link had long been dropping), and this drains a 300 ms drop-tail queue with audio
/// behind it at up to two thirds of the link. Held for the queue's reading, the next keyframe went
/// into a queue still full and took 0.9-1.3 s to arrive.
pub const OVERFLOW_HOLD: Duration = Duration::from_millis(500);
/// After a hold, frames go out at least this long before the next: the queue and loss the sender
/// reads come from the far side's feedback on what it sent, and with nothing sent they do not
/// move (held until they did, the camera sent nothing for 2 s).
pub const OVERFLOW_HOLD_GAP: Duration = Duration::from_secs(1);

/// Holds the camera's frames back while the link overflows. At a deep drop (2.5 Mbit/s → 120
/// kbit/s) the queue stayed full for 2 s after the cut to the floor: audio and the floor's video,
/// 80-100 kbit/s into 120, drained it slowly, and two rounds of 160x120 keyframes sent into it were
/// lost before the third came through (a freeze of 2.4-3 s). Held back for [`OVERFLOW_HOLD`],
/// frames let it empty, and the next one, a keyframe if the far side asked for one, arrives. What
/// would have been sent meanwhile was lost or late by the queue's length anyway. Pure: time is
/// passed in.
#[derive(Clone, Copy, Debug, Default)]
pub struct OverflowHold {
    /// Until when frames are held, and after when they may be held again.
    until: Option<Instant>,
}

impl OverflowHold {
    /// Whether the frame captured at `now` is held back, given the path's queue and loss now.
    pub fn hold(&mut self, now: Instant, path_queue_ms: f64, loss: f64) -> bool {
        if let Some(until) = self.until {
            if now < until {
                return true;
            }
            if now < until + OVERFLOW_HOLD_GAP {
                return false;
            }
        }
        if !link_overflowing(path_queue_ms, loss) {
            return false;
        }
        self.until = Some(now + OVERFLOW_HOLD);
        true
    }
}

/// Opus's bitrate on an open link (wideband voice with FEC, as browsers send it)...
pub const AUDIO_FULL_BPS: u32 = 32_000;
/// ...and on a narrow one: SILK wideband speech is still clear here.
pub const AUDIO_NARROW_BPS: u32 = 16_000;
/// What an audio packet costs the estimate beyond its Opus payload: the RTP header and its
/// extensions (mid, TWCC sequence number, audio level), 50 packets a second. The estimator and the
/// pacer count RTP packet sizes, so this is what audio takes of their target beside its bitrate.
const AUDIO_PACKET_OVERHEAD_BPS: u32 = 50 * 28 * 8;
/// The least the video encoder is given: a 160x120 picture at 15 fps (libwebrtc's floor is 30 kbit/s).
pub const MIN_VIDEO_BPS: u32 = 30_000;

/// How the congestion target is shared between audio and video: audio first (a call without
/// voice is no call), at a fifth of the target between its narrow and full rates, and video gets
/// the rest. The estimate covers both, and the pacer sends both under it: with the whole target
/// given to video, a deep drop's 60 kbit/s target left video ~15 kbit/s once audio's ~45 had gone
/// ahead, its frames queued past the sender's bound and nothing reached the far side for 6 s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Split {
    /// Opus's bitrate.
    pub audio_bps: u32,
    /// The video encoder's share.
    pub video_bps: u32,
}

impl Split {
    /// The split of `target_bps`.
    pub fn of(target_bps: u32) -> Self {
        // In steps of 4 kbit/s, so the encoder is not retuned for every wobble of the estimate.
        let audio_bps = (target_bps / 5).clamp(AUDIO_NARROW_BPS, AUDIO_FULL_BPS) / 4000 * 4000;
        let audio_share = audio_bps + AUDIO_PACKET_OVERHEAD_BPS;
        Self { audio_bps, video_bps: target_bps.saturating_sub(audio_share).max(MIN_VIDEO_BPS) }
    }
}

/// Whether a source that sent `used_bps` lately (`None`: not known yet) leaves its `target_bps`
/// unused: a simple picture, not the link, sets its rate. The congestion estimator reads a growing
/// delay trend from such a sender as noise until the queue confirms it (see `estimator`). Not known
/// yet (the call's first second) counts as idle: the test pattern's first cut came 0.9 s after its
/// first picture on the 50 ± 30 ms jitter link, a trend just over the threshold, before its figures.
pub fn source_idle(used_bps: Option<u32>, target_bps: u32) -> bool {
    used_bps.is_none_or(|used| f64::from(used) < APP_IDLE * f64::from(target_bps))
}

/// The longest the call's first keyframe may take to send at the target (see
/// [`Ladder::fit_first_keyframe`]): a few frame intervals, a quarter of a 300 ms drop-tail queue.
pub const FIRST_KEYFRAME_MS: f64 = 250.0;

/// Picks the rung for a target. Pure: time is passed in.
#[derive(Clone, Debug)]
pub struct Ladder {
    max_bps: u32,
    rung: usize,
    /// Since when the target has allowed the rung above.
    up_since: Option<Instant>,
    /// Frame credit for the rung's frame rate.
    credit: u32,
    /// The rung is the first keyframe's guess (see [`Ladder::fit_first_keyframe`]), not the
    /// source's figures: it climbs back after [`UP_HOLD_AFTER_GUESS`].
    guessed: bool,
}

impl Ladder {
    /// A ladder for a full picture whose natural rate is `max_bps`, at the top rung.
    pub fn new(max_bps: u32) -> Self {
        Self { max_bps: max_bps.max(1), rung: 0, up_since: None, credit: 0, guessed: false }
    }

    /// The full picture's natural rate.
    pub fn max_bps(&self) -> u32 {
        self.max_bps
    }

    /// The rung now.
    pub fn rung(&self) -> Rung {
        RUNGS[self.rung].0
    }

    /// Takes the target at `now` and what the encoder really sent lately (`None`: not known yet),
    /// and returns the rung to send at.
    pub fn update(&mut self, now: Instant, target_bps: u32, sent_bps: Option<u32>) -> Rung {
        let share = f64::from(target_bps) / f64::from(self.max_bps);
        let used = sent_bps.map(|s| f64::from(s) / f64::from(target_bps.max(1)));
        // Down at once, as far as needed, when the target is what holds the encoder back.
        let limited = used.is_some_and(|u| u >= APP_LIMITED);
        if limited && self.descend_for(share) {
            self.guessed = false;
        }
        // Up when the target clears the rung above by the margin, or when this rung cannot use
        // its target at all (the target is capped near what is sent, so a shrunk simple picture
        // would otherwise never earn back the rate its full size needs) and the rung above, costed
        // from what this one sends, fits in it. (Without that test a camera at 320x240 sending
        // 70 % of a 185 kbit/s target — a busy CPU slowing its frames — climbed to 640x480 on a
        // 300 kbit/s link; the keyframe queued 200-670 ms, the estimate fell to 60 kbit/s and the
        // picture froze for 1-3 s, every 6 s.)
        let idle = self.rung > 0
            && used.is_some_and(|u| u < APP_IDLE)
            && sent_bps.is_some_and(|sent| {
                let above = RUNGS[self.rung - 1].0.cost() / self.rung().cost();
                f64::from(sent) * above <= f64::from(target_bps)
            });
        if self.rung > 0 && (share >= RUNGS[self.rung - 1].1 * UP_MARGIN || idle) {
            let since = *self.up_since.get_or_insert(now);
            let hold = if self.guessed { UP_HOLD_AFTER_GUESS } else { UP_HOLD };
            if now.saturating_duration_since(since) >= hold {
                self.rung -= 1;
                self.up_since = None;
                self.guessed &= self.rung > 0;
            }
        } else {
            self.up_since = None;
        }
        self.rung()
    }

    /// Takes the size of the call's first keyframe, before the ladder knows what the source sends:
    /// one that takes over [`FIRST_KEYFRAME_MS`] to send at `target_bps` is a picture the target
    /// holds back, so the ladder goes down as far as the target needs, as it would have a second
    /// later with the source's figures. Returns whether the picture's size changed (the keyframe is
    /// then not sent: a keyframe at the new size is). Without it a camera's first 640x480 keyframe
    /// (19.5 kB at the narrow link's 257 kbit/s start) filled the link's queue, and the 320x240
    /// keyframe of the step down a second later was lost in it: the picture froze 0.8-1.5 s. The
    /// test pattern's is 1.2 kB and keeps its size.
    pub fn fit_first_keyframe(&mut self, keyframe_bytes: usize, target_bps: u32) -> bool {
        let sending_ms = keyframe_bytes as f64 * 8.0 / f64::from(target_bps.max(1)) * 1000.0;
        if sending_ms <= FIRST_KEYFRAME_MS {
            return false;
        }
        let scale = self.rung().scale;
        if self.descend_for(f64::from(target_bps) / f64::from(self.max_bps)) {
            self.guessed = true;
        }
        self.rung().scale != scale
    }

    /// Goes down the rungs until one needs no more than `share` of the full picture's rate;
    /// returns whether it moved.
    fn descend_for(&mut self, share: f64) -> bool {
        let from = self.rung;
        while self.rung + 1 < RUNGS.len() && share < RUNGS[self.rung].1 {
            self.rung += 1;
            self.up_since = None;
        }
        self.rung != from
    }

    /// Whether `target_bps` is under half of what this rung needs: the link fell away under the
    /// picture (a deep drop), not an encoder a little over its target.
    pub fn far_above(&self, target_bps: u32) -> bool {
        f64::from(target_bps) / f64::from(self.max_bps) < RUNGS[self.rung].1 / 2.0
    }

    /// Whether the next frame is sent at this rung's frame rate.
    pub fn keep_frame(&mut self) -> bool {
        let (keep, of) = self.rung().keep_of;
        self.credit = (self.credit + 1) % of;
        self.credit < keep
    }

    /// The rate to give the encoder for `target_bps` at this rung, when the source delivers
    /// `source_share` of its nominal frame rate: the encoder budgets each frame at its configured
    /// frame rate, so with frames skipped (by this rung, or by a source slowed by a busy CPU) each
    /// one may use the missing ones' share. Measured: a camera scene that came at 12 of its 30 fps
    /// on a loaded machine sent 40 % of the target.
    pub fn encoder_bps(&self, target_bps: u32, source_share: f64) -> u32 {
        let (keep, of) = self.rung().keep_of;
        let slow = 1.0 / source_share.clamp(1.0 / 3.0, 1.0);
        (f64::from(target_bps) * f64::from(of) / f64::from(keep) * slow).min(f64::from(u32::MAX)) as u32
    }
}

/// Why the sender holds quality below the full picture, as browsers report `qualityLimitationReason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum QualityLimitation {
    /// Full picture at full rate.
    #[default]
    None,
    /// The link's estimate holds it down.
    Bandwidth,
    /// The encoder cannot keep up.
    Cpu,
}

impl QualityLimitation {
    /// Browsers' spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            QualityLimitation::None => "none",
            QualityLimitation::Bandwidth => "bandwidth",
            QualityLimitation::Cpu => "cpu",
        }
    }

    /// The code the stats counters store (0 none, 1 bandwidth, 2 cpu).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// See [`QualityLimitation::code`].
    pub fn from_code(code: u8) -> Self {
        match code {
            1 => QualityLimitation::Bandwidth,
            2 => QualityLimitation::Cpu,
            _ => QualityLimitation::None,
        }
    }

    /// The reason for a sender at `rung` whose target is `target_bps` of a full rate `max_bps`,
    /// encoding a frame in `encode_ms` of its `interval_ms`, its source delivering `source_share`
    /// of its frame rate: the encoder taking most of the frame interval, or the source coming at
    /// under three quarters of its rate, is CPU; a lower rung or a target under the full rate is
    /// bandwidth.
    pub fn of(
        rung: Rung,
        target_bps: u32,
        max_bps: u32,
        encode_ms: f64,
        interval_ms: f64,
        source_share: f64,
    ) -> Self {
        if encode_ms > interval_ms * 0.8 || source_share < 0.75 {
            QualityLimitation::Cpu
        } else if rung != RUNGS[0].0 || target_bps < max_bps {
            QualityLimitation::Bandwidth
        } else {
            QualityLimitation::None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_comes_first_and_video_gets_the_rest() {
        // An open link: full-rate voice, video nearly all of it.
        assert_eq!(Split::of(2_000_000), Split { audio_bps: 32_000, video_bps: 2_000_000 - 32_000 - 11_200 });
        // A deep drop's 120 kbit/s: voice at 24 kbit/s, video ~85.
        assert_eq!(Split::of(120_000), Split { audio_bps: 24_000, video_bps: 84_800 });
        // The estimator's floor: voice at its narrow rate, video at its own floor.
        assert_eq!(Split::of(60_000), Split { audio_bps: 16_000, video_bps: 32_800 });
        assert_eq!(Split::of(40_000), Split { audio_bps: 16_000, video_bps: MIN_VIDEO_BPS });
        assert_eq!(Split::of(0).video_bps, MIN_VIDEO_BPS);
    }

    #[test]
    fn the_ladder_steps_bitrate_then_frame_rate_then_size() {
        let t0 = Instant::now();
        let mut l = Ladder::new(1_000_000);
        assert_eq!(l.update(t0, 1_000_000, Some(1_000_000)), Rung { scale: 1, keep_of: (1, 1) });
        assert_eq!(
            l.update(t0, 600_000, Some(600_000)),
            Rung { scale: 1, keep_of: (1, 1) },
            "bitrate alone first"
        );
        assert_eq!(
            l.update(t0, 400_000, Some(400_000)),
            Rung { scale: 1, keep_of: (2, 3) },
            "then frame rate"
        );
        assert_eq!(l.update(t0, 250_000, Some(250_000)), Rung { scale: 2, keep_of: (1, 1) }, "then size");
        assert_eq!(
            l.update(t0, 20_000, Some(20_000)),
            Rung { scale: 4, keep_of: (1, 2) },
            "down as far as needed at once"
        );
    }

    #[test]
    fn a_source_sending_under_three_quarters_of_its_target_is_idle() {
        // The test pattern: 165 kbit/s of a 310 kbit/s video target.
        assert!(source_idle(Some(165_000), 310_000));
        // A camera its target holds back sends 90-100 % of it; not known yet counts as idle.
        assert!(!source_idle(Some(290_000), 310_000));
        assert!(source_idle(None, 310_000));
    }

    #[test]
    fn a_first_keyframe_too_big_for_the_target_steps_the_picture_down_before_it_is_sent() {
        // The camera scene at 640x480 (natural rate 920 kbit/s) at the narrow link's start: its
        // 19.5 kB keyframe takes 600 ms at 257 kbit/s. 320x240 (a tenth of the rate, 0.12) fits.
        let mut l = Ladder::new(920_000);
        assert!(l.fit_first_keyframe(19_500, 256_800));
        assert_eq!(l.rung(), Rung { scale: 2, keep_of: (1, 1) });
        // The pattern's 1.2 kB keyframe fits in 40 ms: it keeps its full size.
        let mut l = Ladder::new(920_000);
        assert!(!l.fit_first_keyframe(1_200, 256_800));
        assert_eq!(l.rung(), Rung { scale: 1, keep_of: (1, 1) });
        // A big keyframe on a target the full picture fits needs no step.
        let mut l = Ladder::new(920_000);
        assert!(!l.fit_first_keyframe(19_500, 600_000));
        assert_eq!(l.rung().scale, 1);
    }

    #[test]
    fn a_guessed_rung_climbs_back_after_half_a_second() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut l = Ladder::new(920_000);
        assert!(l.fit_first_keyframe(19_500, 256_800));
        // The estimate doubles on a 2.5 Mbit/s link: 640x480 at 2/3 of the frames fits 400 kbit/s.
        assert_eq!(l.update(t0, 400_000, None).scale, 2);
        assert_eq!(l.update(t0 + ms(400), 400_000, None).scale, 2);
        assert_eq!(l.update(t0 + ms(500), 400_000, None), Rung { scale: 1, keep_of: (2, 3) });
        // From a rung the source's figures chose, the climb holds the full second.
        let mut l = Ladder::new(920_000);
        assert_eq!(l.update(t0, 250_000, Some(250_000)).scale, 2);
        assert_eq!(l.update(t0 + ms(100), 400_000, Some(250_000)).scale, 2);
        assert_eq!(l.update(t0 + ms(700), 400_000, Some(250_000)).scale, 2);
        assert_eq!(l.update(t0 + ms(1100), 400_000, Some(250_000)).scale, 1);
    }

    #[test]
    fn it_climbs_back_a_rung_at_a_time_after_the_target_held() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut l = Ladder::new(1_000_000);
        l.update(t0, 100_000, Some(100_000));
        assert_eq!(l.rung().scale, 2);
        // Well above every rung: one step per hold, never a jump.
        let ms = Duration::from_millis;
        assert_eq!(l.update(t0 + ms(1000), 1_000_000, Some(1_000_000)).keep_of, (2, 3));
        assert_eq!(
            l.update(t0 + ms(1500), 1_000_000, Some(1_000_000)).keep_of,
            (2, 3),
            "not before the hold"
        );
        assert_eq!(l.update(t0 + ms(2000), 1_000_000, Some(1_000_000)), Rung { scale: 2, keep_of: (1, 1) });
        // A target just over the rung above (without the margin) holds where it is.
        let mut m = Ladder::new(1_000_000);
        m.update(t0, 400_000, Some(400_000));
        for i in 1..10 {
            assert_eq!(
                m.update(t0 + s(i), 520_000, Some(520_000)).keep_of,
                (2, 3),
                "no flapping at the edge"
            );
        }
        // A dip during the hold restarts it.
        assert_eq!(m.update(t0 + s(20), 700_000, Some(700_000)).keep_of, (2, 3));
        assert_eq!(m.update(t0 + s(21), 500_000, Some(500_000)).keep_of, (2, 3));
        assert_eq!(m.update(t0 + s(22), 700_000, Some(700_000)).keep_of, (2, 3));
        assert_eq!(m.update(t0 + s(23), 700_000, Some(700_000)).keep_of, (1, 1));
    }

    #[test]
    fn a_source_that_sends_far_less_than_its_target_is_not_shrunk() {
        let t0 = Instant::now();
        let mut l = Ladder::new(1_000_000);
        // The pattern: 130 kbit/s of a 200 kbit/s target (capped near what it sends).
        assert_eq!(l.update(t0, 200_000, Some(130_000)), Rung { scale: 1, keep_of: (1, 1) });
        // Sending at the target: the target holds it, so down.
        assert_eq!(l.update(t0, 200_000, Some(190_000)).scale, 2);
        // Not knowing yet what is sent: no change.
        let mut m = Ladder::new(1_000_000);
        assert_eq!(m.update(t0, 200_000, None).scale, 1);
        // A shrunk picture sending little of its capped target climbs after the hold, while the
        // rung above (~1.6 times its cost) still fits.
        let ms = Duration::from_millis;
        assert_eq!(m.update(t0, 30_000, Some(30_000)), Rung { scale: 4, keep_of: (1, 2) });
        assert_eq!(m.update(t0 + ms(500), 30_000, Some(18_000)).keep_of, (1, 2));
        assert_eq!(m.update(t0 + ms(1600), 30_000, Some(18_000)), Rung { scale: 4, keep_of: (1, 1) });
    }

    #[test]
    fn an_idle_source_does_not_climb_to_a_picture_its_target_cannot_carry() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        // The camera on a narrow link: 320x240 sending 130 of its 185 kbit/s target (a busy CPU
        // slows its frames). 640x480 would need ~2.1 times that: it stays.
        let mut l = Ladder::new(920_000);
        assert_eq!(l.update(t0, 100_000, Some(100_000)).scale, 2);
        for i in 1..6 {
            assert_eq!(l.update(t0 + s(i), 185_000, Some(130_000)).scale, 2, "second {i}");
        }
        // The same picture sending 80 kbit/s of it would fit a step up: it climbs.
        assert_eq!(l.update(t0 + s(6), 185_000, Some(80_000)).scale, 2);
        assert_eq!(l.update(t0 + s(7), 185_000, Some(80_000)).scale, 1);
    }

    #[test]
    fn a_target_under_half_the_rung_s_need_is_a_link_that_fell_away() {
        let mut l = Ladder::new(920_000);
        // The full picture needs half its natural rate.
        assert!(!l.far_above(300_000));
        assert!(l.far_above(200_000));
        l.update(Instant::now(), 30_000, Some(30_000));
        assert!(!l.far_above(30_000), "the bottom rung needs nothing");
    }

    #[test]
    fn a_rung_s_cost_falls_with_its_pixels_and_frames() {
        let costs: Vec<f64> = RUNGS.iter().map(|(r, _)| r.cost()).collect();
        assert_eq!(costs[0], 1.0);
        assert!(costs.windows(2).all(|w| w[1] < w[0]), "{costs:?}");
        // Four times the pixels: 2.8 times the bits.
        assert!((costs[0] / costs[2] - 2.83).abs() < 0.01, "{costs:?}");
    }

    #[test]
    fn frames_are_kept_at_the_rung_s_rate_and_the_encoder_given_their_share() {
        let t0 = Instant::now();
        let mut l = Ladder::new(1_000_000);
        l.update(t0, 400_000, Some(400_000));
        let kept = (0..30).filter(|_| l.keep_frame()).count();
        assert_eq!(kept, 20);
        assert_eq!(l.encoder_bps(400_000, 1.0), 600_000);
        assert_eq!(l.encoder_bps(400_000, 0.5), 1_200_000, "a source at half its rate");
        assert_eq!(l.encoder_bps(400_000, 0.01), 1_800_000, "at most three times");
    }

    #[test]
    fn a_full_queue_that_drops_holds_the_camera_back_for_a_while() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut hold = OverflowHold::default();
        // The deep drop's queue after the cut: 175-275 ms, 15-39 % lost. The readings do not move
        // while nothing is sent, and the hold ends anyway.
        assert!(hold.hold(ms(0), 175.0, 0.3));
        assert!(hold.hold(ms(450), 175.0, 0.3));
        assert!(!hold.hold(ms(500), 175.0, 0.3), "held for OVERFLOW_HOLD");
        assert!(!hold.hold(ms(1450), 260.0, 0.3), "frames go out before the next hold");
        assert!(hold.hold(ms(1500), 260.0, 0.3), "still overflowing a second on");
        assert!(!hold.hold(ms(2000), 260.0, 0.3));
        assert!(!OverflowHold::default().hold(ms(0), 240.0, 0.0), "a long queue that loses nothing");
        // The policy itself.
        assert!(link_overflowing(260.0, 0.3));
        // A keyframe's queue on a narrow link: long, but nothing lost; the frames behind it arrive.
        assert!(!link_overflowing(240.0, 0.0));
        // Random loss on a short queue (the loss issue's 10 % link, read as up to 25 %).
        assert!(!link_overflowing(5.0, 0.25));
    }

    #[test]
    fn quality_limitation_reads_cpu_bandwidth_or_none() {
        let top = RUNGS[0].0;
        assert_eq!(QualityLimitation::of(top, 1_000_000, 1_000_000, 5.0, 33.0, 1.0), QualityLimitation::None);
        assert_eq!(
            QualityLimitation::of(top, 500_000, 1_000_000, 5.0, 33.0, 1.0),
            QualityLimitation::Bandwidth
        );
        assert_eq!(
            QualityLimitation::of(Rung { scale: 2, keep_of: (1, 1) }, 1_000_000, 1_000_000, 5.0, 33.0, 1.0),
            QualityLimitation::Bandwidth
        );
        assert_eq!(QualityLimitation::of(top, 1_000_000, 1_000_000, 30.0, 33.0, 1.0), QualityLimitation::Cpu);
        assert_eq!(QualityLimitation::of(top, 500_000, 1_000_000, 5.0, 33.0, 0.5), QualityLimitation::Cpu);
        for q in [QualityLimitation::None, QualityLimitation::Bandwidth, QualityLimitation::Cpu] {
            assert_eq!(QualityLimitation::from_code(q.code()), q);
        }
    }
}
