//! Rate limits per principal: each authenticated caller (role and token subject, e.g.
//! `merchant:m-1`) gets its own GCRA bucket, checked as soon as its token is verified, so a
//! limited request reaches neither a handler nor the store. Routes without a token (health,
//! readiness, the OpenAPI document) are not limited.
//!
//! The buckets live in this process: with several instances behind a balancer, each allows the
//! configured rate.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dispute_domain::Actor;
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::ApiError;

/// How many requests a principal may make: `requests` per `per` on average, up to `burst` at
/// once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: NonZeroU32,
    pub per: Duration,
    /// How many requests a principal that has been quiet may send at once; one request's worth
    /// comes back every `per / requests`.
    pub burst: NonZeroU32,
}

impl RateLimit {
    /// The fastest rate taken: one request a microsecond.
    const FASTEST: Duration = Duration::from_micros(1);

    /// `requests` per `per`, with a burst of `requests`.
    pub fn new(requests: NonZeroU32, per: Duration) -> Self {
        Self { requests, per, burst: requests }
    }

    pub fn with_burst(self, burst: NonZeroU32) -> Self {
        Self { burst, ..self }
    }

    /// How often one request's worth comes back.
    fn replenish_every(&self) -> Duration {
        (self.per / self.requests.get()).max(Self::FASTEST)
    }

    fn quota(&self) -> Quota {
        let quota = Quota::with_period(self.replenish_every()).expect("the period is at least FASTEST");
        quota.allow_burst(self.burst)
    }
}

/// Reads a rate: `N/s`, `N/min` or `N/h`, or a bare `N` per second, with `N` at least 1 (and at
/// most one request a microsecond); the burst is `N`.
pub fn parse_rate_limit(text: &str) -> Result<RateLimit, String> {
    let wrong = || format!("{text:?} is not a rate: N/s, N/min or N/h with a whole N of at least 1");
    let (count, unit) = text.trim().split_once('/').unwrap_or((text.trim(), "s"));
    let per = match unit.trim() {
        "s" => Duration::from_secs(1),
        "min" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        _ => return Err(wrong()),
    };
    let requests = count.trim().parse::<NonZeroU32>().map_err(|_| wrong())?;
    let limit = RateLimit::new(requests, per);
    if per / requests.get() < RateLimit::FASTEST {
        return Err(format!("{text:?} is faster than one request a microsecond"));
    }
    Ok(limit)
}

/// The request-rate buckets of every principal, shared by all requests; none when no limit is
/// configured.
#[derive(Clone, Default)]
pub(crate) struct RateLimits(Option<Arc<Buckets>>);

struct Buckets {
    limiter: DefaultKeyedRateLimiter<Actor>,
    /// When idle principals were last forgotten.
    swept: Mutex<Instant>,
}

/// How often the buckets of principals that have been quiet long enough to be back at a full
/// burst are dropped: the memory held is that of the principals seen in the last minute or so.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

impl RateLimits {
    pub(crate) fn new(limit: Option<RateLimit>) -> Self {
        Self(limit.map(|limit| {
            Arc::new(Buckets {
                limiter: DefaultKeyedRateLimiter::keyed(limit.quota()),
                swept: Mutex::new(Instant::now()),
            })
        }))
    }

    /// Takes one request from `caller`'s bucket, or refuses with the time until one is back.
    pub(crate) fn check(&self, caller: &Actor) -> Result<(), ApiError> {
        let Some(buckets) = &self.0 else { return Ok(()) };
        buckets.sweep_now_and_then();
        buckets.limiter.check_key(caller).map_err(|not_until| ApiError::RateLimited {
            retry_after: not_until.wait_time_from(buckets.limiter.clock().now()),
        })
    }
}

