//! Rate limits on what an attacker would repeat: signing in (each attempt
//! costs an Argon2id hash, and guessing passwords across many accounts
//! slips under each account's lockout) and requests refused for want of a
//! valid session (each is written to the audit trail).
//!
//! Limits are per client address (the connection's peer), with a burst
//! that a practice's morning sign-ins behind one NAT address fit in. Past
//! the limit a request is answered 429 with `Retry-After` and an
//! OperationOutcome (`throttled`) before any work is done; refusals past
//! the limit are counted in the log instead of written to the audit trail
//! one by one, so a flood cannot grow the trail.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;

/// The limits of a server, per client address and minute (0: none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitConfig {
    /// Sign-in attempts (and token requests).
    pub sign_ins_per_minute: u32,
    /// Requests refused as unauthenticated.
    pub refusals_per_minute: u32,
}

impl Default for LimitConfig {
    fn default() -> Self {
        LimitConfig {
            sign_ins_per_minute: 30,
            refusals_per_minute: 120,
        }
    }
}

impl LimitConfig {
    /// No limits: for benchmarks, whose simulated staff all sign in from
    /// one loopback address.
    pub fn none() -> Self {
        LimitConfig {
            sign_ins_per_minute: 0,
            refusals_per_minute: 0,
        }
    }
}

/// Keys seen before stale ones are forgotten.
const SWEEP_EVERY: u64 = 4_096;

/// One limit: a token bucket per client address.
struct Bucket {
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    checks: AtomicU64,
    what: &'static str,
}

impl Bucket {
    fn new(per_minute: u32, what: &'static str) -> Self {
        Bucket {
            limiter: NonZeroU32::new(per_minute)
                .map(|n| RateLimiter::keyed(Quota::per_minute(n).allow_burst(n))),
            checks: AtomicU64::new(0),
            what,
        }
    }

    fn check(&self, address: Option<IpAddr>) -> Result<(), ApiError> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        let key = address.unwrap_or(UNKNOWN);
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            limiter.retain_recent();
        }
        limiter.check_key(&key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            tracing::warn!(client = %key, limit = self.what, "rate limit reached");
            ApiError::throttled(
                wait.as_secs() + 1,
                format!("too many {} from this address; try again later", self.what),
            )
        })
    }
}

/// The rate limits of one server.
#[derive(Clone)]
pub struct Limits {
    sign_in: Arc<Bucket>,
    refusal: Arc<Bucket>,
    /// Addresses past the refusal limit, until when.
    throttled: Arc<RwLock<HashMap<IpAddr, Instant>>>,
}

impl Limits {
    pub fn new(config: LimitConfig) -> Self {
        Limits {
            sign_in: Arc::new(Bucket::new(config.sign_ins_per_minute, "sign-in attempts")),
            refusal: Arc::new(Bucket::new(
                config.refusals_per_minute,
                "requests without a valid session",
            )),
            throttled: Arc::default(),
        }
    }

    /// Counts a sign-in attempt (or token request) from `address`: 429 past
    /// the limit.
    pub fn sign_in(&self, address: Option<&str>) -> Result<(), ApiError> {
        self.sign_in.check(parse(address))
    }

    /// Counts a request refused as unauthenticated. Past the limit, the
    /// address is throttled: [`Limits::admit`] answers 429 to it until its
    /// wait is over.
    pub fn refused(&self, address: Option<&str>) {
        let ip = parse(address);
        if let Err(e) = self.refusal.check(ip) {
            let wait = Duration::from_secs(e.retry_after.unwrap_or(1));
            if let Ok(mut map) = self.throttled.write() {
                let now = Instant::now();
                if map.len() >= 4_096 {
                    map.retain(|_, until| *until > now);
                }
                map.insert(ip.unwrap_or(UNKNOWN), now + wait);
            }
        }
    }

    /// Whether a request from `address` whose session is not known yet may
    /// be looked at: 429 while the address is throttled.
    pub fn admit(&self, address: Option<&str>) -> Result<(), ApiError> {
        let ip = parse(address).unwrap_or(UNKNOWN);
        let until = self.throttled.read().ok().and_then(|m| m.get(&ip).copied());
        match until {
            Some(until) if until > Instant::now() => Err(ApiError::throttled(
                (until - Instant::now()).as_secs() + 1,
                "too many requests without a valid session from this address; try again later",
            )),
            _ => Ok(()),
        }
    }
}

/// The bucket of requests without a peer address (not over TCP).
const UNKNOWN: IpAddr = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);

fn parse(address: Option<&str>) -> Option<IpAddr> {
    address.and_then(|a| a.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_address_waits_and_others_do_not() {
        let limits = Limits::new(LimitConfig {
            sign_ins_per_minute: 3,
            refusals_per_minute: 0,
        });
        for _ in 0..3 {
            assert!(limits.sign_in(Some("10.0.0.1")).is_ok());
        }
        let refused = limits.sign_in(Some("10.0.0.1")).err();
        let refused = refused.map(|e| (e.status.as_u16(), e.retry_after));
        assert!(matches!(refused, Some((429, Some(1..=21)))), "{refused:?}");
        assert!(limits.sign_in(Some("10.0.0.2")).is_ok());
        // A limit of 0 is none.
        for _ in 0..1_000 {
            limits.refused(Some("10.0.0.1"));
        }
        assert!(limits.admit(Some("10.0.0.1")).is_ok());
    }

    #[test]
    fn an_address_past_the_refusal_limit_is_throttled_until_its_wait_ends() {
        let limits = Limits::new(LimitConfig {
            sign_ins_per_minute: 0,
            refusals_per_minute: 2,
        });
        limits.refused(Some("10.0.0.1"));
        limits.refused(Some("10.0.0.1"));
        assert!(limits.admit(Some("10.0.0.1")).is_ok());
        limits.refused(Some("10.0.0.1"));
        let e = limits.admit(Some("10.0.0.1")).err();
        assert_eq!(e.map(|e| e.status.as_u16()), Some(429));
        assert!(limits.admit(Some("10.0.0.2")).is_ok());
        assert!(limits.admit(None).is_ok());
    }
}
