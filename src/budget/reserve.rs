//! Reservation before forwarding: a request's worst-case cost, and the
//! in-memory ledger that holds that cost against every budget the request
//! counts toward until the real cost is known.
//!
//! Words:
//! - *counter*: one budget, for one scope key, in one window
//!   ([`CounterKey`]); it holds `spent` (settled) and `reserved` (in flight).
//! - *reservation*: the worst case of one request, held on each of its
//!   counters at once; it ends by [`Reservations::settle`] (real cost moves
//!   to `spent`) or [`Reservations::release`] (request failed, nothing spent).
//!
//! The guarantee: a reservation is admitted only if, on every counter,
//! `spent + reserved + amount <= limit`, checked and applied under one lock.
//! So concurrent requests can never jointly reserve past a limit; `spent`
//! can pass it only by what a settled request cost beyond its estimate,
//! which the estimate below is built to make zero for text (it cannot see
//! image or audio tokens). A stream estimated after a cut-off is charged
//! with [`Reservations::settle`] like any other.
//!
//! Amounts are kept as integer nano-dollars so that reserve/release pairs
//! cancel exactly, however many requests run. Persistence is not here: a
//! ledger writer will seed counters with [`Reservations::add_spent`] and
//! record settlements.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use jiff::Timestamp;

use super::pricing::{cost, Price};
use crate::provider::Usage;

/// UTF-8 bytes of prompt text counted as one token. Real tokenizers average
/// about 4 bytes per token on English and code; CJK text is ~3 bytes per
/// character at roughly one token per character. Two bytes per token
/// over-counts the first by 2× and the second by 1.5×, so the estimate stays
/// above the truth for text.
pub const PROMPT_BYTES_PER_TOKEN: u64 = 2;

/// Tokens added to every prompt estimate for the chat template (role
/// markers, message separators) that the text itself does not show.
pub const PROMPT_OVERHEAD_TOKENS: u64 = 32;

/// Nano-dollars in a dollar.
const NANOS_PER_USD: f64 = 1e9;

/// Estimated prompt tokens for `prompt_text_bytes` of UTF-8 text.
pub fn estimate_prompt_tokens(prompt_text_bytes: usize) -> u64 {
    (prompt_text_bytes as u64).div_ceil(PROMPT_BYTES_PER_TOKEN) + PROMPT_OVERHEAD_TOKENS
}

/// The most tokens a request can use: its estimated prompt, and its
/// `max_tokens` (or `default_output_cap`, the model's output limit or the
/// configured default, when the request sets none). Everything is counted
/// as uncached input: a cache hit only makes the real cost lower.
pub fn worst_case_usage(
    prompt_text_bytes: usize,
    max_tokens: Option<u64>,
    default_output_cap: u64,
) -> Usage {
    Usage {
        input_tokens: estimate_prompt_tokens(prompt_text_bytes),
        output_tokens: max_tokens.unwrap_or(default_output_cap),
        ..Usage::default()
    }
}

/// The cost to reserve for `worst` at `price`: the input is charged at the
/// highest of the input rates, since a prompt may turn out to be a cache
/// write, which costs more than plain input at Anthropic.
pub fn worst_case_cost(worst: &Usage, price: &Price) -> f64 {
    let mut dearest = *price;
    dearest.input = price.input.max(price.cache_write).max(price.cached_input);
    if let Some(long) = dearest.long_context.as_mut() {
        long.input = long.input.max(long.cache_write).max(long.cached_input);
    }
    let all_uncached = Usage {
        cached_input_tokens: 0,
        cache_write_tokens: 0,
        ..*worst
    };
    cost(&all_uncached, &dearest)
}

/// One budget counter: budget id, scope key (`alice`, `openai`, `*`), window.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CounterKey {
    /// The `[[budgets]]` id.
    pub budget_id: String,
    /// Who or what the budget is counted for, in this budget's scope.
    pub scope_key: String,
    /// Start of the window the request falls in.
    pub window_start: Timestamp,
}

/// A counter a reservation is held on, with its limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Charge {
    /// The counter.
    pub key: CounterKey,
    /// The budget's limit in USD for one window.
    pub limit_usd: f64,
}

/// Names one live reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReservationId(u64);

/// A reservation refused: this counter would pass its limit. The policy's
/// refusal (429) names these.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "budget {budget_id:?} ({scope_key}) exhausted: spent ${spent_usd:.4}, reserved ${reserved_usd:.4}, \
     this request up to ${requested_usd:.4}, limit ${limit_usd:.4}"
)]
pub struct Exceeded {
    /// The budget id.
    pub budget_id: String,
    /// The scope key.
    pub scope_key: String,
    /// Settled spend in the window.
    pub spent_usd: f64,
    /// Held by requests in flight.
    pub reserved_usd: f64,
    /// What this request would have reserved.
    pub requested_usd: f64,
    /// The limit.
    pub limit_usd: f64,
}

/// Settling or releasing a reservation that is not live: already settled or
/// released (ours: a double completion on the request path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("reservation {0:?} is not live")]
pub struct UnknownReservation(pub ReservationId);

