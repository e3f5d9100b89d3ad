//! The `outpost` command line. Nothing depends on this module.
//!
//! Every subcommand takes `--config`. Exit codes: 0 ok, 1 a check failed,
//! 2 usage or configuration error (the message names the file and key).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::audit::key::AuditKey;
use crate::audit::{self, day, read, render, verify};
use crate::clock::Clock;
use crate::config::{self, Config, ConfigError};
use crate::install::layout::Mode;
use crate::policy::intercept::InterceptList;
use crate::policy::load;
use crate::tls::ca::{self, LocalCa};

/// Exit code: a check failed.
pub const EXIT_CHECK_FAILED: u8 = 1;
/// Exit code: usage or configuration error.
pub const EXIT_CONFIG: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "outpost",
    version,
    about = "Endpoint edge agent for LLM traffic: a local HTTPS proxy that intercepts known LLM provider hosts"
)]
struct Cli {
    /// Config file (else $OUTPOST_CONFIG, else the platform config dir; none = embedded defaults).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the agent in the foreground (a service manager runs this).
    Run {
        /// Windows: run under the service control manager (the installed
        /// service's command line).
        #[arg(long)]
        service: bool,
    },
    /// Check the install end to end (service, CA, trust stores, proxy
    /// environment, policy, sync, upstream); each failure prints its fix.
    /// Exit 1 if any check fails.
    Doctor {
        /// The root `install` used.
        #[arg(long, default_value = "/")]
        root: PathBuf,
    },
    /// The local certificate authority.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Policy files.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// The audit log (`state_dir/audit`).
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Budgets (`state_dir/budget/ledger.db`).
    #[command(subcommand)]
    Budget(BudgetCommand),
    /// Signed policy bundles for the managed layer (`[sync]`).
    #[command(subcommand)]
    Bundle(BundleCommand),
    /// Store this device's credential for the company's AI gateway
    /// (`[gateway]`), read from stdin: the OS keyring, or a 0600 file under
    /// state_dir where there is none. Never put it in the config file.
    Login {
        /// Read the gateway key from stdin (its first line).
        #[arg(long, required = true)]
        gateway_key: bool,
    },
    /// Remove the stored gateway credential.
    Logout,
    /// Install the agent as a system service: the binary, config and
    /// policy directories, the service, the CA in the trust store, and the
    /// proxy environment; everything changed is listed in a manifest.
    Install {
        /// A system service (the default).
        #[arg(long, conflicts_with = "user")]
        system: bool,
        /// A service of the current user: the home directory, the user's
        /// service manager and NSS stores, no root needed.
        #[arg(long)]
        user: bool,
        /// Stage every path under DIR instead of `/` (packagers, tests).
        #[arg(long, default_value = "/")]
        root: PathBuf,
        /// Print each file and command, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Reverse exactly what `install` did, from its manifest.
    Uninstall {
        /// Only the current user's install (by default the system one, else
        /// the user's).
        #[arg(long)]
        user: bool,
        /// The root `install` used.
        #[arg(long, default_value = "/")]
        root: PathBuf,
        /// Keep the state directory (CA, audit log, ledger).
        #[arg(long)]
        keep_state: bool,
        /// Print each step, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand, Debug)]
enum BundleCommand {
    /// Make a signing key: DIR/bundle.key (private, 0600) and DIR/bundle.pub
    /// (the line to list in `[sync] public_keys`).
    Keygen {
        /// Directory to write the two files to.
        #[arg(long)]
        out: PathBuf,
    },
    /// Pack and sign the policy files of a directory into one bundle file,
    /// to publish on any static server.
    Build {
        /// Directory of policy `*.toml` files.
        #[arg(long)]
        policy: PathBuf,
        /// The `bundle.key` to sign with.
        #[arg(long)]
        key: PathBuf,
        /// The bundle's version: agents take only a higher one than theirs.
        #[arg(long)]
        version: u64,
        /// Agents refuse the bundle this many seconds after it is built.
        #[arg(long)]
        expires_in_secs: Option<u64>,
        /// The bundle file to write.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum BudgetCommand {
    /// Each budget: scope key, spent, reserved, limit, window reset time.
    /// Asks the running agent; with none running, reads the ledger file.
    Show {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Zero a budget's spend in its current window (and everything before).
    /// Needs to read `state_dir` (the agent's user or an administrator).
    Reset {
        /// The `[[budgets]]` id.
        id: String,
    },
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// Check every record's hash, link and checkpoint; exit 1 naming the
    /// first broken record (file:line, seq).
    Verify {
        /// First day to check (YYYY-MM-DD, UTC); default the oldest file.
        #[arg(long, value_name = "DAY", value_parser = parse_day_arg)]
        from: Option<jiff::civil::Date>,
        /// Last day to check (YYYY-MM-DD, UTC); default the newest file.
        #[arg(long, value_name = "DAY", value_parser = parse_day_arg)]
        to: Option<jiff::civil::Date>,
    },
    /// Print the last records as human-readable lines.
    Tail {
        /// How many records.
        #[arg(short = 'n', long = "lines", default_value_t = 10, value_name = "N")]
        lines: usize,
        /// Keep printing records as they are written (across day files).
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// Print every record since a time, as JSON Lines (exactly as stored) or CSV.
    Export {
        /// RFC 3339 time, e.g. 2026-11-24T00:00:00Z.
        #[arg(long, value_name = "TS", value_parser = parse_ts_arg)]
        since: jiff::Timestamp,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
    },
}

/// `audit export --format`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ExportFormat {
    /// One JSON record per line, byte for byte as stored.
    Jsonl,
    /// A header and one row per record (fixed columns).
    Csv,
}

fn parse_day_arg(text: &str) -> Result<jiff::civil::Date, String> {
    day::parse_day(text).ok_or_else(|| format!("expected a day as YYYY-MM-DD, got {text:?}"))
}

/// An instant with an offset (`Z`, `+01:00`): a bare local time would
/// depend on where the command happens to run.
fn parse_ts_arg(text: &str) -> Result<jiff::Timestamp, String> {
    text.parse()
        .map_err(|e| format!("expected an RFC 3339 time such as 2026-11-24T00:00:00Z ({e})"))
}

#[derive(Subcommand, Debug)]
enum PolicyCommand {
    /// Check a policy file or directory (default: policy_dir); exit 1 with
    /// `file:line:col: message` for each problem.
    Check {
        /// A `.toml` file or a directory of them.
        path: Option<PathBuf>,
    },
    /// Print the effective policy (baseline, managed bundle and policy_dir
    /// merged) and the layer and place each rule comes from.
    Show {
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum CaCommand {
    /// Print the CA certificate (PEM), creating the CA if there is none yet.
    Export,
    /// Print the CA's fingerprint, name constraints, expiry and key location.
    Show,
    /// Make a new CA for the current intercept list and put it into every
    /// trust store the install manifest lists; the old one stays trusted
    /// until its last leaf expires, and a running agent switches within
    /// seconds.
    Rotate {
        /// The root `install` used.
        #[arg(long, default_value = "/")]
        root: PathBuf,
        /// Print each step, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Take rotated-out CAs whose leaves have all expired out of the trust
    /// stores (a daily timer runs this on Linux).
    Prune {
        /// The root `install` used.
        #[arg(long, default_value = "/")]
        root: PathBuf,
    },
}

/// An error that maps to a specific exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    /// Exit code.
    pub code: u8,
    /// What to print.
    pub message: String,
}

/// Parse arguments and run. Returns the process exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() { EXIT_CONFIG } else { 0 });
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("outpost: {}", error_chain(&err));
            ExitCode::from(exit_code(&err))
        }
    }
}

/// The error and its causes on one line, skipping causes whose text the
/// message already includes (most of ours embed their source).
fn error_chain(err: &anyhow::Error) -> String {
    let mut line = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line
}

fn exit_code(err: &anyhow::Error) -> u8 {
    if let Some(exit) = err.downcast_ref::<Exit>() {
        return exit.code;
    }
    let config_like = err.chain().any(|e| {
        e.is::<ConfigError>()
            || e.is::<crate::app::StartError>()
            || e.is::<crate::located::Located>()
    });
    if config_like {
        EXIT_CONFIG
    } else {
        EXIT_CHECK_FAILED
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let command = match cli.command {
        Command::Install {
            user,
            root,
            dry_run,
            ..
        } => {
            init_stderr_logging("warn");
            return crate::install::install(&crate::install::Options {
                root,
                dry_run,
                keep_state: false,
                mode: if user { Mode::User } else { Mode::System },
            });
        }
        Command::Uninstall {
            user,
            root,
            keep_state,
            dry_run,
        } => {
            init_stderr_logging("warn");
            return crate::install::uninstall(
                &crate::install::Options {
                    root,
                    dry_run,
                    keep_state,
                    mode: if user { Mode::User } else { Mode::System },
                },
                user,
            );
        }
        Command::Bundle(command) => {
            // Publishing runs where the policy is written, with no agent config.
            init_stderr_logging("warn");
            return run_bundle(command);
        }
        other => other,
    };
    let config = config::load(cli.config.as_deref())?;
    match command {
        Command::Bundle(command) => run_bundle(command),
        Command::Install { .. } | Command::Uninstall { .. } => {
            anyhow::bail!("install and uninstall run before the config is read")
        }
        Command::Login { gateway_key: _ } => {
            init_stderr_logging("warn");
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("cannot read the gateway key from stdin")?;
            let key = line.trim();
            if key.is_empty() {
                anyhow::bail!(
                    "no gateway key on stdin (pipe it in: `outpost login --gateway-key < key.txt`)"
                );
            }
            let location = crate::gateway::login(&config.state_dir, key, config.ca_key_store)?;
            println!("gateway credential stored in {location}");
            if config.gateway.is_none() {
                println!("note: this config has no [gateway] url; calls go direct until it does");
            }
            Ok(())
        }
        Command::Logout => {
            init_stderr_logging("warn");
            if crate::gateway::logout(&config.state_dir)? {
                println!("gateway credential removed");
            } else {
                println!("no gateway credential was stored");
            }
            Ok(())
        }
        Command::Run { service: false } => run_agent(&config),
        Command::Run { service: true } => run_service(&config),
        Command::Doctor { root } => {
            init_stderr_logging("error");
            if crate::doctor::run(&config, root)? {
                Ok(())
            } else {
                Err(Exit {
                    code: EXIT_CHECK_FAILED,
                    message: "outpost doctor: some checks failed (see above)".into(),
                }
                .into())
            }
        }
        Command::Ca(command) => {
            init_stderr_logging("warn");
            run_ca(&config, command)
        }
        Command::Policy(PolicyCommand::Check { path }) => {
            init_stderr_logging("warn");
            check_policy(&config, path.as_deref())
        }
        Command::Policy(PolicyCommand::Show { json }) => {
            init_stderr_logging("warn");
            show_policy(&config, json)
        }
        Command::Audit(command) => {
            init_stderr_logging("warn");
            run_audit(&config, command)
        }
        Command::Budget(command) => {
            init_stderr_logging("warn");
            run_budget(&config, command)
        }
    }
}

/// The running agent's admin endpoint and token, if one is running for
/// this `state_dir`: the agent file names it; else `admin_listen`.
fn agent_endpoint(config: &Config) -> (std::net::SocketAddr, Option<String>) {
    match crate::admin::AgentFile::read(&config.state_dir) {
        Ok(Some(file)) => (file.admin, Some(file.token)),
        Ok(None) => (config.admin_listen, None),
        Err(e) => {
            tracing::debug!("agent file unreadable: {e}");
            (config.admin_listen, None)
        }
    }
}

fn run_budget(config: &Config, command: BudgetCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (addr, token) = agent_endpoint(config);
    let call = |method, path: &str, token: Option<String>, body: Option<String>| {
        runtime.block_on(async move {
            let call = crate::admin::call(addr, method, path, token.as_deref(), body);
            tokio::time::timeout(Duration::from_secs(10), call).await
        })
    };
    match command {
        BudgetCommand::Show { json } => {
            let rows = match call(http::Method::GET, "/budgets", None, None) {
                Ok(Ok((status, body))) if status.is_success() => {
                    let parsed: serde_json::Value = serde_json::from_str(&body)
                        .with_context(|| format!("agent at {addr}: bad /budgets answer"))?;
                    parsed["budgets"].as_array().cloned().unwrap_or_default()
                }
                Ok(Ok((status, body))) => {
                    anyhow::bail!("agent at {addr}: {status}: {}", body.trim())
                }
                Ok(Err(crate::admin::AdminCallError::Connect(_))) => {
                    eprintln!("outpost: no agent at {addr}; reading the ledger file (reserved amounts unknown)");
                    offline_budget_rows(config)?
                }
                Ok(Err(e)) => anyhow::bail!("agent at {addr}: {e}"),
                Err(_) => anyhow::bail!("agent at {addr} did not answer within 10 s"),
            };
            print_budget_rows(&rows, json)
        }
        BudgetCommand::Reset { id } => {
            match call(
                http::Method::POST,
                "/budgets/reset",
                token.clone(),
                Some(id.clone()),
            ) {
                Ok(Ok((status, _))) if status.is_success() => {
                    println!("budget `{id}` reset (agent at {addr})");
                    Ok(())
                }
                Ok(Ok((http::StatusCode::UNAUTHORIZED, _))) if token.is_none() => Err(Exit {
                    code: EXIT_CONFIG,
                    message: format!(
                        "the agent at {addr} needs the token in {}: run this as the agent's user or an administrator",
                        config.state_dir.join(crate::admin::AGENT_FILE).display()
                    ),
                }
                .into()),
                Ok(Ok((http::StatusCode::NOT_FOUND, body))) => Err(Exit {
                    code: EXIT_CHECK_FAILED,
                    message: body.trim().to_string(),
                }
                .into()),
                Ok(Ok((status, body))) => anyhow::bail!("agent at {addr}: {status}: {}", body.trim()),
                Ok(Err(crate::admin::AdminCallError::Connect(_))) => reset_offline(config, &id),
                Ok(Err(e)) => anyhow::bail!("agent at {addr}: {e}"),
                Err(_) => anyhow::bail!("agent at {addr} did not answer within 10 s"),
            }
        }
    }
}

/// The policy's budgets, as the agent would load them.
fn policy_budgets(config: &Config) -> anyhow::Result<Vec<crate::policy::rules::BudgetRule>> {
    Ok(agent_policy(config, EXIT_CONFIG)?.spend.budgets)
}

/// The policy the agent would load, or its problems as an exit with `code`.
fn agent_policy(config: &Config, code: u8) -> Result<crate::policy::Policy, Exit> {
    crate::app::load_policy(config).map_err(|errors| Exit {
        code,
        message: errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
    })
}

fn offline_budget_rows(config: &Config) -> anyhow::Result<Vec<serde_json::Value>> {
    let budgets = policy_budgets(config)?;
    let now = Clock::system().now();
    let snapshot = crate::budget::Ledger::snapshot_file(&config.state_dir, now, &budgets)
        .with_context(|| format!("{}: budget ledger", config.state_dir.display()))?
        .unwrap_or_default();
    Ok(crate::proxy::spend::show_lines(
        snapshot,
        &budgets,
        &config.identity,
        now,
    ))
}

fn reset_offline(config: &Config, id: &str) -> anyhow::Result<()> {
    let budgets = policy_budgets(config)?;
    crate::proxy::spend::find_budget(&budgets, id).map_err(|message| Exit {
        code: EXIT_CHECK_FAILED,
        message,
    })?;
    let now = Clock::system().now();
    let (ledger, writer) = crate::budget::Ledger::open(&config.state_dir, now)
        .with_context(|| format!("{}: budget ledger", config.state_dir.display()))?;
    ledger.reset(id, now)?;
    drop(ledger);
    writer.shutdown()?;
    println!("budget `{id}` reset (no agent running; ledger file updated)");
    Ok(())
}

fn print_budget_rows(rows: &[serde_json::Value], json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(rows)?)?;
        return Ok(());
    }
    if rows.is_empty() {
        writeln!(out, "no budgets in policy")?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<20} {:<8} {:<16} {:>10} {:>10} {:>10}  {:<6} RESETS AT",
        "BUDGET", "PER", "SCOPE KEY", "SPENT", "RESERVED", "LIMIT", "WINDOW"
    )?;
    for row in rows {
        let usd = |key: &str| format!("${:.4}", row[key].as_f64().unwrap_or(0.0));
        let text = |key: &str| row[key].as_str().unwrap_or("").to_string();
        let zone = text("time_zone");
        let resets = if zone == "UTC" {
            text("resets_at")
        } else {
            format!("{} ({zone})", text("resets_at"))
        };
        writeln!(
            out,
            "{:<20} {:<8} {:<16} {:>10} {:>10} {:>10}  {:<6} {resets}",
            text("budget"),
            text("per"),
            text("scope_key"),
            usd("spent_usd"),
            usd("reserved_usd"),
            usd("limit_usd"),
            text("window"),
        )?;
    }
    Ok(())
}

fn run_audit(config: &Config, command: AuditCommand) -> anyhow::Result<()> {
    let dir = audit::audit_dir(&config.state_dir);
    let result = match command {
        AuditCommand::Verify { from, to } => verify_audit(config, &dir, from, to),
        AuditCommand::Tail { lines, follow } => tail_audit(&dir, lines, follow),
        AuditCommand::Export { since, format } => export_audit(&dir, since, format),
    };
    match result {
        // `outpost audit export | head`: the reader left; that is not a failure.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(())
        }
        other => other,
    }
}

fn verify_audit(
    config: &Config,
    dir: &Path,
    from: Option<jiff::civil::Date>,
    to: Option<jiff::civil::Date>,
) -> anyhow::Result<()> {
    if day::list(dir)
        .with_context(|| format!("{}: cannot list audit files", dir.display()))?
        .is_empty()
    {
        println!("ok: no audit records in {}", dir.display());
        return Ok(());
    }
    let (key, _) = AuditKey::load(&config.state_dir).map_err(|e| Exit {
        code: EXIT_CONFIG,
        message: format!("cannot verify checkpoints without the key: {e}"),
    })?;
    match verify::verify(dir, &key, from, to, config.audit.checkpoint_every) {
        Ok(summary) => {
            println!("{summary}");
            Ok(())
        }
        Err(broken) => {
            println!("BROKEN {broken}");
            Err(Exit {
                code: EXIT_CHECK_FAILED,
                message: format!(
                    "audit log verification failed at {}:{} (seq {})",
                    broken.file.display(),
                    broken.line,
                    broken.seq
                ),
            }
            .into())
        }
    }
}

/// How often `audit tail -f` looks for new records.
const FOLLOW_POLL: Duration = Duration::from_millis(500);

fn tail_audit(dir: &Path, lines: usize, follow: bool) -> anyhow::Result<()> {
    let (records, position) = read::last_records(dir, lines)
        .with_context(|| format!("{}: cannot read audit files", dir.display()))?;
    let mut out = std::io::stdout().lock();
    for found in &records {
        writeln!(out, "{}", render::human_line(&found.record))?;
    }
    out.flush()?;
    if !follow {
        return Ok(());
    }
    let mut follower = read::Follower::new(dir, position);
    loop {
        for line in follower
            .poll()
            .with_context(|| format!("{}: cannot read audit files", dir.display()))?
        {
            match serde_json::from_slice::<audit::record::AuditRecord>(&line) {
                Ok(record) => writeln!(out, "{}", render::human_line(&record))?,
                Err(e) => writeln!(out, "(unreadable record: {e})")?,
            }
        }
        out.flush()?;
        std::thread::sleep(FOLLOW_POLL);
    }
}

fn export_audit(dir: &Path, since: jiff::Timestamp, format: ExportFormat) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if format == ExportFormat::Csv {
        out.write_all(render::csv_header().as_bytes())?;
    }
    read::records_since(
        dir,
        since,
        |found| match format {
            ExportFormat::Jsonl => {
                out.write_all(&found.line)?;
                out.write_all(b"\n")
            }
            ExportFormat::Csv => out.write_all(render::csv_row(&found.record).as_bytes()),
        },
        |file, line| {
            tracing::warn!(
                "{}:{line}: not a valid audit record; skipped (run `outpost audit verify`)",
                file.display()
            )
        },
    )?;
    out.flush()?;
    Ok(())
}

