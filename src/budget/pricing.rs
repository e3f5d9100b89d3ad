//! What a call costs: the price table (`policy/pricing.toml`, compiled in),
//! lookup of a model's price, admin overrides, and usage → USD.
//!
//! Words:
//! - *rate*: USD per million tokens.
//! - *entry*: one `[[price]]` table in the file: the providers and model
//!   names (exact or glob) it covers and its rates.
//! - *layer*: a list of entries. The shipped table is the bottom layer;
//!   admin overrides ([`PriceTable::with_overrides`]) stack on top.
//! - *delegation*: a `[[delegate]]` rule sends a provider's vendor-prefixed
//!   model (`openrouter` + `anthropic/claude-sonnet-4.5`) to another
//!   provider's prices (`anthropic` + `claude-sonnet-4-5`).
//!
//! Lookup of (provider, model), first hit wins:
//! 1. layers from the top (last override) down to the shipped table;
//! 2. within a layer, an exact name beats any glob; among globs the most
//!    specific (most literal characters) wins; ties go to the entry listed
//!    first;
//! 3. only when no layer has an entry: delegation, once (no chains).
//!
//! So an admin's `gpt-4o*` glob beats the shipped exact `gpt-4o`: an
//! override is meant to win. Names compare ASCII case-insensitively.
//!
//! A model with no price is never silently free: [`Unpriced`] says what to
//! do, and its default charges a deliberately high flat rate.
//!
//! Pure: no I/O beyond the `include_str!` of the shipped table.

use serde::Deserialize;

use crate::glob::Glob;
use crate::provider::Usage;

/// The shipped table, compiled in.
const EMBEDDED: &str = include_str!("../../policy/pricing.toml");

/// Flat rate charged for an unpriced model under [`Unpriced::default`], in USD
/// per million tokens, input and output alike. Chosen at the top of the
/// market (Claude Opus 4 output is $75) so that a budget is never overshot
/// because a model was missing from the table; it over-charges cheap models,
/// and the warning tells the admin to add a price.
pub const CONSERVATIVE_DEFAULT_USD_PER_MTOK: f64 = 75.0;

/// Why a price table could not be built (a bad override is the policy's fault;
/// a bad shipped table is ours, and a unit test catches it).
#[derive(Debug, thiserror::Error)]
pub enum PricingError {
    /// Not valid TOML, or not the shape of a price table.
    #[error("price table: {0}")]
    Parse(#[from] toml::de::Error),
    /// An entry is structurally valid but makes no sense.
    #[error("price entry {index} ({first_model:?}): {problem}")]
    Invalid {
        /// Zero-based position of the `[[price]]` entry.
        index: usize,
        /// Its first model pattern, to find it.
        first_model: String,
        /// What is wrong.
        problem: &'static str,
    },
}

/// Rates for one model, USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    /// Uncached input.
    pub input: f64,
    /// Output, reasoning included.
    pub output: f64,
    /// Input read from a prompt cache.
    pub cached_input: f64,
    /// Input written to a prompt cache.
    pub cache_write: f64,
    /// Higher rates once a call's input passes a threshold (Gemini Pro,
    /// Claude Sonnet with 1M context).
    pub long_context: Option<LongContext>,
}

/// A second tier of rates that applies to the *whole* call once its input
/// tokens exceed `above_input_tokens` (how Google and Anthropic bill it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LongContext {
    /// Threshold on [`Usage::input_tokens`].
    pub above_input_tokens: u64,
    /// Uncached input rate above the threshold.
    pub input: f64,
    /// Output rate above the threshold.
    pub output: f64,
    /// Cache-read rate above the threshold.
    pub cached_input: f64,
    /// Cache-write rate above the threshold.
    pub cache_write: f64,
}

impl Price {
    /// The same rate for every kind of token.
    pub fn flat(usd_per_mtok: f64) -> Price {
        Price {
            input: usd_per_mtok,
            output: usd_per_mtok,
            cached_input: usd_per_mtok,
            cache_write: usd_per_mtok,
            long_context: None,
        }
    }
}

