//! Policy files → one validated, merged [`Policy`].
//!
//! A *layer* is one policy file, of one of three kinds ([`LayerKind`]),
//! merged in this order: the *baseline* (the embedded
//! `policy/default.toml`, in force unless a file says `baseline = false`,
//! which a managed `lock_baseline = true` forbids), the *managed* files of
//! the signed bundle in force, and the *local* `*.toml` files of
//! `policy_dir` in name order ([`load_stack`]). [`load_layers`] merges
//! exactly the layers it is given (tests, one file checked on its own).
//!
//! Merging only tightens:
//! - guardrails, secret rules, budgets, rate limits, model deny globs and
//!   intercept hosts are unions. A duplicate id within a layer is an error;
//!   a higher layer may repeat a lower layer's rule only unchanged (a
//!   changed one is an error naming both places, so nothing lower can be
//!   weakened or raised);
//! - model allow lists intersect: a model must be admitted by every layer
//!   that has an allow list;
//! - an `[intercept] exclude` applies to its own layer's hosts and the
//!   layers above, never to a lower layer's;
//! - `on_unparseable`, `unscanned_audio` and `on_audit_backlog` are `block`
//!   if any layer says so (a looser value is a note);
//! - `[intercept] unknown_endpoints` is the tightest any layer sets
//!   (`block`, then `scan`, then `forward`; `scan` when none does); an
//!   `[intercept]` table that sets only `unknown_endpoints` leaves the host
//!   lists as they are;
//! - `max_body_bytes` and `[audit] max_content_chars` take the smallest and
//!   `default_output_tokens` the largest of the managed and local layers;
//!   the baseline's values are defaults;
//! - `[audit] content` is the managed layer's if set, else the last local
//!   file's, else the baseline's;
//! - `unpriced` is the tightest set (block, then the higher default rate,
//!   then allow); `[[prices]]` overrides stack in file order, a later
//!   file's entry winning over an earlier one's for the same model;
//! - `[routes]`: `gateway` if any layer says so;
//! - with no `[intercept]` host list in any layer, the embedded default's
//!   applies.
//!
//! Every problem is reported as `file:line:col: message`, and all problems
//! found are reported, not just the first.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::tz::TimeZone;

use sha2::{Digest, Sha256};
use toml::Spanned;

use super::intercept::{HostPattern, InterceptList};
use super::model::{
    RawAudit, RawBudget, RawGuardrail, RawIntercept, RawModelRules, RawModels, RawPolicy,
    RawRateLimit, RawSecretRule, RawSecretSource,
};
use super::rules::*;
use crate::budget::pricing::{PriceEntry, PriceTable, Unpriced};
use crate::budget::window::parse_time_zone;
use crate::glob::Glob;
use crate::guard::{self, Builtin, DetectorSpec, RuleSpec, SecretRule};
use crate::located::{parse_toml, Located};

/// Label used as the file name of the embedded default policy.
pub const EMBEDDED_LABEL: &str = "<embedded policy/default.toml>";

/// Which layer a policy file belongs to. Layers merge in this order, and
/// each can only tighten what the layers below it set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerKind {
    /// The shipped default (`policy/default.toml`, embedded).
    Baseline,
    /// A file of the managed bundle in force; `label` names the bundle
    /// (`managed v7`).
    Managed {
        /// How status and errors name the bundle.
        label: String,
    },
    /// A file of `policy_dir`.
    Local,
}

impl LayerKind {
    /// Merge order: baseline, managed, local.
    fn rank(&self) -> u8 {
        match self {
            LayerKind::Baseline => 0,
            LayerKind::Managed { .. } => 1,
            LayerKind::Local => 2,
        }
    }

    /// How people see the layer: `baseline`, `managed v7`, `local`.
    pub fn label(&self) -> &str {
        match self {
            LayerKind::Baseline => "baseline",
            LayerKind::Managed { label } => label,
            LayerKind::Local => "local",
        }
    }
}

/// One policy file's text.
#[derive(Debug, Clone)]
pub struct Layer {
    /// Where it came from.
    pub path: PathBuf,
    /// Its contents.
    pub text: String,
    /// Its layer.
    pub kind: LayerKind,
}

impl Layer {
    /// A local policy file.
    pub fn local(path: impl Into<PathBuf>, text: impl Into<String>) -> Layer {
        Layer {
            path: path.into(),
            text: text.into(),
            kind: LayerKind::Local,
        }
    }
}

/// The embedded default as a layer.
pub fn default_layer() -> Layer {
    Layer {
        path: PathBuf::from(EMBEDDED_LABEL),
        text: super::DEFAULT_POLICY.to_string(),
        kind: LayerKind::Baseline,
    }
}

/// The `*.toml` files of `dir`, in name order. A missing directory has none.
///
/// Links are not followed: a `*.toml` that is a symlink is an error (a root
/// agent would read whatever it points at), and a file swapped for a link
/// between listing and reading is caught by comparing what was opened with
/// what was listed. An agent running as root also refuses a file that
/// another user owns or may write.
pub fn read_dir_layers(dir: &Path) -> Result<Vec<Layer>, Vec<Located>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(vec![io_error(dir, &e)]),
    };
    let mut paths: Vec<(PathBuf, std::fs::FileType)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "toml"))
        .filter_map(|e| Some((e.path(), e.file_type().ok()?)))
        .filter(|(_, kind)| kind.is_file() || kind.is_symlink())
        .collect();
    paths.sort_by(|a, b| a.0.cmp(&b.0));
    let mut layers = Vec::new();
    let mut errors = Vec::new();
    for (path, kind) in paths {
        if kind.is_symlink() {
            errors.push(located(
                &path,
                "is a symlink: Outpost does not follow links in policy_dir (it would read \
                 whatever the link points at); put the file itself there"
                    .into(),
            ));
            continue;
        }
        match read_unlinked(&path) {
            Ok(layer) => layers.push(layer),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(layers)
    } else {
        Err(errors)
    }
}

/// Read one file of `policy_dir`: still the regular file that was listed,
/// and (for a root agent) owned by root and writable by no one else.
fn read_unlinked(path: &Path) -> Result<Layer, Located> {
    use std::io::Read;
    let listed = std::fs::symlink_metadata(path).map_err(|e| io_error(path, &e))?;
    let mut file = std::fs::File::open(path).map_err(|e| io_error(path, &e))?;
    let opened = file.metadata().map_err(|e| io_error(path, &e))?;
    if !listed.file_type().is_file() || !same_file(&listed, &opened) {
        return Err(located(
            path,
            "changed into a link or another file while it was read; not loaded".into(),
        ));
    }
    if let Some(why) = untrusted(&opened) {
        return Err(located(path, why));
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| io_error(path, &e))?;
    Ok(Layer::local(path, text))
}

/// Read a file a policy names (a `[[secret_sources]]` file), with the
/// same ownership and mode check as the policy's own files.
fn read_trusted(path: &Path) -> Result<String, Located> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| io_error(path, &e))?;
    let opened = file.metadata().map_err(|e| io_error(path, &e))?;
    if let Some(why) = untrusted(&opened) {
        return Err(located(path, why));
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| io_error(path, &e))?;
    Ok(text)
}

#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    a.len() == b.len() && a.modified().ok() == b.modified().ok()
}

/// Why a root agent must not load a file: another user owns it, or users
/// other than its owner may write it.
#[cfg(unix)]
fn untrusted(file: &std::fs::Metadata) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    if !rustix::process::geteuid().is_root() {
        return None;
    }
    if file.uid() != 0 {
        return Some(format!(
            "is owned by uid {}, and the agent runs as root: a root agent loads only policy \
             files root owns",
            file.uid()
        ));
    }
    if file.mode() & 0o022 != 0 {
        return Some(format!(
            "may be written by users other than root (mode {:o}); run `chmod go-w` on it",
            file.mode() & 0o777
        ));
    }
    None
}

#[cfg(not(unix))]
fn untrusted(_: &std::fs::Metadata) -> Option<String> {
    None
}

fn located(path: &Path, message: String) -> Located {
    Located {
        file: path.to_path_buf(),
        line: 1,
        col: 1,
        message,
    }
}

/// Read one file as a layer.
pub fn read_layer(path: &Path) -> Result<Layer, Located> {
    std::fs::read_to_string(path)
        .map(|text| Layer::local(path, text))
        .map_err(|e| io_error(path, &e))
}

fn io_error(path: &Path, e: &std::io::Error) -> Located {
    Located {
        file: path.to_path_buf(),
        line: 1,
        col: 1,
        message: format!("cannot read: {e}"),
    }
}

/// Load the policy of `dir` as the agent would with no managed bundle:
/// the baseline and `dir`'s files.
pub fn load_dir(dir: &Path) -> Result<Policy, Vec<Located>> {
    let layers = read_dir_layers(dir)?;
    load_stack(Vec::new(), layers)
}

/// The embedded default policy.
pub fn embedded_default() -> Result<Policy, Vec<Located>> {
    load_layers(&[])
}

