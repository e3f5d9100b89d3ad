//! Wires the services together and owns start-up and shutdown.
//!
//! Start-up does everything that can fail on configuration *before* binding
//! a port: intercept list, CA, upstream trust. Then both listeners bind and
//! announce themselves (`proxy listening on ADDR`, `admin listening on ADDR`;
//! tests and scripts parse these lines when they configure port 0).
//!
//! Shutdown (SIGTERM, Ctrl-C): stop accepting, tell every connection to
//! finish its in-flight requests and close, wait up to `shutdown_grace`,
//! then return.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{self, AdminState, AgentFile};
use crate::audit::ship;
use crate::audit::writer::{AuditLog, AuditWriter};
use crate::clock::Clock;
use crate::config::Config;
use crate::located::Located;
use crate::policy::load;
use crate::policy::watch::{self, PolicyHandle};
use crate::provider::ProviderTableError;
use crate::proxy::conns::Conns;
use crate::proxy::{listener, ProxyState};
use crate::tls::ca::{CaError, LocalCa};
use crate::tls::cache::LeafCache;
use crate::upstream::{Connector, TrustError, Upstream};

/// Log target for start-up announcements that every log level shows.
pub const ANNOUNCE: &str = "outpost::announce";

/// Why the agent could not start. All are configuration problems (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The embedded default policy is invalid (a build defect).
    #[error("embedded default policy: {0}")]
    Policy(#[from] Located),
    /// The embedded provider table is invalid (a build defect).
    #[error("{0}")]
    Providers(#[from] ProviderTableError),
    /// The CA could not be loaded or created.
    #[error("CA: {0}")]
    Ca(#[from] CaError),
    /// Upstream trust roots are unusable.
    #[error("{0}")]
    Trust(#[from] TrustError),
    /// The audit log could not be opened.
    #[error("audit log: {0}")]
    Audit(#[from] crate::audit::AuditError),
    /// The budget ledger could not be opened.
    #[error("budget ledger: {0}")]
    Ledger(#[from] crate::budget::ledger::LedgerError),
    /// `[audit.export]` is unusable.
    #[error("`audit.export`: {0}")]
    Shipping(#[from] ship::ShipError),
    /// The connection worker threads could not be started.
    #[error("cannot start the connection workers: {0}")]
    Workers(std::io::Error),
    /// `state_dir/agent.json` could not be written.
    #[error("cannot write state_dir/agent.json: {0}")]
    AgentFile(std::io::Error),
    /// A listen address could not be bound.
    #[error("`{key}` = {addr}: cannot listen: {source}")]
    Bind {
        /// Config key.
        key: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A started agent: its bound addresses and a handle to stop it.
pub struct Running {
    /// Where the proxy listens.
    pub proxy_addr: SocketAddr,
    /// Where the admin endpoint listens.
    pub admin_addr: SocketAddr,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    grace: std::time::Duration,
    audit: Option<AuditWriter>,
    state: Arc<ProxyState>,
    state_dir: std::path::PathBuf,
}

impl Running {
    /// Begin shutdown and wait (bounded by `shutdown_grace`) for in-flight work.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        self.tasks.close();
        if tokio::time::timeout(self.grace, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "shutdown grace of {}s over; dropping the connections still open",
                self.grace.as_secs()
            );
        }
        // Every record submitted so far is written and synced before the
        // agent acknowledges shutdown.
        if let Some(audit) = self.audit.take() {
            audit.shutdown().await;
        }
        let state = self.state.clone();
        if let Ok(Err(err)) = tokio::task::spawn_blocking(move || {
            // Connections still open after the grace are dropped with
            // their workers, settling what they hold, before the ledger closes.
            state.workers.stop();
            state.budgets.shutdown()
        })
        .await
        {
            tracing::error!("budget ledger did not close cleanly: {err}");
        }
        AgentFile::remove(&self.state_dir);
    }
}

/// How often the CA certificate is read again (`outpost ca rotate` swaps it
/// under a running agent).
pub const CA_RELOAD: std::time::Duration = std::time::Duration::from_secs(5);

/// How often the gateway credential is read again.
const GATEWAY_KEY_RELOAD: std::time::Duration = std::time::Duration::from_secs(5);

/// Load everything, bind, and start serving.
pub async fn start(config: &Config) -> Result<Running, StartError> {
    let policy = Arc::new(PolicyHandle::new(initial_policy(config)?));
    let hosts = policy.current().intercept.hosts().to_vec();
    // One clock for every part that dates things; tests of those parts
    // inject their own.
    let clock = Clock::system();
    let ca = LocalCa::load_or_create(&config.state_dir, &hosts, config.ca_key_store, clock.now())?;
    for host in ca.uncovered(&hosts) {
        tracing::warn!(
            %host,
            "the CA's name constraints do not cover this intercepted host; it will be tunnelled. \
             Run `outpost ca rotate` and reinstall the CA to intercept it"
        );
    }
    let connector = Connector::from_config(&config.upstream)?;
    let workers = Arc::new(
        crate::proxy::workers::Workers::start(crate::proxy::workers::default_count())
            .map_err(StartError::Workers)?,
    );
    let upstream = Upstream::new(connector.clone(), &config.upstream, workers.count());
    let gateway_connector = connector.clone();
    let (audit, audit_writer) = if config.audit.enabled {
        let (log, writer) = crate::audit::writer::start_with_clock(
            &config.state_dir,
            &config.audit,
            config.ca_key_store,
            clock.clone(),
        )
        .await?;
        (Some(log), Some(writer))
    } else {
        tracing::warn!("[audit] enabled = false: no audit records are written");
        (None, None)
    };

    let budgets = crate::proxy::spend::Budgets::new(config.state_dir.clone());
    budgets.prepare(&policy.current())?;

    let bind = |key, addr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { key, addr, source })
    };
    let proxy_listener = bind("listen", config.listen).await?;
    let admin_listener = bind("admin_listen", config.admin_listen).await?;
    let proxy_addr = local_addr(&proxy_listener, "listen", config.listen)?;
    let admin_addr = local_addr(&admin_listener, "admin_listen", config.admin_listen)?;

    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    watch_policy(config, &policy, &shutdown);
    let sync = match &config.sync {
        Some(sync) => {
            let syncer = crate::sync::Syncer::new(
                config,
                sync,
                policy.clone(),
                policy_loader(config),
                audit.clone(),
                clock.clone(),
            )?;
            let status = syncer.status();
            tasks.spawn(syncer.run(shutdown.clone()));
            Some(status)
        }
        None => None,
    };
    if let Some(audit) = &audit {
        start_shipping(config, audit, connector, &clock, &shutdown, &tasks)?;
    }
    let state = Arc::new(ProxyState {
        policy,
        audit,
        identity: config.identity.clone(),
        websocket: config.websocket,
        limits: config.limits,
        buffers: Arc::new(tokio::sync::Semaphore::new(
            (config.limits.max_buffered_bytes / MIB).max(1) as usize,
        )),
        conns: Conns::new(
            connection_cap(config.limits.max_connections),
            config.limits.idle_timeout,
        ),
        budgets,
        leaves: LeafCache::with_clock(Arc::new(ca), clock.clone()),
        clock,
        gateway: config
            .gateway
            .as_ref()
            .map(|g| crate::gateway::Gateway::new(config, g, &gateway_connector, workers.count())),
        upstream,
        shutdown: shutdown.clone(),
        tasks: tasks.clone(),
        workers,
        warned_uncovered: Default::default(),
    });
    // A reload that adds budgets opens the ledger on the reload's own
    // (blocking) thread, before any call needs it.
    let preparing = Arc::downgrade(&state);
    state.policy.on_replace(move |policy| {
        if let Some(state) = preparing.upgrade() {
            if let Err(err) = state.budgets.prepare(policy) {
                tracing::error!("budget ledger unavailable: {err}");
            }
        }
    });
    if state.gateway.is_some() {
        // `outpost login` while the agent runs takes effect within seconds.
        let keys = state.clone();
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(GATEWAY_KEY_RELOAD) => {}
                    () = keys.shutdown.cancelled() => break,
                }
                let state = keys.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    if let Some(gateway) = &state.gateway {
                        gateway.reload_key();
                    }
                })
                .await;
            }
        });
    }
    let rotation = state.clone();
    let state_dir = config.state_dir.clone();
    tasks.spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(CA_RELOAD) => {}
                () = rotation.shutdown.cancelled() => break,
            }
            let state = rotation.clone();
            let dir = state_dir.clone();
            let _ = tokio::task::spawn_blocking(move || reload_ca(&state, &dir)).await;
        }
    });
    let sweeper = state.clone();
    tasks.spawn(async move {
        let mut every = tokio::time::interval(sweeper.conns.sweep_every());
        loop {
            tokio::select! {
                _ = every.tick() => sweeper.conns.sweep(),
                () = sweeper.shutdown.cancelled() => break,
            }
        }
    });
    let state_for_stop = state.clone();
    tasks.spawn(listener::serve(proxy_listener, state.clone()));
    let agent_file = AgentFile::new(admin_addr).map_err(StartError::AgentFile)?;
    agent_file
        .write(&config.state_dir)
        .map_err(|e| StartError::AgentFile(std::io::Error::other(e.to_string())))?;
    tasks.spawn(admin::serve(
        admin_listener,
        Arc::new(AdminState {
            proxy_addr,
            admin_addr,
            proxy: state,
            token: agent_file.token,
            sync,
        }),
    ));
    // Always shown, whatever the log level: scripts using port 0 read these.
    tracing::info!(target: ANNOUNCE, "proxy listening on {proxy_addr}");
    tracing::info!(target: ANNOUNCE, "admin listening on {admin_addr}");
    Ok(Running {
        proxy_addr,
        admin_addr,
        shutdown,
        tasks,
        grace: config.shutdown_grace,
        audit: audit_writer,
        state: state_for_stop,
        state_dir: config.state_dir.clone(),
    })
}