/// What a call with this usage costs at this price, in USD. Follows the
/// convention of [`crate::provider::usage`]: cache reads and writes are part
/// of `input_tokens` and are charged at their own rates, the rest of the
/// input at the input rate; reasoning is part of `output_tokens`.
pub fn cost(usage: &Usage, price: &Price) -> f64 {
    let (input, output, cached_input, cache_write) = match price.long_context {
        Some(long) if usage.input_tokens > long.above_input_tokens => {
            (long.input, long.output, long.cached_input, long.cache_write)
        }
        _ => (
            price.input,
            price.output,
            price.cached_input,
            price.cache_write,
        ),
    };
    // Token counts are far below 2^53, so the conversions are exact.
    let usd_micro = usage.uncached_input_tokens() as f64 * input
        + usage.cached_input_tokens as f64 * cached_input
        + usage.cache_write_tokens as f64 * cache_write
        + usage.output_tokens as f64 * output;
    usd_micro / 1_000_000.0
}

/// What to do with a model the table has no price for (`unpriced = …` in
/// policy).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Unpriced {
    /// Refuse the call.
    Block,
    /// Let it through uncharged (the admin chose this; still warned and audited).
    Allow,
    /// Charge this flat rate, USD per million tokens, and warn.
    Default(f64),
}

impl Default for Unpriced {
    fn default() -> Unpriced {
        Unpriced::Default(CONSERVATIVE_DEFAULT_USD_PER_MTOK)
    }
}

/// A price found in the table, and where it came from (for audit and
/// `budget show`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Listed<'a> {
    /// The rates.
    pub price: &'a Price,
    /// The provider whose entry matched (differs from the asked one after
    /// delegation).
    pub provider: &'a str,
    /// The pattern that matched, as written.
    pub pattern: &'a str,
    /// True if the pattern was an exact name, not a glob.
    pub exact: bool,
}

/// How a call is to be priced, after [`Unpriced`] has been applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PriceDecision<'a> {
    /// The table has a price.
    Listed(Listed<'a>),
    /// No price; charge this default and warn.
    Default(Price),
    /// No price; the admin allows it uncharged. Warn.
    Free,
    /// No price; refuse the call.
    Block,
}

/// One `[[price]]` entry as written in `pricing.toml` or a policy override.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceEntry {
    /// Provider names from `providers.toml` this entry covers.
    pub providers: Vec<String>,
    /// Exact model names, or globs (`*`, `?`).
    pub models: Vec<String>,
    /// Uncached input rate.
    pub input: f64,
    /// Output rate.
    pub output: f64,
    /// Cache-read rate; absent = the input rate (never cheaper than known).
    pub cached_input: Option<f64>,
    /// Cache-write rate; absent = the input rate.
    pub cache_write: Option<f64>,
    /// Optional second tier.
    pub long_context: Option<LongContextEntry>,
}

impl PriceEntry {
    /// What is wrong with this entry, if anything (rates negative or not
    /// numbers, no providers, no models).
    pub fn check(&self) -> Result<(), &'static str> {
        compile(self.clone()).map(drop)
    }
}

/// The `long_context = { … }` of a [`PriceEntry`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LongContextEntry {
    /// Threshold on input tokens.
    pub above_input_tokens: u64,
    /// Uncached input rate.
    pub input: f64,
    /// Output rate.
    pub output: f64,
    /// Cache-read rate; absent = this tier's input rate.
    pub cached_input: Option<f64>,
    /// Cache-write rate; absent = this tier's input rate.
    pub cache_write: Option<f64>,
}

/// One `[[delegate]]` rule as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelegateEntry {
    /// The provider whose models carry a vendor prefix (`openrouter`).
    pub provider: String,
    /// The prefix, slash included (`anthropic/`).
    pub prefix: String,
    /// The provider whose prices apply to the rest of the name.
    pub to: String,
    /// Rewrite `.` to `-` in the rest (`claude-sonnet-4.5` → `claude-sonnet-4-5`).
    #[serde(default)]
    pub dots_to_dashes: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    price: Vec<PriceEntry>,
    #[serde(default)]
    delegate: Vec<DelegateEntry>,
}

/// A model name pattern, compiled.
#[derive(Debug, Clone)]
enum Pattern {
    Exact(String),
    /// A glob and its count of literal characters (its specificity).
    Glob(Glob, usize),
}

#[derive(Debug, Clone)]
struct Entry {
    providers: Vec<String>,
    patterns: Vec<(String, Pattern)>,
    price: Price,
}

#[derive(Debug, Clone, Default)]
struct Layer {
    entries: Vec<Entry>,
    delegates: Vec<DelegateEntry>,
}