/// A counter's state, in USD.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Totals {
    /// Settled.
    pub spent_usd: f64,
    /// Held by requests in flight.
    pub reserved_usd: f64,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counter {
    spent: u64,
    reserved: u64,
}

#[derive(Debug, Default)]
struct Ledger {
    counters: HashMap<CounterKey, Counter>,
    live: HashMap<ReservationId, (Vec<CounterKey>, u64)>,
    next_id: u64,
}

/// The in-memory reservation ledger, shared by all requests.
#[derive(Debug, Default)]
pub struct Reservations {
    ledger: Mutex<Ledger>,
}

impl Reservations {
    /// An empty ledger.
    pub fn new() -> Reservations {
        Reservations::default()
    }

    /// Hold `amount_usd` on every counter of `charges`, or on none: if any
    /// would pass its limit, nothing is held and the first such counter is
    /// reported. A request matching no budget gets an id that holds nothing.
    pub fn reserve(&self, charges: &[Charge], amount_usd: f64) -> Result<ReservationId, Exceeded> {
        let amount = to_nanos(amount_usd);
        let mut ledger = self.lock();
        for charge in charges {
            let counter = ledger
                .counters
                .get(&charge.key)
                .copied()
                .unwrap_or_default();
            let after = counter
                .spent
                .saturating_add(counter.reserved)
                .saturating_add(amount);
            if after > to_nanos(charge.limit_usd) {
                return Err(Exceeded {
                    budget_id: charge.key.budget_id.clone(),
                    scope_key: charge.key.scope_key.clone(),
                    spent_usd: to_usd(counter.spent),
                    reserved_usd: to_usd(counter.reserved),
                    requested_usd: to_usd(amount),
                    limit_usd: charge.limit_usd,
                });
            }
        }
        let mut keys = Vec::with_capacity(charges.len());
        for charge in charges {
            // The same counter listed twice is held once.
            if keys.contains(&charge.key) {
                continue;
            }
            let counter = ledger.counters.entry(charge.key.clone()).or_default();
            counter.reserved = counter.reserved.saturating_add(amount);
            keys.push(charge.key.clone());
        }
        let id = ReservationId(ledger.next_id);
        ledger.next_id += 1;
        ledger.live.insert(id, (keys, amount));
        Ok(id)
    }

    /// The request finished and cost `actual_usd`: drop the hold and add the
    /// real cost to every counter it was held on.
    pub fn settle(&self, id: ReservationId, actual_usd: f64) -> Result<(), UnknownReservation> {
        self.finish(id, to_nanos(actual_usd))
    }

    /// The request failed before costing anything: drop the hold.
    pub fn release(&self, id: ReservationId) -> Result<(), UnknownReservation> {
        self.finish(id, 0)
    }

    /// Add spend that had no reservation (restoring from the persistent
    /// ledger, or an admin adjustment).
    pub fn add_spent(&self, key: CounterKey, usd: f64) {
        let mut ledger = self.lock();
        let counter = ledger.counters.entry(key).or_default();
        counter.spent = counter.spent.saturating_add(to_nanos(usd));
    }

    /// A counter's current state (zero if never used).
    pub fn totals(&self, key: &CounterKey) -> Totals {
        let counter = self.lock().counters.get(key).copied().unwrap_or_default();
        Totals {
            spent_usd: to_usd(counter.spent),
            reserved_usd: to_usd(counter.reserved),
        }
    }

    /// Drop counters of windows that started before `start` and hold
    /// nothing in flight, so memory stays bounded as windows roll.
    pub fn forget_windows_before(&self, start: Timestamp) {
        self.lock()
            .counters
            .retain(|key, c| key.window_start >= start || c.reserved > 0);
    }