/// Validate and merge the baseline, `managed` and `local` layers, in that
/// order. The baseline is in force unless a layer says `baseline = false`
/// (which a managed layer can forbid with `lock_baseline = true`).
pub fn load_stack(managed: Vec<Layer>, local: Vec<Layer>) -> Result<Policy, Vec<Located>> {
    let mut errors = Vec::new();
    let mut parsed = Vec::new();
    for layer in managed.iter().chain(&local) {
        match parse_toml::<RawPolicy>(&layer.path, &layer.text) {
            Ok(raw) => parsed.push((layer, raw)),
            Err(e) => errors.push(e),
        }
    }
    let baseline = baseline_state(&parsed, &mut errors);
    let base = default_layer();
    if baseline == Baseline::On {
        match parse_toml::<RawPolicy>(&base.path, &base.text) {
            Ok(raw) => parsed.insert(0, (&base, raw)),
            Err(e) => errors.push(e),
        }
    }
    let mut merged = Merged {
        baseline,
        ..Merged::default()
    };
    merge(&mut merged, parsed, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut layers: Vec<Layer> = Vec::new();
    if merged.baseline == Baseline::On {
        layers.push(base.clone());
    }
    layers.extend(managed);
    layers.extend(local);
    merged.finish(&layers)
}

/// Validate and merge exactly `layers`, in order (none = the embedded
/// default alone). Each layer is treated as its `kind` says; no baseline is
/// added.
pub fn load_layers(layers: &[Layer]) -> Result<Policy, Vec<Located>> {
    let default;
    let layers = if layers.is_empty() {
        default = [default_layer()];
        &default[..]
    } else {
        layers
    };
    let mut errors = Vec::new();
    let mut parsed = Vec::new();
    for layer in layers {
        match parse_toml::<RawPolicy>(&layer.path, &layer.text) {
            Ok(raw) => parsed.push((layer, raw)),
            Err(e) => errors.push(e),
        }
    }
    let mut merged = Merged {
        baseline: if layers.iter().any(|l| l.kind == LayerKind::Baseline) {
            Baseline::On
        } else {
            Baseline::NotLoaded
        },
        ..Merged::default()
    };
    merge(&mut merged, parsed, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    merged.finish(layers)
}

fn merge(merged: &mut Merged, parsed: Vec<(&Layer, RawPolicy)>, errors: &mut Vec<Located>) {
    for (layer, raw) in parsed {
        let mut ctx = Ctx {
            file: &layer.path,
            text: &layer.text,
            layer: &layer.kind,
            errors,
            notes: Vec::new(),
        };
        merged.add(&mut ctx, raw);
        merged.notes.append(&mut ctx.notes);
    }
}

/// Whether the baseline is in force, from the layers' `baseline` and
/// `lock_baseline` keys; misuse of either is an error at the key.
fn baseline_state(parsed: &[(&Layer, RawPolicy)], errors: &mut Vec<Located>) -> Baseline {
    let mut locked_by: Option<Located> = None;
    for (layer, raw) in parsed {
        let Some(lock) = &raw.lock_baseline else {
            continue;
        };
        if !matches!(layer.kind, LayerKind::Managed { .. }) {
            errors.push(Located::span(
                &layer.path,
                &layer.text,
                Some(lock.span()),
                "`lock_baseline`: only the managed bundle may lock the baseline",
            ));
        } else if *lock.get_ref() {
            locked_by = Some(Located::span(
                &layer.path,
                &layer.text,
                Some(lock.span()),
                "",
            ));
        }
    }
    let mut off_by = None;
    for (layer, raw) in parsed {
        let Some(flag) = &raw.baseline else { continue };
        if *flag.get_ref() {
            continue;
        }
        let at = Located::span(&layer.path, &layer.text, Some(flag.span()), "");
        match &locked_by {
            Some(lock) if layer.kind == LayerKind::Local => errors.push(Located {
                message: format!(
                    "`baseline = false`: the managed policy locks the baseline on ({}:{}:{}); \
                     a local file cannot turn it off",
                    lock.file.display(),
                    lock.line,
                    lock.col
                ),
                ..at
            }),
            Some(_) => errors.push(Located {
                message: "`baseline = false` contradicts `lock_baseline = true`".to_string(),
                ..at
            }),
            None => {
                off_by.get_or_insert(at);
            }
        }
    }
    match off_by {
        Some(at) => Baseline::Off { by: at },
        None => Baseline::On,
    }
}

/// Where problems are collected while reading one layer.
struct Ctx<'a> {
    file: &'a Path,
    text: &'a str,
    layer: &'a LayerKind,
    errors: &'a mut Vec<Located>,
    notes: Vec<Located>,
}

impl Ctx<'_> {
    fn error(&mut self, span: Option<std::ops::Range<usize>>, message: impl Into<String>) {
        self.errors
            .push(Located::span(self.file, self.text, span, message));
    }

    /// A note (not an error) at `span`.
    fn note(&mut self, span: std::ops::Range<usize>, message: impl Into<String>) {
        self.notes
            .push(Located::span(self.file, self.text, Some(span), message));
    }

    fn locate(&self, span: std::ops::Range<usize>) -> Located {
        Located::span(self.file, self.text, Some(span), "")
    }
}

/// Where a rule id was first defined (for duplicate-id errors).
struct Seen {
    at: Located,
    layer: LayerKind,
}

/// What [`claim_id`] found.
enum Claim {
    /// A new id: add the rule.
    New,
    /// The id of a rule of a lower layer: the rule may only repeat it.
    Lower(Seen),
    /// Empty, or a duplicate within the layer (reported).
    Bad,
}

#[derive(Default)]
struct Merged {
    baseline: Baseline,
    /// Per layer that sets hosts: its rank, hosts and excludes.
    intercept: Vec<(u8, Vec<HostPattern>, Vec<HostPattern>)>,
    origins: Vec<RuleOrigin>,
    /// What the baseline sets that is a default, not a floor: the
    /// managed and local layers may set another value.
    baseline_defaults: BaselineDefaults,
    gateway_routes: Vec<String>,
    /// Rank of the layer whose `[audit] content` is in force (managed
    /// decides over local, local over the baseline).
    audit_content_authority: Option<u8>,
    models: ModelRules,
    guardrails: Vec<Guardrail>,
    guardrail_ids: HashMap<String, Seen>,
    secret_rules: Vec<SecretRule>,
    /// Secret rule id → the file that defined it.
    secret_sources: Vec<(String, PathBuf)>,
    secret_ids: HashMap<String, Seen>,
    /// Files `[[secret_sources]]` read, with their text (for the version).
    source_files: Vec<(PathBuf, String)>,
    notes: Vec<Located>,
    budgets: Vec<BudgetRule>,
    budget_ids: HashMap<String, Seen>,
    rate_limits: Vec<RateLimitRule>,
    rate_ids: HashMap<String, Seen>,
    /// `[[prices]]` of each file that has some, in file order.
    price_layers: Vec<Vec<PriceEntry>>,
    unpriced: Option<Unpriced>,
    default_output_tokens: Option<u64>,
    max_body_bytes: Option<u64>,
    on_unparseable: Option<OnUnparseable>,
    unscanned_audio: Option<UnscannedAudio>,
    on_audit_backlog: Option<OnAuditBacklog>,
    unknown_endpoints: Option<UnknownEndpoints>,
    audit_content: Option<AuditContent>,
    max_content_chars: Option<usize>,
}

/// Sizes the baseline sets as defaults.
#[derive(Default)]
struct BaselineDefaults {
    max_body_bytes: Option<u64>,
    default_output_tokens: Option<u64>,
    max_content_chars: Option<usize>,
}

/// Record `id` in `seen`, or report it as a duplicate within its layer.
fn claim_id(
    ctx: &mut Ctx<'_>,
    seen: &mut HashMap<String, Seen>,
    kind: &str,
    id: &Spanned<String>,
) -> Claim {
    let name = id.get_ref();
    if name.trim().is_empty() {
        ctx.error(Some(id.span()), format!("{kind} id must not be empty"));
        return Claim::Bad;
    }
    if let Some(first) = seen.get(name) {
        if first.layer.rank() < ctx.layer.rank() {
            return Claim::Lower(Seen {
                at: first.at.clone(),
                layer: first.layer.clone(),
            });
        }
        let at = &first.at;
        ctx.error(
            Some(id.span()),
            format!(
                "duplicate {kind} id `{name}` (first defined at {}:{}:{})",
                at.file.display(),
                at.line,
                at.col
            ),
        );
        return Claim::Bad;
    }
    seen.insert(
        name.clone(),
        Seen {
            at: ctx.locate(id.span()),
            layer: ctx.layer.clone(),
        },
    );
    Claim::New
}

/// [`claim_id`] for rules that are only added (gitleaks rules): a lower
/// layer's id is a duplicate too.
fn unique_id(
    ctx: &mut Ctx<'_>,
    seen: &mut HashMap<String, Seen>,
    kind: &str,
    id: &Spanned<String>,
) -> bool {
    match claim_id(ctx, seen, kind, id) {
        Claim::New => true,
        Claim::Bad => false,
        Claim::Lower(first) => {
            ctx.error(
                Some(id.span()),
                redefined(kind, id.get_ref(), &first, ctx.layer),
            );
            false
        }
    }
}

/// A rule about to join the merge: its kind, id and summary (for
/// [`RuleOrigin`]).
struct Placed<'a> {
    kind: &'static str,
    id: &'a Spanned<String>,
    summary: String,
}

/// Put `rule` in `into` under `claim`: a new id joins (and its origin is
/// kept); a lower layer's id must come with the same rule (`same`), or it
/// is an error. Whether the rule was added.
fn place<T>(
    ctx: &mut Ctx<'_>,
    claim: Claim,
    placed: Placed<'_>,
    rule: T,
    into: &mut Vec<T>,
    same: impl Fn(&T, &T) -> bool,
    origins: &mut Vec<RuleOrigin>,
) -> bool {
    let Placed { kind, id, summary } = placed;
    match claim {
        Claim::New => {
            origins.push(RuleOrigin {
                kind,
                id: id.get_ref().clone(),
                summary,
                layer: ctx.layer.label().to_string(),
                at: ctx.locate(id.span()),
            });
            into.push(rule);
            true
        }
        Claim::Lower(first) => {
            if !into.iter().any(|e| same(e, &rule)) {
                ctx.error(
                    Some(id.span()),
                    redefined(kind, id.get_ref(), &first, ctx.layer),
                );
            }
            false
        }
        Claim::Bad => false,
    }
}

/// Two rules are the same when they print the same (they carry no source).
fn same_debug<T: std::fmt::Debug>(a: &T, b: &T) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

/// A higher layer defines a rule with the id of a lower layer's rule and
/// different content.
fn redefined(kind: &str, id: &str, first: &Seen, layer: &LayerKind) -> String {
    let at = &first.at;
    let by = match &first.layer {
        LayerKind::Baseline => "the baseline".to_string(),
        other => format!("the {} policy", other.label()),
    };
    let hint = match (layer, &first.layer) {
        (LayerKind::Local, LayerKind::Baseline) => {
            "; give this one another id, or turn the baseline off with `baseline = false`"
        }
        _ => "; give this one another id",
    };
    format!(
        "{kind} `{id}` is already defined by {by} ({}:{}:{}) and a {} file can only add \
         rules, not change that one{hint}",
        at.file.display(),
        at.line,
        at.col,
        match layer {
            LayerKind::Managed { .. } => "managed",
            _ => "local",
        }
    )
}

