//! Rate limits and budgets on the request path: admit a call before it is
//! forwarded, charge it when its usage arrives.
//!
//! Admission, in the design's order: rate limits (cheap, in memory), then
//! the price, then the budget reservation.
//! - A *limit* is one `[[rate_limits]]` rule applied to the call's key in
//!   its scope; the call takes one request and its estimated tokens from
//!   every matching limit, all or none (`budget::ratelimit`).
//! - A *charge* is one budget counter the call counts against: the budget
//!   id, the call's key in the budget's scope (the user, the device, the
//!   provider, the model, or `*`), and the calendar window it falls in (in
//!   the budget's time zone). Every `[[budgets]]` rule whose provider and
//!   model filters match is charged; the worst case is reserved on all of
//!   them at once, so concurrent calls cannot jointly pass a limit.
//!
//! A model with no price follows the policy's `unpriced`: refused, let
//! through uncharged (warned), or charged a flat default rate (warned; the
//! default). Refusals are 429s in the provider's shape: budgets with
//! `Retry-After` at the window's reset and `x-should-retry: false`; rate
//! limits with `Retry-After` when enough has refilled, retryable when that
//! is within a minute (SDKs wait that long and then succeed).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use jiff::Timestamp;

use crate::budget::ledger::{
    BudgetLine, Committed, Hold, Ledger, LedgerError, LedgerWriter, Settlement,
};
use crate::budget::pricing::{cost, Price, PriceDecision};
use crate::budget::ratelimit::{Admission, Limit, RateLimiter, Throttled};
use crate::budget::reserve::{
    estimate_prompt_tokens, worst_case_cost, worst_case_usage, Charge, CounterKey,
};
use crate::budget::window::window_of;
use crate::config::Identity;
use crate::policy::rules::{BudgetRule, Scope};
use crate::policy::Policy;
use crate::provider::{Api, ApiCall, ErrorKind, Usage};
use crate::refusal::{Refusal, Source};

/// The longest `Retry-After` SDKs wait for on their own: a rate-limit
/// refusal asking for longer says "do not retry".
pub const SDK_RETRY_WAIT_LIMIT: Duration = Duration::from_secs(60);

/// Unpriced (provider, model) pairs logged once each, at most.
const MAX_WARNED_UNPRICED: usize = 1024;

/// The ledger and the rate limiter, shared by all requests.
///
/// The ledger (SQLite and two threads) is opened only once a policy has
/// budgets: at start-up if it has them then, else by the first call a
/// budget counts after a reload adds them. An agent without budgets never
/// pays for it.
pub struct Budgets {
    state_dir: PathBuf,
    ledger: OnceLock<Ledger>,
    /// Also serializes opening the ledger.
    writer: Mutex<Option<LedgerWriter>>,
    limiter: Arc<RateLimiter>,
    /// (provider, model) pairs already logged as unpriced.
    warned_unpriced: Mutex<HashSet<(String, String)>>,
}

/// What an admitted call holds until it ends: its budget reservation and
/// its rate-limit token estimate.
#[derive(Default)]
pub struct Metered {
    spend: Option<Spend>,
    rate: Option<(Admission, Arc<RateLimiter>)>,
    /// The most the call can use; what it is charged when its usage cannot
    /// be known (an uninspected body, a batch).
    worst: Option<Usage>,
    /// Budgets past their `warn_at`, and an unpriced model: each says why.
    pub warnings: Vec<MeterWarning>,
}

/// A warning to show the caller (response header) and put on record.
#[derive(Debug, Clone, PartialEq)]
pub struct MeterWarning {
    /// The budget id, or `unpriced`.
    pub rule: String,
    /// For people.
    pub message: String,
}

struct Spend {
    hold: Hold,
    price: Price,
    ledger: Ledger,
}

/// What a settled call was charged.
pub struct Charged {
    /// USD.
    pub usd: f64,
    /// From an estimate: the usage never came.
    pub estimated: bool,
    /// Resolves once the charge is in the ledger file.
    pub committed: Committed,
}