    fn finish(&self, id: ReservationId, actual: u64) -> Result<(), UnknownReservation> {
        let mut ledger = self.lock();
        let (keys, amount) = ledger.live.remove(&id).ok_or(UnknownReservation(id))?;
        for key in keys {
            let counter = ledger.counters.entry(key).or_default();
            counter.reserved = counter.reserved.saturating_sub(amount);
            counter.spent = counter.spent.saturating_add(actual);
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Ledger> {
        // Every critical section is plain arithmetic on maps with no panic
        // between related updates, so a poisoned lock's data is consistent.
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// USD → nano-dollars, to the nearest: rounding up or down would turn the
/// binary error of `0.3 * 1e9` into a whole nano-dollar and refuse a request
/// that fits exactly. Negative and NaN become 0; `as` saturates.
fn to_nanos(usd: f64) -> u64 {
    (usd * NANOS_PER_USD).round().max(0.0) as u64
}

fn to_usd(nanos: u64) -> f64 {
    nanos as f64 / NANOS_PER_USD
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn key(budget: &str) -> CounterKey {
        CounterKey {
            budget_id: budget.into(),
            scope_key: "alice".into(),
            window_start: Timestamp::UNIX_EPOCH,
        }
    }

    fn charge(budget: &str, limit_usd: f64) -> Charge {
        Charge {
            key: key(budget),
            limit_usd,
        }
    }

    #[test]
    fn prompt_estimate_is_two_bytes_per_token_plus_overhead() {
        assert_eq!(estimate_prompt_tokens(0), PROMPT_OVERHEAD_TOKENS);
        assert_eq!(estimate_prompt_tokens(401), 201 + PROMPT_OVERHEAD_TOKENS);
        let w = worst_case_usage(1000, None, 4096);
        assert_eq!((w.input_tokens, w.output_tokens), (532, 4096));
        assert_eq!(worst_case_usage(1000, Some(10), 4096).output_tokens, 10);
    }

    #[test]
    fn worst_case_prices_input_at_the_dearest_input_rate() {
        let price = Price {
            input: 3.0,
            output: 15.0,
            cached_input: 0.3,
            cache_write: 3.75,
            long_context: None,
        };
        let worst = Usage {
            input_tokens: 1_000_000,
            output_tokens: 100_000,
            ..Usage::default()
        };
        assert!((worst_case_cost(&worst, &price) - (3.75 + 1.5)).abs() < 1e-9);
        // Any real usage within those token counts costs no more.
        let real = Usage {
            input_tokens: 1_000_000,
            cache_write_tokens: 1_000_000,
            output_tokens: 100_000,
            ..Usage::default()
        };
        assert!(cost(&real, &price) <= worst_case_cost(&worst, &price) + 1e-12);
    }

    #[test]
    fn reserve_settle_release_arithmetic() {
        let r = Reservations::new();
        let charges = [charge("day", 1.0), charge("month", 10.0)];
        let a = r.reserve(&charges, 0.4).unwrap();
        let b = r.reserve(&charges, 0.4).unwrap();
        assert_eq!(r.totals(&key("day")).reserved_usd, 0.8);
        // 0.8 held + 0.4 > 1.0 on "day": refused, and nothing held on "month".
        let err = r.reserve(&charges, 0.4).unwrap_err();
        assert_eq!(err.budget_id, "day");
        assert_eq!(
            (err.spent_usd, err.reserved_usd, err.limit_usd),
            (0.0, 0.8, 1.0)
        );
        assert_eq!(r.totals(&key("month")).reserved_usd, 0.8);

        r.settle(a, 0.1).unwrap();
        r.release(b).unwrap();
        for k in ["day", "month"] {
            let t = r.totals(&key(k));
            assert_eq!((t.spent_usd, t.reserved_usd), (0.1, 0.0));
        }
        assert_eq!(r.settle(a, 0.1), Err(UnknownReservation(a)));
        assert_eq!(r.release(b), Err(UnknownReservation(b)));

        // Exactly up to the limit is allowed; a nano-dollar more is not.
        let c = r.reserve(&charges, 0.9).unwrap();
        assert!(r.reserve(&charges, 0.000_000_001).is_err());
        r.release(c).unwrap();
    }

    #[test]
    fn request_larger_than_the_limit_is_refused_outright() {
        let r = Reservations::new();
        assert!(r.reserve(&[charge("day", 1.0)], 1.01).is_err());
    }

    #[test]
    fn no_budgets_means_nothing_held() {
        let r = Reservations::new();
        let id = r.reserve(&[], 5.0).unwrap();
        r.settle(id, 5.0).unwrap();
    }

    #[test]
    fn duplicate_counter_is_held_once() {
        let r = Reservations::new();
        let id = r
            .reserve(&[charge("day", 1.0), charge("day", 1.0)], 0.5)
            .unwrap();
        assert_eq!(r.totals(&key("day")).reserved_usd, 0.5);
        r.settle(id, 0.5).unwrap();
        assert_eq!(r.totals(&key("day")).spent_usd, 0.5);
    }

    #[test]
    fn seeded_spend_counts_and_old_windows_are_forgotten() {
        let r = Reservations::new();
        r.add_spent(key("day"), 0.95);
        assert!(r.reserve(&[charge("day", 1.0)], 0.1).is_err());
        r.forget_windows_before(Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_secs(1));
        assert_eq!(r.totals(&key("day")), Totals::default());
    }

    #[test]
    fn fifty_threads_against_a_budget_that_fits_ten() {
        let r = Arc::new(Reservations::new());
        let barrier = Arc::new(std::sync::Barrier::new(50));
        let handles: Vec<_> = (0..50)
            .map(|_| {
                let (r, barrier) = (Arc::clone(&r), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    r.reserve(&[charge("day", 0.10)], 0.01).ok()
                })
            })
            .collect();
        let won: Vec<ReservationId> = handles
            .into_iter()
            .filter_map(|h| h.join().unwrap())
            .collect();
        assert_eq!(won.len(), 10);
        assert!((r.totals(&key("day")).reserved_usd - 0.10).abs() < 1e-12);
        for id in won {
            r.settle(id, 0.01).unwrap();
        }
        let t = r.totals(&key("day"));
        assert!((t.spent_usd - 0.10).abs() < 1e-12);
        assert_eq!(t.reserved_usd, 0.0);
        assert!(r.reserve(&[charge("day", 0.10)], 0.01).is_err());
    }
}
