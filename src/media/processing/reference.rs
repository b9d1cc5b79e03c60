//! The echo reference: what the speaker hands its device, tapped in the device's callback (after
//! the jitter buffer, at the device's rate) and read by the microphone's processing on another
//! thread. Several readers may listen (the stage; a test's echoing microphone); each gets all of it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};

/// A reader keeps at most this much unread (1 s at 48 kHz): a reader that stopped reading (a call
/// that ended) costs bounded memory, and a canceller cannot use an echo older than that anyway.
const MAX_UNREAD_S: usize = 1;

struct Queue {
    rate: u32,
    samples: VecDeque<f32>,
}

/// The speaker's side: cheap to clone; each played block goes to every live reader.
#[derive(Clone, Default)]
pub struct EchoReference {
    readers: Arc<Mutex<Vec<Weak<Mutex<Queue>>>>>,
}

impl std::fmt::Debug for EchoReference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EchoReference")
    }
}

impl EchoReference {
    /// A reference nobody plays into yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Called by the speaker with the mono samples (±1.0) it just handed its device at `rate` Hz.
    /// Locks briefly and copies; never waits for a reader.
    pub fn played(&self, rate: u32, samples: &[f32]) {
        let Ok(mut readers) = self.readers.lock() else { return };
        readers.retain(|r| r.strong_count() > 0);
        for reader in readers.iter().filter_map(Weak::upgrade) {
            if let Ok(mut q) = reader.lock() {
                if q.rate != rate {
                    // The speaker reopened at another rate: what is queued no longer lines up.
                    q.samples.clear();
                    q.rate = rate;
                }
                q.samples.extend(samples.iter().copied());
                let max = rate as usize * MAX_UNREAD_S;
                if q.samples.len() > max {
                    let surplus = q.samples.len() - max;
                    q.samples.drain(..surplus);
                }
            }
        }
    }

    /// A new reader: gets what is played from now on.
    pub fn reader(&self) -> ReferenceReader {
        let queue = Arc::new(Mutex::new(Queue { rate: 0, samples: VecDeque::new() }));
        if let Ok(mut readers) = self.readers.lock() {
            readers.push(Arc::downgrade(&queue));
        }
        ReferenceReader { queue }
    }
}

/// One listener of the reference; stops receiving when dropped.
pub struct ReferenceReader {
    queue: Arc<Mutex<Queue>>,
}

impl ReferenceReader {
    /// Moves everything played since the last call into `out`; returns its rate (0 before anything
    /// was played).
    pub fn take(&self, out: &mut Vec<f32>) -> u32 {
        match self.queue.lock() {
            Ok(mut q) => {
                out.extend(q.samples.drain(..));
                q.rate
            }
            Err(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reader_gets_everything_played_after_it_joined() {
        let reference = EchoReference::new();
        reference.played(48_000, &[0.1; 10]);
        let (a, b) = (reference.reader(), reference.reader());
        reference.played(48_000, &[0.2, 0.3]);
        let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
        assert_eq!(a.take(&mut got_a), 48_000);
        b.take(&mut got_b);
        assert_eq!(got_a, vec![0.2, 0.3]);
        assert_eq!(got_b, got_a);
        drop(b);
        reference.played(44_100, &[0.4; 100_000]);
        got_a.clear();
        assert_eq!(a.take(&mut got_a), 44_100);
        assert_eq!(got_a.len(), 44_100, "a reader keeps at most a second");
    }
}