impl Budgets {
    /// Budgets with the ledger of `state_dir` (not opened yet); every rate
    /// limit starts full.
    pub fn new(state_dir: PathBuf) -> Budgets {
        Budgets {
            state_dir,
            ledger: OnceLock::new(),
            writer: Mutex::new(None),
            limiter: Arc::new(RateLimiter::new()),
            warned_unpriced: Mutex::new(HashSet::new()),
        }
    }

    /// Open the ledger now if `policy` has budgets (start-up: a ledger
    /// that cannot be opened is a start-up error, not a refused call).
    pub fn prepare(&self, policy: &Policy) -> Result<(), LedgerError> {
        if !policy.spend.budgets.is_empty() {
            self.ledger()?;
        }
        Ok(())
    }

    /// The persistent ledger, opened on first use (blocking I/O, once).
    pub fn ledger(&self) -> Result<&Ledger, LedgerError> {
        if let Some(ledger) = self.ledger.get() {
            return Ok(ledger);
        }
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(ledger) = self.ledger.get() {
            return Ok(ledger);
        }
        let (ledger, opened) = Ledger::open(&self.state_dir, Timestamp::now())?;
        *writer = Some(opened);
        Ok(self.ledger.get_or_init(|| ledger))
    }

    /// Commit what is queued and stop the ledger's threads, if it was
    /// opened. Blocking: from async code, call it in `spawn_blocking`.
    pub fn shutdown(&self) -> Result<(), LedgerError> {
        let writer = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        writer.map_or(Ok(()), LedgerWriter::shutdown)
    }