fn run_agent(config: &Config) -> anyhow::Result<()> {
    let _guard = init_daemon_logging(config);
    match &config.source {
        Some(path) => tracing::info!("config {}", path.display()),
        None => tracing::info!("no config file; running on embedded defaults"),
    }
    // Client connections run on their own per-core workers
    // (`proxy::workers`); this runtime accepts them and runs the admin
    // endpoint, reloads and shipping.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(crate::app::run(config))?;
    Ok(())
}

/// `outpost run --service`.
fn run_service(config: &Config) -> anyhow::Result<()> {
    #[cfg(windows)]
    {
        let _guard = init_daemon_logging(config);
        crate::winservice::run(config)
    }
    #[cfg(not(windows))]
    {
        let _ = config;
        anyhow::bail!(
            "--service is for Windows' service control manager; systemd and launchd run `outpost run`"
        )
    }
}

fn check_policy(config: &Config, path: Option<&std::path::Path>) -> anyhow::Result<()> {
    let path = path.unwrap_or(&config.policy_dir);
    let result = if path.is_dir() || !path.exists() {
        load::load_dir(path)
    } else {
        load::read_layer(path)
            .map_err(|e| vec![e])
            .and_then(|layer| load::load_stack(Vec::new(), vec![layer]))
    };
    match result {
        Ok(policy) => {
            let files: Vec<String> = policy
                .sources
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            println!(
                "ok: {} (version {}, {} guardrails, {} budgets, {} rate limits)",
                files.join(", "),
                policy.version,
                policy.guardrails.len(),
                policy.spend.budgets.len(),
                policy.spend.rate_limits.len()
            );
            for note in &policy.notes {
                println!("note: {note}");
            }
            Ok(())
        }
        Err(errors) => {
            for e in &errors {
                println!("{e}");
            }
            Err(Exit {
                code: EXIT_CHECK_FAILED,
                message: format!(
                    "{} problem{} in policy",
                    errors.len(),
                    if errors.len() == 1 { "" } else { "s" }
                ),
            }
            .into())
        }
    }
}

