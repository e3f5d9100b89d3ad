//! Hostile peers on the same machine: the agent stays bounded and answers
//! everyone else. Admin requests that stall are closed, a DNS-rebinding page
//! reads nothing, destinations that are the machine itself are refused.

mod support;

use std::time::{Duration, Instant};

use support::raw::{closed_within, RawPeers};
use support::*;

#[test]
fn the_admin_endpoint_refuses_a_foreign_host_header() {
    let agent = Agent::builder().start();
    let url = format!("http://{}/status", agent.admin_addr());
    let rebound = Curl::new(&url).header("host: rebind.attacker.test").run();
    assert_eq!(rebound.status, 421, "{}", rebound.describe());
    let body = rebound.text();
    assert!(!body.contains("intercept"), "{body}");
    let own = Curl::new(&url).run();
    assert_eq!(own.status, 200, "{}", own.describe());
}

#[test]
fn stalled_admin_requests_are_closed_and_health_still_answers() {
    let agent = Agent::builder().start();
    let mut stalled = RawPeers::to(agent.admin_addr())
        .count(100)
        .sending(b"GET /status HTTP/1.1\r\nHost: 127")
        .open();
    assert_eq!(stalled.len(), 100);
    let started = Instant::now();
    // The header timeout is 5 s: every one is gone well within 10.
    for stream in &mut stalled {
        let left = Duration::from_secs(10).saturating_sub(started.elapsed());
        assert!(
            closed_within(stream, left),
            "a stalled admin request stayed open"
        );
    }
    let health = Curl::new(&format!("http://{}/healthz", agent.admin_addr())).run();
    assert_eq!(health.status, 200, "{}", health.describe());
}

#[test]
fn a_symlinked_policy_file_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let target = elsewhere.path().join("secret.toml");
    std::fs::write(&target, "[models]\ndeny = [\"*\"]\n").unwrap();
    let link = dir.path().join("10-link.toml");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let out = outpost_cli(
        &["policy", "check", &dir.path().to_string_lossy()],
        None,
        Duration::from_secs(20),
    );
    assert_eq!(out.code, Some(1), "{}", out.describe());
    let text = out.stdout_text();
    assert!(
        text.contains(&format!("{}:1:1: is a symlink", link.display())),
        "{text}"
    );
    // The agent does not load it either: it reports the error and runs on the default.
    let agent = Agent::builder()
        .policy_link("10-link.toml", &target)
        .start();
    let status = Curl::new(&format!("http://{}/status", agent.admin_addr())).run();
    let errors = status.json()["policy"]["errors"].to_string();
    assert!(errors.contains("is a symlink"), "{errors}");
}

#[test]
fn destinations_on_this_machine_are_refused_unless_listed() {
    let listed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listed_port = listed.local_addr().unwrap().port();
    let agent = Agent::builder()
        .upstream_setting(&format!(
            "danger_allow_destinations = [\"127.0.0.1:{listed_port}\"]"
        ))
        .start();
    let admin = agent.admin_addr().to_string();
    let own_proxy = agent.proxy_addr().to_string();
    for target in [
        admin.as_str(),
        own_proxy.as_str(),
        "127.0.0.1:22",
        "localhost:22",
        "169.254.169.254:80",
        "[::1]:22",
    ] {
        let reply =
            block_on(support::tunnel::send_connect(agent.proxy_addr(), target)).expect("CONNECT");
        assert_eq!(reply.status, 403, "{target}: {}", reply.head);
    }
    // Through plain-HTTP forwarding too (the metadata service's classic URL).
    let metadata = Curl::new("http://169.254.169.254/latest/meta-data/")
        .via(&agent)
        .run();
    assert_eq!(metadata.status, 400, "{}", metadata.describe());
    assert!(
        metadata.text().contains("danger_allow_destinations"),
        "{}",
        metadata.describe()
    );
    // What the config lists is reached.
    let reply = block_on(support::tunnel::send_connect(
        agent.proxy_addr(),
        &format!("127.0.0.1:{listed_port}"),
    ))
    .expect("CONNECT");
    assert_eq!(reply.status, 200, "{}", reply.head);
}