    /// Admit `call` (whose prompt is `prompt_bytes` long) on every matching
    /// rate limit and budget, or refuse it. Calls that bill tokens count
    /// against both; calls to unknown endpoints against rate limits only.
    /// `now` places it in budget windows; `instant` drives rate limits.
    #[allow(clippy::too_many_arguments)]
    pub fn admit(
        &self,
        policy: &Policy,
        identity: &Identity,
        provider: &str,
        call: &ApiCall,
        prompt_bytes: usize,
        now: Timestamp,
        instant: Instant,
    ) -> Result<Metered, Refusal> {
        let mut metered = Metered::default();
        if !call.api.metered() && call.api != Api::Unknown {
            return Ok(metered);
        }
        let model = call.model.as_deref().unwrap_or("");

        let limits: Vec<Limit> = policy
            .spend
            .rate_limits
            .iter()
            .map(|rule| Limit {
                rule_id: rule.id.clone(),
                scope_key: scope_key(rule.per, identity, provider, model),
                requests: rule.requests,
                tokens: rule.tokens,
                window: rule.window.duration(),
            })
            .collect();
        if !limits.is_empty() {
            let estimate = estimate_prompt_tokens(prompt_bytes) + call.max_tokens.unwrap_or(0);
            let admission = self
                .limiter
                .admit(&limits, estimate, instant)
                .map_err(throttled)?;
            metered.rate = Some((admission, self.limiter.clone()));
        }
        if !call.api.metered() {
            return Ok(metered);
        }

        let rules: Vec<&BudgetRule> = policy
            .spend
            .budgets
            .iter()
            .filter(|b| applies(b, provider, model))
            .collect();
        if rules.is_empty() {
            return Ok(metered);
        }
        let price = match policy
            .spend
            .prices
            .decide(provider, model, policy.spend.unpriced)
        {
            PriceDecision::Listed(listed) => *listed.price,
            PriceDecision::Default(price) => {
                self.warn_unpriced(provider, model, "charging the conservative default rate");
                metered.warnings.push(MeterWarning {
                    rule: "unpriced".into(),
                    message: format!(
                        "no price for model {model:?}: charged at ${}/M tokens",
                        price.input
                    ),
                });
                price
            }
            PriceDecision::Free => {
                self.warn_unpriced(provider, model, "not charged (unpriced = \"allow\")");
                metered.warnings.push(MeterWarning {
                    rule: "unpriced".into(),
                    message: format!("no price for model {model:?}: not charged"),
                });
                Price::flat(0.0)
            }
            PriceDecision::Block => {
                metered.release();
                return Err(Refusal::policy(
                    "unpriced",
                    format!(
                        "Outpost has no price for model {model:?} at {provider}, and policy \
                         (unpriced = \"block\") refuses models it cannot charge to a budget."
                    ),
                ));
            }
        };
        let mut charges = Vec::with_capacity(rules.len());
        let mut windows = Vec::with_capacity(rules.len());
        for rule in &rules {
            // Skipping a budget would let spend through unmetered: refuse.
            let window = match window_of(now, rule.window, &rule.time_zone) {
                Ok(window) => window,
                Err(err) => {
                    metered.release();
                    tracing::error!(budget = %rule.id, "budget window unavailable: {err}");
                    return Err(Refusal::agent(
                        format!(
                            "Outpost on this device cannot place this call in budget `{}`'s \
                             window ({err}), so it refuses the call rather than skip the budget. \
                             This is a fault in the agent, not in the request or the provider.",
                            rule.id
                        ),
                        None,
                    ));
                }
            };
            windows.push(window);
            charges.push(Charge {
                key: CounterKey {
                    budget_id: rule.id.clone(),
                    scope_key: scope_key(rule.per, identity, provider, model),
                    window_start: window.start,
                },
                limit_usd: rule.limit_usd,
            });
        }
        let worst = worst_case_usage(
            prompt_bytes,
            call.max_tokens,
            policy.spend.default_output_tokens,
        );
        let amount = worst_case_cost(&worst, &price);
        let ledger = match self.ledger() {
            Ok(ledger) => ledger,
            Err(err) => {
                metered.release();
                tracing::error!("budget ledger unavailable: {err}");
                return Err(Refusal::agent(
                    format!(
                        "Outpost on this device cannot record spend for budget `{}` (its budget \
                         ledger is unavailable: {err}), so it refuses the call rather than skip \
                         the budget. This is a fault in the agent, not in the request or the \
                         provider: see `outpost doctor`.",
                        rules[0].id
                    ),
                    None,
                ));
            }
        };
        let hold = match ledger.reserve(&charges, amount) {
            Ok(hold) => hold,
            Err(exceeded) => {
                metered.release();
                let reset = rules
                    .iter()
                    .zip(&windows)
                    .find(|(rule, _)| rule.id == exceeded.budget_id)
                    .map_or(now, |(_, window)| window.end);
                let wait = reset.duration_since(now).as_secs().max(1) as u64;
                return Err(Refusal {
                    source: Source::Budget,
                    message: format!(
                        "Outpost budget `{}` is used up for {}: spent ${:.4} of ${:.2} (this call \
                         could cost up to ${:.4}); it resets at {}.",
                        exceeded.budget_id,
                        exceeded.scope_key,
                        exceeded.spent_usd + exceeded.reserved_usd,
                        exceeded.limit_usd,
                        exceeded.requested_usd,
                        reset
                    ),
                    rule: Some(exceeded.budget_id),
                    kind: ErrorKind::BudgetExhausted,
                    retry_after_secs: Some(wait),
                    retry: false,
                });
            }
        };
        let totals = ledger.reservations();
        for (rule, charge) in rules.iter().zip(&charges) {
            let Some(warn_at) = rule.warn_at else {
                continue;
            };
            let spent = totals.totals(&charge.key).spent_usd;
            if spent >= warn_at * rule.limit_usd {
                metered.warnings.push(MeterWarning {
                    rule: rule.id.clone(),
                    message: format!(
                        "budget {} for {}: ${spent:.2} of ${:.2} spent ({:.0}%)",
                        rule.id,
                        charge.key.scope_key,
                        rule.limit_usd,
                        100.0 * spent / rule.limit_usd
                    ),
                });
            }
        }
        metered.worst = Some(worst);
        metered.spend = Some(Spend {
            hold,
            price,
            ledger: ledger.clone(),
        });
        Ok(metered)
    }

