//! Hosts Outpost does not intercept are tunnelled untouched: the client completes TLS with
//! the real server (here the fake, with its test-CA certificate), never with an Outpost leaf.

mod support;

use support::tunnel::{peer_chain, send_connect, tls_through_proxy};
use support::*;

/// Asserts `host` is tunnelled: curl trusting the test CA gets the fake's answer, curl
/// trusting only the Outpost CA fails verification, and the leaf is the fake's.
fn assert_tunnelled(host: &str) {
    let stack = Stack::start();
    let url = format!("https://{host}/v1/chat/completions");

    let out = Curl::new(&url)
        .via(&stack.agent)
        .cacert(&stack.ca.pem_path())
        .header("x-tunnel-probe: untouched")
        .post_json(&openai_chat_body(false))
        .run();
    assert_eq!(out.exit_code, Some(0), "{host}: {}", out.describe());
    assert_eq!(out.status, 200, "{host}: {}", out.describe());
    assert_eq!(
        out.json()["choices"][0]["message"]["content"],
        FAKE_REPLY_TEXT
    );
    let seen = stack.fake.single_request();
    assert_eq!(
        seen.sni.as_deref(),
        Some(host),
        "the client's own TLS reached the fake"
    );
    assert_eq!(seen.header("x-tunnel-probe"), Some("untouched"));
    assert!(
        seen.header("user-agent")
            .is_some_and(|ua| ua.starts_with("curl/")),
        "{:?}",
        seen.headers
    );

    let refused = Curl::new(&url)
        .via(&stack.agent)
        .cacert(&stack.agent.ca_pem_path())
        .post_json(&openai_chat_body(false))
        .run();
    assert_ne!(
        refused.exit_code,
        Some(0),
        "{host}: trusting only the Outpost CA must fail on a tunnelled host: {}",
        refused.describe()
    );
    assert_eq!(
        refused.exit_code,
        Some(60),
        "expected curl's certificate error (60): {}",
        refused.describe()
    );

    let tls = block_on(tls_through_proxy(
        stack.agent.proxy_addr(),
        host,
        443,
        &stack.ca.pem_path(),
        &["http/1.1"],
    ))
    .unwrap_or_else(|e| panic!("{host}: TLS trusting only the test CA: {e}"));
    let leaf = summarize_cert(&peer_chain(&tls)[0]);
    let test_ca = summarize_cert(stack.ca.cert_der());
    assert_eq!(
        leaf.issuer_der, test_ca.subject_der,
        "{host}: leaf issued by {}",
        leaf.issuer
    );
}

#[test]
fn other_hosts_are_tunnelled_untouched() {
    assert_tunnelled("tunnel.test");
}

#[test]
fn mtls_openai_host_is_always_tunnelled() {
    assert_tunnelled("mtls.api.openai.com");
}

#[test]
fn connect_to_unreachable_tunnel_host_is_502() {
    let dead = free_port();
    let agent = Agent::builder()
        .resolve("tunnel.test", format!("127.0.0.1:{dead}"))
        .start();
    let reply = block_on(send_connect(agent.proxy_addr(), "tunnel.test:443"))
        .expect("the agent must answer the CONNECT, not drop it");
    assert_eq!(
        reply.status, 502,
        "the upstream connect is tried before answering: {}",
        reply.head
    );
}
