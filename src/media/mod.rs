//! Media: frames, sources (synthetic pattern, camera-like scene, Y4M clips and tone; cameras, microphones and speakers in
//! `devices`; shared screens and windows in `screen`), the microphone's echo cancellation, noise
//! suppression and gain control (`processing`), video codecs behind one seam (`codec`: H.264, VP8, VP9),
//! Opus, RTP frame assembly, and the video playout clock.
//!
//! Nothing here knows about calls or the network: the call engine feeds packets in and takes frames out.

pub mod assembler;
pub mod codec;
pub mod devices;
pub mod frame;
pub mod opus_codec;
pub mod pattern;
pub mod playout;
pub mod processing;
pub mod scene;
pub mod screen;
pub mod source;
pub mod stamp;
pub mod tone;
pub mod y4m;
