//! Shared harness for Outpost's black-box tests; each file under `tests/` does `mod support;`.
//!
//! Words used throughout:
//! - **agent**: the `outpost` binary under test ([`Agent`]);
//! - **fake**: the stand-in provider upstream the agent forwards to ([`FakeProvider`]);
//! - **test CA**: the CA that signs the fake's certificate ([`TestCa`]);
//! - **Outpost CA**: the CA the agent generated in its state dir, which signs the leaves
//!   clients see on intercepted hosts.
//!
//! Tests are plain `#[test]` functions: the fake runs its own runtime, clients are child
//! processes (curl, Python) or async code run with [`block_on`].

// Each test binary uses a different part of the harness.
#![allow(dead_code, unused_imports)]

pub mod agent;
pub mod ca;
pub mod coding_agents;
pub mod curl;
pub mod fake;
pub mod fake_ws;
pub mod litellm;
pub mod nginx;
pub mod process;
pub mod python;
pub mod raw;
pub mod records;
pub mod tunnel;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use agent::{outpost_cli, Agent, AgentBuilder};
pub use ca::{certs_from_pem_file, summarize_cert, CertSummary, TestCa};
pub use curl::{Curl, CurlOutput};
pub use fake::{FakeProvider, FakeResponse, RecordedRequest, FAKE_MARKER_HEADER, FAKE_REPLY_TEXT};
pub use python::PythonScript;

/// The rustls crypto provider for every client and server in the tests (never the process
/// default: the dependency graph must not decide it).
pub fn ring() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Runs async client code from a sync test on a fresh current-thread runtime.
pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime")
        .block_on(future)
}

/// A loopback port that was free a moment ago (nothing listens on it after this returns).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local addr").port()
}

/// Generous per-request limit for clients; tests never assert an upper bound on time.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long [`wait_until`] waits for something that should happen soon (a reload, a
/// window elapsing, enough load) before failing. Generous: a loaded 2-core CI box is slow,
/// and a passing test never waits this long.
pub const WAIT_LIMIT: Duration = Duration::from_secs(30);

/// Polls `done` until it returns true; panics naming `what` once `limit` has passed.
///
/// Tests wait on the condition they care about rather than sleeping a fixed time and hoping
/// it happened: fast when the machine is fast, still correct when it is slow.
pub fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "waited {limit:?} for {what}; it did not happen"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A minimal OpenAI chat request.
pub fn openai_chat_body(stream: bool) -> serde_json::Value {
    serde_json::json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Say hello to the outpost test."}],
        "stream": stream,
    })
}

/// A minimal Anthropic Messages request.
pub fn anthropic_messages_body(stream: bool) -> serde_json::Value {
    serde_json::json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Say hello to the outpost test."}],
        "stream": stream,
    })
}

/// The usual trio: a test CA, a TLS fake for all provider names, and an agent that
/// resolves those names to the fake and trusts the test CA.
///
/// Fields drop in declaration order, so the agent stops before the fake.
pub struct Stack {
    pub agent: Agent,
    pub fake: FakeProvider,
    pub ca: TestCa,
}

impl Stack {
    pub fn start() -> Stack {
        Stack::start_with(|fake| fake, |agent| agent)
    }

    /// Lets a test adjust the fake and the agent builders before they start.
    pub fn start_with(
        fake: impl FnOnce(fake::FakeProviderBuilder<'_>) -> fake::FakeProviderBuilder<'_>,
        agent: impl FnOnce(AgentBuilder) -> AgentBuilder,
    ) -> Stack {
        let ca = TestCa::new();
        let fake = fake(FakeProvider::tls(&ca)).start();
        let agent = agent(Agent::builder().fake_upstream(&fake)).start();
        Stack { agent, fake, ca }
    }
}

/// The shipped default policy plus a per-user daily budget `id` of `limit_usd` (the
/// default's rules repeat the baseline's unchanged, so they merge as one).
pub fn default_policy_with_budget(id: &str, limit_usd: f64) -> String {
    format!(
        "{}\n[[budgets]]\nid = \"{id}\"\nper = \"user\"\nlimit_usd = {limit_usd:?}\nwindow = \"day\"\n",
        include_str!("../../policy/default.toml")
    )
}
