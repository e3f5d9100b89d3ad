//! Leaf certificates per intercepted host, minted once, refreshed before expiry.
//!
//! [`LeafCache::get_or_mint`] is single-flight: any number of concurrent first
//! connections to one host wait on one `OnceCell` and share one mint. An
//! entry is replaced once it is within [`REFRESH_BEFORE`] of expiry; a failed
//! mint leaves the cell empty so the next caller tries again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use jiff::{SignedDuration, Timestamp};
use tokio::sync::OnceCell;

use super::ca::{CaError, LocalCa};
use crate::clock::Clock;

/// Leaves are re-minted when they have less than this left.
pub const REFRESH_BEFORE: SignedDuration = SignedDuration::from_hours(24);
/// Bound on cached hosts (wildcard patterns make the set open-ended).
const MAX_ENTRIES: usize = 4096;

struct Entry {
    config: Arc<rustls::ServerConfig>,
    not_after: Timestamp,
}

type Slot = Arc<OnceCell<Entry>>;

/// Host → ready server TLS config with that host's leaf.
pub struct LeafCache {
    ca: ArcSwap<LocalCa>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    clock: Clock,
    slots: Mutex<HashMap<String, Slot>>,
    mints: AtomicU64,
}

impl LeafCache {
    /// A cache signing with `ca`, on the system clock.
    pub fn new(ca: Arc<LocalCa>) -> LeafCache {
        LeafCache::with_clock(ca, Clock::system())
    }

    /// A cache that reads `clock` (tests: jump to expiry).
    pub fn with_clock(ca: Arc<LocalCa>, clock: Clock) -> LeafCache {
        LeafCache {
            ca: ArcSwap::new(ca),
            provider: super::provider(),
            clock,
            slots: Mutex::new(HashMap::new()),
            mints: AtomicU64::new(0),
        }
    }

    /// The CA leaves are signed with.
    pub fn ca(&self) -> Arc<LocalCa> {
        self.ca.load_full()
    }

    /// Sign with `ca` from now on (after `outpost ca rotate`): every cached
    /// leaf is dropped, so the next connection to each host gets a new one.
    /// Connections already open keep theirs (the old CA stays trusted
    /// until its last leaf expires).
    pub fn replace_ca(&self, ca: Arc<LocalCa>) {
        self.ca.store(ca);
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// How many leaves have been minted (for tests, metrics and the bench).
    pub fn mint_count(&self) -> u64 {
        self.mints.load(Ordering::Relaxed)
    }

    /// The server config for `host` (normalized), minting its leaf if needed.
    pub async fn get_or_mint(&self, host: &str) -> Result<Arc<rustls::ServerConfig>, CaError> {
        let now = self.clock.now();
        let slot = self.slot_for(host, now);
        let entry = slot
            .get_or_try_init(|| async { self.mint(host, now) })
            .await?;
        Ok(entry.config.clone())
    }

    fn slot_for(&self, host: &str, now: Timestamp) -> Slot {
        // A poisoned lock only means another thread panicked mid-insert; the
        // map itself is still a valid map.
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = slots.get(host) {
            let stale = slot
                .get()
                .is_some_and(|e| e.not_after.duration_since(now) < REFRESH_BEFORE);
            if !stale {
                return slot.clone();
            }
        }
        if slots.len() >= MAX_ENTRIES {
            slots.retain(|_, s| {
                s.get()
                    .is_some_and(|e| e.not_after.duration_since(now) >= REFRESH_BEFORE)
            });
            if slots.len() >= MAX_ENTRIES {
                slots.clear();
            }
        }
        let slot = Slot::default();
        slots.insert(host.to_string(), slot.clone());
        slot
    }

    fn mint(&self, host: &str, now: Timestamp) -> Result<Entry, CaError> {
        let leaf = self.ca.load().mint_leaf(host, now)?;
        self.mints.fetch_add(1, Ordering::Relaxed);
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| CaError::Corrupt {
                path: "rustls".into(),
                message: e.to_string(),
            })?
            .with_no_client_auth()
            .with_single_cert(vec![leaf.cert], leaf.key)
            .map_err(|e| CaError::Corrupt {
                path: format!("leaf for {host}"),
                message: e.to_string(),
            })?;
        config.alpn_protocols = super::ALPN_H2_H1.iter().map(|p| p.to_vec()).collect();
        Ok(Entry {
            config: Arc::new(config),
            not_after: leaf.not_after,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::config::KeyStoreChoice;
    use crate::policy::intercept::HostPattern;

    fn ca() -> (tempfile::TempDir, Arc<LocalCa>) {
        let dir = tempfile::tempdir().unwrap();
        let hosts = vec![
            HostPattern::parse("api.openai.com").unwrap(),
            HostPattern::parse("api.anthropic.com").unwrap(),
        ];
        let ca =
            LocalCa::create(dir.path(), &hosts, KeyStoreChoice::File, Timestamp::now()).unwrap();
        (dir, Arc::new(ca))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_first_connections_mint_once() {
        let (_dir, ca) = ca();
        let cache = Arc::new(LeafCache::new(ca));
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.get_or_mint("api.openai.com").await.unwrap() })
            })
            .collect();
        let mut configs = Vec::new();
        for t in tasks {
            configs.push(t.await.unwrap());
        }
        assert_eq!(cache.mint_count(), 1);
        assert!(configs.iter().all(|c| Arc::ptr_eq(c, &configs[0])));
        cache.get_or_mint("api.anthropic.com").await.unwrap();
        assert_eq!(cache.mint_count(), 2);
    }

    #[tokio::test]
    async fn leaf_is_refreshed_before_expiry() {
        let (_dir, ca) = ca();
        let day = SignedDuration::from_hours(24);
        let time = ManualClock::new(Timestamp::now());
        let cache = LeafCache::with_clock(ca, time.clock());
        let first = cache.get_or_mint("api.openai.com").await.unwrap();
        // A 7-day leaf with 2 days left is kept; with less than 1, replaced.
        time.advance(day * 5);
        let same = cache.get_or_mint("api.openai.com").await.unwrap();
        assert!(Arc::ptr_eq(&first, &same));
        assert_eq!(cache.mint_count(), 1);
        time.advance(day + SignedDuration::from_secs(1));
        let fresh = cache.get_or_mint("api.openai.com").await.unwrap();
        assert!(!Arc::ptr_eq(&first, &fresh));
        assert_eq!(cache.mint_count(), 2);
    }

    #[tokio::test]
    async fn failed_mint_is_not_cached() {
        let (_dir, ca) = ca();
        let cache = LeafCache::new(ca);
        assert!(cache.get_or_mint("www.examplebank.com").await.is_err());
        assert!(cache.get_or_mint("www.examplebank.com").await.is_err());
        assert_eq!(cache.mint_count(), 0);
    }

    #[tokio::test]
    async fn a_replaced_ca_signs_every_leaf_after_it() {
        let (_dir, old) = ca();
        let (_dir2, new) = ca();
        let cache = LeafCache::new(old.clone());
        let before = cache.get_or_mint("api.openai.com").await.unwrap();
        cache.replace_ca(new.clone());
        let after = cache.get_or_mint("api.openai.com").await.unwrap();
        assert!(!Arc::ptr_eq(&before, &after));
        assert_eq!(cache.mint_count(), 2);
        assert_eq!(cache.ca().fingerprint(), new.fingerprint());
        assert_ne!(cache.ca().fingerprint(), old.fingerprint());
    }
}
