//! `outpost ca rotate` and `outpost ca prune`.
//!
//! Rotation, in the order that keeps every client working:
//! 1. a new CA is generated in memory and put into every trust store the
//!    install manifest lists, beside the old one, and into the client
//!    bundles (both CAs);
//! 2. only then does it become the agent's CA (`state_dir/ca`): a running
//!    agent notices within seconds and signs every new leaf with it, while
//!    connections already open keep their old leaves;
//! 3. the old certificate is kept as *retiring* until its last leaf has
//!    expired ([`LEAF_VALIDITY`] after the switch); `outpost ca prune`
//!    (daily, from a systemd timer on Linux) then takes it out of every
//!    store. Its key is gone at step 2: nothing is signed with it again.

use std::path::Path;

use anyhow::Context;
use jiff::{SignedDuration, Timestamp};

use super::layout::Platform;
use super::trust::{self, CaCert};
use super::{find_manifest, Installer, Options};
use crate::config::Config;
use crate::policy::intercept::HostPattern;
use crate::tls::ca::{self, LocalCa, LEAF_VALIDITY};

/// Slack after the last old leaf's expiry: the agent's CA check interval,
/// and clocks a little apart.
const RETIRE_SLACK: SignedDuration = SignedDuration::from_mins(10);

/// `outpost ca rotate`: the new CA (none on a dry run).
pub fn rotate(
    config: &Config,
    options: &Options,
    hosts: &[HostPattern],
    now: Timestamp,
) -> anyhow::Result<Option<LocalCa>> {
    let state = &config.state_dir;
    let old = LocalCa::load(state).ok();
    let new = LocalCa::generate(hosts, now)?;
    let new_cert = CaCert::from_pem(&new.cert_pem)?;
    let mut cas = vec![new_cert.clone()];
    if let Some(old) = &old {
        cas.push(CaCert::from_pem(old.cert_pem())?);
    }
    for (_, retiring) in ca::retiring(state) {
        cas.push(CaCert::from_pem(&retiring.cert_pem)?);
    }

    // 1. Trusted everywhere first.
    match find_manifest(options) {
        Some((path, manifest)) => {
            let layout = manifest.layout()?;
            let stores = manifest.trust.clone();
            let mut ins = Installer {
                options,
                manifest,
                save_to: Some(path.clone()),
            };
            ins.trust(&layout, &stores, &cas)?;
            ins.write_manifest(&path)?;
        }
        None if Platform::current() == Platform::Windows => {
            windows_root(options, &["-addstore", "-f", "Root"], &new_cert)?;
        }
        None => println!(
            "no install manifest under {}: give clients the new CA yourself (`outpost ca export`)",
            options.root.display()
        ),
    }
    if options.dry_run {
        println!("(dry run: the new CA was not stored)");
        return Ok(None);
    }

    // 2. The agent's CA; 3. the old one retiring.
    if let Some(old) = &old {
        let until = now + LEAF_VALIDITY + RETIRE_SLACK;
        ca::retire(state, old.cert_pem(), until)?;
        println!(
            "retiring CA SHA-256 {}: trusted until {}, then `outpost ca prune` removes it",
            old.fingerprint(),
            until.strftime("%Y-%m-%d %H:%M UTC")
        );
    }
    let ca = new.store(state, config.ca_key_store)?;
    give_to_state_owner(state);
    prune(config, options, now)?;
    Ok(Some(ca))
}

/// `outpost ca prune`: take every retiring CA whose leaves have all
/// expired out of the trust stores. Returns how many.
pub fn prune(config: &Config, options: &Options, now: Timestamp) -> anyhow::Result<usize> {
    let state = &config.state_dir;
    let (due, keep): (Vec<_>, Vec<_>) = ca::retiring(state)
        .into_iter()
        .partition(|(_, r)| r.retire_after <= now);
    if due.is_empty() {
        return Ok(0);
    }
    let current = LocalCa::load(state)
        .ok()
        .map(|ca| CaCert::from_pem(ca.cert_pem()))
        .transpose()?;
    let remaining: Vec<CaCert> = current
        .into_iter()
        .chain(
            keep.iter()
                .filter_map(|(_, r)| CaCert::from_pem(&r.cert_pem).ok()),
        )
        .collect();
    let manifest = find_manifest(options);
    for (file, retiring) in &due {
        let old = CaCert::from_pem(&retiring.cert_pem)
            .with_context(|| format!("{}: not a certificate", file.display()))?;
        println!("prune  CA {} (its last leaf expired)", old.short());
        if manifest.is_none() && Platform::current() == Platform::Windows {
            windows_root(options, &["-delstore", "Root"], &old)?;
        }
    }
    if let Some((path, manifest)) = manifest {
        let layout = manifest.layout()?;
        let mut ins = Installer {
            options,
            manifest,
            save_to: Some(path.clone()),
        };
        for (_, retiring) in &due {
            let old = CaCert::from_pem(&retiring.cert_pem)?;
            for store in ins.manifest.trust.clone() {
                trust::remove(&mut ins, &store, &old);
            }
            ins.forget_file(&options.path(&layout.ca_cert(old.short())));
        }
        ins.client_files(&layout, &remaining, true)?;
        ins.write_manifest(&path)?;
    }
    if !options.dry_run {
        for (file, _) in &due {
            std::fs::remove_file(file)
                .with_context(|| format!("{}: cannot remove", file.display()))?;
        }
    }
    Ok(due.len())
}

/// Windows: the Root store, by `certutil` (`-delstore` selects by SHA-1).
fn windows_root(options: &Options, args: &[&str], ca: &CaCert) -> anyhow::Result<()> {
    let mut command: Vec<String> = std::iter::once("certutil.exe")
        .chain(args.iter().copied())
        .map(String::from)
        .collect();
    if args[0] == "-delstore" {
        command.push(ca.sha1());
    } else {
        let file = std::env::temp_dir().join(format!("outpost-ca-{}.pem", ca.short()));
        std::fs::write(&file, &ca.pem)
            .with_context(|| format!("{}: cannot write", file.display()))?;
        command.push(file.display().to_string());
    }
    println!("run    {}", command.join(" "));
    if options.dry_run {
        return Ok(());
    }
    super::run_command(&command)
}

/// Run as root against a state directory the service user owns: the new
/// CA files must stay readable by the agent.
#[cfg(unix)]
fn give_to_state_owner(state: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(state) else {
        return;
    };
    if !super::is_root() || meta.uid() == 0 {
        return;
    }
    let owner = Some(rustix::fs::Uid::from_raw(meta.uid()));
    let group = Some(rustix::fs::Gid::from_raw(meta.gid()));
    let mut stack = vec![ca::cert_file(state)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()];
    while let Some(path) = stack.pop() {
        if let Err(e) = rustix::fs::chown(&path, owner, group) {
            tracing::warn!(
                "{}: cannot give to the state directory's owner: {e}",
                path.display()
            );
        }
        if let Ok(entries) = std::fs::read_dir(&path) {
            stack.extend(entries.flatten().map(|e| e.path()));
        }
    }
}

#[cfg(not(unix))]
fn give_to_state_owner(_state: &Path) {}