/// The policy of `policy_dir`. If it is invalid at start-up there is no
/// last good policy to keep: the embedded default applies (it blocks secrets
/// and redacts card numbers), the errors are logged and shown by `status`,
/// and the first valid save replaces it. Refusing to start instead would
/// break every HTTPS client pointed at the proxy over a typo.
/// The policy the agent enforces: the shipped baseline, the managed
/// bundle in force, and the files of `policy_dir`, merged so that each
/// layer only tightens the ones below it.
pub fn load_policy(config: &Config) -> Result<crate::policy::Policy, Vec<Located>> {
    let payload = crate::sync::stored_payload(config).unwrap_or_else(|e| {
        tracing::error!("{e}; running without the managed layer");
        None
    });
    let managed = payload
        .as_ref()
        .map(crate::sync::layers_of)
        .unwrap_or_default();
    let local = load::read_dir_layers(&config.policy_dir)?;
    let mut policy = load::load_stack(managed, local)?;
    if let Some(payload) = &payload {
        match crate::sync::providers_of(payload) {
            Ok(Some(table)) => policy.providers = Arc::new(table),
            Ok(None) => {}
            Err(e) => tracing::error!("managed provider table not used: {e}"),
        }
    }
    Ok(policy)
}

/// [`load_policy`] for the watcher.
fn policy_loader(config: &Config) -> watch::Loader {
    let config = config.clone();
    std::sync::Arc::new(move || load_policy(&config))
}