impl Merged {
    /// Fold one layer into the merge. Each concern is read by its own
    /// function; the order of the calls is the order its problems are
    /// reported in.
    fn add(&mut self, ctx: &mut Ctx<'_>, raw: RawPolicy) {
        check_version(ctx, raw.version);
        self.add_max_body_bytes(ctx, raw.max_body_bytes);
        self.add_on_unparseable(ctx, raw.on_unparseable);
        self.add_unscanned_audio(ctx, raw.unscanned_audio);
        self.add_on_audit_backlog(ctx, raw.on_audit_backlog);
        if let Some(intercept) = raw.intercept {
            self.add_intercept(ctx, intercept);
        }
        if let Some(models) = raw.models {
            self.add_models(ctx, models);
        }
        self.add_guardrails(ctx, raw.guardrails);
        self.add_secret_rules(ctx, raw.secret_rules);
        self.add_secret_sources(ctx, raw.secret_sources);
        self.add_budgets(ctx, raw.budgets);
        self.add_rate_limits(ctx, raw.rate_limits);
        self.add_unpriced(ctx, raw.unpriced);
        self.add_default_output_tokens(ctx, raw.default_output_tokens);
        self.add_prices(ctx, raw.prices);
        if let Some(audit) = raw.audit {
            self.add_audit(ctx, audit);
        }
        self.add_routes(ctx, raw.routes);
    }

    /// `[routes]`: `gateway` if any layer says so (a higher layer cannot
    /// send direct what a lower one routes through the gateway).
    fn add_routes(
        &mut self,
        ctx: &mut Ctx<'_>,
        routes: std::collections::BTreeMap<String, Spanned<String>>,
    ) {
        for (provider, route) in routes {
            if provider != "*" && !super::known_provider_name(&provider) {
                ctx.error(
                    Some(route.span()),
                    format!(
                        "`routes.{provider}`: unknown provider (known: *, {})",
                        known_providers()
                    ),
                );
                continue;
            }
            match route.get_ref().as_str() {
                "gateway" => {
                    self.origin(ctx, "route", &provider, "gateway".into(), route.span());
                    if !self.gateway_routes.contains(&provider) {
                        self.gateway_routes.push(provider);
                    }
                }
                "direct" => {
                    if self
                        .gateway_routes
                        .iter()
                        .any(|p| *p == provider || p == "*")
                    {
                        ctx.note(
                            route.span(),
                            format!("`routes.{provider} = \"direct\"` has no effect: a layer below or an earlier file routes it through the gateway"),
                        );
                    }
                }
                other => ctx.error(
                    Some(route.span()),
                    format!(
                        "`routes.{provider}`: expected \"direct\" or \"gateway\", got {other:?}"
                    ),
                ),
            }
        }
    }

    /// `max_body_bytes`: the smallest of all layers.
    fn add_max_body_bytes(&mut self, ctx: &mut Ctx<'_>, value: Option<Spanned<u64>>) {
        let Some(v) = value else { return };
        let n = *v.get_ref();
        if n == 0 {
            ctx.error(Some(v.span()), "`max_body_bytes` must be at least 1");
            return;
        }
        if *ctx.layer == LayerKind::Baseline {
            self.baseline_defaults.max_body_bytes = Some(n);
            return;
        }
        self.max_body_bytes = Some(self.max_body_bytes.map_or(n, |m| m.min(n)));
    }

    /// `on_unparseable`: `block` if any layer says so.
    fn add_on_unparseable(&mut self, ctx: &mut Ctx<'_>, value: Option<Spanned<String>>) {
        let Some(v) = value else { return };
        match v.get_ref().as_str() {
            "block" => self.on_unparseable = Some(OnUnparseable::Block),
            "forward" => {
                if self
                    .on_unparseable
                    .is_some_and(|v| v != OnUnparseable::Forward)
                {
                    ctx.note(v.span(), "`on_unparseable = \"forward\"` has no effect: a layer below or an earlier file says \"block\"");
                }
                self.on_unparseable.get_or_insert(OnUnparseable::Forward);
            }
            other => ctx.error(
                Some(v.span()),
                format!("`on_unparseable`: expected \"block\" or \"forward\", got {other:?}"),
            ),
        }
    }

    /// `unscanned_audio`: `block` if any layer says so.
    fn add_unscanned_audio(&mut self, ctx: &mut Ctx<'_>, value: Option<Spanned<String>>) {
        let Some(v) = value else { return };
        match v.get_ref().as_str() {
            "block" => self.unscanned_audio = Some(UnscannedAudio::Block),
            "allow" => {
                if self
                    .unscanned_audio
                    .is_some_and(|v| v != UnscannedAudio::Allow)
                {
                    ctx.note(v.span(), "`unscanned_audio = \"allow\"` has no effect: a layer below or an earlier file says \"block\"");
                }
                self.unscanned_audio.get_or_insert(UnscannedAudio::Allow);
            }
            other => ctx.error(
                Some(v.span()),
                format!("`unscanned_audio`: expected \"block\" or \"allow\", got {other:?}"),
            ),
        }
    }

    /// `on_audit_backlog`: `block` if any layer says so.
    fn add_on_audit_backlog(&mut self, ctx: &mut Ctx<'_>, value: Option<Spanned<String>>) {
        let Some(v) = value else { return };
        match v.get_ref().as_str() {
            "block" => self.on_audit_backlog = Some(OnAuditBacklog::Block),
            "allow" => {
                if self
                    .on_audit_backlog
                    .is_some_and(|v| v != OnAuditBacklog::Allow)
                {
                    ctx.note(v.span(), "`on_audit_backlog = \"allow\"` has no effect: a layer below or an earlier file says \"block\"");
                }
                self.on_audit_backlog.get_or_insert(OnAuditBacklog::Allow);
            }
            other => ctx.error(
                Some(v.span()),
                format!("`on_audit_backlog`: expected \"block\" or \"allow\", got {other:?}"),
            ),
        }
    }

    /// `[intercept]`: host and exclude patterns are unions;
    /// `unknown_endpoints` the tightest.
    fn add_intercept(&mut self, ctx: &mut Ctx<'_>, intercept: RawIntercept) {
        let RawIntercept {
            hosts: raw_hosts,
            exclude: raw_exclude,
            unknown_endpoints,
        } = intercept;
        // A table that only tightens `unknown_endpoints` must not replace
        // the default host list with an empty one (intercepting nothing);
        // an empty `[intercept]` table still means "intercept nothing".
        let sets_hosts = raw_hosts.is_some() || raw_exclude.is_some();
        if sets_hosts || unknown_endpoints.is_none() {
            let rank = ctx.layer.rank();
            let (mut hosts, mut exclude) = (Vec::new(), Vec::new());
            for (key, raw, into) in [
                ("hosts", raw_hosts, &mut hosts),
                ("exclude", raw_exclude, &mut exclude),
            ] {
                let raw = raw.unwrap_or_default();
                let kind = if key == "hosts" {
                    "intercept host"
                } else {
                    "intercept exclude"
                };
                for item in &raw {
                    if let Ok(p) = HostPattern::parse(item.get_ref()) {
                        self.origin(ctx, kind, &p.to_string(), String::new(), item.span());
                    }
                }
                add_host_patterns(ctx, key, raw, into);
            }
            self.intercept.push((rank, hosts, exclude));
        }
        if let Some(v) = unknown_endpoints {
            self.add_unknown_endpoints(ctx, v);
        }
    }

    /// `[intercept] unknown_endpoints`: block, then scan, then forward.
    fn add_unknown_endpoints(&mut self, ctx: &mut Ctx<'_>, value: Spanned<String>) {
        let Some(new) = UnknownEndpoints::parse(value.get_ref()) else {
            ctx.error(
                Some(value.span()),
                "unknown_endpoints must be \"scan\", \"block\" or \"forward\"",
            );
            return;
        };
        self.unknown_endpoints = Some(match self.unknown_endpoints {
            Some(before) => tighter_unknown_endpoints(before, new),
            None => new,
        });
    }

    /// Remember where a rule of the merged policy came from.
    fn origin(
        &mut self,
        ctx: &Ctx<'_>,
        kind: &'static str,
        id: &str,
        summary: String,
        span: std::ops::Range<usize>,
    ) {
        self.origins.push(RuleOrigin {
            kind,
            id: id.to_string(),
            summary,
            layer: ctx.layer.label().to_string(),
            at: ctx.locate(span),
        });
    }

    /// `[[guardrails]]`: a union; ids are unique within a layer, and a
    /// higher layer may repeat a lower layer's rule only unchanged.
    fn add_guardrails(&mut self, ctx: &mut Ctx<'_>, rules: Vec<RawGuardrail>) {
        for rule in rules {
            let id = rule.id.clone();
            let claim = claim_id(ctx, &mut self.guardrail_ids, "guardrail", &id);
            let Some(g) = guardrail(ctx, rule) else {
                continue;
            };
            let summary = format!(
                "{} {} on {}",
                g.detector.describe(),
                g.action.name(),
                directions(g.on_request, g.on_response)
            );
            let placed = Placed {
                kind: "guardrail",
                id: &id,
                summary,
            };
            let same = |e: &Guardrail, g: &Guardrail| {
                e.id == g.id
                    && e.detector == g.detector
                    && e.action == g.action
                    && e.on_request == g.on_request
                    && e.on_response == g.on_response
                    && e.message == g.message
            };
            place(
                ctx,
                claim,
                placed,
                g,
                &mut self.guardrails,
                same,
                &mut self.origins,
            );
        }
    }

    /// `[[secret_rules]]`: a union; each remembers the file that defined it.
    fn add_secret_rules(&mut self, ctx: &mut Ctx<'_>, rules: Vec<RawSecretRule>) {
        for rule in rules {
            let id = rule.id.clone();
            let claim = claim_id(ctx, &mut self.secret_ids, "secret rule", &id);
            let Some(rule) = secret_rule(ctx, rule) else {
                continue;
            };
            let placed = Placed {
                kind: "secret rule",
                id: &id,
                summary: format!("regex {:?}", rule.regex),
            };
            let rule_id = rule.id.clone();
            let same = |e: &SecretRule, r: &SecretRule| e == r;
            if place(
                ctx,
                claim,
                placed,
                rule,
                &mut self.secret_rules,
                same,
                &mut self.origins,
            ) {
                self.secret_sources.push((rule_id, ctx.file.to_path_buf()));
            }
        }
    }