fn run_bundle(command: BundleCommand) -> anyhow::Result<()> {
    use crate::sync::bundle;
    match command {
        BundleCommand::Keygen { out } => {
            let (key_path, public) = bundle::keygen(&out)?;
            println!(
                "wrote {} (private: keep it off the devices)",
                key_path.display()
            );
            println!("wrote {}", out.join("bundle.pub").display());
            println!(
                "key id {}; list this line in [sync] public_keys:",
                public.id()
            );
            println!("{}", public.to_line());
            Ok(())
        }
        BundleCommand::Build {
            policy,
            key,
            version,
            expires_in_secs,
            out,
        } => {
            let key = bundle::SigningKey::read(&key)?;
            // `providers.toml` is provider table entries, not a policy file.
            let providers_path = policy.join(crate::sync::PROVIDERS_FILE);
            let providers = match std::fs::read_to_string(&providers_path) {
                Ok(text) => {
                    crate::provider::ProviderTable::embedded_with(&providers_path, &text)
                        .map_err(|e| policy_errors(&[located_of(e)]))?;
                    Some(text)
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => anyhow::bail!("{}: cannot read: {e}", providers_path.display()),
            };
            let layers = load::read_dir_layers(&policy)
                .map(|layers| {
                    layers
                        .into_iter()
                        .filter(|l| l.path != providers_path)
                        .collect::<Vec<_>>()
                })
                .and_then(|layers| {
                    if layers.is_empty() {
                        Err(vec![crate::located::Located {
                            file: policy.clone(),
                            line: 1,
                            col: 1,
                            message: "no *.toml policy files here".to_string(),
                        }])
                    } else {
                        Ok(layers)
                    }
                })
                .map_err(|errors| policy_errors(&errors))?;
            let now = Clock::system().now();
            let expires_at = expires_in_secs
                .map(|secs| {
                    let secs = i64::try_from(secs).unwrap_or(i64::MAX);
                    now.checked_add(jiff::SignedDuration::from_secs(secs))
                })
                .transpose()
                .context("--expires-in-secs is too far in the future")?;
            let payload = bundle::Payload {
                version,
                issued_at: now,
                expires_at,
                key_id: String::new(),
                files: layers
                    .iter()
                    .map(|layer| bundle::BundleFile {
                        name: layer
                            .path
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                        text: layer.text.clone(),
                    })
                    .collect(),
                providers,
            };
            // The policy an agent would make of it with no local files.
            load::load_stack(crate::sync::layers_of(&payload), Vec::new())
                .map_err(|errors| policy_errors(&errors))?;
            let bytes = key.sign(payload);
            std::fs::write(&out, &bytes)
                .with_context(|| format!("{}: cannot write", out.display()))?;
            println!(
                "wrote {}: version {version}, {} file{}, key {}{}",
                out.display(),
                layers.len(),
                if layers.len() == 1 { "" } else { "s" },
                key.public().id(),
                expires_at.map_or(String::new(), |t| format!(", expires {t}"))
            );
            Ok(())
        }
    }
}

/// The place a provider table problem names.
fn located_of(e: crate::provider::ProviderTableError) -> crate::located::Located {
    use crate::provider::ProviderTableError as E;
    match e {
        E::Invalid(l) | E::BadHostPattern(l) | E::Duplicate(l) => l,
    }
}

/// Policy problems as an error with the check's exit code.
fn policy_errors(errors: &[crate::located::Located]) -> anyhow::Error {
    for e in errors {
        println!("{e}");
    }
    Exit {
        code: EXIT_CHECK_FAILED,
        message: format!(
            "{} problem{} in policy",
            errors.len(),
            if errors.len() == 1 { "" } else { "s" }
        ),
    }
    .into()
}

/// `outpost policy show`: what the agent would enforce, from the files it
/// would load (an invalid set is the check's errors and exit code).
fn show_policy(config: &Config, json: bool) -> anyhow::Result<()> {
    let policy = agent_policy(config, EXIT_CHECK_FAILED)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&crate::policy::show::to_json(&policy))?
        );
    } else {
        print!("{}", crate::policy::show::to_text(&policy));
    }
    Ok(())
}

