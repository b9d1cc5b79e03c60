//! A call's media pipelines: sources → encoders → tracks on their own threads, and remote tracks →
//! frame assembly → decoders → listeners. The engine starts them when the connection is up and stops
//! them (one watch flag) when the call ends.
//!
//! Here: what steers a call's media ([`MediaControls`]), the per-call context the pipelines share
//! ([`CallMedia`]) and where decoded media goes ([`Sinks`]); the pipelines are in `send` and `receive`.

mod receive;
mod send;

pub use receive::receive_track;
pub use send::{start_audio_sender, start_video_sender};

use super::congestion::Congestion;
use super::machine::CallId;
use super::quality::ShownFrame;
use super::stats::Counters;
use crate::media::frame::{AudioChunk, RgbaFrame};
use rtc::media::Sample;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::sync::{broadcast, watch};
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;

/// What steers one call's media while it runs: set by the user, the engine and the far side's
/// feedback, and read by the media threads at every frame. What happened is counted in [`Counters`].
#[derive(Default, Debug)]
pub struct MediaControls {
    /// Send silence instead of the microphone.
    pub audio_muted: AtomicBool,
    /// Send black frames instead of the camera.
    pub video_off: AtomicBool,
    /// Ask the far side for a keyframe (the video receiver sends the PLI): set on loss, on decoder
    /// errors and by the user's refresh; cleared when a keyframe arrives.
    pub keyframe_wanted: AtomicBool,
    /// The congestion controller's target and pacer queue, for the video sender and the stats.
    pub congestion: Arc<Congestion>,
    /// Loss recovery's measurements and counters (NACK, RTX), shared with the interceptors.
    pub recovery: Arc<crate::call::recovery::Recovery>,
    /// The bitrate the video encoder aims at now, bit/s (0 until the sender starts).
    pub target_bitrate_bps: AtomicU64,
}

/// One call's media: which call it is, what steers it, what it counts, and when it stops.
#[derive(Clone)]
pub struct CallMedia {
    /// The call, so that a picture decoded after it ended is dropped ([`Sinks::show_remote`]).
    pub call: CallId,
    /// What steers it.
    pub controls: Arc<MediaControls>,
    /// What it counts.
    pub counters: Arc<Counters>,
    /// Turns `true` when the call ends.
    pub stop: watch::Receiver<bool>,
}

/// Where decoded media goes: the latest picture (a window only ever wants that one) and every
/// chunk of audio (a speaker wants all of it).
#[derive(Clone)]
pub struct Sinks {
    /// The latest decoded remote picture; `None` when there is no call.
    remote_video: watch::Sender<Option<RgbaFrame>>,
    /// The call whose pictures may be shown now (0: none). Read and written only under the watch's
    /// lock, so a decoder that finishes a frame as its call ends can never show it afterwards.
    showing: Arc<AtomicU64>,
    /// Decoded remote audio, 20 ms mono 48 kHz chunks.
    pub remote_audio: broadcast::Sender<AudioChunk>,
    /// A half-size preview of what we send, a few times a second while someone watches; `None` when
    /// no video is going out.
    pub local_video: watch::Sender<Option<RgbaFrame>>,
    /// Every remote picture shown (time, size, stamp), for the receiver's figures: the latest-picture
    /// slot may skip pictures its reader was too slow for, this does not (up to its capacity).
    pub shown: broadcast::Sender<ShownFrame>,
}

impl Sinks {
    /// Sinks with no call yet.
    pub fn new() -> Self {
        Self {
            remote_video: watch::channel(None).0,
            showing: Arc::default(),
            remote_audio: broadcast::channel(256).0,
            local_video: watch::channel(None).0,
            shown: broadcast::channel(256).0,
        }
    }

    /// A listener for the latest remote picture.
    pub fn remote_video(&self) -> watch::Receiver<Option<RgbaFrame>> {
        self.remote_video.subscribe()
    }

    /// From now on pictures of `call` are shown.
    pub fn begin_call(&self, call: CallId) {
        self.remote_video.send_modify(|slot| {
            self.showing.store(call, Ordering::Relaxed);
            *slot = None;
        });
    }

    /// Shows `frame` if its call is still the one shown: the one place where late pictures are
    /// dropped. Returns whether it was shown.
    pub fn show_remote(&self, call: CallId, frame: RgbaFrame) -> bool {
        self.remote_video.send_if_modified(|slot| {
            let current = self.showing.load(Ordering::Relaxed) == call;
            if current {
                *slot = Some(frame);
            }
            current
        })
    }

    /// No picture is shown until the next call begins.
    pub fn end_call(&self) {
        self.remote_video.send_modify(|slot| {
            self.showing.store(0, Ordering::Relaxed);
            *slot = None;
        });
    }
}

impl Default for Sinks {
    fn default() -> Self {
        Self::new()
    }
}

/// Everything a sender thread needs to write to its track.
pub struct TrackTarget {
    /// The track.
    pub track: Arc<TrackLocalStaticSample>,
    /// The SSRC of its one encoding.
    pub ssrc: u32,
    /// The negotiated payload type.
    pub payload_type: u8,
}

impl TrackTarget {
    fn write(&self, rt: &Handle, data: bytes::Bytes, duration: Duration, captured: Instant) -> bool {
        let sample = Sample { data, duration, ..Sample::new(captured) };
        rt.block_on(self.track.sample_writer(self.ssrc, self.payload_type).write_sample(&sample)).is_ok()
    }
}
