//! Enforcement of [`Limits`]: the per-client token bucket and display-name rules.

use std::time::Instant;

use super::Limits;

/// A token bucket: `rate` tokens a second, at most `burst` saved up. One message costs one token.
#[derive(Debug)]
pub(super) struct TokenBucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub(super) fn new(limits: &Limits, now: Instant) -> Self {
        let burst = f64::from(limits.burst.max(1));
        Self { tokens: burst, rate: f64::from(limits.messages_per_second.max(1)), burst, last: now }
    }

    /// Takes a token if there is one.
    pub(super) fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Why a display name was refused, in words for the `bad-name` error.
pub(super) fn check_name(name: &str, max_chars: usize) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("the name is empty".into());
    }
    if name.chars().any(char::is_control) {
        return Err("the name holds control characters".into());
    }
    let chars = name.chars().count();
    if chars > max_chars {
        return Err(format!("the name is {chars} characters long; at most {max_chars} are allowed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_allows_burst_then_rate() {
        let limits = Limits { messages_per_second: 10, burst: 3, ..Limits::default() };
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(&limits, t0);
        assert!((0..3).all(|_| bucket.try_take(t0)));
        assert!(!bucket.try_take(t0));
        assert!(bucket.try_take(t0 + Duration::from_millis(100)));
        assert!(!bucket.try_take(t0 + Duration::from_millis(100)));
    }

    #[test]
    fn names() {
        assert!(check_name("alice", 64).is_ok());
        assert!(check_name("Zoë 李", 64).is_ok());
        assert!(check_name("", 64).is_err());
        assert!(check_name("  ", 64).is_err());
        assert!(check_name("a\nb", 64).is_err());
        assert!(check_name("a\u{7}", 64).is_err());
        assert!(check_name(&"x".repeat(65), 64).is_err());
        assert!(check_name(&"é".repeat(64), 64).is_ok());
    }
}