/// The intercept list in force: `policy_dir`'s, else the embedded default's.
fn intercept_list(config: &Config) -> anyhow::Result<InterceptList> {
    match crate::app::load_policy(config) {
        Ok(policy) => Ok(policy.intercept),
        Err(errors) => {
            for e in &errors {
                tracing::warn!("policy: {e}");
            }
            Ok(InterceptList::embedded_default()?)
        }
    }
}

fn run_ca(config: &Config, command: CaCommand) -> anyhow::Result<()> {
    let intercept = intercept_list(config)?;
    let hosts = intercept.hosts();
    match command {
        CaCommand::Export | CaCommand::Show => {
            let ca = LocalCa::load_or_create(
                &config.state_dir,
                hosts,
                config.ca_key_store,
                Clock::system().now(),
            )?;
            if matches!(command, CaCommand::Export) {
                print!("{}", ca.cert_pem());
            } else {
                print_ca(config, &ca, &intercept);
            }
        }
        CaCommand::Rotate { root, dry_run } => {
            let options = install_options(root, dry_run);
            let now = Clock::system().now();
            if let Some(ca) = crate::install::rotate::rotate(config, &options, hosts, now)? {
                println!();
                print_ca(config, &ca, &intercept);
                println!();
                println!(
                    "A running agent signs with the new CA within {} s.",
                    crate::app::CA_RELOAD.as_secs()
                );
            }
        }
        CaCommand::Prune { root } => {
            let options = install_options(root, false);
            let pruned = crate::install::rotate::prune(config, &options, Clock::system().now())?;
            let waiting = ca::retiring(&config.state_dir).len();
            println!(
                "{pruned} retired CA(s) removed from the trust stores; {waiting} still retiring"
            );
        }
    }
    Ok(())
}

