//! Rate limits and budgets on the request path: admit a call before it is
//! forwarded, charge it when its usage arrives.
//!
//! Admission, in the design's order: rate limits (cheap, in memory), then
//! the price, then the budget reservation. What a call meets (its limits,
//! its budget counters, its price and worst case) is planned from the
//! policy alone in [`crate::budget::admission`]; this module takes the plan
//! to the rate limiter and the ledger, and turns what they say into
//! refusals:
//! - a rate limit takes one request and the estimated tokens from every
//!   matching limit, all or none (`budget::ratelimit`);
//! - the worst case is reserved on every matching budget counter at once,
//!   so concurrent calls cannot jointly pass a limit.
//!
//! A model with no price follows the policy's `unpriced`: refused, let
//! through uncharged (warned), or charged a flat default rate (warned; the
//! default). Refusals are 429s in the provider's shape: budgets with
//! `Retry-After` at the window's reset and `x-should-retry: false`; rate
//! limits with `Retry-After` when enough has refilled, retryable when that
//! is within a minute (SDKs wait that long and then succeed). A budget the
//! agent cannot keep (no ledger, no window) is a 503 naming the agent.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use jiff::Timestamp;

pub use crate::budget::admission::MeterWarning;
use crate::budget::admission::{plan_budgets, rate_limits, BudgetPlan, Demand, PlanError, Subject};
use crate::budget::ledger::{
    BudgetLine, Committed, Hold, Ledger, LedgerError, LedgerWriter, Settlement,
};
use crate::budget::pricing::{cost, Price};
use crate::budget::ratelimit::{Admission, RateLimiter, Throttled};
use crate::budget::reserve::Exceeded;
use crate::budget::window::window_of;
use crate::budget::{BudgetRule, Scope, SpendPolicy};
use crate::config::Identity;
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

    /// Open the ledger if `policy` has budgets and it is not open yet. A
    /// reload opens it before the policy goes in force
    /// ([`crate::policy::watch::PolicyHandle::on_replace`]), so this opens
    /// it on a call's worker only when that open failed; on a work-stealing
    /// runtime the worker says it blocks (tokio's `block_in_place`).
    pub fn ready(&self, policy: &Policy) {
        if policy.spend.budgets.is_empty() || self.ledger.get().is_some() {
            return;
        }
        let open = || {
            if let Err(err) = self.ledger() {
                tracing::error!("budget ledger unavailable: {err}");
            }
        };
        let flavor = tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor());
        match flavor {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(open),
            _ => open(),
        }
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
    /// Whatever was taken before a refusal is given back (`Metered`'s drop).
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
        let subject = Subject {
            user: &identity.user,
            device: &identity.device,
            provider,
            model: call.model.as_deref().unwrap_or(""),
        };
        let demand = Demand {
            prompt_bytes,
            max_tokens: call.max_tokens,
        };
        metered.rate = self.take_rate(&policy.spend, &subject, demand, instant)?;
        if !call.api.metered() {
            return Ok(metered);
        }
        let plan = match plan_budgets(&policy.spend, &subject, demand, now) {
            Ok(Some(plan)) => plan,
            Ok(None) => return Ok(metered),
            Err(err) => return Err(unplanned(err, &subject)),
        };
        if let Some(warning) = &plan.unpriced {
            self.warn_unpriced(&subject, &warning.message);
            metered.warnings.push(warning.clone());
        }
        let (spend, warnings) = self.reserve(&plan, now)?;
        metered.warnings.extend(warnings);
        metered.worst = Some(plan.worst);
        metered.spend = Some(spend);
        Ok(metered)
    }

    /// One request and the estimated tokens from every matching rate limit,
    /// all or none.
    fn take_rate(
        &self,
        spend: &SpendPolicy,
        subject: &Subject<'_>,
        demand: Demand,
        instant: Instant,
    ) -> Result<Option<(Admission, Arc<RateLimiter>)>, Refusal> {
        let limits = rate_limits(spend, subject);
        if limits.is_empty() {
            return Ok(None);
        }
        let admission = self
            .limiter
            .admit(&limits, demand.tokens(), instant)
            .map_err(throttled)?;
        Ok(Some((admission, self.limiter.clone())))
    }

    /// The plan's worst case held on all its budget counters at once, and
    /// the warnings of budgets past their `warn_at`.
    fn reserve(
        &self,
        plan: &BudgetPlan<'_>,
        now: Timestamp,
    ) -> Result<(Spend, Vec<MeterWarning>), Refusal> {
        let ledger = self.ledger().map_err(|err| {
            tracing::error!("budget ledger unavailable: {err}");
            Refusal::agent(
                format!(
                    "Outpost on this device cannot record spend for budget `{}` (its budget \
                     ledger is unavailable: {err}), so it refuses the call rather than skip \
                     the budget. This is a fault in the agent, not in the request or the \
                     provider: see `outpost doctor`.",
                    plan.first_budget()
                ),
                None,
            )
        })?;
        let hold = ledger
            .reserve(&plan.charges, plan.amount_usd)
            .map_err(|exceeded| {
                let reset = plan.resets_at(&exceeded.budget_id, now);
                used_up(exceeded, reset, now)
            })?;
        let warnings = plan.warnings(&ledger.reservations());
        let spend = Spend {
            hold,
            price: plan.price,
            ledger: ledger.clone(),
        };
        Ok((spend, warnings))
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

    /// Log an unpriced model once (per provider and model, up to a bound).
    fn warn_unpriced(&self, subject: &Subject<'_>, what: &str) {
        let (provider, model) = (subject.provider, subject.model);
        let mut warned = self
            .warned_unpriced
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Model names come from clients: remember a bounded number.
        let first = warned.len() < MAX_WARNED_UNPRICED
            && warned.insert((provider.to_string(), model.to_string()));
        drop(warned);
        if first {
            tracing::warn!(provider, model, "{what}");
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
                per => Subject {
                    user: &identity.user,
                    device: &identity.device,
                    provider: "",
                    model: "",
                }
                .key(per),
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

/// The refusal for a call that cannot be planned against its budgets.
fn unplanned(err: PlanError, subject: &Subject<'_>) -> Refusal {
    let (provider, model) = (subject.provider, subject.model);
    match err {
        PlanError::Unpriced => Refusal::policy(
            "unpriced",
            format!(
                "Outpost has no price for model {model:?} at {provider}, and policy \
                 (unpriced = \"block\") refuses models it cannot charge to a budget."
            ),
        ),
        PlanError::Window { budget, reason } => {
            tracing::error!(budget = %budget, "budget window unavailable: {reason}");
            Refusal::agent(
                format!(
                    "Outpost on this device cannot place this call in budget `{budget}`'s \
                     window ({reason}), so it refuses the call rather than skip the budget. \
                     This is a fault in the agent, not in the request or the provider."
                ),
                None,
            )
        }
    }
}

/// The refusal for a budget the call does not fit; it resets at `reset`.
fn used_up(exceeded: Exceeded, reset: Timestamp, now: Timestamp) -> Refusal {
    let wait = reset.duration_since(now).as_secs().max(1) as u64;
    Refusal {
        source: Source::Budget,
        message: format!(
            "Outpost budget `{}` is used up for {}: spent ${:.4} of ${:.2} (this call could \
             cost up to ${:.4}); it resets at {reset}.",
            exceeded.budget_id,
            exceeded.scope_key,
            exceeded.spent_usd + exceeded.reserved_usd,
            exceeded.limit_usd,
            exceeded.requested_usd,
        ),
        rule: Some(exceeded.budget_id),
        kind: ErrorKind::BudgetExhausted,
        retry_after_secs: Some(wait),
        retry: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::load::{load_layers, Layer};

    fn policy(text: &str) -> Policy {
        load_layers(&[Layer::local("t.toml", text)]).expect("valid policy")
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
