//! Hot reload: the policy in force, and a watcher that replaces it when the
//! files in `policy_dir` change.
//!
//! [`PolicyHandle`] holds the current [`Policy`] in an `ArcSwap`: a request
//! takes an `Arc` when it starts and keeps it to the end, so a reload never
//! changes the rules under a request in flight. The watcher (notify, on the
//! *directory*, so editors that write a temporary file and rename it work)
//! debounces bursts of events, reloads, and swaps in the new policy only if
//! it is valid. An invalid change is logged with `file:line:col`, the last
//! good policy stays in force, and the errors stay visible in
//! [`PolicyStatus`] until a valid change replaces them.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::rules::Policy;

/// Quiet time after the last file event before reloading.
const DEBOUNCE: Duration = Duration::from_millis(150);

/// What `status` reports about policy loading.
#[derive(Debug, Clone)]
pub struct PolicyStatus {
    /// Version in force.
    pub version: String,
    /// Files in force.
    pub sources: Vec<PathBuf>,
    /// When the policy in force was loaded.
    pub loaded_at: SystemTime,
    /// Problems of the latest attempted reload, if it failed.
    pub errors: Vec<String>,
    /// What the policy in force names but could not use (not errors).
    pub notes: Vec<String>,
    /// Whether the shipped baseline is in force (`on`, or `off (…)` naming
    /// the key that turned it off).
    pub baseline: String,
}

/// The policy in force and its load status.
pub struct PolicyHandle {
    current: ArcSwap<Policy>,
    status: ArcSwap<PolicyStatus>,
    /// Run on each new policy before it goes in force (off the async
    /// workers: reloads run on a blocking thread).
    prepare: OnceLock<Prepare>,
}

type Prepare = Box<dyn Fn(&Policy) + Send + Sync>;

impl PolicyHandle {
    /// A handle starting with `policy`.
    pub fn new(policy: Policy) -> PolicyHandle {
        let status = status_of(&policy, Vec::new());
        PolicyHandle {
            current: ArcSwap::from_pointee(policy),
            status: ArcSwap::from_pointee(status),
            prepare: OnceLock::new(),
        }
    }

    /// Run `prepare` on every policy before it is put in force (the budget
    /// ledger opens there when a reload adds budgets). Set once.
    pub fn on_replace(&self, prepare: impl Fn(&Policy) + Send + Sync + 'static) {
        let _ = self.prepare.set(Box::new(prepare));
    }

    /// The policy in force (keep the `Arc` for the whole request).
    pub fn current(&self) -> Arc<Policy> {
        self.current.load_full()
    }

    /// Put `policy` in force (a reload, or a test pushing policy).
    pub fn replace(&self, policy: Policy) {
        if let Some(prepare) = self.prepare.get() {
            prepare(&policy);
        }
        let status = Arc::new(status_of(&policy, Vec::new()));
        // Policy first: `status` must never name a version not yet in force
        // (tests, and operators, take it as proof of the reload).
        self.current.store(Arc::new(policy));
        self.status.store(status);
    }

    /// Record a failed reload; the policy in force does not change.
    pub fn record_errors(&self, errors: Vec<String>) {
        let mut status = (**self.status.load()).clone();
        status.errors = errors;
        self.status.store(Arc::new(status));
    }

    /// Load status.
    pub fn status(&self) -> Arc<PolicyStatus> {
        self.status.load_full()
    }
}

fn status_of(policy: &Policy, errors: Vec<String>) -> PolicyStatus {
    PolicyStatus {
        version: policy.version.clone(),
        sources: policy.sources.clone(),
        loaded_at: SystemTime::now(),
        errors,
        notes: policy.notes.iter().map(ToString::to_string).collect(),
        baseline: policy.baseline.to_string(),
    }
}

/// How the agent loads its policy (the baseline, the managed bundle and
/// `policy_dir`; see `app::load_policy`).
pub type Loader = Arc<dyn Fn() -> Result<Policy, Vec<crate::located::Located>> + Send + Sync>;

/// Load the policy with `load` and put it in `handle` now if it is valid.
/// Returns whether a new version went in force.
pub fn reload(load: &Loader, handle: &PolicyHandle) -> bool {
    match load() {
        Ok(policy) => {
            let changed = policy.version != handle.current().version;
            let had_errors = !handle.status().errors.is_empty();
            if changed {
                for note in &policy.notes {
                    tracing::warn!("policy: {note}");
                }
                tracing::info!(
                    version = %policy.version,
                    files = policy.sources.len(),
                    guardrails = policy.guardrails.len(),
                    "policy reloaded"
                );
            }
            if changed || had_errors {
                handle.replace(policy);
            }
            changed
        }
        Err(errors) => {
            for e in &errors {
                tracing::error!("policy not reloaded: {e}");
            }
            tracing::warn!(
                version = %handle.current().version,
                "keeping the last good policy until the files are fixed"
            );
            handle.record_errors(errors.iter().map(ToString::to_string).collect());
            false
        }
    }
}

/// Watch `dir` and reload into `handle` until `shutdown`. The directory must
/// exist (the agent creates it at start-up).
pub fn spawn_watcher(
    dir: PathBuf,
    load: Loader,
    handle: Arc<PolicyHandle>,
    shutdown: CancellationToken,
) -> Result<(), notify::Error> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if !event.kind.is_access() {
                let _ = tx.send(());
            }
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    tokio::spawn(async move {
        // The watcher lives as long as this task.
        let _watcher = watcher;
        loop {
            tokio::select! {
                got = rx.recv() => if got.is_none() { break },
                () = shutdown.cancelled() => break,
            }
            // Debounce: wait until events stop for a moment.
            loop {
                match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            let (load, handle) = (load.clone(), handle.clone());
            let _ = tokio::task::spawn_blocking(move || reload(&load, &handle)).await;
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn the_replace_hook_sees_each_new_policy_before_it_is_in_force() {
        let first = super::super::load::embedded_default().unwrap();
        let handle = Arc::new(PolicyHandle::new(first));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (weak, log) = (Arc::downgrade(&handle), seen.clone());
        handle.on_replace(move |policy| {
            let in_force = weak.upgrade().unwrap().current().version.clone();
            log.lock().unwrap().push((policy.version.clone(), in_force));
        });
        let mut next = super::super::load::embedded_default().unwrap();
        next.version = "next".into();
        let before = handle.current().version.clone();
        handle.replace(next);
        assert_eq!(handle.current().version, "next");
        assert_eq!(*seen.lock().unwrap(), [("next".to_string(), before)]);
    }
}
