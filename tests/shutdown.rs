//! SIGTERM (what a service manager sends) stops new connections, lets in-flight streams
//! finish within `shutdown_grace_secs`, and exits 0.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::tunnel::send_connect;
use support::*;

/// Whether the agent still serves a new CONNECT: false if the connection is refused, closed,
/// or left unanswered for a few seconds.
fn serves_new_connect(proxy: SocketAddr) -> bool {
    block_on(async {
        match tokio::time::timeout(
            Duration::from_secs(3),
            send_connect(proxy, "tunnel.test:443"),
        )
        .await
        {
            Ok(Ok(reply)) => reply.status == 200,
            Ok(Err(_)) | Err(_) => false,
        }
    })
}

#[test]
fn sigterm_lets_an_inflight_stream_finish() {
    let mut stack = Stack::start_with(
        |fake| {
            fake.stream_events(12)
                .stream_delay(Duration::from_millis(400))
        },
        |agent| agent.shutdown_grace_secs(30),
    );
    let stream = Curl::new("https://api.openai.com/v1/chat/completions")
        .via(&stack.agent)
        .cacert(&stack.agent.ca_pem_path())
        .post_json(&openai_chat_body(true))
        .spawn_streaming();
    let pieces = stack.fake.stream_pieces();
    stream.wait_for(&pieces[0], CLIENT_TIMEOUT);

    stack.agent.sigterm();

    // Draining: new connections are no longer served while the stream continues.
    let deadline = Instant::now() + Duration::from_secs(10);
    while serves_new_connect(stack.agent.proxy_addr()) {
        assert!(
            Instant::now() < deadline,
            "the agent kept accepting new connections after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let done = stream.finish();
    let out = &done.output;
    assert_eq!(
        out.exit_code,
        Some(0),
        "the in-flight stream was cut:\n{}",
        out.describe()
    );
    assert_eq!(out.status, 200, "{}", out.describe());
    let text = out.text();
    for piece in &pieces {
        assert!(
            text.contains(piece),
            "missing {piece:?} after SIGTERM:\n{text}"
        );
    }
    assert!(
        text.contains("data: [DONE]"),
        "stream did not finish:\n{text}"
    );

    let status = stack.agent.wait_exit(Duration::from_secs(60));
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status:?}"
    );
}

#[test]
fn sigterm_on_idle_agent_exits_zero() {
    let mut agent = Agent::builder().start();
    agent.sigterm();
    let status = agent.wait_exit(Duration::from_secs(60));
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status:?}"
    );
}