/// The layered price table. Cheap to clone relative to how often policy
/// changes; build once per policy version.
#[derive(Debug, Clone)]
pub struct PriceTable {
    /// Bottom (shipped) first; lookups walk it from the end.
    layers: Vec<Layer>,
}

impl PriceTable {
    /// The table shipped in `policy/pricing.toml`.
    pub fn embedded() -> PriceTable {
        static TABLE: std::sync::OnceLock<PriceTable> = std::sync::OnceLock::new();
        // The file is compiled in, so it cannot change under a running agent;
        // the test `embedded_table_parses` keeps a broken edit from shipping.
        TABLE
            .get_or_init(|| {
                PriceTable::from_toml(EMBEDDED).expect("policy/pricing.toml is valid (unit-tested)")
            })
            .clone()
    }

    /// A one-layer table from text in the shape of `pricing.toml`.
    pub fn from_toml(text: &str) -> Result<PriceTable, PricingError> {
        let file: File = toml::from_str(text)?;
        Ok(PriceTable {
            layers: vec![layer(file.price, file.delegate)?],
        })
    }

    /// This table with `entries` (an admin's overrides) layered on top:
    /// any of them that matches wins over every entry below.
    pub fn with_overrides(mut self, entries: Vec<PriceEntry>) -> Result<PriceTable, PricingError> {
        let top = layer(entries, Vec::new())?;
        self.layers.push(top);
        Ok(self)
    }

    /// The listed price of `model` at `provider`, if any (see the module doc
    /// for precedence).
    pub fn lookup(&self, provider: &str, model: &str) -> Option<Listed<'_>> {
        if let Some(found) = self.lookup_direct(provider, model) {
            return Some(found);
        }
        let delegate = self
            .layers
            .iter()
            .rev()
            .flat_map(|l| l.delegates.iter())
            .find(|d| {
                d.provider.eq_ignore_ascii_case(provider)
                    && starts_with_ignore_case(model, &d.prefix)
            })?;
        let rest = &model[delegate.prefix.len()..];
        if delegate.dots_to_dashes {
            self.lookup_direct(&delegate.to, &rest.replace('.', "-"))
        } else {
            self.lookup_direct(&delegate.to, rest)
        }
    }

    /// [`lookup`](Self::lookup), then [`Unpriced`] for a miss.
    pub fn decide(&self, provider: &str, model: &str, unpriced: Unpriced) -> PriceDecision<'_> {
        match (self.lookup(provider, model), unpriced) {
            (Some(listed), _) => PriceDecision::Listed(listed),
            (None, Unpriced::Block) => PriceDecision::Block,
            (None, Unpriced::Allow) => PriceDecision::Free,
            (None, Unpriced::Default(rate)) => PriceDecision::Default(Price::flat(rate)),
        }
    }

    fn lookup_direct(&self, provider: &str, model: &str) -> Option<Listed<'_>> {
        let model = model.trim();
        self.layers
            .iter()
            .rev()
            .find_map(|layer| lookup_in_layer(layer, provider, model))
    }
}

fn lookup_in_layer<'a>(layer: &'a Layer, provider: &str, model: &str) -> Option<Listed<'a>> {
    let mut best_glob: Option<(usize, Listed<'a>)> = None;
    for entry in &layer.entries {
        let Some(entry_provider) = entry
            .providers
            .iter()
            .find(|p| p.eq_ignore_ascii_case(provider))
        else {
            continue;
        };
        for (written, pattern) in &entry.patterns {
            let listed = |exact| Listed {
                price: &entry.price,
                provider: entry_provider,
                pattern: written,
                exact,
            };
            match pattern {
                Pattern::Exact(name) if name.eq_ignore_ascii_case(model) => {
                    return Some(listed(true));
                }
                // Strictly greater: on a tie the earlier entry stays.
                Pattern::Glob(glob, literal)
                    if best_glob.as_ref().is_none_or(|(best, _)| literal > best)
                        && glob.matches(model) =>
                {
                    best_glob = Some((*literal, listed(false)));
                }
                _ => {}
            }
        }
    }
    best_glob.map(|(_, listed)| listed)
}

