//! Media: frames, sources (synthetic pattern and tone; cameras, microphones and speakers in
//! `devices`), codecs (H.264, Opus) and RTP frame assembly.
//!
//! Nothing here knows about calls or the network: the call engine feeds packets in and takes frames out.

pub mod assembler;
pub mod devices;
pub mod frame;
pub mod h264;
pub mod opus_codec;
pub mod pattern;
pub mod source;
pub mod tone;
