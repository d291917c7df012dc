//! Per-connection rate limits: two token buckets per connection, checked in the message
//! dispatch before a frame is parsed further. Every message but `PONG` (the answer to the
//! server's own `PING`, which must never be starved) takes a token from the general bucket.
//! A message of a type that writes the session file also needs a token in the write bucket,
//! because every write waits for the disk on the hub task; the token is taken only when the
//! message did write (one refused by validation costs nothing there). A message without its
//! token is answered `429 TOO_MANY_REQUESTS` and does nothing.
//!
//! The sizes leave room for real use: the dashboard's burst on connect is about ten messages,
//! and a person chats or moves a slider a few times a second.

use std::time::Instant;

use super::errors::too_many;
use crate::protocol::{MessageType as T, WireError};

/// General bucket: burst and refill per second.
pub const BURST: f64 = 200.0;
pub const PER_SECOND: f64 = 100.0;
/// Write bucket (messages that write the session file).
pub const WRITE_BURST: f64 = 10.0;
pub const WRITES_PER_SECOND: f64 = 5.0;

#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Bucket {
        Bucket { tokens: burst, last: now }
    }

    fn refill(&mut self, now: Instant, burst: f64, rate: f64) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * rate).min(burst);
        self.last = now;
    }
}

/// The buckets of one connection.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    general: Bucket,
    writes: Bucket,
}

impl Default for Limits {
    fn default() -> Self {
        let now = Instant::now();
        Limits { general: Bucket::full(BURST, now), writes: Bucket::full(WRITE_BURST, now) }
    }
}

/// Whether a message of this type writes the session file.
fn writes(kind: T) -> bool {
    matches!(
        kind,
        T::Chat
            | T::AddNote
            | T::Mute
            | T::BanParticipant
            | T::SetFilters
            | T::SetGroupFilters
            | T::UpdateReadMessageTime
            | T::SaveSession
            | T::DeleteSession
            | T::CreateExperiment
            | T::StartExperiment
            | T::StopExperiment
    )
}

impl Limits {
    /// Takes the tokens a message of type `kind` needs at `now`, or says why it may not pass.
    /// A refused message takes nothing.
    pub(crate) fn admit(&mut self, kind: T, now: Instant) -> Result<(), WireError> {
        if kind == T::Pong {
            return Ok(());
        }
        self.general.refill(now, BURST, PER_SECOND);
        self.writes.refill(now, WRITE_BURST, WRITES_PER_SECOND);
        let write = writes(kind);
        if self.general.tokens < 1.0 {
            return Err(too_many(format!("at most {PER_SECOND} messages per second (bursts of {BURST})")));
        }
        if write && self.writes.tokens < 1.0 {
            return Err(too_many(format!(
                "at most {WRITES_PER_SECOND} {} and other writing messages per second (bursts of {WRITE_BURST})",
                kind.as_str()
            )));
        }
        self.general.tokens -= 1.0;
        Ok(())
    }

    /// Takes the write token of a message [`admit`](Self::admit)ted just before, which wrote.
    pub(crate) fn charge_write(&mut self) {
        self.writes.tokens = (self.writes.tokens - 1.0).max(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ErrorType;
    use std::time::Duration;

    #[test]
    fn a_burst_passes_then_429_then_refills() {
        let t0 = Instant::now();
        let mut l = Limits::default();
        for _ in 0..WRITE_BURST as usize {
            l.admit(T::Chat, t0).unwrap();
            l.charge_write();
        }
        let e = l.admit(T::Chat, t0).unwrap_err();
        assert_eq!((e.code, e.kind), (429, ErrorType::TooManyRequests));
        // Reads still pass; PONG always does.
        l.admit(T::Ping, t0).unwrap();
        l.admit(T::Pong, t0).unwrap();
        l.admit(T::Chat, t0 + Duration::from_millis(250)).unwrap();
        l.charge_write();
        assert!(l.admit(T::Chat, t0 + Duration::from_millis(250)).is_err());
        for _ in 0..BURST as usize {
            let _ = l.admit(T::Ping, t0 + Duration::from_millis(250));
        }
        assert!(l.admit(T::Ping, t0 + Duration::from_millis(250)).is_err());
        for _ in 0..1000 {
            l.admit(T::Pong, t0 + Duration::from_millis(250)).unwrap();
        }
    }
}
