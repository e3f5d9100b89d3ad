//! Rate limits: requests and tokens per window, one token bucket per
//! (rule, scope key, metric).
//!
//! A bucket holds up to the rule's allowance (`requests = 60` → 60) and
//! refills continuously at allowance per window (one request a second for
//! 60 a minute). A quiet client may therefore burst its whole allowance at
//! once; sustained use is held to the rate. This is the model providers
//! publish for their own limits, so SDK retry logic fits it.
//!
//! Tokens are not known until the response ends, so a call is admitted on
//! an estimate (its prompt plus the `max_tokens` it asked for) and
//! [`RateLimiter::settle`] corrects the bucket to the real count. A call
//! that used more than estimated leaves the bucket in debt, and later calls
//! wait it out: over time the tokens counted are the tokens used.
//!
//! Admission is all-or-nothing across every limit that applies, under one
//! lock, so concurrent calls cannot jointly pass a limit. Buckets live in
//! memory: a restart starts them full (budgets, which are money, persist).
//!
//! Pure: no I/O and no clock; callers pass `now`.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Buckets kept before idle (full) ones are swept.
const SWEEP_ABOVE: usize = 4096;

/// What a bucket counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Calls.
    Requests,
    /// Input plus output tokens.
    Tokens,
}

impl Metric {
    /// The policy key for it (`requests`, `tokens`).
    pub fn name(self) -> &'static str {
        match self {
            Metric::Requests => "requests",
            Metric::Tokens => "tokens",
        }
    }
}

/// One `[[rate_limits]]` rule as it applies to one call.
#[derive(Debug, Clone)]
pub struct Limit {
    /// The rule id.
    pub rule_id: String,
    /// Who or what is counted (`alice`, `openai`, `*`).
    pub scope_key: String,
    /// Calls per window.
    pub requests: Option<u64>,
    /// Tokens per window.
    pub tokens: Option<u64>,
    /// The window.
    pub window: Duration,
}

/// A call refused by a rate limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Throttled {
    /// The rule id.
    pub rule_id: String,
    /// Who or what is counted.
    pub scope_key: String,
    /// Which allowance ran out.
    pub metric: Metric,
    /// The allowance per window.
    pub limit: u64,
    /// The window.
    pub window: Duration,
    /// When enough has refilled for this call.
    pub retry_after: Duration,
    /// The call alone needs more than a full bucket: it can never pass.
    pub never: bool,
}

/// An admitted call's token debits, to correct with [`RateLimiter::settle`].
#[derive(Debug)]
#[must_use = "settle an Admission so its token estimate is corrected"]
pub struct Admission {
    token_keys: Vec<Key>,
    estimated: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    rule_id: String,
    scope_key: String,
    metric: Metric,
}

#[derive(Debug)]
struct Bucket {
    capacity: f64,
    /// Per second.
    rate: f64,
    /// May be negative: debt from calls that used more than estimated.
    level: f64,
    at: Instant,
}

impl Bucket {
    fn full(capacity: f64, window: Duration, now: Instant) -> Bucket {
        Bucket {
            capacity,
            rate: capacity / window.as_secs_f64(),
            level: capacity,
            at: now,
        }
    }

    /// Bring the level to `now`, and to the rule as it is now (a reload may
    /// have changed it).
    fn refill(&mut self, capacity: f64, window: Duration, now: Instant) {
        self.rate = capacity / window.as_secs_f64();
        self.capacity = capacity;
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level + elapsed * self.rate).min(capacity);
        self.at = self.at.max(now);
    }

    /// Time until the level reaches `cost`.
    fn wait_for(&self, cost: f64) -> Duration {
        let missing = cost - self.level;
        if missing <= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(missing / self.rate)
    }
}

/// Every bucket, behind one lock (held for a few hash lookups per call).
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<Key, Bucket>>,
}

impl RateLimiter {
    /// No buckets yet: every limit starts full.
    pub fn new() -> RateLimiter {
        RateLimiter::default()
    }

