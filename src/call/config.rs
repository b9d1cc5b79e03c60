//! How an engine is set up: who we are, where the server is, where media comes from, and how
//! patient the call logic is.

use super::codecs::VideoPreference;
use super::machine::MachineConfig;
use super::peer::PeerSettings;
use crate::media::source::{AudioSourceFactory, SyntheticVideo, VideoSourceFactory};
use crate::media::tone::ToneSource;
use crate::media::y4m::{Y4mClip, Y4mError};
use std::sync::Arc;
use std::time::Duration;

/// How an engine is set up.
#[derive(Clone)]
pub struct EngineConfig {
    /// The display name to register (the server may hand back a variant).
    pub name: String,
    /// The signaling server, e.g. `ws://127.0.0.1:6503/` (the path names the room).
    pub server_url: String,
    /// Accept incoming calls without asking (switchable later with `Command::SetAutoAnswer`).
    pub auto_answer: bool,
    /// ICE servers and local addresses.
    pub peer: PeerSettings,
    /// Where outgoing video comes from.
    pub video_source: VideoSourceFactory,
    /// Where outgoing audio comes from.
    pub audio_source: AudioSourceFactory,
    /// How long ICE may stay `disconnected` (while we try ICE restarts) before the call is given up.
    pub disconnected_grace: Duration,
    /// How long ICE stays `disconnected` before the caller restarts ICE (and again, as often, after that).
    pub ice_restart_after: Duration,
    /// How long an unanswered call rings before it is given up.
    pub ring_timeout: Duration,
    /// How long offer/answer may stay without a working connection before the call is given up.
    pub connect_timeout: Duration,
    /// For a `wss://` server with a self-signed certificate: a PEM file whose certificate to trust.
    pub trusted_cert: Option<std::path::PathBuf>,
    /// Which video codec to put first (`--video-codec`).
    pub video_codec: VideoPreference,
}

impl EngineConfig {
    /// A config with synthetic media (640x480@30 pattern, 440 Hz tone) and default network settings.
    pub fn new(name: impl Into<String>, server_url: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            server_url: server_url.into(),
            auto_answer: false,
            peer: PeerSettings::default(),
            video_source: SyntheticVideo::Pattern.factory(640, 480, 30),
            audio_source: Arc::new(|| Box::new(ToneSource::new(440.0, 0.25))),
            disconnected_grace: Duration::from_secs(15),
            ice_restart_after: Duration::from_secs(1),
            ring_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            trusted_cert: None,
            video_codec: VideoPreference::Auto,
        }
    }

    /// Uses the synthetic pattern at this size and rate.
    pub fn with_pattern(self, width: usize, height: usize, fps: u32) -> Self {
        self.with_synthetic_video(&SyntheticVideo::Pattern, width, height, fps)
    }

    /// Uses the camera-like scene (texture, motion, noise: a webcam's bitrate) at this size and rate.
    pub fn with_camera_like(self, width: usize, height: usize, fps: u32) -> Self {
        self.with_synthetic_video(&SyntheticVideo::Scene, width, height, fps)
    }

    /// Sends this Y4M clip, looped at its own size and rate; a missing, truncated or non-4:2:0 file
    /// is refused here, naming the file and what is wrong.
    pub fn with_video_file(self, path: impl AsRef<std::path::Path>) -> Result<Self, Y4mError> {
        let clip = Arc::new(Y4mClip::open(path)?);
        Ok(self.with_synthetic_video(&SyntheticVideo::File(clip), 0, 0, 0))
    }

    /// Uses this synthetic video at this size and rate (a clip keeps its own).
    pub fn with_synthetic_video(
        mut self,
        video: &SyntheticVideo,
        width: usize,
        height: usize,
        fps: u32,
    ) -> Self {
        self.video_source = video.factory(width, height, fps);
        self
    }

    /// Puts this video codec first.
    pub fn with_video_codec(mut self, preference: VideoPreference) -> Self {
        self.video_codec = preference;
        self
    }

    /// Uses a synthetic tone at this frequency.
    pub fn with_tone(mut self, frequency: f64) -> Self {
        self.audio_source = Arc::new(move || Box::new(ToneSource::new(frequency, 0.25)));
        self
    }

    /// What the call machine needs of it.
    pub(crate) fn machine(&self) -> MachineConfig {
        MachineConfig {
            name: self.name.clone(),
            auto_answer: self.auto_answer,
            ring_timeout: self.ring_timeout,
            connect_timeout: self.connect_timeout,
            disconnected_grace: self.disconnected_grace,
            ice_restart_after: self.ice_restart_after,
            stats_interval: Duration::from_secs(1),
        }
    }
}