    /// `[[secret_sources]]`: every usable rule of each file joins the
    /// secret rules; what cannot be used is a note. A file that cannot be
    /// read or parsed is an error of the policy file naming it.
    fn add_secret_sources(&mut self, ctx: &mut Ctx<'_>, sources: Vec<RawSecretSource>) {
        for source in sources {
            let named = Path::new(source.gitleaks.get_ref());
            let path = ctx.file.parent().unwrap_or(Path::new(".")).join(named);
            let loaded = match super::gitleaks::load(&path, &read_trusted) {
                Ok(loaded) => loaded,
                Err(e) => {
                    ctx.error(
                        Some(source.gitleaks.span()),
                        format!("[[secret_sources]] gitleaks: {e}"),
                    );
                    continue;
                }
            };
            let mut count = 0;
            for rule in loaded.rules {
                let id = Spanned::new(source.gitleaks.span(), rule.id.clone());
                if !unique_id(ctx, &mut self.secret_ids, "secret rule", &id) {
                    continue;
                }
                count += 1;
                self.secret_sources.push((rule.id.clone(), path.clone()));
                self.secret_rules.push(rule);
            }
            let summary = format!("{count} gitleaks rules from {}", path.display());
            self.origin(
                ctx,
                "secret source",
                source.gitleaks.get_ref(),
                summary,
                source.gitleaks.span(),
            );
            self.notes.extend(loaded.notes);
            self.source_files.extend(loaded.files);
        }
    }

    /// `[[budgets]]`: a union; a higher layer may repeat a lower layer's
    /// budget only unchanged (so it cannot raise it).
    fn add_budgets(&mut self, ctx: &mut Ctx<'_>, budgets: Vec<RawBudget>) {
        for b in budgets {
            let id = b.id.clone();
            let claim = claim_id(ctx, &mut self.budget_ids, "budget", &id);
            let Some(rule) = budget_rule(ctx, b) else {
                continue;
            };
            let summary = format!(
                "{} USD per {} per {}",
                rule.limit_usd,
                rule.per.name(),
                rule.window.name()
            );
            let placed = Placed {
                kind: "budget",
                id: &id,
                summary,
            };
            place(
                ctx,
                claim,
                placed,
                rule,
                &mut self.budgets,
                same_debug,
                &mut self.origins,
            );
        }
    }

    /// `[[rate_limits]]`: as budgets.
    fn add_rate_limits(&mut self, ctx: &mut Ctx<'_>, limits: Vec<RawRateLimit>) {
        for r in limits {
            let id = r.id.clone();
            let claim = claim_id(ctx, &mut self.rate_ids, "rate limit", &id);
            let Some(rule) = rate_limit_rule(ctx, r) else {
                continue;
            };
            let summary = format!(
                "{} requests, {} tokens per {} per {}",
                rule.requests.map_or("any".to_string(), |n| n.to_string()),
                rule.tokens.map_or("any".to_string(), |n| n.to_string()),
                rule.per.name(),
                format!("{:?}", rule.window).to_lowercase()
            );
            let placed = Placed {
                kind: "rate limit",
                id: &id,
                summary,
            };
            place(
                ctx,
                claim,
                placed,
                rule,
                &mut self.rate_limits,
                same_debug,
                &mut self.origins,
            );
        }
    }

    /// `unpriced`: the tightest of all layers (see [`tighter`]).
    fn add_unpriced(&mut self, ctx: &mut Ctx<'_>, value: Option<Spanned<toml::Value>>) {
        let Some(v) = value else { return };
        if let Some(unpriced) = unpriced(ctx, &v) {
            self.unpriced = Some(match self.unpriced {
                Some(before) => tighter(before, unpriced),
                None => unpriced,
            });
        }
    }

    /// `default_output_tokens`: the largest of all layers.
    fn add_default_output_tokens(&mut self, ctx: &mut Ctx<'_>, value: Option<Spanned<u64>>) {
        let Some(v) = value else { return };
        let n = *v.get_ref();
        if n == 0 {
            ctx.error(Some(v.span()), "`default_output_tokens` must be at least 1");
            return;
        }
        if *ctx.layer == LayerKind::Baseline {
            self.baseline_defaults.default_output_tokens = Some(n);
            return;
        }
        // A larger reservation is the tighter one.
        self.default_output_tokens = Some(self.default_output_tokens.map_or(n, |m| m.max(n)));
    }

    /// `[[prices]]`: this file's valid entries become one override layer.
    fn add_prices(&mut self, ctx: &mut Ctx<'_>, entries: Vec<Spanned<PriceEntry>>) {
        let prices: Vec<PriceEntry> = entries
            .into_iter()
            .filter_map(|entry| price_entry(ctx, entry))
            .collect();
        if !prices.is_empty() {
            self.price_layers.push(prices);
        }
    }

    /// `[audit]`: `max_content_chars` the smallest, `content` the last set.
    fn add_audit(&mut self, ctx: &mut Ctx<'_>, audit: RawAudit) {
        if let Some(v) = audit.max_content_chars {
            self.add_max_content_chars(ctx, v);
        }
        if let Some(c) = audit.content {
            if let Some(content) = audit_content(ctx, &c) {
                // The managed layer decides over local files, and both over
                // the baseline; within a layer, the last file.
                let authority = match ctx.layer {
                    LayerKind::Baseline => 0,
                    LayerKind::Local => 1,
                    LayerKind::Managed { .. } => 2,
                };
                if self.audit_content_authority.is_none_or(|a| authority >= a) {
                    self.audit_content = Some(content);
                    self.audit_content_authority = Some(authority);
                }
            }
        }
    }

    fn add_max_content_chars(&mut self, ctx: &mut Ctx<'_>, value: Spanned<u64>) {
        let n = *value.get_ref() as usize;
        if n == 0 {
            ctx.error(
                Some(value.span()),
                "`audit.max_content_chars` must be at least 1",
            );
            return;
        }
        if *ctx.layer == LayerKind::Baseline {
            self.baseline_defaults.max_content_chars = Some(n);
            return;
        }
        self.max_content_chars = Some(self.max_content_chars.map_or(n, |m| m.min(n)));
    }

    fn add_models(&mut self, ctx: &mut Ctx<'_>, models: RawModels) {
        if models.message.is_some() {
            self.models.message = models.message;
        }
        add_model_rules(
            ctx,
            &mut self.models,
            RawModelRules {
                allow: models.allow,
                deny: models.deny,
            },
            None,
            &mut self.origins,
        );
        for (name, rules) in models.providers {
            if !super::known_provider_name(&name) {
                ctx.error(
                    Some(rules.span()),
                    format!(
                        "`models.providers.{name}`: unknown provider (known: {})",
                        known_providers()
                    ),
                );
                continue;
            }
            let index = match self.models.providers.iter().position(|(n, _)| *n == name) {
                Some(i) => i,
                None => {
                    self.models
                        .providers
                        .push((name.clone(), ModelRules::default()));
                    self.models.providers.len() - 1
                }
            };
            add_model_rules(
                ctx,
                &mut self.models.providers[index].1,
                rules.into_inner(),
                Some(&name),
                &mut self.origins,
            );
        }
    }