    /// Admit one call on every limit of `limits` (one request, and
    /// `estimated_tokens` on token limits), or none. When several refuse,
    /// the one with the longest wait is reported, so `retry_after` is when
    /// the call can pass them all.
    pub fn admit(
        &self,
        limits: &[Limit],
        estimated_tokens: u64,
        now: Instant,
    ) -> Result<Admission, Throttled> {
        let mut buckets = self.lock();
        if buckets.len() > SWEEP_ABOVE {
            sweep(&mut buckets, limits, now);
        }
        let mut refused: Option<Throttled> = None;
        for limit in limits {
            for (metric, allowance, cost) in checks(limit, estimated_tokens) {
                let throttled = |retry_after, never| Throttled {
                    rule_id: limit.rule_id.clone(),
                    scope_key: limit.scope_key.clone(),
                    metric,
                    limit: allowance,
                    window: limit.window,
                    retry_after,
                    never,
                };
                let candidate = if cost > allowance as f64 {
                    Some(throttled(limit.window, true))
                } else {
                    let bucket = buckets
                        .entry(key(limit, metric))
                        .or_insert_with(|| Bucket::full(allowance as f64, limit.window, now));
                    bucket.refill(allowance as f64, limit.window, now);
                    let wait = bucket.wait_for(cost);
                    (!wait.is_zero()).then(|| throttled(wait, false))
                };
                if let Some(c) = candidate {
                    let longer = refused
                        .as_ref()
                        .is_none_or(|r| (c.never, c.retry_after) > (r.never, r.retry_after));
                    if longer {
                        refused = Some(c);
                    }
                }
            }
        }
        if let Some(refused) = refused {
            return Err(refused);
        }
        let mut token_keys = Vec::new();
        for limit in limits {
            for (metric, _, cost) in checks(limit, estimated_tokens) {
                let key = key(limit, metric);
                if let Some(bucket) = buckets.get_mut(&key) {
                    bucket.level -= cost;
                }
                if metric == Metric::Tokens && !token_keys.contains(&key) {
                    token_keys.push(key);
                }
            }
        }
        Ok(Admission {
            token_keys,
            estimated: estimated_tokens,
        })
    }

    /// The call used `actual_tokens` (zero if it failed before the provider
    /// answered): correct its token debits from the estimate to that.
    pub fn settle(&self, admission: Admission, actual_tokens: u64) {
        if admission.token_keys.is_empty() || actual_tokens == admission.estimated {
            return;
        }
        let correction = actual_tokens as f64 - admission.estimated as f64;
        let mut buckets = self.lock();
        for key in &admission.token_keys {
            if let Some(bucket) = buckets.get_mut(key) {
                bucket.level = (bucket.level - correction).min(bucket.capacity);
            }
        }
    }