fn initial_policy(config: &Config) -> Result<crate::policy::Policy, StartError> {
    match load_policy(config) {
        Ok(policy) => {
            for note in &policy.notes {
                tracing::warn!("policy: {note}");
            }
            tracing::info!(
                version = %policy.version,
                files = ?policy.sources,
                "policy loaded"
            );
            Ok(policy)
        }
        Err(errors) => {
            for e in &errors {
                tracing::error!("policy: {e}");
            }
            tracing::error!(
                "policy_dir is invalid; running on the embedded default policy until it is fixed"
            );
            load::embedded_default().map_err(|errors| {
                StartError::Policy(errors.into_iter().next().unwrap_or_else(|| Located {
                    file: load::EMBEDDED_LABEL.into(),
                    line: 1,
                    col: 1,
                    message: "invalid".into(),
                }))
            })
        }
    }
}

/// Ship audit records to the collector, if one is configured, and keep
/// retention from deleting what it has not acknowledged.
fn start_shipping(
    config: &Config,
    audit: &AuditLog,
    connector: Connector,
    clock: &Clock,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
) -> Result<(), StartError> {
    let Some(export) = &config.audit.export else {
        return Ok(());
    };
    let dir = audit.dir().to_path_buf();
    let ship_config = ship::ShipConfig {
        endpoint: export.endpoint.clone(),
        batch_size: export.batch_size,
        headers: export.headers.clone(),
        device: config.identity.device.clone(),
    };
    let shipper =
        ship::Shipper::new(dir.clone(), ship_config, connector)?.with_clock(clock.clone());
    tasks.spawn(shipper.spawn(shutdown.clone()));
    let audit = audit.clone();
    let shutdown = shutdown.clone();
    tasks.spawn(async move {
        loop {
            let dir2 = dir.clone();
            if let Ok(day) = tokio::task::spawn_blocking(move || ship::shipped_through(&dir2)).await
            {
                audit.set_protect_from(day);
            }
            tokio::select! {
                () = tokio::time::sleep(std::time::Duration::from_secs(30)) => {}
                () = shutdown.cancelled() => break,
            }
        }
    });
    Ok(())
}

fn watch_policy(config: &Config, policy: &Arc<PolicyHandle>, shutdown: &CancellationToken) {
    let dir = config.policy_dir.clone();
    if let Err(err) = std::fs::create_dir_all(&dir) {
        tracing::warn!(
            "cannot create policy_dir {}: {err}; policy will not hot-reload",
            dir.display()
        );
        return;
    }
    // A start-up failure is still pending in the status: re-run the load so
    // the errors show there.
    let load = policy_loader(config);
    watch::reload(&load, policy);
    if let Err(err) = watch::spawn_watcher(dir.clone(), load, policy.clone(), shutdown.clone()) {
        tracing::warn!(
            "cannot watch policy_dir {}: {err}; policy will not hot-reload",
            dir.display()
        );
    }
}