    fn finish(self, layers: &[Layer]) -> Result<Policy, Vec<Located>> {
        let intercept = if self.intercept.is_empty() {
            InterceptList::embedded_default().map_err(|e| vec![e])?
        } else {
            // A layer's excludes apply to its own hosts and to those of
            // the layers above it, never to a lower layer's.
            let groups = self
                .intercept
                .iter()
                .map(|(rank, hosts, _)| {
                    let exclude = self
                        .intercept
                        .iter()
                        .filter(|(r, _, _)| r <= rank)
                        .flat_map(|(_, _, e)| e.iter().cloned())
                        .collect();
                    (hosts.clone(), exclude)
                })
                .collect();
            InterceptList::layered(groups)
        };
        let first = layers.first().map(|l| l.path.clone()).unwrap_or_default();
        let request_scan = compile_scan(
            &self.guardrails,
            &self.secret_rules,
            &self.secret_sources,
            |g| g.on_request,
            &first,
        )?;
        let response_scan = compile_scan(
            &self.guardrails,
            &self.secret_rules,
            &self.secret_sources,
            |g| g.on_response,
            &first,
        )?;
        let mut hash = Sha256::new();
        let sources = self.source_files.iter().map(|(path, text)| (path, text));
        for (path, text) in layers.iter().map(|l| (&l.path, &l.text)).chain(sources) {
            hash.update(path.to_string_lossy().as_bytes());
            hash.update([0]);
            hash.update(text.as_bytes());
            hash.update([0]);
        }
        let version: String = hash.finalize()[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut prices = PriceTable::embedded();
        for layer in self.price_layers {
            prices = prices.with_overrides(layer).map_err(|e| {
                // Each entry was checked as it was read.
                vec![Located {
                    file: first.clone(),
                    line: 1,
                    col: 1,
                    message: e.to_string(),
                }]
            })?;
        }
        Ok(Policy {
            version,
            sources: layers.iter().map(|l| l.path.clone()).collect(),
            source_layers: layers.iter().map(|l| l.kind.label().to_string()).collect(),
            intercept,
            models: self.models,
            guardrails: self.guardrails,
            request_scan,
            response_scan,
            max_body_bytes: self
                .max_body_bytes
                .or(self.baseline_defaults.max_body_bytes)
                .unwrap_or(DEFAULT_MAX_BODY_BYTES),
            on_unparseable: self.on_unparseable.unwrap_or(OnUnparseable::Block),
            unscanned_audio: self.unscanned_audio.unwrap_or(UnscannedAudio::Block),
            on_audit_backlog: self.on_audit_backlog.unwrap_or(OnAuditBacklog::Block),
            unknown_endpoints: self.unknown_endpoints.unwrap_or(UnknownEndpoints::Scan),
            spend: SpendPolicy {
                budgets: self.budgets,
                rate_limits: self.rate_limits,
                prices: Arc::new(prices),
                unpriced: self.unpriced.unwrap_or_default(),
                default_output_tokens: self
                    .default_output_tokens
                    .or(self.baseline_defaults.default_output_tokens)
                    .unwrap_or(DEFAULT_OUTPUT_TOKENS),
            },
            audit: AuditSettings {
                content: self.audit_content.unwrap_or(AuditContent::Hash),
                max_content_chars: self
                    .max_content_chars
                    .or(self.baseline_defaults.max_content_chars)
                    .unwrap_or(DEFAULT_MAX_CONTENT_CHARS),
            },
            notes: self.notes,
            baseline: self.baseline,
            origins: self.origins,
            gateway_routes: self.gateway_routes,
            providers: embedded_providers().map_err(|e| {
                vec![Located {
                    file: PathBuf::from("<embedded policy/providers.toml>"),
                    line: 1,
                    col: 1,
                    message: e.to_string(),
                }]
            })?,
        })
    }
}

/// The shipped provider table, parsed once.
fn embedded_providers(
) -> Result<Arc<crate::provider::ProviderTable>, crate::provider::ProviderTableError> {
    static TABLE: std::sync::OnceLock<
        Result<Arc<crate::provider::ProviderTable>, crate::provider::ProviderTableError>,
    > = std::sync::OnceLock::new();
    TABLE
        .get_or_init(|| crate::provider::ProviderTable::embedded().map(Arc::new))
        .clone()
}

/// Of two layers' `unknown_endpoints`, the one that lets less through
/// uninspected: block, then scan, then forward.
fn tighter_unknown_endpoints(a: UnknownEndpoints, b: UnknownEndpoints) -> UnknownEndpoints {
    use UnknownEndpoints::{Block, Forward, Scan};
    match (a, b) {
        (Block, _) | (_, Block) => Block,
        (Scan, _) | (_, Scan) => Scan,
        (Forward, Forward) => Forward,
    }
}

/// `version`: only 1 exists.
fn check_version(ctx: &mut Ctx<'_>, version: Option<Spanned<u32>>) {
    let Some(v) = version else { return };
    if *v.get_ref() != 1 {
        ctx.error(
            Some(v.span()),
            format!("`version`: only version 1 exists, got {}", v.get_ref()),
        );
    }
}

/// Parse `items` of `intercept.<key>` into `into`, skipping duplicates.
fn add_host_patterns(
    ctx: &mut Ctx<'_>,
    key: &str,
    items: Vec<Spanned<String>>,
    into: &mut Vec<HostPattern>,
) {
    for item in items {
        match HostPattern::parse(item.get_ref()) {
            Ok(p) if !into.contains(&p) => into.push(p),
            Ok(_) => {}
            Err(msg) => ctx.error(Some(item.span()), format!("`intercept.{key}`: {msg}")),
        }
    }
}

/// The names policy may use for providers, for error messages.
fn known_providers() -> String {
    super::known_provider_names().join(", ")
}

/// One `[[secret_rules]]` entry, or `None` once its bad regex is reported.
fn secret_rule(ctx: &mut Ctx<'_>, rule: RawSecretRule) -> Option<SecretRule> {
    if let Err(e) = regex::Regex::new(rule.regex.get_ref()) {
        ctx.error(
            Some(rule.regex.span()),
            format!("secret rule `{}`: bad regex: {e}", rule.id.get_ref()),
        );
        return None;
    }
    Some(SecretRule {
        id: rule.id.into_inner(),
        description: rule.description,
        regex: rule.regex.into_inner(),
        keywords: rule.keywords,
        entropy: rule.entropy,
        secret_group: rule.secret_group,
        allowlists: rule.allowlists,
        examples: rule.examples,
        negatives: rule.negatives,
    })
}

/// One `[[budgets]]` entry, or `None` once what is wrong with it is reported.
/// A bad `per` or `window` does not stop the checks after it; a bad limit,
/// `warn_at`, provider or time zone does.
fn budget_rule(ctx: &mut Ctx<'_>, b: RawBudget) -> Option<BudgetRule> {
    let per = scope(ctx, &b.per, "budgets");
    let window = budget_window(ctx, &b);
    let limit_usd = budget_limit(ctx, &b)?;
    check_warn_at(ctx, &b)?;
    check_budget_providers(ctx, &b)?;
    let time_zone = budget_time_zone(ctx, &b)?;
    Some(BudgetRule {
        id: b.id.into_inner(),
        per: per?,
        limit_usd,
        window: window?,
        warn_at: b.warn_at.map(Spanned::into_inner),
        providers: b.providers.map(Spanned::into_inner),
        models: b.models.map(|m| m.iter().map(|g| Glob::new(g)).collect()),
        time_zone,
    })
}

fn budget_window(ctx: &mut Ctx<'_>, b: &RawBudget) -> Option<BudgetWindow> {
    match b.window.get_ref().as_str() {
        "hour" => Some(BudgetWindow::Hour),
        "day" => Some(BudgetWindow::Day),
        "week" => Some(BudgetWindow::Week),
        "month" => Some(BudgetWindow::Month),
        other => {
            ctx.error(
                Some(b.window.span()),
                format!(
                    "budget `{}`: `window` must be hour, day, week or month, got {other:?}",
                    b.id.get_ref()
                ),
            );
            None
        }
    }
}

fn budget_limit(ctx: &mut Ctx<'_>, b: &RawBudget) -> Option<f64> {
    let limit = *b.limit_usd.get_ref();
    if !(limit.is_finite() && limit > 0.0) {
        ctx.error(
            Some(b.limit_usd.span()),
            format!("budget `{}`: `limit_usd` must be positive", b.id.get_ref()),
        );
        return None;
    }
    Some(limit)
}

fn check_warn_at(ctx: &mut Ctx<'_>, b: &RawBudget) -> Option<()> {
    let Some(w) = &b.warn_at else {
        return Some(());
    };
    let f = *w.get_ref();
    if !(f > 0.0 && f <= 1.0) {
        ctx.error(
            Some(w.span()),
            format!("budget `{}`: `warn_at` must be in (0, 1]", b.id.get_ref()),
        );
        return None;
    }
    Some(())
}

/// A budget naming an unknown provider would silently never apply.
fn check_budget_providers(ctx: &mut Ctx<'_>, b: &RawBudget) -> Option<()> {
    let Some(providers) = &b.providers else {
        return Some(());
    };
    if let Some(unknown) = providers
        .get_ref()
        .iter()
        .find(|p| !super::known_provider_name(p))
    {
        ctx.error(
            Some(providers.span()),
            format!(
                "budget `{}`: unknown provider {unknown:?} (known: {})",
                b.id.get_ref(),
                known_providers()
            ),
        );
        return None;
    }
    Some(())
}

fn budget_time_zone(ctx: &mut Ctx<'_>, b: &RawBudget) -> Option<TimeZone> {
    let Some(name) = &b.time_zone else {
        return Some(TimeZone::UTC);
    };
    match parse_time_zone(name.get_ref()) {
        Ok(tz) => Some(tz),
        Err(e) => {
            ctx.error(
                Some(name.span()),
                format!("budget `{}`: `time_zone`: {e}", b.id.get_ref()),
            );
            None
        }
    }
}

/// One `[[rate_limits]]` entry, or `None` once what is wrong with it is
/// reported.
fn rate_limit_rule(ctx: &mut Ctx<'_>, r: RawRateLimit) -> Option<RateLimitRule> {
    let per = scope(ctx, &r.per, "rate_limits");
    let window = rate_window(ctx, &r);
    let requests = r.requests.as_ref().map(|v| *v.get_ref());
    let tokens = r.tokens.as_ref().map(|v| *v.get_ref());
    if requests.unwrap_or(0) == 0 && tokens.unwrap_or(0) == 0 {
        ctx.error(
            Some(r.id.span()),
            format!(
                "rate limit `{}`: set `requests` or `tokens` (at least 1)",
                r.id.get_ref()
            ),
        );
        return None;
    }
    Some(RateLimitRule {
        id: r.id.into_inner(),
        per: per?,
        requests,
        tokens,
        window: window?,
    })
}

fn rate_window(ctx: &mut Ctx<'_>, r: &RawRateLimit) -> Option<RateWindow> {
    match r.window.get_ref().as_str() {
        "second" => Some(RateWindow::Second),
        "minute" => Some(RateWindow::Minute),
        "hour" => Some(RateWindow::Hour),
        "day" => Some(RateWindow::Day),
        other => {
            ctx.error(
                Some(r.window.span()),
                format!(
                    "rate limit `{}`: `window` must be second, minute, hour or day, got {other:?}",
                    r.id.get_ref()
                ),
            );
            None
        }
    }
}

/// One `[[prices]]` entry, or `None` once what is wrong with it is reported.
fn price_entry(ctx: &mut Ctx<'_>, entry: Spanned<PriceEntry>) -> Option<PriceEntry> {
    let span = entry.span();
    let entry = entry.into_inner();
    let first = entry.models.first().cloned().unwrap_or_default();
    if let Err(problem) = entry.check() {
        ctx.error(Some(span), format!("price for {first:?}: {problem}"));
        return None;
    }
    if let Some(unknown) = entry
        .providers
        .iter()
        .find(|p| !super::known_provider_name(p))
    {
        ctx.error(
            Some(span),
            format!(
                "price for {first:?}: unknown provider {unknown:?} (known: {})",
                known_providers()
            ),
        );
        return None;
    }
    Some(entry)
}

/// `[audit] content`.
fn audit_content(ctx: &mut Ctx<'_>, value: &Spanned<String>) -> Option<AuditContent> {
    match value.get_ref().as_str() {
        "none" => Some(AuditContent::None),
        "hash" => Some(AuditContent::Hash),
        "redacted" => Some(AuditContent::Redacted),
        "full" => Some(AuditContent::Full),
        other => {
            ctx.error(
                Some(value.span()),
                format!("`audit.content`: expected none, hash, redacted or full, got {other:?}"),
            );
            None
        }
    }
}

fn add_model_rules(
    ctx: &mut Ctx<'_>,
    into: &mut ModelRules,
    raw: RawModelRules,
    provider: Option<&str>,
    origins: &mut Vec<RuleOrigin>,
) {
    let scope = provider.map_or(String::new(), |p| format!("for {p}"));
    let mut note = |kind: &'static str, g: &Spanned<String>| {
        origins.push(RuleOrigin {
            kind,
            id: g.get_ref().clone(),
            summary: scope.clone(),
            layer: ctx.layer.label().to_string(),
            at: ctx.locate(g.span()),
        })
    };
    for g in raw.allow.iter().flatten() {
        note("model allow", g);
    }
    for g in &raw.deny {
        note("model deny", g);
    }
    let source = ctx.file.to_path_buf();
    let mut glob = |g: &Spanned<String>, key: &str| {
        if g.get_ref().trim().is_empty() {
            ctx.error(Some(g.span()), format!("`models.{key}`: empty pattern"));
            None
        } else {
            Some(Glob::new(g.get_ref()))
        }
    };
    if let Some(allow) = raw.allow {
        let globs: Vec<Glob> = allow.iter().filter_map(|g| glob(g, "allow")).collect();
        into.allow.push(AllowList {
            globs,
            source: source.clone(),
        });
    }
    for g in &raw.deny {
        if let Some(glob) = glob(g, "deny") {
            into.deny.push(DenyGlob {
                glob,
                source: source.clone(),
            });
        }
    }
}