    /// How much of `limit`'s allowance is left at `now`, per metric
    /// (status and tests). A limit never used is full.
    pub fn remaining(&self, limit: &Limit, now: Instant) -> Vec<(Metric, f64)> {
        let mut buckets = self.lock();
        checks(limit, 0)
            .map(|(metric, allowance, _)| {
                let level = match buckets.get_mut(&key(limit, metric)) {
                    Some(bucket) => {
                        bucket.refill(allowance as f64, limit.window, now);
                        bucket.level
                    }
                    None => allowance as f64,
                };
                (metric, level)
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Bucket>> {
        // Each critical section leaves every bucket consistent.
        self.buckets.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The (metric, allowance, cost) checks `limit` makes of a call.
fn checks(limit: &Limit, estimated_tokens: u64) -> impl Iterator<Item = (Metric, u64, f64)> {
    let requests = limit.requests.map(|n| (Metric::Requests, n, 1.0));
    let tokens = limit
        .tokens
        .map(|n| (Metric::Tokens, n, estimated_tokens as f64));
    requests.into_iter().chain(tokens)
}

fn key(limit: &Limit, metric: Metric) -> Key {
    Key {
        rule_id: limit.rule_id.clone(),
        scope_key: limit.scope_key.clone(),
        metric,
    }
}

/// Drop buckets that have refilled completely: they hold no state a new,
/// full bucket would not. Buckets of rules no longer in policy go too.
fn sweep(buckets: &mut HashMap<Key, Bucket>, limits: &[Limit], now: Instant) {
    let in_use: Vec<Key> = limits
        .iter()
        .flat_map(|l| checks(l, 0).map(move |(m, _, _)| key(l, m)))
        .collect();
    buckets.retain(|key, bucket| {
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        in_use.contains(key) || bucket.level + elapsed * bucket.rate < bucket.capacity
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(id: &str, requests: Option<u64>, tokens: Option<u64>, window_secs: u64) -> Limit {
        Limit {
            rule_id: id.into(),
            scope_key: "alice".into(),
            requests,
            tokens,
            window: Duration::from_secs(window_secs),
        }
    }

    #[test]
    fn requests_burst_to_the_allowance_then_refill_at_the_rate() {
        let limiter = RateLimiter::new();
        let t0 = Instant::now();
        let limits = [limit("rpm", Some(3), None, 60)];
        for _ in 0..3 {
            let a = limiter.admit(&limits, 0, t0).expect("within allowance");
            limiter.settle(a, 0);
        }
        let refused = limiter.admit(&limits, 0, t0).expect_err("fourth call");
        assert_eq!(refused.rule_id, "rpm");
        assert_eq!(refused.metric, Metric::Requests);
        assert_eq!(refused.limit, 3);
        assert!(!refused.never);
        // 3 a minute: one request every 20 s.
        assert_eq!(refused.retry_after.as_secs(), 20);
        assert!(limiter
            .admit(&limits, 0, t0 + Duration::from_secs(19))
            .is_err());
        let a = limiter
            .admit(&limits, 0, t0 + Duration::from_secs(20))
            .expect("one request has refilled");
        limiter.settle(a, 0);
        assert!(limiter
            .admit(&limits, 0, t0 + Duration::from_secs(21))
            .is_err());
    }

    #[test]
    fn a_refilled_bucket_never_exceeds_its_allowance() {
        let limiter = RateLimiter::new();
        let t0 = Instant::now();
        let limits = [limit("rps", Some(2), None, 1)];
        let later = t0 + Duration::from_secs(3600);
        let mut admitted = 0;
        while limiter.admit(&limits, 0, later).is_ok() {
            admitted += 1;
        }
        assert_eq!(admitted, 2);
    }

    #[test]
    fn token_estimates_are_corrected_to_the_real_usage() {
        let limiter = RateLimiter::new();
        let t0 = Instant::now();
        let limits = [limit("tpm", None, Some(1000), 60)];
        let a = limiter.admit(&limits, 600, t0).expect("fits");
        // 400 left: a second 600-token estimate waits…
        assert!(limiter.admit(&limits, 600, t0).is_err());
        // …until the first call turns out to have used only 100.
        limiter.settle(a, 100);
        let b = limiter.admit(&limits, 600, t0).expect("refunded");
        // Used far more than estimated: the bucket goes into debt.
        limiter.settle(b, 1500);
        let refused = limiter.admit(&limits, 1, t0).expect_err("in debt");
        assert_eq!(refused.metric, Metric::Tokens);
        // Level is 1000 - 100 - 1500 = -600; one token needs 601 at 1000/60 s.
        assert_eq!(refused.retry_after.as_millis(), 36_060);
        let left = limiter.remaining(&limits[0], t0);
        assert_eq!(left, vec![(Metric::Tokens, -600.0)]);
    }

    #[test]
    fn a_call_larger_than_the_allowance_can_never_pass() {
        let limiter = RateLimiter::new();
        let refused = limiter
            .admit(&[limit("tpm", None, Some(1000), 60)], 1001, Instant::now())
            .expect_err("too large");
        assert!(refused.never);
        assert_eq!(refused.limit, 1000);
    }

    #[test]
    fn admission_is_all_or_nothing_and_reports_the_longest_wait() {
        let limiter = RateLimiter::new();
        let t0 = Instant::now();
        let rpm = limit("rpm", Some(1), None, 60);
        let rph = limit("rph", Some(2), None, 3600);
        let a = limiter
            .admit(std::slice::from_ref(&rpm), 0, t0)
            .expect("first");
        limiter.settle(a, 0);
        // rpm is empty: the call is refused, and rph is not charged for it.
        let refused = limiter
            .admit(&[rph.clone(), rpm.clone()], 0, t0)
            .expect_err("rpm is empty");
        assert_eq!(refused.rule_id, "rpm");
        assert_eq!(limiter.remaining(&rph, t0), vec![(Metric::Requests, 2.0)]);
        // Both empty after two more calls an hour apart… the longer wait wins.
        let later = t0 + Duration::from_secs(60);
        let a = limiter
            .admit(&[rph.clone(), rpm.clone()], 0, later)
            .unwrap();
        limiter.settle(a, 0);
        let a = limiter.admit(std::slice::from_ref(&rph), 0, later).unwrap();
        limiter.settle(a, 0);
        let refused = limiter
            .admit(&[rpm.clone(), rph.clone()], 0, later)
            .expect_err("both empty");
        assert_eq!(refused.rule_id, "rph");
        assert_eq!(refused.retry_after.as_secs(), 1800);
    }

    #[test]
    fn scopes_count_separately() {
        let limiter = RateLimiter::new();
        let t0 = Instant::now();
        let alice = limit("rpm", Some(1), None, 60);
        let bob = Limit {
            scope_key: "bob".into(),
            ..alice.clone()
        };
        let a = limiter.admit(std::slice::from_ref(&alice), 0, t0).unwrap();
        limiter.settle(a, 0);
        assert!(limiter.admit(&[alice], 0, t0).is_err());
        assert!(limiter.admit(&[bob], 0, t0).is_ok());
    }

    #[test]
    fn a_lowered_allowance_applies_at_once() {
        let limiter = RateLimiter::new();
        let t0 = Instant::now();
        let a = limiter
            .admit(&[limit("rpm", Some(100), None, 60)], 0, t0)
            .unwrap();
        limiter.settle(a, 0);
        // The reload cut it to 5: the full bucket of 99 is clamped to 5.
        let lowered = [limit("rpm", Some(5), None, 60)];
        let mut admitted = 0;
        while limiter.admit(&lowered, 0, t0).is_ok() {
            admitted += 1;
        }
        assert_eq!(admitted, 5);
    }

    #[test]
    fn concurrent_calls_cannot_jointly_pass_a_limit() {
        let limiter = std::sync::Arc::new(RateLimiter::new());
        let t0 = Instant::now();
        let limits = std::sync::Arc::new([limit("rpm", Some(10), Some(1000), 3600)]);
        let admitted: usize = (0..50)
            .map(|_| {
                let (limiter, limits) = (limiter.clone(), limits.clone());
                std::thread::spawn(move || limiter.admit(&limits[..], 50, t0).is_ok())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| usize::from(h.join().unwrap()))
            .sum();
        assert_eq!(admitted, 10);
    }

    #[test]
    fn idle_buckets_are_swept_when_there_are_many() {
        let limiter = RateLimiter::new();
        let t0 = Instant::now();
        for i in 0..=SWEEP_ABOVE {
            let l = Limit {
                scope_key: format!("model-{i}"),
                ..limit("rps", Some(1), None, 1)
            };
            let a = limiter.admit(&[l], 0, t0).unwrap();
            limiter.settle(a, 0);
        }
        let later = t0 + Duration::from_secs(2);
        let a = limiter
            .admit(&[limit("rps", Some(1), None, 1)], 0, later)
            .unwrap();
        limiter.settle(a, 0);
        assert_eq!(limiter.lock().len(), 1);
    }
}