    /// `outpost budget show` from the running agent: every budget's lines
    /// with spent and reserved (see [`show_lines`]).
    pub fn show(
        &self,
        policy: &Policy,
        identity: &Identity,
        now: Timestamp,
    ) -> Result<Vec<serde_json::Value>, LedgerError> {
        let snapshot = if policy.spend.budgets.is_empty() {
            Vec::new()
        } else {
            self.ledger()?.snapshot(now, &policy.spend.budgets)?
        };
        Ok(show_lines(snapshot, &policy.spend.budgets, identity, now))
    }

    /// Zero budget `id` (`outpost budget reset`). Blocking: a commit, and
    /// the ledger's opening if it was not open yet.
    pub fn reset(&self, id: &str, now: Timestamp) -> Result<(), LedgerError> {
        self.ledger()?.reset(id, now)
    }

    fn warn_unpriced(&self, provider: &str, model: &str, what: &str) {
        let mut warned = self
            .warned_unpriced
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Model names come from clients: remember a bounded number.
        let first = warned.len() < MAX_WARNED_UNPRICED
            && warned.insert((provider.to_string(), model.to_string()));
        drop(warned);
        if first {
            tracing::warn!(provider, model, "no price for this model: {what}");
        }
    }
}

impl Metered {
    /// True when a budget holds a reservation for this call.
    pub fn has_budget(&self) -> bool {
        self.spend.is_some()
    }

    /// The most the call can use (set when a budget holds a reservation).
    pub fn worst_case(&self) -> Option<Usage> {
        self.worst
    }

    /// Charge the call: its real `usage`, else `estimate` (the provider
    /// answered but the usage never came), else nothing (it failed before
    /// the provider answered: the reservation is released and the token
    /// estimate refunded). The request itself stays counted by rate limits.
    pub fn settle(
        mut self,
        usage: Option<Usage>,
        estimate: Option<Usage>,
        request_id: String,
    ) -> Option<Charged> {
        let (used, estimated) = match (usage, estimate) {
            (Some(u), _) => (Some(u), false),
            (None, Some(e)) => (Some(e), true),
            (None, None) => (None, false),
        };
        if let Some((admission, limiter)) = self.rate.take() {
            limiter.settle(admission, used.map_or(0, |u| u.total_tokens()));
        }
        let spend = self.spend.take()?;
        let Some(used) = used else {
            spend.ledger.release(spend.hold);
            return None;
        };
        let usd = cost(&used, &spend.price);
        let committed = spend.ledger.settle(
            spend.hold,
            Settlement {
                usd,
                request_id,
                at: Timestamp::now(),
                estimated,
            },
        );
        Some(Charged {
            usd,
            estimated,
            committed,
        })
    }

    fn release(&mut self) {
        if let Some((admission, limiter)) = self.rate.take() {
            limiter.settle(admission, 0);
        }
        if let Some(spend) = self.spend.take() {
            spend.ledger.release(spend.hold);
        }
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        // Not settled (refused after admission, or the trail was dropped
        // without a record): nothing was used.
        self.release();
    }
}

/// The budget `id` of `budgets`, or a message naming the ids there are.
pub fn find_budget<'a>(budgets: &'a [BudgetRule], id: &str) -> Result<&'a BudgetRule, String> {
    budgets.iter().find(|b| b.id == id).ok_or_else(|| {
        let known: Vec<&str> = budgets.iter().map(|b| b.id.as_str()).collect();
        format!("no budget `{id}` in policy (budgets: {})", known.join(", "))
    })
}