/// `unpriced = "block" | "allow" | { default_usd_per_mtok = … }`.
fn unpriced(ctx: &mut Ctx<'_>, value: &Spanned<toml::Value>) -> Option<Unpriced> {
    const EXPECTED: &str =
        "`unpriced`: expected \"block\", \"allow\" or { default_usd_per_mtok = <USD> }";
    let parsed = match value.get_ref() {
        toml::Value::String(s) if s == "block" => Some(Unpriced::Block),
        toml::Value::String(s) if s == "allow" => Some(Unpriced::Allow),
        toml::Value::Table(t) if t.len() == 1 => match t.get("default_usd_per_mtok") {
            Some(toml::Value::Float(f)) => Some(*f),
            Some(toml::Value::Integer(i)) => Some(*i as f64),
            _ => None,
        }
        .filter(|rate| rate.is_finite() && *rate >= 0.0)
        .map(Unpriced::Default),
        _ => None,
    };
    if parsed.is_none() {
        ctx.error(Some(value.span()), EXPECTED);
    }
    parsed
}

/// Of two layers' `unpriced`, the one that lets less through: block, then
/// the higher default rate, then allow.
fn tighter(a: Unpriced, b: Unpriced) -> Unpriced {
    match (a, b) {
        (Unpriced::Block, _) | (_, Unpriced::Block) => Unpriced::Block,
        (Unpriced::Default(x), Unpriced::Default(y)) => Unpriced::Default(x.max(y)),
        (Unpriced::Default(x), Unpriced::Allow) | (Unpriced::Allow, Unpriced::Default(x)) => {
            Unpriced::Default(x)
        }
        (Unpriced::Allow, Unpriced::Allow) => Unpriced::Allow,
    }
}

fn scope(ctx: &mut Ctx<'_>, per: &Spanned<String>, table: &str) -> Option<Scope> {
    let scope = Scope::parse(per.get_ref());
    if scope.is_none() {
        ctx.error(
            Some(per.span()),
            format!(
                "`{table}.per`: expected user, device, provider, model or all, got {:?}",
                per.get_ref()
            ),
        );
    }
    scope
}

/// One `[[guardrails]]` entry, or `None` once what is wrong with it is
/// reported. Detector, action and directions are all checked, so one entry
/// can report several problems.
fn guardrail(ctx: &mut Ctx<'_>, raw: RawGuardrail) -> Option<Guardrail> {
    let id = raw.id.get_ref().clone();
    if id.trim().is_empty() {
        return None;
    }
    let detector = guardrail_detector(ctx, &id, &raw.id, raw.detect, raw.pattern, raw.keywords);
    let action = guardrail_action(ctx, &id, &raw.action);
    let (on_request, on_response) = match &raw.on {
        Some(on) => guardrail_directions(ctx, &id, on),
        None => (true, true),
    };
    Some(Guardrail {
        id,
        detector: detector?,
        action: action?,
        on_request,
        on_response,
        message: raw.message,
        source: ctx.file.to_path_buf(),
    })
}

/// `request`, `response` or `request and response`.
fn directions(request: bool, response: bool) -> &'static str {
    match (request, response) {
        (true, true) => "request and response",
        (true, false) => "request",
        (false, true) => "response",
        (false, false) => "nothing",
    }
}

/// Exactly one of `detect`, `pattern` or `keywords`.
fn guardrail_detector(
    ctx: &mut Ctx<'_>,
    id: &str,
    id_at: &Spanned<String>,
    detect: Option<Spanned<String>>,
    pattern: Option<Spanned<String>>,
    keywords: Option<Spanned<Vec<String>>>,
) -> Option<DetectorSpec> {
    match (detect, pattern, keywords) {
        (Some(d), None, None) => builtin_detector(ctx, id, &d),
        (None, Some(p), None) => pattern_detector(ctx, id, p),
        (None, None, Some(k)) => keywords_detector(ctx, id, &k),
        _ => {
            ctx.error(
                Some(id_at.span()),
                format!("guardrail `{id}`: set exactly one of `detect`, `pattern` or `keywords`"),
            );
            None
        }
    }
}

fn builtin_detector(ctx: &mut Ctx<'_>, id: &str, name: &Spanned<String>) -> Option<DetectorSpec> {
    if let Some(b) = Builtin::from_name(name.get_ref()) {
        return Some(DetectorSpec::Builtin(b));
    }
    let known: Vec<&str> = Builtin::ALL.iter().map(|b| b.name()).collect();
    ctx.error(
        Some(name.span()),
        format!(
            "guardrail `{id}`: unknown detector {:?} (known: {})",
            name.get_ref(),
            known.join(", ")
        ),
    );
    None
}

fn pattern_detector(ctx: &mut Ctx<'_>, id: &str, pattern: Spanned<String>) -> Option<DetectorSpec> {
    match regex::Regex::new(pattern.get_ref()) {
        Ok(_) => Some(DetectorSpec::Pattern(pattern.into_inner())),
        Err(e) => {
            ctx.error(
                Some(pattern.span()),
                format!("guardrail `{id}`: bad regex: {e}"),
            );
            None
        }
    }
}

fn keywords_detector(
    ctx: &mut Ctx<'_>,
    id: &str,
    keywords: &Spanned<Vec<String>>,
) -> Option<DetectorSpec> {
    let words: Vec<String> = keywords
        .get_ref()
        .iter()
        .filter(|w| !w.trim().is_empty())
        .cloned()
        .collect();
    if words.is_empty() {
        ctx.error(
            Some(keywords.span()),
            format!("guardrail `{id}`: `keywords` is empty"),
        );
        return None;
    }
    Some(DetectorSpec::Keywords(words))
}

fn guardrail_action(ctx: &mut Ctx<'_>, id: &str, action: &Spanned<String>) -> Option<Action> {
    match action.get_ref().as_str() {
        "block" => Some(Action::Block),
        "redact" => Some(Action::Redact),
        "warn" => Some(Action::Warn),
        "log" => Some(Action::Log),
        other => {
            ctx.error(
                Some(action.span()),
                format!(
                    "guardrail `{id}`: `action` must be block, redact, warn or log, got {other:?}"
                ),
            );
            None
        }
    }
}

/// `on`: which of (request, response) the guardrail applies to. Problems
/// are reported; the entry itself is still kept.
fn guardrail_directions(ctx: &mut Ctx<'_>, id: &str, on: &Spanned<Vec<String>>) -> (bool, bool) {
    let (mut on_request, mut on_response) = (false, false);
    let mut bad = false;
    for dir in on.get_ref() {
        match dir.as_str() {
            "request" => on_request = true,
            "response" => on_response = true,
            other => {
                bad = true;
                ctx.error(
                    Some(on.span()),
                    format!(
                        "guardrail `{id}`: `on` takes \"request\" and/or \"response\", got {other:?}"
                    ),
                )
            }
        }
    }
    if !bad && !on_request && !on_response {
        ctx.error(Some(on.span()), format!("guardrail `{id}`: `on` is empty"));
    }
    (on_request, on_response)
}