fn local_addr(
    listener: &TcpListener,
    key: &'static str,
    addr: SocketAddr,
) -> Result<SocketAddr, StartError> {
    listener
        .local_addr()
        .map_err(|source| StartError::Bind { key, addr, source })
}

/// Run until SIGTERM or Ctrl-C, then shut down gracefully.
pub async fn run(config: &Config) -> Result<(), StartError> {
    // Watch for the stop signals before the listeners are announced: a
    // supervisor may send SIGTERM the moment it sees them.
    run_until(config, stop_signal()).await
}

/// Serve until `stop` resolves, then shut down gracefully (Windows' service
/// control manager says stop through this).
pub async fn run_until(
    config: &Config,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), StartError> {
    let running = start(config).await?;
    stop.await;
    tracing::info!("shutting down: finishing in-flight requests");
    running.stop().await;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT; both handlers are installed when this is
/// called, not when it is first awaited.
#[cfg(unix)]
fn stop_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, Signal, SignalKind};
    let install = |kind: SignalKind, name: &str| {
        signal(kind)
            .map_err(|err| tracing::warn!("cannot watch {name} ({err})"))
            .ok()
    };
    let term = install(SignalKind::terminate(), "SIGTERM");
    let interrupt = install(SignalKind::interrupt(), "SIGINT");
    async fn recv(signal: Option<Signal>) {
        match signal {
            Some(mut signal) => {
                signal.recv().await;
            }
            None => std::future::pending().await,
        }
    }
    async move {
        tokio::select! {
            () = recv(term) => {}
            () = recv(interrupt) => {}
        }
    }
}

#[cfg(not(unix))]
async fn stop_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

/// The unit of `ProxyState::buffers`.
const MIB: u64 = 1024 * 1024;

/// File descriptors each client connection may need: its socket and one
/// upstream socket.
#[cfg(unix)]
const FDS_PER_CONNECTION: u64 = 2;

/// Descriptors kept for everything else (listeners, audit and ledger files,
/// pooled upstream connections, logs).
#[cfg(unix)]
const FDS_RESERVED: u64 = 64;

/// `wanted` client connections, or fewer if the open-file limit cannot be
/// raised far enough: the soft `RLIMIT_NOFILE` is raised to what the cap
/// needs (up to the hard limit) so that a flood reaches the cap, not the
/// limit, and `accept` keeps working.
fn connection_cap(wanted: usize) -> usize {
    #[cfg(unix)]
    {
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        let need = wanted as u64 * FDS_PER_CONNECTION + FDS_RESERVED;
        let limit = getrlimit(Resource::Nofile);
        let soft = limit.current.unwrap_or(u64::MAX);
        let hard = limit.maximum.unwrap_or(u64::MAX);
        let mut have = soft;
        if soft < need {
            let raised = Rlimit {
                current: Some(need.min(hard)),
                maximum: limit.maximum,
            };
            if setrlimit(Resource::Nofile, raised).is_ok() {
                have = need.min(hard);
            }
        }
        let fits = (have.saturating_sub(FDS_RESERVED) / FDS_PER_CONNECTION) as usize;
        if fits < wanted {
            tracing::warn!(
                "the open-file limit ({have}) allows {fits} client connections, not \
                 limits.max_connections = {wanted}: raise the limit (LimitNOFILE) for more"
            );
        }
        wanted.min(fits).max(16)
    }
    #[cfg(not(unix))]
    {
        wanted
    }
}

/// Sign with the CA on disk if `outpost ca rotate` replaced it. A CA that
/// does not load (a rotation half written: key before certificate) is
/// tried again on the next tick; the current one stays until then.
fn reload_ca(state: &ProxyState, state_dir: &std::path::Path) {
    let on_disk = match std::fs::read_to_string(crate::tls::ca::cert_file(state_dir)) {
        Ok(pem) => pem,
        Err(_) => return,
    };
    if on_disk == state.leaves.ca().cert_pem() {
        return;
    }
    match LocalCa::load(state_dir) {
        Ok(ca) => {
            tracing::info!(
                fingerprint = %ca.fingerprint(),
                "the CA was rotated; new leaves are signed with the new CA"
            );
            state.leaves.replace_ca(Arc::new(ca));
        }
        Err(e) => tracing::debug!("the CA on disk changed but does not load yet: {e}"),
    }
}
