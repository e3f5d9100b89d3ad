//! Admission planning: which rate limits and budget counters a call meets,
//! at what price, and the most it may cost, decided from the spending rules
//! alone. `proxy::spend` takes the plan to the rate limiter and the ledger.
//!
//! Words:
//! - the *subject* of a call is who sends it and what it asks for (user,
//!   device, provider, model): each rule's scope picks one of these as the
//!   counter's key;
//! - a *limit* is one `[[rate_limits]]` rule applied to the subject;
//! - a *charge* is one budget counter: the budget, the subject's key in its
//!   scope, and the calendar window `now` falls in (in the budget's zone).
//!
//! Pure: no clock (the caller passes `now`), no I/O.

use jiff::Timestamp;

use super::pricing::{Price, PriceDecision};
use super::ratelimit::Limit;
use super::reserve::{
    estimate_prompt_tokens, worst_case_cost, worst_case_usage, Charge, CounterKey, Reservations,
};
use super::rules::{BudgetRule, Scope, SpendPolicy};
use super::window::{window_of, Window};
use crate::provider::Usage;

/// Who sends a call and what it asks for, as rule scopes see it.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The user's name.
    pub user: &'a str,
    /// The device's name.
    pub device: &'a str,
    /// The provider's name in the provider table.
    pub provider: &'a str,
    /// The model the call names (`""` when it names none).
    pub model: &'a str,
}

impl Subject<'_> {
    /// The counter key for a rule counted `per` this scope.
    pub fn key(&self, per: Scope) -> String {
        match per {
            Scope::User => self.user,
            Scope::Device => self.device,
            Scope::Provider => self.provider,
            Scope::Model => self.model,
            Scope::All => "*",
        }
        .to_string()
    }
}

/// How much a call may use, as far as it can be known before it is sent.
#[derive(Debug, Clone, Copy)]
pub struct Demand {
    /// Bytes of prompt text (or of the whole body, when it was not read).
    pub prompt_bytes: usize,
    /// The call's output cap, if it sets one.
    pub max_tokens: Option<u64>,
}

impl Demand {
    /// The tokens a rate limit takes up front: the estimated prompt and
    /// the output cap (refunded to the real count when the call settles).
    pub fn tokens(&self) -> u64 {
        estimate_prompt_tokens(self.prompt_bytes) + self.max_tokens.unwrap_or(0)
    }
}

/// A warning to show the caller (response header) and put on record.
#[derive(Debug, Clone, PartialEq)]
pub struct MeterWarning {
    /// The budget id, or `unpriced`.
    pub rule: String,
    /// For people.
    pub message: String,
}

/// Why a call cannot be planned against its budgets.
#[derive(Debug, Clone, PartialEq)]
pub enum PlanError {
    /// The model has no price and policy (`unpriced = "block"`) refuses
    /// models it cannot charge.
    Unpriced,
    /// A budget's window could not be computed (a zone database fault):
    /// skipping the budget would let spend through unmetered.
    Window {
        /// The budget id.
        budget: String,
        /// What went wrong.
        reason: String,
    },
}

/// Every `[[rate_limits]]` rule, applied to `subject`.
pub fn rate_limits(spend: &SpendPolicy, subject: &Subject<'_>) -> Vec<Limit> {
    spend
        .rate_limits
        .iter()
        .map(|rule| Limit {
            rule_id: rule.id.clone(),
            scope_key: subject.key(rule.per),
            requests: rule.requests,
            tokens: rule.tokens,
            window: rule.window.duration(),
        })
        .collect()
}

/// What a call holds against its budgets: every matching budget's counter,
/// the price, and the worst case reserved on all of them at once.
#[derive(Debug)]
pub struct BudgetPlan<'p> {
    /// The budgets that match, in policy order (one per charge).
    rules: Vec<&'p BudgetRule>,
    /// Their windows, in the same order.
    windows: Vec<Window>,
    /// The counters to reserve on.
    pub charges: Vec<Charge>,
    /// What the call's usage will cost.
    pub price: Price,
    /// Set when the model has no listed price (what was done instead).
    pub unpriced: Option<MeterWarning>,
    /// The most the call can use.
    pub worst: Usage,
    /// What `worst` costs: the amount reserved.
    pub amount_usd: f64,
}