/// The rows of `outpost budget show`, as JSON: one per budget and scope
/// key with charges in the current window, and for a budget with none, one
/// zero row for this agent's own key (`-` for provider and model scopes).
pub fn show_lines(
    snapshot: Vec<BudgetLine>,
    budgets: &[BudgetRule],
    identity: &Identity,
    now: Timestamp,
) -> Vec<serde_json::Value> {
    let mut rows = Vec::new();
    for rule in budgets {
        let mut lines: Vec<BudgetLine> = snapshot
            .iter()
            .filter(|l| l.budget_id == rule.id)
            .cloned()
            .collect();
        if lines.is_empty() {
            let Ok(window) = window_of(now, rule.window, &rule.time_zone) else {
                continue;
            };
            let scope_key = match rule.per {
                Scope::Provider | Scope::Model => "-".to_string(),
                per => scope_key(per, identity, "", ""),
            };
            lines.push(BudgetLine {
                budget_id: rule.id.clone(),
                scope_key,
                spent_usd: 0.0,
                reserved_usd: 0.0,
                limit_usd: rule.limit_usd,
                window_start: window.start,
                window_end: window.end,
            });
        }
        for line in lines {
            rows.push(serde_json::json!({
                "budget": line.budget_id,
                "per": rule.per.name(),
                "scope_key": line.scope_key,
                "spent_usd": line.spent_usd,
                "reserved_usd": line.reserved_usd,
                "limit_usd": line.limit_usd,
                "window": rule.window.name(),
                "time_zone": rule.time_zone.iana_name().unwrap_or("UTC"),
                "window_start": line.window_start.to_string(),
                "resets_at": line.window_end.to_string(),
            }));
        }
    }
    rows
}

fn throttled(t: Throttled) -> Refusal {
    let window = match t.window.as_secs() {
        1 => "second".to_string(),
        60 => "minute".to_string(),
        3600 => "hour".to_string(),
        86_400 => "day".to_string(),
        n => format!("{n} s"),
    };
    let what = t.metric.name();
    if t.never {
        return Refusal {
            source: Source::Budget,
            message: format!(
                "Outpost rate limit `{}` allows {} {what} per {window} for {}; this call alone \
                 needs more. Send a smaller request or lower max_tokens.",
                t.rule_id, t.limit, t.scope_key
            ),
            rule: Some(t.rule_id),
            kind: ErrorKind::RateLimited,
            retry_after_secs: None,
            retry: false,
        };
    }
    let wait = t.retry_after.as_secs_f64().ceil().max(1.0) as u64;
    Refusal {
        source: Source::Budget,
        message: format!(
            "Outpost rate limit `{}` reached for {}: {} {what} per {window}; retry in {wait} s.",
            t.rule_id, t.scope_key, t.limit
        ),
        rule: Some(t.rule_id),
        kind: ErrorKind::RateLimited,
        retry_after_secs: Some(wait),
        retry: Duration::from_secs(wait) <= SDK_RETRY_WAIT_LIMIT,
    }
}

fn applies(rule: &BudgetRule, provider: &str, model: &str) -> bool {
    rule.providers
        .as_ref()
        .is_none_or(|ps| ps.iter().any(|p| p == provider))
        && rule
            .models
            .as_ref()
            .is_none_or(|ms| ms.iter().any(|g| g.matches(model)))
}