impl Buckets {
    /// Forgets the principals whose bucket is full again (a fresh bucket would be the same), at
    /// most once every [`SWEEP_EVERY`]; a request that finds another one sweeping goes on.
    fn sweep_now_and_then(&self) {
        let Ok(mut swept) = self.swept.try_lock() else { return };
        if swept.elapsed() >= SWEEP_EVERY {
            *swept = Instant::now();
            self.sweep();
        }
    }

    fn sweep(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use dispute_domain::Role;

    use super::*;

    fn limit(requests: u32, per: Duration) -> RateLimit {
        RateLimit::new(NonZeroU32::new(requests).expect("not zero"), per)
    }

    #[test]
    fn rates_are_n_per_second_minute_or_hour() {
        assert_eq!(parse_rate_limit("20/s"), Ok(limit(20, Duration::from_secs(1))));
        assert_eq!(parse_rate_limit(" 20 "), Ok(limit(20, Duration::from_secs(1))));
        assert_eq!(parse_rate_limit("600/min"), Ok(limit(600, Duration::from_secs(60))));
        assert_eq!(parse_rate_limit("1/h"), Ok(limit(1, Duration::from_secs(3600))));
        for wrong in ["0/s", "-1/s", "0", "", "ten/s", "2.5/s", "5/day", "5/", "/s", "4294967296/s"] {
            assert!(parse_rate_limit(wrong).is_err(), "{wrong:?} is refused");
        }
        assert!(parse_rate_limit("2000000/s").is_err(), "faster than one a microsecond");
    }

    fn actor(role: Role, id: &str) -> Actor {
        Actor::new(role, id)
    }

    fn retry_after(result: Result<(), ApiError>) -> Duration {
        match result {
            Err(ApiError::RateLimited { retry_after }) => retry_after,
            other => panic!("expected rate_limited, got {other:?}"),
        }
    }

    #[test]
    fn each_principal_has_its_own_bucket() {
        let hour = Duration::from_secs(3600);
        let limits = RateLimits::new(Some(limit(1, hour).with_burst(NonZeroU32::new(2).expect("2"))));
        let merchant = actor(Role::Merchant, "m-1");
        limits.check(&merchant).expect("the first of the burst");
        limits.check(&merchant).expect("the second of the burst");
        let wait = retry_after(limits.check(&merchant));
        assert!(wait > hour - Duration::from_secs(60) && wait <= hour, "{wait:?}");

        limits.check(&actor(Role::Merchant, "m-2")).expect("another merchant has its own bucket");
        limits.check(&actor(Role::Buyer, "m-1")).expect("the same subject in another role too");
    }

    #[test]
    fn without_a_limit_nothing_is_refused() {
        let limits = RateLimits::new(None);
        let buyer = actor(Role::Buyer, "b-1");
        for _ in 0..1000 {
            limits.check(&buyer).expect("no limit");
        }
    }

    #[test]
    fn a_sweep_forgets_principals_whose_bucket_is_full_again() {
        let limits = RateLimits::new(Some(limit(1, Duration::from_millis(1))));
        let Some(buckets) = &limits.0 else { panic!("a limit is configured") };
        for id in ["b-1", "b-2", "b-3"] {
            limits.check(&actor(Role::Buyer, id)).expect("within the limit");
        }
        assert_eq!(buckets.limiter.len(), 3);
        // Well past one replenishment (1 ms): every bucket is full again.
        std::thread::sleep(Duration::from_millis(50));
        buckets.sweep();
        assert_eq!(buckets.limiter.len(), 0, "idle principals are forgotten");

        let hour = Duration::from_secs(3600);
        let limits = RateLimits::new(Some(limit(1, hour)));
        let Some(buckets) = &limits.0 else { panic!("a limit is configured") };
        limits.check(&actor(Role::Buyer, "b-1")).expect("within the limit");
        buckets.sweep();
        assert_eq!(buckets.limiter.len(), 1, "a principal still owing time is kept");
        retry_after(limits.check(&actor(Role::Buyer, "b-1")));
    }
}