fn layer(entries: Vec<PriceEntry>, delegates: Vec<DelegateEntry>) -> Result<Layer, PricingError> {
    let entries = entries
        .into_iter()
        .enumerate()
        .map(|(index, e)| {
            let first_model = e.models.first().cloned().unwrap_or_default();
            compile(e).map_err(|problem| PricingError::Invalid {
                index,
                first_model,
                problem,
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Layer { entries, delegates })
}

fn compile(e: PriceEntry) -> Result<Entry, &'static str> {
    if e.providers.is_empty() {
        return Err("`providers` is empty");
    }
    if e.models.is_empty() {
        return Err("`models` is empty");
    }
    let long_context = e.long_context.as_ref().map(|l| LongContext {
        above_input_tokens: l.above_input_tokens,
        input: l.input,
        output: l.output,
        cached_input: l.cached_input.unwrap_or(l.input),
        cache_write: l.cache_write.unwrap_or(l.input),
    });
    let price = Price {
        input: e.input,
        output: e.output,
        cached_input: e.cached_input.unwrap_or(e.input),
        cache_write: e.cache_write.unwrap_or(e.input),
        long_context,
    };
    let mut rates = vec![
        price.input,
        price.output,
        price.cached_input,
        price.cache_write,
    ];
    if let Some(l) = long_context {
        rates.extend([l.input, l.output, l.cached_input, l.cache_write]);
    }
    if rates.iter().any(|r| !r.is_finite() || *r < 0.0) {
        return Err("a rate is negative or not a number");
    }
    let patterns = e
        .models
        .iter()
        .map(|m| {
            let m = m.trim();
            let pattern = if m.contains(['*', '?']) {
                let literal = m.chars().filter(|c| !matches!(c, '*' | '?')).count();
                Pattern::Glob(Glob::new(m), literal)
            } else {
                Pattern::Exact(m.to_string())
            };
            (m.to_string(), pattern)
        })
        .collect();
    Ok(Entry {
        providers: e.providers,
        patterns,
        price,
    })
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len()
        && s.is_char_boundary(prefix.len())
        && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> PriceTable {
        PriceTable::embedded()
    }

    fn rates(provider: &str, model: &str) -> (f64, f64) {
        let t = table();
        let listed = t
            .lookup(provider, model)
            .unwrap_or_else(|| panic!("{provider}/{model} unpriced"));
        (listed.price.input, listed.price.output)
    }

    #[test]
    fn embedded_table_parses() {
        let t = table();
        assert!(t.layers[0].entries.len() > 50);
    }

    #[test]
    fn dated_names_match_their_family() {
        assert_eq!(rates("openai", "gpt-4o"), (2.5, 10.0));
        assert_eq!(rates("openai", "gpt-4o-2024-08-06"), (2.5, 10.0));
        assert_eq!(rates("openai", "gpt-4o-mini-2024-07-18"), (0.15, 0.6));
        assert_eq!(rates("openai", "gpt-4.1-nano-2025-04-14"), (0.1, 0.4));
        assert_eq!(rates("anthropic", "claude-sonnet-4-20250514"), (3.0, 15.0));
        assert_eq!(rates("anthropic", "claude-3-5-haiku-latest"), (0.8, 4.0));
        assert_eq!(rates("gemini", "gemini-2.0-flash-001"), (0.1, 0.4));
        assert_eq!(rates("mistral", "mistral-large-2411"), (2.0, 6.0));
    }

    #[test]
    fn exact_beats_glob_and_specific_glob_beats_general() {
        // The first gpt-4o snapshot kept its launch price: an exact entry.
        let t = table();
        let old = t.lookup("openai", "gpt-4o-2024-05-13").unwrap();
        assert!(old.exact);
        assert_eq!(old.price.input, 5.0);
        // `gpt-4o-mini*` is more specific than `gpt-4o*`.
        assert_eq!(rates("openai", "gpt-4o-mini"), (0.15, 0.6));
        // `claude-opus-4-5*` over `claude-opus-4*`.
        assert_eq!(rates("anthropic", "claude-opus-4-5-20251101"), (5.0, 25.0));
        assert_eq!(rates("anthropic", "claude-opus-4-1-20250805"), (15.0, 75.0));
        // `gemini-2.5-flash-lite*` over `gemini-2.5-flash*`.
        assert_eq!(rates("gemini", "gemini-2.5-flash-lite"), (0.1, 0.4));
    }

    #[test]
    fn lookup_is_per_provider_and_case_insensitive() {
        let t = table();
        assert!(t.lookup("anthropic", "gpt-4o").is_none());
        assert_eq!(rates("OpenAI", "GPT-4o-2024-08-06"), (2.5, 10.0));
        assert_eq!(rates("azure", "gpt-4o"), (2.5, 10.0));
        assert!(t.lookup("openai", "no-such-model").is_none());
    }

    #[test]
    fn openrouter_delegates_by_vendor_prefix() {
        let t = table();
        let l = t
            .lookup("openrouter", "anthropic/claude-sonnet-4.5")
            .unwrap();
        assert_eq!(l.provider, "anthropic");
        assert_eq!(l.price.output, 15.0);
        assert_eq!(rates("openrouter", "openai/gpt-4o-mini"), (0.15, 0.6));
        assert_eq!(rates("openrouter", "google/gemini-2.5-pro"), (1.25, 10.0));
        assert_eq!(rates("openrouter", "deepseek/deepseek-r1:free"), (0.0, 0.0));
    }

    #[test]
    fn overrides_win_over_the_shipped_table() {
        let t = table()
            .with_overrides(vec![PriceEntry {
                providers: vec!["openai".into()],
                models: vec!["gpt-4o*".into()],
                input: 1.0,
                output: 2.0,
                cached_input: None,
                cache_write: None,
                long_context: None,
            }])
            .unwrap();
        // The override glob beats the shipped exact name.
        let l = t.lookup("openai", "gpt-4o").unwrap();
        assert_eq!(
            (l.price.input, l.price.output, l.price.cached_input),
            (1.0, 2.0, 1.0)
        );
        // Delegation sees the override too.
        assert_eq!(
            t.lookup("openrouter", "openai/gpt-4o").unwrap().price.input,
            1.0
        );
        // Everything else falls through.
        assert_eq!(t.lookup("openai", "gpt-4.1").unwrap().price.input, 2.0);
    }

    #[test]
    fn bad_overrides_are_rejected() {
        let bad = PriceEntry {
            providers: vec!["openai".into()],
            models: vec!["x".into()],
            input: -1.0,
            output: 1.0,
            cached_input: None,
            cache_write: None,
            long_context: None,
        };
        assert!(matches!(
            table().with_overrides(vec![bad]),
            Err(PricingError::Invalid { .. })
        ));
        assert!(PriceTable::from_toml("[[price]]\nproviders = []").is_err());
    }

    #[test]
    fn unpriced_models_are_never_silently_free() {
        let t = table();
        match t.decide("openai", "mystery", Unpriced::default()) {
            PriceDecision::Default(p) => assert_eq!(p.output, CONSERVATIVE_DEFAULT_USD_PER_MTOK),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            t.decide("openai", "mystery", Unpriced::Block),
            PriceDecision::Block
        );
        assert_eq!(
            t.decide("openai", "mystery", Unpriced::Allow),
            PriceDecision::Free
        );
        assert!(matches!(
            t.decide("openai", "gpt-4o", Unpriced::Block),
            PriceDecision::Listed(_)
        ));
    }

    #[test]
    fn cost_charges_each_kind_of_token_at_its_rate() {
        let price = Price {
            input: 3.0,
            output: 15.0,
            cached_input: 0.3,
            cache_write: 3.75,
            long_context: None,
        };
        let usage = Usage {
            input_tokens: 1_000_000,
            cached_input_tokens: 400_000,
            cache_write_tokens: 100_000,
            output_tokens: 200_000,
            reasoning_tokens: 50_000,
        };
        // 500k uncached × 3 + 400k × 0.3 + 100k × 3.75 + 200k × 15 (reasoning inside output).
        let expected = 1.5 + 0.12 + 0.375 + 3.0;
        assert!((cost(&usage, &price) - expected).abs() < 1e-9);
        assert_eq!(cost(&Usage::default(), &price), 0.0);
    }

    #[test]
    fn long_context_tier_applies_to_the_whole_call() {
        let t = table();
        let price = t.lookup("gemini", "gemini-2.5-pro").unwrap().price;
        let small = Usage {
            input_tokens: 200_000,
            output_tokens: 1_000,
            ..Usage::default()
        };
        let large = Usage {
            input_tokens: 200_001,
            ..small
        };
        assert!((cost(&small, price) - (0.25 + 0.01)).abs() < 1e-9);
        assert!((cost(&large, price) - (200_001.0 * 2.5 + 1_000.0 * 15.0) / 1e6).abs() < 1e-9);
    }
}