/// The budget plan for a call by `subject` at `now`: `None` when no budget
/// matches its provider and model.
pub fn plan_budgets<'p>(
    spend: &'p SpendPolicy,
    subject: &Subject<'_>,
    demand: Demand,
    now: Timestamp,
) -> Result<Option<BudgetPlan<'p>>, PlanError> {
    let rules: Vec<&BudgetRule> = spend
        .budgets
        .iter()
        .filter(|b| applies(b, subject.provider, subject.model))
        .collect();
    if rules.is_empty() {
        return Ok(None);
    }
    let (price, unpriced) = price(spend, subject)?;
    let windows = rules
        .iter()
        .map(|rule| {
            window_of(now, rule.window, &rule.time_zone).map_err(|err| PlanError::Window {
                budget: rule.id.clone(),
                reason: err.to_string(),
            })
        })
        .collect::<Result<Vec<Window>, PlanError>>()?;
    let charges = rules
        .iter()
        .zip(&windows)
        .map(|(rule, window)| Charge {
            key: CounterKey {
                budget_id: rule.id.clone(),
                scope_key: subject.key(rule.per),
                window_start: window.start,
            },
            limit_usd: rule.limit_usd,
        })
        .collect();
    let worst = worst_case_usage(
        demand.prompt_bytes,
        demand.max_tokens,
        spend.default_output_tokens,
    );
    Ok(Some(BudgetPlan {
        amount_usd: worst_case_cost(&worst, &price),
        rules,
        windows,
        charges,
        price,
        unpriced,
        worst,
    }))
}