fn install_options(root: PathBuf, dry_run: bool) -> crate::install::Options {
    crate::install::Options {
        root,
        dry_run,
        keep_state: false,
        mode: Mode::System,
    }
}

fn print_ca(config: &Config, ca: &LocalCa, intercept: &InterceptList) {
    let expiry = ca.not_after();
    println!(
        "certificate:  {}",
        ca::cert_file(&config.state_dir).display()
    );
    println!("fingerprint:  SHA-256 {}", ca.fingerprint());
    // Numeric fields of a Timestamp only: formatting cannot fail.
    println!("expires:      {}", expiry.strftime("%Y-%m-%d %H:%M UTC"));
    println!("permits:      {}", ca.permitted().join(", "));
    println!(
        "excludes:     {}",
        if ca.excludes_all_ips() {
            "every IPv4 and IPv6 address"
        } else {
            "no IP ranges (this CA predates Outpost's constraints: rotate it)"
        }
    );
    println!("key:          {}", ca.key_location());
    for (_, retiring) in ca::retiring(&config.state_dir) {
        let fingerprint = crate::install::trust::CaCert::from_pem(&retiring.cert_pem)
            .map(|c| c.fingerprint())
            .unwrap_or_else(|e| e.to_string());
        println!(
            "retiring:     SHA-256 {fingerprint}, still trusted until {} (rotated out; signs nothing)",
            retiring.retire_after.strftime("%Y-%m-%d %H:%M UTC")
        );
    }
    let uncovered = ca.uncovered(intercept.hosts());
    if !uncovered.is_empty() {
        let names: Vec<String> = uncovered.iter().map(|h| h.to_string()).collect();
        println!(
            "NOT COVERED:  {} (policy intercepts these but the CA cannot sign for them; \
             they are tunnelled until `outpost ca rotate`)",
            names.join(", ")
        );
    }
}

