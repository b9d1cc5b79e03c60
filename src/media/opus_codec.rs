//! Opus through libopus: 48 kHz mono, 20 ms frames, in-band FEC on.

use super::frame::{AUDIO_FRAME_SAMPLES, AUDIO_RATE};

/// What can go wrong in the audio codec.
#[derive(Debug, thiserror::Error)]
pub enum AudioCodecError {
    /// libopus refused the settings or the data.
    #[error("Opus: {0}")]
    Opus(#[from] opus::Error),
}

/// A voice encoder: 20 ms of mono 48 kHz PCM in, one Opus packet out.
pub struct OpusEncoder {
    inner: opus::Encoder,
    out: Vec<u8>,
}

impl OpusEncoder {
    /// Starts an encoder tuned for voice at `bitrate_bps`.
    pub fn new(bitrate_bps: i32) -> Result<Self, AudioCodecError> {
        let mut inner = opus::Encoder::new(AUDIO_RATE, opus::Channels::Mono, opus::Application::Voip)?;
        inner.set_bitrate(opus::Bitrate::Bits(bitrate_bps))?;
        // In-band FEC lets the receiver rebuild a lost packet from the next one (browsers do the same).
        inner.set_inband_fec(true)?;
        inner.set_packet_loss_perc(5)?;
        Ok(Self { inner, out: vec![0; 1500] })
    }

    /// Changes the bitrate (it takes effect from the next packet).
    pub fn set_bitrate(&mut self, bitrate_bps: i32) -> Result<(), AudioCodecError> {
        Ok(self.inner.set_bitrate(opus::Bitrate::Bits(bitrate_bps))?)
    }

    /// Encodes 960 samples (20 ms) into one packet.
    pub fn encode(&mut self, pcm: &[i16]) -> Result<bytes::Bytes, AudioCodecError> {
        let n = self.inner.encode(&pcm[..AUDIO_FRAME_SAMPLES.min(pcm.len())], &mut self.out)?;
        Ok(bytes::Bytes::copy_from_slice(&self.out[..n]))
    }
}

/// A decoder that downmixes whatever the far end sends (browsers may send stereo) to mono 48 kHz.
pub struct OpusDecoder {
    inner: opus::Decoder,
    pcm: Vec<i16>,
}

impl OpusDecoder {
    /// Starts a decoder.
    pub fn new() -> Result<Self, AudioCodecError> {
        Ok(Self { inner: opus::Decoder::new(AUDIO_RATE, opus::Channels::Mono)?, pcm: vec![0; 5760] })
    }

    /// Decodes one packet; an empty packet asks for concealment of a lost one.
    pub fn decode(&mut self, packet: &[u8]) -> Result<&[i16], AudioCodecError> {
        let n = self.inner.decode(packet, &mut self.pcm, false)?;
        Ok(&self.pcm[..n])
    }

    /// Rebuilds the 20 ms lost just before `next_packet` from the in-band FEC data it carries
    /// (libopus falls back to concealment when there is none).
    pub fn decode_fec(&mut self, next_packet: &[u8]) -> Result<&[i16], AudioCodecError> {
        let n = self.inner.decode(next_packet, &mut self.pcm[..AUDIO_FRAME_SAMPLES], true)?;
        Ok(&self.pcm[..n])
    }

    /// Conceals 20 ms lost without any FEC to go on (packet-loss concealment).
    pub fn conceal(&mut self) -> Result<&[i16], AudioCodecError> {
        let n = self.inner.decode(&[], &mut self.pcm[..AUDIO_FRAME_SAMPLES], false)?;
        Ok(&self.pcm[..n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::tone::{dominant_frequency, ToneSource};

    #[test]
    fn tone_survives_opus() {
        let mut tone = ToneSource::new(660.0, 0.3);
        let mut enc = OpusEncoder::new(32_000).expect("encoder");
        let mut dec = OpusDecoder::new().expect("decoder");
        let mut out = Vec::new();
        let mut chunk = vec![0i16; AUDIO_FRAME_SAMPLES];
        for _ in 0..25 {
            tone.fill(&mut chunk);
            let packet = enc.encode(&chunk).expect("encode");
            out.extend_from_slice(dec.decode(&packet).expect("decode"));
        }
        assert_eq!(out.len(), 25 * AUDIO_FRAME_SAMPLES);
        let f = dominant_frequency(&out[4800..], (1..30).map(|k| k as f64 * 110.0));
        assert_eq!(f, Some(660.0));
    }
}