impl BudgetPlan<'_> {
    /// The first matching budget's id (to name in an error about them all).
    pub fn first_budget(&self) -> &str {
        &self.rules[0].id
    }

    /// When budget `id`'s current window ends (`now` if it is not planned).
    pub fn resets_at(&self, id: &str, now: Timestamp) -> Timestamp {
        self.rules
            .iter()
            .zip(&self.windows)
            .find(|(rule, _)| rule.id == id)
            .map_or(now, |(_, window)| window.end)
    }

    /// A warning for each budget whose counter, in `totals`, has spent its
    /// `warn_at` share or more.
    pub fn warnings(&self, totals: &Reservations) -> Vec<MeterWarning> {
        let mut warnings = Vec::new();
        for (rule, charge) in self.rules.iter().zip(&self.charges) {
            let Some(warn_at) = rule.warn_at else {
                continue;
            };
            let spent = totals.totals(&charge.key).spent_usd;
            if spent >= warn_at * rule.limit_usd {
                warnings.push(MeterWarning {
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
        warnings
    }
}

/// The price of the subject's model, and a warning when it is not listed.
fn price(
    spend: &SpendPolicy,
    subject: &Subject<'_>,
) -> Result<(Price, Option<MeterWarning>), PlanError> {
    let model = subject.model;
    let unpriced = |message: String| {
        Some(MeterWarning {
            rule: "unpriced".into(),
            message,
        })
    };
    Ok(
        match spend.prices.decide(subject.provider, model, spend.unpriced) {
            PriceDecision::Listed(listed) => (*listed.price, None),
            PriceDecision::Default(price) => (
                price,
                unpriced(format!(
                    "no price for model {model:?}: charged at ${}/M tokens",
                    price.input
                )),
            ),
            PriceDecision::Free => (
                Price::flat(0.0),
                unpriced(format!("no price for model {model:?}: not charged")),
            ),
            PriceDecision::Block => return Err(PlanError::Unpriced),
        },
    )
}

/// Whether `rule`'s provider and model filters match.
fn applies(rule: &BudgetRule, provider: &str, model: &str) -> bool {
    rule.providers
        .as_ref()
        .is_none_or(|ps| ps.iter().any(|p| p == provider))
        && rule
            .models
            .as_ref()
            .is_none_or(|ms| ms.iter().any(|g| g.matches(model)))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use jiff::tz::TimeZone;

    use super::*;
    use crate::budget::pricing::{PriceTable, Unpriced};
    use crate::budget::rules::{BudgetWindow, RateLimitRule, RateWindow};
    use crate::glob::Glob;

    const ALICE: Subject<'static> = Subject {
        user: "alice",
        device: "laptop",
        provider: "openai",
        model: "gpt-4o",
    };

    fn budget(id: &str, per: Scope, models: Option<&str>) -> BudgetRule {
        BudgetRule {
            id: id.into(),
            per,
            limit_usd: 10.0,
            window: BudgetWindow::Day,
            warn_at: Some(0.5),
            providers: None,
            models: models.map(|m| vec![Glob::new(m)]),
            time_zone: TimeZone::UTC,
        }
    }

    fn spend(budgets: Vec<BudgetRule>, unpriced: Unpriced) -> SpendPolicy {
        SpendPolicy {
            budgets,
            rate_limits: vec![RateLimitRule {
                id: "tpm".into(),
                per: Scope::Device,
                requests: None,
                tokens: Some(1000),
                window: RateWindow::Minute,
            }],
            prices: Arc::new(PriceTable::embedded()),
            unpriced,
            default_output_tokens: 100,
        }
    }

    fn now() -> Timestamp {
        "2026-03-10T12:00:00Z".parse().unwrap()
    }

    const DEMAND: Demand = Demand {
        prompt_bytes: 400,
        max_tokens: None,
    };

    #[test]
    fn each_scope_keys_its_counter_by_its_part_of_the_subject() {
        let keys: Vec<String> = [
            Scope::User,
            Scope::Device,
            Scope::Provider,
            Scope::Model,
            Scope::All,
        ]
        .into_iter()
        .map(|per| ALICE.key(per))
        .collect();
        assert_eq!(keys, ["alice", "laptop", "openai", "gpt-4o", "*"]);
        let limits = rate_limits(&spend(Vec::new(), Unpriced::Block), &ALICE);
        assert_eq!(limits.len(), 1);
        assert_eq!(limits[0].scope_key, "laptop");
        assert_eq!(limits[0].tokens, Some(1000));
    }

    #[test]
    fn only_matching_budgets_are_charged_in_their_window() {
        let rules = vec![
            budget("all", Scope::User, None),
            budget("minis", Scope::Model, Some("gpt-4o-mini*")),
            budget("fours", Scope::All, Some("gpt-4*")),
        ];
        let spend = spend(rules, Unpriced::Block);
        let plan = plan_budgets(&spend, &ALICE, DEMAND, now())
            .unwrap()
            .expect("budgets match");
        let charged: Vec<(&str, &str)> = plan
            .charges
            .iter()
            .map(|c| (c.key.budget_id.as_str(), c.key.scope_key.as_str()))
            .collect();
        assert_eq!(charged, [("all", "alice"), ("fours", "*")]);
        let midnight: Timestamp = "2026-03-10T00:00:00Z".parse().unwrap();
        assert!(plan.charges.iter().all(|c| c.key.window_start == midnight));
        assert_eq!(
            plan.resets_at("fours", now()).to_string(),
            "2026-03-11T00:00:00Z"
        );
        assert_eq!(plan.first_budget(), "all");
        assert!(plan.unpriced.is_none());
    }

    #[test]
    fn the_worst_case_uses_the_default_output_cap_and_the_listed_price() {
        let spend = spend(vec![budget("b", Scope::All, None)], Unpriced::Block);
        let plan = plan_budgets(&spend, &ALICE, DEMAND, now())
            .unwrap()
            .unwrap();
        assert_eq!(plan.worst.output_tokens, 100);
        // gpt-4o: $2.50/M in, $10/M out.
        let expected = plan.worst.input_tokens as f64 * 2.5e-6 + 100.0 * 10e-6;
        assert!((plan.amount_usd - expected).abs() < 1e-12, "{plan:?}");
        let capped = Demand {
            max_tokens: Some(7),
            ..DEMAND
        };
        let plan = plan_budgets(&spend, &ALICE, capped, now())
            .unwrap()
            .unwrap();
        assert_eq!(plan.worst.output_tokens, 7);
    }

    #[test]
    fn an_unpriced_model_is_refused_free_or_charged_the_default_rate() {
        let unknown = Subject {
            model: "no-such-model",
            ..ALICE
        };
        let rules = || vec![budget("b", Scope::All, None)];
        let block = spend(rules(), Unpriced::Block);
        let refused = plan_budgets(&block, &unknown, DEMAND, now());
        assert_eq!(refused.unwrap_err(), PlanError::Unpriced);

        let free = spend(rules(), Unpriced::Allow);
        let plan = plan_budgets(&free, &unknown, DEMAND, now())
            .unwrap()
            .unwrap();
        assert_eq!(plan.amount_usd, 0.0);
        assert!(plan.unpriced.unwrap().message.contains("not charged"));

        let flat = spend(rules(), Unpriced::Default(30.0));
        let plan = plan_budgets(&flat, &unknown, DEMAND, now())
            .unwrap()
            .unwrap();
        assert!(plan.amount_usd > 0.0);
        assert!(plan.unpriced.unwrap().message.contains("$30/M"));
        // No budget matches: no price is needed, so nothing is refused.
        let none = spend(Vec::new(), Unpriced::Block);
        assert!(plan_budgets(&none, &unknown, DEMAND, now())
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_budget_warns_once_its_share_is_spent() {
        let spend = spend(vec![budget("b", Scope::User, None)], Unpriced::Block);
        let plan = plan_budgets(&spend, &ALICE, DEMAND, now())
            .unwrap()
            .unwrap();
        let totals = Reservations::new();
        totals.add_spent(plan.charges[0].key.clone(), 4.99);
        assert!(plan.warnings(&totals).is_empty());
        totals.add_spent(plan.charges[0].key.clone(), 0.01);
        let warnings = plan.warnings(&totals);
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].rule, "b");
        assert!(warnings[0].message.contains("(50%)"), "{warnings:?}");
    }

    #[test]
    fn the_rate_limit_estimate_takes_the_output_cap_up_front() {
        let capped = Demand {
            prompt_bytes: 0,
            max_tokens: Some(500),
        };
        let overhead = estimate_prompt_tokens(0);
        assert_eq!(capped.tokens(), overhead + 500);
        // No cap: the prompt alone (the output is counted when it arrives).
        assert_eq!(DEMAND.tokens(), estimate_prompt_tokens(400));
    }
}