fn scope_key(per: Scope, identity: &Identity, provider: &str, model: &str) -> String {
    match per {
        Scope::User => identity.user.clone(),
        Scope::Device => identity.device.clone(),
        Scope::Provider => provider.to_string(),
        Scope::Model => model.to_string(),
        Scope::All => "*".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::load::{load_layers, Layer};

    fn policy(text: &str) -> Policy {
        load_layers(&[Layer {
            path: "t.toml".into(),
            text: text.into(),
        }])
        .expect("valid policy")
    }

    fn chat(model: &str, max_tokens: Option<u64>) -> ApiCall {
        let mut body = serde_json::json!({"model": model,
            "messages": [{"role": "user", "content": "hello"}]});
        if let Some(n) = max_tokens {
            body["max_tokens"] = n.into();
        }
        crate::provider::parse_request(
            crate::provider::Provider::OpenAi,
            "POST",
            "/v1/chat/completions",
            body.to_string().as_bytes(),
        )
        .expect("parses")
    }

    fn identity() -> Identity {
        Identity {
            user: "alice".into(),
            device: "laptop".into(),
        }
    }

    #[test]
    fn a_budget_in_a_time_zone_resets_at_its_local_midnight() {
        let dir = tempfile::tempdir().unwrap();
        let now: Timestamp = "2026-03-10T12:00:00Z".parse().unwrap();
        let budgets = Budgets::new(dir.path().to_path_buf());
        let policy = policy(
            "[[budgets]]\nid = \"ny\"\nper = \"model\"\nlimit_usd = 0.001\nwindow = \"day\"\n\
             time_zone = \"America/New_York\"\n",
        );
        let refused = budgets
            .admit(
                &policy,
                &identity(),
                "openai",
                &chat("gpt-4o", Some(1000)),
                5,
                now,
                Instant::now(),
            )
            .err()
            .expect("$0.01 of output does not fit $0.001");
        assert_eq!(refused.rule.as_deref(), Some("ny"));
        assert_eq!(refused.kind, ErrorKind::BudgetExhausted);
        assert!(!refused.retry);
        // New York is UTC-4 after the 8 March DST change: its day ends at 04:00Z.
        assert_eq!(refused.retry_after_secs, Some(16 * 3600));
        assert!(
            refused.message.contains("for gpt-4o"),
            "{}",
            refused.message
        );
        assert!(
            refused.message.contains("2026-03-11T04:00:00Z"),
            "{}",
            refused.message
        );
    }

    #[test]
    fn a_refused_budget_refunds_the_rate_limit_tokens_it_took() {
        let dir = tempfile::tempdir().unwrap();
        let now = Timestamp::now();
        let budgets = Budgets::new(dir.path().to_path_buf());
        let policy = policy(
            "[[rate_limits]]\nid = \"tpm\"\nper = \"user\"\ntokens = 2000\nwindow = \"minute\"\n\
             [[budgets]]\nid = \"tiny\"\nper = \"user\"\nlimit_usd = 0.000001\nwindow = \"day\"\n",
        );
        let at = Instant::now();
        for _ in 0..3 {
            // 35 prompt + 1000 output tokens each: without the refund the
            // second attempt would already find the bucket short.
            let refused = budgets
                .admit(
                    &policy,
                    &identity(),
                    "openai",
                    &chat("gpt-4o", Some(1000)),
                    5,
                    now,
                    at,
                )
                .err()
                .expect("refused");
            assert_eq!(refused.rule.as_deref(), Some("tiny"));
        }
    }

    #[test]
    fn calls_that_bill_no_tokens_are_not_metered() {
        let dir = tempfile::tempdir().unwrap();
        let budgets = Budgets::new(dir.path().to_path_buf());
        let policy = policy(
            "[[rate_limits]]\nid = \"rpm\"\nper = \"all\"\nrequests = 1\nwindow = \"minute\"\n",
        );
        let list = crate::provider::parse_request(
            crate::provider::Provider::OpenAi,
            "GET",
            "/v1/models",
            b"",
        )
        .expect("parses");
        for _ in 0..3 {
            let metered = budgets
                .admit(
                    &policy,
                    &identity(),
                    "openai",
                    &list,
                    0,
                    Timestamp::now(),
                    Instant::now(),
                )
                .expect("not limited");
            assert!(!metered.has_budget());
        }
    }

    #[test]
    fn a_call_without_max_tokens_reserves_the_configured_default() {
        let dir = tempfile::tempdir().unwrap();
        let budgets = Budgets::new(dir.path().to_path_buf());
        let budget =
            "[[budgets]]\nid = \"b\"\nper = \"all\"\nlimit_usd = 0.002\nwindow = \"day\"\n";
        let call = chat("gpt-4o", None);
        let admit = |policy: &Policy| {
            budgets.admit(
                policy,
                &identity(),
                "openai",
                &call,
                5,
                Timestamp::now(),
                Instant::now(),
            )
        };
        // 8192 output tokens at $10/M do not fit $0.002…
        assert!(admit(&policy(budget)).is_err());
        // …100 do: 35 prompt tokens at $2.50/M + 100 at $10/M = $0.0010875.
        let small = policy(&format!("default_output_tokens = 100\n{budget}"));
        assert_eq!(small.spend.default_output_tokens, 100);
        assert!(admit(&small).is_ok());
    }
}
