//! The validated spending rules: `[[budgets]]`, `[[rate_limits]]`, and how a
//! call is priced (`[[prices]]`, `unpriced`, `default_output_tokens`).
//!
//! Words:
//! - *scope*: who or what a rule counts for ([`Scope`]); a call's *scope
//!   key* is its user, device, provider, model, or `*` for all.
//! - *budget*: a USD limit per calendar window ([`BudgetRule`]).
//! - *rate limit*: a request and/or token allowance per fixed-length
//!   window ([`RateLimitRule`]).
//!
//! `policy::load` builds these from policy files and holds them in the
//! policy as one [`SpendPolicy`]; the rest of `budget` reads them. They live
//! here, not in `policy`, so that `budget` depends on nothing in `policy`.
//! Pure: plain data.

use std::sync::Arc;

use jiff::tz::TimeZone;

use super::pricing::{PriceTable, Unpriced};
use crate::glob::Glob;

/// Default for `default_output_tokens`.
pub const DEFAULT_OUTPUT_TOKENS: u64 = 8192;

/// Everything about what calls may spend, as one part of the policy.
#[derive(Debug, Clone)]
pub struct SpendPolicy {
    /// Spending limits.
    pub budgets: Vec<BudgetRule>,
    /// Rate limits.
    pub rate_limits: Vec<RateLimitRule>,
    /// The shipped price table with every `[[prices]]` override on top.
    pub prices: Arc<PriceTable>,
    /// What a model without a price costs.
    pub unpriced: Unpriced,
    /// Output tokens reserved for a call that sets no `max_tokens`.
    pub default_output_tokens: u64,
}

/// Who a budget or rate limit is counted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Per user.
    User,
    /// Per device.
    Device,
    /// Per provider.
    Provider,
    /// Per model.
    Model,
    /// One counter for everything.
    All,
}

impl Scope {
    /// Parse a policy value.
    pub fn parse(s: &str) -> Option<Scope> {
        Some(match s {
            "user" => Scope::User,
            "device" => Scope::Device,
            "provider" => Scope::Provider,
            "model" => Scope::Model,
            "all" => Scope::All,
            _ => return None,
        })
    }

    /// The policy value.
    pub fn name(self) -> &'static str {
        match self {
            Scope::User => "user",
            Scope::Device => "device",
            Scope::Provider => "provider",
            Scope::Model => "model",
            Scope::All => "all",
        }
    }
}

/// Calendar windows for budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetWindow {
    /// Clock hour.
    Hour,
    /// Calendar day.
    Day,
    /// ISO week (Monday start).
    Week,
    /// Calendar month.
    Month,
}

impl BudgetWindow {
    /// The policy value.
    pub fn name(self) -> &'static str {
        match self {
            BudgetWindow::Hour => "hour",
            BudgetWindow::Day => "day",
            BudgetWindow::Week => "week",
            BudgetWindow::Month => "month",
        }
    }
}

/// One `[[budgets]]` rule.
#[derive(Debug, Clone)]
pub struct BudgetRule {
    /// Unique id.
    pub id: String,
    /// Counted per.
    pub per: Scope,
    /// Limit in USD per window.
    pub limit_usd: f64,
    /// Window.
    pub window: BudgetWindow,
    /// Warning fraction.
    pub warn_at: Option<f64>,
    /// Only these providers (None = all).
    pub providers: Option<Vec<String>>,
    /// Only models matching these globs (None = all).
    pub models: Option<Vec<Glob>>,
    /// The zone whose calendar the window follows.
    pub time_zone: TimeZone,
}

/// Windows for rate limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateWindow {
    /// One second.
    Second,
    /// One minute.
    Minute,
    /// One hour.
    Hour,
    /// One day.
    Day,
}

impl RateWindow {
    /// Its length.
    pub fn duration(self) -> std::time::Duration {
        std::time::Duration::from_secs(match self {
            RateWindow::Second => 1,
            RateWindow::Minute => 60,
            RateWindow::Hour => 3600,
            RateWindow::Day => 86_400,
        })
    }
}

/// One `[[rate_limits]]` rule.
#[derive(Debug, Clone)]
pub struct RateLimitRule {
    /// Unique id.
    pub id: String,
    /// Counted per.
    pub per: Scope,
    /// Requests per window.
    pub requests: Option<u64>,
    /// Tokens per window.
    pub tokens: Option<u64>,
    /// Window.
    pub window: RateWindow,
}
