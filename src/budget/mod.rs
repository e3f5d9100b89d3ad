//! Budgets: what calls cost and how much of a budget they may use.
//!
//! - [`pricing`]: the price table and usage → USD.
//! - [`window`]: the calendar hour/day/week/month a budget counts in.
//! - [`reserve`]: a request's worst-case cost and the in-memory ledger that
//!   holds it against every matching budget until the real cost is known.
//! - [`ratelimit`]: token buckets for `[[rate_limits]]`.
//! - [`rules`]: the validated `[[budgets]]`, `[[rate_limits]]` and pricing
//!   settings ([`SpendPolicy`]), which `policy` builds and holds.
//! - [`admission`]: the plan for one call: its rate limits, budget
//!   counters, price and worst case.
//!
//! These six are pure (no I/O, no clock, no async); [`ledger`] persists
//! charges, and the proxy pipeline builds on all of them.

pub mod admission;
pub mod journal;
pub mod ledger;
pub mod pricing;
pub mod ratelimit;
pub mod reserve;
pub mod rules;
pub mod window;

pub use ledger::{BudgetLine, Committed, Hold, Ledger, LedgerError, LedgerWriter, Settlement};
pub use pricing::{cost, Price, PriceDecision, PriceTable, Unpriced};
pub use reserve::{Charge, CounterKey, Exceeded, ReservationId, Reservations};
pub use rules::{BudgetRule, BudgetWindow, RateLimitRule, RateWindow, Scope, SpendPolicy};
pub use window::{reset_at, window_of, Window};
