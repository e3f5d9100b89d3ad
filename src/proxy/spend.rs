//! Budgets on the request path: reserve a call's worst case before it is
//! forwarded, settle its real cost when its usage arrives.
//!
//! A *charge* is one budget counter a call counts against: the budget id,
//! the call's key in the budget's scope (the user, the device, the
//! provider, the model, or `*`), and the calendar window it falls in
//! (UTC). Every `[[budgets]]` rule whose provider and model filters match
//! is charged. The reservation is all-or-nothing across charges, so
//! concurrent calls cannot jointly pass a limit (see `budget::reserve`).
//!
//! A model with no price is charged at a conservative default rate
//! ([`UNPRICED_USD_PER_MTOK`]), never for free. Refusals are 429s in the
//! provider's shape, with `Retry-After` at the window's reset and
//! `x-should-retry: false`.

use jiff::Timestamp;

use crate::budget::ledger::{Hold, Ledger, Settlement};
use crate::budget::pricing::{cost, Price, PriceDecision, PriceTable, Unpriced};
use crate::budget::reserve::{worst_case_cost, worst_case_usage, Charge, CounterKey};
use crate::budget::window::window_of;
use crate::config::Identity;
use crate::policy::rules::{BudgetRule, Scope};
use crate::policy::Policy;
use crate::provider::{ApiCall, Usage};

/// Rate for models the price table does not know (USD per million tokens,
/// all token kinds): high on purpose, so an unpriced model is never cheap.
pub const UNPRICED_USD_PER_MTOK: f64 = 75.0;
/// Output tokens assumed when a request sets no `max_tokens`.
pub const DEFAULT_OUTPUT_CAP: u64 = 8192;

/// Prices and the ledger, shared by all requests.
pub struct Budgets {
    /// The persistent ledger.
    pub ledger: Ledger,
    /// The price table.
    pub prices: PriceTable,
}

/// A call's reservation, settled when the call ends.
pub struct Spend {
    hold: Hold,
    price: Price,
    ledger: Ledger,
}

/// Why a call was refused for budget.
#[derive(Debug, Clone)]
pub struct BudgetRefusal {
    /// The budget id.
    pub budget_id: String,
    /// The message for the caller.
    pub message: String,
    /// Seconds until the window resets.
    pub retry_after_secs: u64,
}

impl Budgets {
    /// Reserve `call`'s worst case on every matching budget. `Ok(None)` when
    /// no budget applies.
    pub fn reserve(
        &self,
        policy: &Policy,
        identity: &Identity,
        provider: &str,
        call: &ApiCall,
        now: Timestamp,
    ) -> Result<Option<Spend>, BudgetRefusal> {
        let model = call.model.as_deref().unwrap_or("");
        let rules: Vec<&BudgetRule> = policy
            .budgets
            .iter()
            .filter(|b| applies(b, provider, model))
            .collect();
        if rules.is_empty() || !call.api.generates() {
            return Ok(None);
        }
        let price =
            match self
                .prices
                .decide(provider, model, Unpriced::Default(UNPRICED_USD_PER_MTOK))
            {
                PriceDecision::Listed(listed) => *listed.price,
                PriceDecision::Default(price) => {
                    tracing::warn!(
                        provider,
                        model,
                        "no price for this model: charging the conservative default rate"
                    );
                    price
                }
                PriceDecision::Free => Price::flat(0.0),
                PriceDecision::Block => Price::flat(UNPRICED_USD_PER_MTOK),
            };
        let mut charges = Vec::new();
        let mut resets = Vec::new();
        for rule in &rules {
            // Skipping a budget would let spend through unmetered: refuse.
            let window = window_of(now, rule.window, &jiff::tz::TimeZone::UTC).map_err(|err| {
                BudgetRefusal {
                    budget_id: rule.id.clone(),
                    message: format!(
                        "Outpost cannot place this call in budget `{}`'s window: {err}",
                        rule.id
                    ),
                    retry_after_secs: 60,
                }
            })?;
            resets.push((rule.id.clone(), window.end));
            charges.push(Charge {
                key: CounterKey {
                    budget_id: rule.id.clone(),
                    scope_key: scope_key(rule.per, identity, provider, model),
                    window_start: window.start,
                },
                limit_usd: rule.limit_usd,
            });
        }
        let prompt_bytes: usize = call.texts.iter().map(|t| t.text.len()).sum();
        let worst = worst_case_usage(prompt_bytes, call.max_tokens, DEFAULT_OUTPUT_CAP);
        let amount = worst_case_cost(&worst, &price);
        match self.ledger.reserve(&charges, amount) {
            Ok(hold) => Ok(Some(Spend {
                hold,
                price,
                ledger: self.ledger.clone(),
            })),
            Err(exceeded) => {
                let reset = resets
                    .iter()
                    .find(|(id, _)| *id == exceeded.budget_id)
                    .map(|(_, end)| *end)
                    .unwrap_or(now);
                let retry_after_secs = reset.duration_since(now).as_secs().max(1) as u64;
                Err(BudgetRefusal {
                    message: format!(
                        "Outpost budget `{}` is used up for {}: spent ${:.4} of ${:.2} (this call could cost up to ${:.4}); it resets at {}.",
                        exceeded.budget_id,
                        exceeded.scope_key,
                        exceeded.spent_usd + exceeded.reserved_usd,
                        exceeded.limit_usd,
                        exceeded.requested_usd,
                        reset
                    ),
                    budget_id: exceeded.budget_id,
                    retry_after_secs,
                })
            }
        }
    }
}

impl Spend {
    /// Settle at the real cost of `usage`, or release when there is none and
    /// nothing was generated (the call failed before the provider answered).
    /// Returns the cost charged and whether it is an estimate.
    pub fn settle(
        self,
        usage: Option<Usage>,
        estimate: Option<Usage>,
        request_id: String,
    ) -> Option<(f64, bool)> {
        let (usage, estimated) = match (usage, estimate) {
            (Some(u), _) => (u, false),
            (None, Some(e)) => (e, true),
            (None, None) => {
                self.ledger.release(self.hold);
                return None;
            }
        };
        let usd = cost(&usage, &self.price);
        // The charge is queued now and committed off the request path;
        // dropping the acknowledgement does not cancel it.
        drop(self.ledger.settle(
            self.hold,
            Settlement {
                usd,
                request_id,
                at: Timestamp::now(),
                estimated,
            },
        ));
        Some((usd, estimated))
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