/// The log filter: `RUST_LOG`, else `log_level`. A bare `debug` or `trace`
/// is Outpost's own: the libraries under it stay at `info` (their
/// per-frame logs of a 30 MB upload would bury everything else); a full
/// filter (`outpost=debug,h2=trace`) is taken as written.
fn filter(default: &str) -> EnvFilter {
    let default = match default.trim() {
        level @ ("debug" | "trace") => format!("info,outpost={level}"),
        other => other.to_string(),
    };
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&default))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    match format!("{}=info", crate::app::ANNOUNCE).parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    }
}

fn init_stderr_logging(default: &str) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter(default))
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// Log lines queued for the log file's writer thread.
const LOG_QUEUE_LINES: usize = 4096;

/// stderr plus a daily-rolling file under `state_dir/logs`. The guard flushes
/// the file writer when dropped.
fn init_daemon_logging(config: &Config) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    let stderr = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_filter(filter(&config.log_level));
    let dir = config.state_dir.join("logs");
    let appender = crate::tls::store::create_private_dir(&dir)
        .map_err(|e| e.to_string())
        .and_then(|()| {
            tracing_appender::rolling::Builder::new()
                .rotation(tracing_appender::rolling::Rotation::DAILY)
                .filename_prefix("outpost")
                .filename_suffix("log")
                .max_log_files(config.log_retention_days.max(1))
                .build(&dir)
                .map_err(|e| e.to_string())
        });
    match appender {
        Ok(appender) => {
            // The queue's slots are allocated up front (the default of
            // 128,000 lines is 4 MB); the log is lossy when full, so that a
            // burst never blocks the proxy. Audit records do not go here.
            let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
                .buffered_lines_limit(LOG_QUEUE_LINES)
                .lossy(true)
                .finish(appender);
            let file = tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(writer)
                .with_filter(filter(&config.log_level));
            let _ = tracing_subscriber::registry()
                .with(stderr)
                .with(file)
                .try_init();
            Some(guard)
        }
        Err(err) => {
            let _ = tracing_subscriber::registry().with(stderr).try_init();
            tracing::warn!(
                "no log file in {}: {err}; logging to stderr only",
                dir.display()
            );
            None
        }
    }
}
