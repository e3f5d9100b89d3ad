//! Why an intercepted call was not served, and whose fault that is.
//!
//! Every stage of the request path that can stop a call returns a
//! [`Refusal`]; one renderer (`proxy::render`) writes it in the provider's
//! own error shape, so the caller's SDK shows the message, with the HTTP
//! status and the body's code taken from the same [`ErrorKind`]. The
//! [`Source`] says whose fault it is, in logs and in the audit record:
//! - `client`: the request itself (unreadable, ambiguous, plain HTTP);
//! - `policy`: a rule refused it (a model rule, a guardrail, an endpoint rule);
//! - `budget`: a budget or rate limit is used up;
//! - `upstream`: the provider failed or could not be reached;
//! - `agent`: Outpost itself cannot serve it now (audit log behind, ledger
//!   unavailable).
//!
//! Pure: no I/O.

use std::fmt;

use crate::provider::ErrorKind;

/// Whose fault a refusal is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The request is malformed or not allowed in this form.
    Client,
    /// A policy rule refused the call.
    Policy,
    /// A budget or rate limit refused the call.
    Budget,
    /// The provider failed.
    Upstream,
    /// Outpost itself failed.
    Agent,
}

impl Source {
    /// Short stable name (logs).
    pub fn name(self) -> &'static str {
        match self {
            Source::Client => "client",
            Source::Policy => "policy",
            Source::Budget => "budget",
            Source::Upstream => "upstream",
            Source::Agent => "agent",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A call not served: whose fault, how the SDK should see it, which rule,
/// and what to tell the person who made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Whose fault.
    pub source: Source,
    /// Status and error type in the provider's shape.
    pub kind: ErrorKind,
    /// The rule that refused it (`models.deny`, a guardrail or budget id,
    /// `on_unparseable`, …); none for failures no rule decided.
    pub rule: Option<String>,
    /// For the caller: names the rule and what to do.
    pub message: String,
    /// Seconds until a retry can pass (`Retry-After`); none: it cannot.
    pub retry_after_secs: Option<u64>,
    /// Whether SDKs should retry on their own (`x-should-retry`).
    pub retry: bool,
}

impl Refusal {
    /// Refused by policy `rule` (400: the caller must change the request).
    pub fn policy(rule: &str, message: String) -> Refusal {
        Refusal {
            source: Source::Policy,
            kind: ErrorKind::PolicyBlocked,
            rule: Some(rule.to_string()),
            message,
            retry_after_secs: None,
            retry: false,
        }
    }

    /// The request is at fault (400); `rule` names the policy key that
    /// made this form unacceptable, if one did.
    pub fn client(rule: Option<&str>, message: String) -> Refusal {
        Refusal {
            source: Source::Client,
            kind: ErrorKind::BadRequest,
            rule: rule.map(str::to_string),
            message,
            retry_after_secs: None,
            retry: false,
        }
    }

    /// The provider failed (`kind` is one of the upstream kinds).
    pub fn upstream(kind: ErrorKind, message: String) -> Refusal {
        Refusal {
            source: Source::Upstream,
            kind,
            rule: None,
            message,
            retry_after_secs: None,
            retry: true,
        }
    }

    /// Outpost cannot serve the call (503). `retry_after_secs` when the
    /// condition is expected to pass on its own.
    pub fn agent(message: String, retry_after_secs: Option<u64>) -> Refusal {
        Refusal {
            source: Source::Agent,
            kind: ErrorKind::AgentUnavailable,
            rule: None,
            message,
            retry_after_secs,
            retry: retry_after_secs.is_some(),
        }
    }

    /// The HTTP status the caller gets.
    pub fn status(&self) -> u16 {
        self.kind.status()
    }

    /// True when a rule refused the call (audit `block`), false when
    /// something failed (audit `error`).
    pub fn is_block(&self) -> bool {
        self.rule.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_rule_decisions_and_failures_are_not() {
        assert!(Refusal::policy("no-secrets", "x".into()).is_block());
        assert!(Refusal::client(Some("on_unparseable"), "x".into()).is_block());
        assert!(!Refusal::client(None, "reset".into()).is_block());
        let upstream = Refusal::upstream(ErrorKind::UpstreamTimeout, "slow".into());
        assert!(!upstream.is_block() && upstream.status() == 504);
        let agent = Refusal::agent("behind".into(), Some(1));
        assert_eq!(
            (agent.status(), agent.retry, agent.source),
            (503, true, Source::Agent)
        );
    }
}