fn compile_scan(
    guardrails: &[Guardrail],
    secret_rules: &[SecretRule],
    secret_sources: &[(String, PathBuf)],
    applies: impl Fn(&Guardrail) -> bool,
    file: &Path,
) -> Result<Option<Scan>, Vec<Located>> {
    let (specs, guardrail_of): (Vec<RuleSpec>, Vec<usize>) = guardrails
        .iter()
        .enumerate()
        .filter(|(_, g)| applies(g))
        .map(|(i, g)| {
            (
                RuleSpec {
                    id: g.id.clone(),
                    detector: g.detector.clone(),
                },
                i,
            )
        })
        .unzip();
    if specs.is_empty() && secret_rules.is_empty() {
        return Ok(None);
    }
    let scanner = guard::Scanner::compile(&specs, secret_rules).map_err(|e| {
        // A broken rule is named in the message; point at the file that
        // defined it when we know which one did.
        let source = e
            .rule_index()
            .and_then(|i| guardrail_of.get(i))
            .map(|&g| guardrails[g].source.clone())
            .or_else(|| {
                let id = e.secret_rule_id()?;
                secret_sources
                    .iter()
                    .find(|(s, _)| s == id)
                    .map(|(_, p)| p.clone())
            })
            .unwrap_or_else(|| file.to_path_buf());
        vec![Located {
            file: source,
            line: 1,
            col: 1,
            message: e.to_string(),
        }]
    })?;
    // Compiled even without rules so a broken `[[secret_rules]]` entry is
    // reported; nothing to scan with, though.
    if specs.is_empty() {
        return Ok(None);
    }
    Ok(Some(Scan {
        scanner,
        guardrail_of,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_root_agent_loads_only_root_owned_files_others_cannot_write() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("50-x.toml");
        std::fs::write(&path, "").unwrap();
        let meta = |mode: u32| {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            std::fs::metadata(&path).unwrap()
        };
        if !rustix::process::geteuid().is_root() {
            // Not root: nothing is refused for its owner or mode.
            assert_eq!(untrusted(&meta(0o666)), None);
            return;
        }
        assert_eq!(untrusted(&meta(0o644)), None);
        let why = untrusted(&meta(0o664)).expect("group-writable refused");
        assert!(why.contains("chmod go-w"), "{why}");
        assert!(untrusted(&meta(0o646)).is_some(), "world-writable refused");
        std::os::unix::fs::chown(&path, Some(1000), None).unwrap();
        let why = untrusted(&meta(0o644)).expect("another owner refused");
        assert!(why.contains("owned by uid 1000"), "{why}");
    }

    fn layer(name: &str, text: &str) -> Layer {
        Layer::local(PathBuf::from(name), text)
    }

    fn errors(layers: &[Layer]) -> Vec<String> {
        load_layers(layers)
            .err()
            .unwrap_or_default()
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    fn managed(name: &str, text: &str) -> Layer {
        Layer {
            path: PathBuf::from(name),
            text: text.to_string(),
            kind: LayerKind::Managed {
                label: "managed v3".to_string(),
            },
        }
    }

    fn stack_errors(managed: Vec<Layer>, local: Vec<Layer>) -> Vec<String> {
        match load_stack(managed, local) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    const BUDGET: &str =
        "[[budgets]]\nid = \"team\"\nper = \"user\"\nlimit_usd = 5.0\nwindow = \"day\"\n";

    #[test]
    fn adding_a_budget_file_keeps_the_baselines_guardrails() {
        let policy = load_stack(Vec::new(), vec![layer("50-budget.toml", BUDGET)]).unwrap();
        assert_eq!(policy.baseline, Baseline::On);
        let ids: Vec<&str> = policy.guardrails.iter().map(|g| g.id.as_str()).collect();
        for id in ["no-secrets", "card-numbers", "us-ssn"] {
            assert!(ids.contains(&id), "{id} missing from {ids:?}");
        }
        assert_eq!(policy.spend.budgets.len(), 1);
        assert!(policy.intercept.intercepts("api.openai.com"));
        let baseline = policy
            .origins
            .iter()
            .find(|o| o.id == "no-secrets")
            .unwrap();
        assert_eq!(baseline.layer, "baseline");
        let budget = policy.origins.iter().find(|o| o.id == "team").unwrap();
        assert_eq!((budget.layer.as_str(), budget.at.line), ("local", 2));
        assert_eq!(budget.at.file, PathBuf::from("50-budget.toml"));
    }

    #[test]
    fn baseline_false_turns_the_baseline_off_and_says_where() {
        let text = format!("baseline = false\n{BUDGET}");
        let policy = load_stack(Vec::new(), vec![layer("10-own.toml", &text)]).unwrap();
        match &policy.baseline {
            Baseline::Off { by } => assert_eq!((by.line, by.col), (1, 12)),
            other => panic!("baseline {other:?}"),
        }
        assert!(policy.guardrails.is_empty());
        assert!(policy.baseline.to_string().contains("10-own.toml:1:12"));
        // Still intercepting: with no host list anywhere, the shipped one.
        assert!(policy.intercept.intercepts("api.anthropic.com"));
    }

    #[test]
    fn a_managed_lock_keeps_the_baseline_on_against_local_files() {
        let lock = managed("managed/10-lock.toml", "lock_baseline = true\n");
        let off = layer("local.toml", "baseline = false\n");
        let errors = stack_errors(vec![lock.clone()], vec![off]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("local.toml:1:12:"), "{errors:?}");
        assert!(
            errors[0].contains("managed/10-lock.toml:1:17"),
            "{errors:?}"
        );
        // The managed layer itself may turn it off only without the lock.
        let managed_off = managed("managed/20.toml", "baseline = false\n");
        assert!(load_stack(vec![managed_off], Vec::new()).is_ok());
        let errors = stack_errors(Vec::new(), vec![layer("l.toml", "lock_baseline = true\n")]);
        assert!(errors[0].contains("only the managed bundle"), "{errors:?}");
    }

    #[test]
    fn a_local_file_cannot_loosen_the_managed_layer() {
        let base = managed(
            "managed/10-base.toml",
            "[models]\ndeny = [\"gpt-4*\"]\n\n\
             [[guardrails]]\nid = \"no-tickets\"\npattern = \"TICKET-[0-9]+\"\naction = \"block\"\n\n\
             [intercept]\nhosts = [\"llm.corp.example\"]\n\n\
             [[budgets]]\nid = \"team\"\nper = \"user\"\nlimit_usd = 5.0\nwindow = \"day\"\n",
        );
        // Re-allowing a denied model: the deny still applies.
        let allow = layer("a.toml", "[models]\nallow = [\"gpt-4o\"]\n");
        let policy = load_stack(vec![base.clone()], vec![allow]).unwrap();
        assert!(super::super::decide::check_model(&policy, "openai", "gpt-4o").is_err());
        // Weakening a managed guardrail under its id is refused...
        let weaker = layer(
            "b.toml",
            "[[guardrails]]\nid = \"no-tickets\"\npattern = \"TICKET-[0-9]+\"\naction = \"warn\"\n",
        );
        let errors = stack_errors(vec![base.clone()], vec![weaker]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("b.toml:2:6:"), "{errors:?}");
        assert!(
            errors[0].contains("the managed v3 policy (managed/10-base.toml:5:6)"),
            "{errors:?}"
        );
        // ...and under another id it only adds a rule: the block stays.
        let other = layer(
            "c.toml",
            "[[guardrails]]\nid = \"mine\"\npattern = \"TICKET-[0-9]+\"\naction = \"warn\"\n",
        );
        let policy = load_stack(vec![base.clone()], vec![other]).unwrap();
        let blocking = policy
            .guardrails
            .iter()
            .find(|g| g.id == "no-tickets")
            .unwrap();
        assert_eq!(blocking.action, Action::Block);
        // Raising a managed budget is refused; repeating it unchanged is not.
        let raised = layer("d.toml", &BUDGET.replace("5.0", "500.0"));
        let errors = stack_errors(vec![base.clone()], vec![raised]);
        assert!(
            errors[0].contains("budget `team` is already defined"),
            "{errors:?}"
        );
        assert!(load_stack(vec![base.clone()], vec![layer("e.toml", BUDGET)]).is_ok());
        // Excluding a managed host does not stop its interception.
        let exclude = layer(
            "f.toml",
            "[intercept]\nhosts = [\"api.local.example\"]\nexclude = [\"llm.corp.example\", \"api.openai.com\", \"api.local.example\"]\n",
        );
        let policy = load_stack(vec![base], vec![exclude]).unwrap();
        assert!(policy.intercept.intercepts("llm.corp.example"));
        assert!(policy.intercept.intercepts("api.openai.com"));
        assert!(!policy.intercept.intercepts("api.local.example"));
    }

    #[test]
    fn a_copy_of_the_default_in_policy_dir_is_not_a_conflict() {
        let copy = layer("00-default.toml", crate::policy::DEFAULT_POLICY);
        let policy = load_stack(Vec::new(), vec![copy]).unwrap();
        let baseline = embedded_default().unwrap();
        assert_eq!(policy.guardrails.len(), baseline.guardrails.len());
    }

    #[test]
    fn the_baselines_sizes_are_defaults_and_its_switches_are_floors() {
        let local = layer(
            "big.toml",
            "max_body_bytes = 67108864\non_unparseable = \"forward\"\n[audit]\ncontent = \"none\"\n",
        );
        let policy = load_stack(Vec::new(), vec![local]).unwrap();
        assert_eq!(policy.max_body_bytes, 64 << 20);
        assert_eq!(policy.on_unparseable, OnUnparseable::Block);
        let note = policy.notes[0].to_string();
        assert!(
            note.starts_with("big.toml:2:18:") && note.contains("no effect"),
            "{note}"
        );
        assert_eq!(policy.audit.content, AuditContent::None);
        // The managed layer's audit content decides over a local file's.
        let full = managed("m.toml", "[audit]\ncontent = \"full\"\n");
        let none = layer("n.toml", "[audit]\ncontent = \"none\"\n");
        let policy = load_stack(vec![full], vec![none]).unwrap();
        assert_eq!(policy.audit.content, AuditContent::Full);
    }

    #[test]
    fn embedded_default_loads() {
        let policy = embedded_default().unwrap();
        assert!(policy.intercept.intercepts("api.openai.com"));
        assert!(!policy.guardrails.is_empty());
        assert!(policy.request_scan.is_some());
        assert_eq!(policy.on_unparseable, OnUnparseable::Block);
        assert_eq!(policy.version.len(), 12);
    }

    #[test]
    fn unknown_key_bad_regex_unknown_detector_and_duplicates_are_located() {
        let a = layer(
            "a.toml",
            "[[guardrails]]\nid = \"x\"\npattern = \"(unclosed\"\naction = \"block\"\n\n[[guardrails]]\nid = \"y\"\ndetect = \"dna\"\naction = \"warn\"\n",
        );
        let b = layer(
            "b.toml",
            "[[guardrails]]\nid = \"z\"\nkeywords = [\"alpha\"]\naction = \"log\"\n[[guardrails]]\nid = \"z\"\nkeywords = [\"beta\"]\naction = \"log\"\n",
        );
        let c = layer("c.toml", "[models]\nalow = [\"*\"]\n");
        let errs = errors(&[a, b, c]);
        assert_eq!(errs.len(), 4, "{errs:#?}");
        assert!(
            errs[0].starts_with("c.toml:2:1:") && errs[0].contains("alow"),
            "{errs:#?}"
        );
        assert!(
            errs[1].starts_with("a.toml:3:11:") && errs[1].contains("bad regex"),
            "{errs:#?}"
        );
        assert!(
            errs[2].starts_with("a.toml:8:10:") && errs[2].contains("unknown detector"),
            "{errs:#?}"
        );
        assert!(
            errs[3].starts_with("b.toml:6:6:") && errs[3].contains("duplicate guardrail id `z`"),
            "{errs:#?}"
        );
        assert!(errs[3].contains("b.toml:2:6"), "{errs:#?}");
    }

    #[test]
    fn merge_only_tightens() {
        let a = layer(
            "10-a.toml",
            "max_body_bytes = 1000\non_unparseable = \"forward\"\n[models]\nallow = [\"gpt-*\", \"claude-*\"]\ndeny = [\"*-preview\"]\n",
        );
        let b = layer(
            "20-b.toml",
            "max_body_bytes = 5000\non_unparseable = \"block\"\n[models]\nallow = [\"gpt-*\"]\ndeny = [\"gpt-3*\"]\n",
        );
        let p = load_layers(&[a, b]).unwrap();
        assert_eq!(p.max_body_bytes, 1000);
        assert_eq!(p.on_unparseable, OnUnparseable::Block);
        assert_eq!(p.models.allow.len(), 2);
        assert_eq!(p.models.deny.len(), 2);
        // No [intercept] anywhere: the default list applies.
        assert!(p.intercept.intercepts("api.anthropic.com"));
    }

    #[test]
    fn version_changes_with_content() {
        let a = load_layers(&[layer("a.toml", "max_body_bytes = 10\n")]).unwrap();
        let b = load_layers(&[layer("a.toml", "max_body_bytes = 11\n")]).unwrap();
        assert_ne!(a.version, b.version);
    }

    #[test]
    fn guardrail_needs_exactly_one_detector_and_valid_action() {
        let errs = errors(&[layer(
            "g.toml",
            "[[guardrails]]\nid = \"two\"\ndetect = \"email\"\nkeywords = [\"x\"]\naction = \"block\"\n[[guardrails]]\nid = \"act\"\ndetect = \"email\"\naction = \"explode\"\non = [\"sideways\"]\n",
        )]);
        assert_eq!(errs.len(), 3, "{errs:#?}");
        assert!(errs[0].contains("exactly one"), "{errs:#?}");
        assert!(errs[1].contains("`action` must be"), "{errs:#?}");
        assert!(errs[2].contains("`on` takes"), "{errs:#?}");
    }

    #[test]
    fn budgets_and_rate_limits_are_validated() {
        let errs = errors(&[layer(
            "b.toml",
            "[[budgets]]\nid = \"d\"\nper = \"team\"\nlimit_usd = 5.0\nwindow = \"fortnight\"\n[[rate_limits]]\nid = \"r\"\nper = \"user\"\nwindow = \"minute\"\n",
        )]);
        assert_eq!(errs.len(), 3, "{errs:#?}");
        assert!(errs[0].contains("`budgets.per`"), "{errs:#?}");
        assert!(errs[1].contains("`window`"), "{errs:#?}");
        assert!(errs[2].contains("`requests` or `tokens`"), "{errs:#?}");
    }

    #[test]
    fn unknown_provider_in_model_rules_is_an_error() {
        let errs = errors(&[layer(
            "m.toml",
            "[models.providers.openia]\ndeny = [\"*\"]\n",
        )]);
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert!(errs[0].contains("unknown provider"), "{errs:#?}");
    }

    #[test]
    fn broken_secret_rule_is_reported_with_its_file() {
        let errs = errors(&[
            layer(
                "a.toml",
                "[[guardrails]]\nid = \"k\"\ndetect = \"secrets\"\naction = \"block\"\n",
            ),
            layer(
                "b.toml",
                "[[secret_rules]]\nid = \"acme\"\nregex = \"(unclosed\"\nkeywords = [\"acme\"]\n",
            ),
        ]);
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert!(
            errs[0].starts_with("b.toml:3:9:") && errs[0].contains("acme"),
            "{errs:#?}"
        );
    }

    #[test]
    fn unpriced_takes_the_tightest_layer() {
        let load = |texts: &[&str]| {
            let layers: Vec<Layer> = texts
                .iter()
                .enumerate()
                .map(|(i, t)| layer(&format!("{i}.toml"), t))
                .collect();
            load_layers(&layers).expect("valid").spend.unpriced
        };
        assert_eq!(load(&["version = 1\n"]), Unpriced::default());
        assert_eq!(load(&["unpriced = \"allow\"\n"]), Unpriced::Allow);
        assert_eq!(
            load(&[
                "unpriced = \"allow\"\n",
                "unpriced = { default_usd_per_mtok = 20 }\n"
            ]),
            Unpriced::Default(20.0)
        );
        assert_eq!(
            load(&[
                "unpriced = { default_usd_per_mtok = 90.5 }\n",
                "unpriced = { default_usd_per_mtok = 20 }\n"
            ]),
            Unpriced::Default(90.5)
        );
        assert_eq!(
            load(&["unpriced = \"block\"\n", "unpriced = \"allow\"\n"]),
            Unpriced::Block
        );
    }

    #[test]
    fn bad_unpriced_prices_and_time_zones_are_located() {
        let errs = errors(&[layer(
            "p.toml",
            "unpriced = \"free\"\n\
             [[prices]]\nproviders = [\"openai\"]\nmodels = [\"m\"]\ninput = -1.0\noutput = 1.0\n\
             [[prices]]\nproviders = [\"openia\"]\nmodels = [\"m2\"]\ninput = 1.0\noutput = 1.0\n\
             [[budgets]]\nid = \"b\"\nper = \"all\"\nlimit_usd = 1.0\nwindow = \"day\"\ntime_zone = \"Mars/Olympus\"\n",
        )]);
        assert_eq!(errs.len(), 4, "{errs:#?}");
        assert!(
            errs.iter()
                .any(|e| e.starts_with("p.toml:1:12:") && e.contains("`unpriced`")),
            "{errs:#?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("\"m\"") && e.contains("negative")),
            "{errs:#?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("openia") && e.contains("unknown provider")),
            "{errs:#?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("p.toml:17:") && e.contains("Mars/Olympus")),
            "{errs:#?}"
        );
        let unknown_key = errors(&[layer(
            "u.toml",
            "unpriced = { default_usd_per_mtok = 5, extra = 1 }\n",
        )]);
        assert_eq!(unknown_key.len(), 1, "{unknown_key:#?}");
    }

    #[test]
    fn price_overrides_win_over_the_shipped_table_later_files_first() {
        let policy = load_layers(&[
            layer(
                "a.toml",
                "[[prices]]\nproviders = [\"openai\"]\nmodels = [\"gpt-4o*\"]\ninput = 1.0\noutput = 2.0\n",
            ),
            layer(
                "b.toml",
                "[[prices]]\nproviders = [\"openai\"]\nmodels = [\"gpt-4o-2024-08-06\"]\ninput = 3.0\noutput = 4.0\n\
                 [[budgets]]\nid = \"b\"\nper = \"all\"\nlimit_usd = 1.0\nwindow = \"week\"\ntime_zone = \"America/New_York\"\n",
            ),
        ])
        .expect("valid");
        let price = |model| {
            policy
                .spend
                .prices
                .lookup("openai", model)
                .map(|l| l.price.input)
        };
        assert_eq!(price("gpt-4o"), Some(1.0));
        assert_eq!(price("gpt-4o-2024-08-06"), Some(3.0));
        // Untouched entries keep the shipped price.
        assert_eq!(price("gpt-4.1"), Some(2.0));
        assert_eq!(
            policy.spend.budgets[0].time_zone.iana_name(),
            Some("America/New_York")
        );
    }

    #[test]
    fn a_budget_for_an_unknown_provider_is_an_error_not_a_budget_that_never_applies() {
        let errs = errors(&[layer(
            "b.toml",
            "[[budgets]]\nid = \"b\"\nper = \"all\"\nlimit_usd = 1.0\nwindow = \"day\"\nproviders = [\"openai\", \"anthropc\"]\n",
        )]);
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert!(
            errs[0].starts_with("b.toml:6:13:") && errs[0].contains("anthropc"),
            "{errs:#?}"
        );
        let errs = errors(&[layer("o.toml", "default_output_tokens = 0\n")]);
        assert_eq!(errs.len(), 1, "{errs:#?}");
        let policy = load_layers(&[
            layer("a.toml", "default_output_tokens = 4000\n"),
            layer("b.toml", "default_output_tokens = 1000\n"),
        ])
        .expect("valid");
        assert_eq!(policy.spend.default_output_tokens, 4000);
    }

    fn intercept_layers(values: &[&str]) -> Vec<Layer> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                layer(
                    &format!("{i}.toml"),
                    &format!("[intercept]\nunknown_endpoints = \"{v}\"\n"),
                )
            })
            .collect()
    }

    #[test]
    fn unknown_endpoints_defaults_to_scan() {
        let default = embedded_default().expect("valid");
        assert_eq!(default.unknown_endpoints, UnknownEndpoints::Scan);
        let unset = load_layers(&[layer(
            "a.toml",
            "[intercept]\nhosts = [\"api.openai.com\"]\n",
        )])
        .expect("valid");
        assert_eq!(unset.unknown_endpoints, UnknownEndpoints::Scan);
    }

    #[test]
    fn unknown_endpoints_parses_each_value() {
        for value in [
            UnknownEndpoints::Scan,
            UnknownEndpoints::Block,
            UnknownEndpoints::Forward,
        ] {
            let policy = load_layers(&intercept_layers(&[value.name()])).expect("valid");
            assert_eq!(policy.unknown_endpoints, value);
            // A table that sets only `unknown_endpoints` keeps the default
            // host list instead of intercepting nothing.
            assert!(policy.intercept.intercepts("api.openai.com"));
            assert!(!policy.intercept.intercepts("mtls.api.openai.com"));
        }
        let with_hosts = load_layers(&[layer(
            "a.toml",
            "[intercept]\nhosts = [\"api.example.com\"]\nunknown_endpoints = \"block\"\n",
        )])
        .expect("valid");
        assert_eq!(with_hosts.unknown_endpoints, UnknownEndpoints::Block);
        assert!(with_hosts.intercept.intercepts("api.example.com"));
        assert!(!with_hosts.intercept.intercepts("api.openai.com"));
    }

    #[test]
    fn a_bad_unknown_endpoints_value_is_located() {
        let errs = errors(&[layer(
            "i.toml",
            "[intercept]\nhosts = [\"api.openai.com\"]\nunknown_endpoints = \"inspect\"\n",
        )]);
        assert_eq!(
            errs,
            ["i.toml:3:21: unknown_endpoints must be \"scan\", \"block\" or \"forward\""],
            "{errs:#?}"
        );
        let errs = errors(&[layer("i.toml", "[intercept]\nunknown_endpoints = 1\n")]);
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert!(errs[0].starts_with("i.toml:2:"), "{errs:#?}");
    }

    #[test]
    fn unknown_endpoints_merges_to_the_tightest() {
        use UnknownEndpoints::{Block, Forward, Scan};
        let merged = |values: &[&str]| {
            load_layers(&intercept_layers(values))
                .expect("valid")
                .unknown_endpoints
        };
        assert_eq!(merged(&["forward"]), Forward);
        assert_eq!(merged(&["forward", "forward"]), Forward);
        assert_eq!(merged(&["forward", "scan"]), Scan);
        assert_eq!(merged(&["scan", "forward"]), Scan);
        assert_eq!(merged(&["block", "forward"]), Block);
        assert_eq!(merged(&["scan", "block"]), Block);
        assert_eq!(merged(&["block", "scan", "forward"]), Block);
        // A later layer that does not set it does not loosen it.
        let mut layers = intercept_layers(&["forward"]);
        layers.push(layer("z.toml", "max_body_bytes = 10\n"));
        assert_eq!(
            load_layers(&layers).expect("valid").unknown_endpoints,
            Forward
        );
    }
}
