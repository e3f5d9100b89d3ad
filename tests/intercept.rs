//! Intercepted provider hosts: the client sees a leaf minted by the Outpost CA, and each
//! request is forwarded to the (fake) provider, streaming bodies as they come.
//!
//! Also covers the other things the proxy listener carries: WebSocket upgrades on
//! intercepted hosts, plain `http://` forward-proxy requests, and the admin health check.

mod support;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use support::fake::REALTIME_GREETING;
use support::tunnel::{negotiated_alpn, peer_chain, tls_through_proxy};
use support::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const OPENAI_CHAT: &str = "https://api.openai.com/v1/chat/completions";

#[test]
fn curl_reaches_openai_through_interception() {
    let stack = Stack::start();
    let body = json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "intercept-marker-7f3a"}],
    });

    // `--cacert` with only the Outpost CA: success proves the leaf chains to it.
    let out = Curl::new(OPENAI_CHAT)
        .via(&stack.agent)
        .cacert(&stack.agent.ca_pem_path())
        .header("authorization: Bearer sk-outpost-curl")
        .post_json(&body)
        .run();

    assert_eq!(out.exit_code, Some(0), "{}", out.describe());
    assert_eq!(out.status, 200, "{}", out.describe());
    assert!(
        out.header(FAKE_MARKER_HEADER).is_some(),
        "answer did not come from the fake: {}",
        out.describe()
    );
    let answer = out.json();
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(answer["choices"][0]["message"]["content"], FAKE_REPLY_TEXT);

    let seen = stack.fake.single_request();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path_and_query, "/v1/chat/completions");
    assert_eq!(
        seen.body_json(),
        body,
        "the provider must receive the request body unchanged"
    );
    assert_eq!(seen.header("authorization"), Some("Bearer sk-outpost-curl"));
    assert_eq!(
        seen.sni.as_deref(),
        Some("api.openai.com"),
        "upstream TLS must use the real host name even when [upstream.resolve] redirects the dial"
    );
}

#[test]
fn intercepted_leaf_is_minted_by_outpost_ca_per_host() {
    let stack = Stack::start();
    let ca_pem = stack.agent.ca_pem_path();
    let ca = summarize_cert(&certs_from_pem_file(&ca_pem)[0]);
    assert!(
        ca.is_ca,
        "`outpost ca export` must print a CA certificate: {ca:?}"
    );

    // The default intercept list, including a host under the `*.openai.azure.com` pattern.
    for host in [
        "api.openai.com",
        "api.anthropic.com",
        "generativelanguage.googleapis.com",
        "my-resource.openai.azure.com",
    ] {
        // Trusting only the Outpost CA: the handshake succeeding proves the chain.
        let tls = block_on(tls_through_proxy(
            stack.agent.proxy_addr(),
            host,
            443,
            &ca_pem,
            &["h2", "http/1.1"],
        ))
        .unwrap_or_else(|e| {
            panic!("TLS to {host} through the proxy with only the Outpost CA trusted: {e}")
        });
        let chain = peer_chain(&tls);
        let leaf = summarize_cert(&chain[0]);
        assert_eq!(
            leaf.issuer_der, ca.subject_der,
            "{host}: leaf issuer {} != CA subject {}",
            leaf.issuer, ca.subject
        );
        assert_ne!(
            leaf.spki_der, ca.spki_der,
            "{host}: the leaf must have its own key, not the CA's"
        );
        assert!(
            leaf.dns_names.iter().any(|n| n == host),
            "{host}: leaf SANs {:?}",
            leaf.dns_names
        );
        assert!(!leaf.is_ca, "{host}: the leaf must not be a CA");
        assert_eq!(
            negotiated_alpn(&tls).as_deref(),
            Some("h2"),
            "{host}: client offered h2 first"
        );
    }

    // A client that offers only HTTP/1.1 gets it.
    let tls = block_on(tls_through_proxy(
        stack.agent.proxy_addr(),
        "api.openai.com",
        443,
        &ca_pem,
        &["http/1.1"],
    ))
    .expect("TLS with http/1.1 only");
    assert_eq!(negotiated_alpn(&tls).as_deref(), Some("http/1.1"));
}

#[test]
fn curl_http2_through_proxy() {
    let stack = Stack::start();
    let out = Curl::new(OPENAI_CHAT)
        .via(&stack.agent)
        .cacert(&stack.agent.ca_pem_path())
        .http2()
        .post_json(&openai_chat_body(false))
        .run();
    assert_eq!(out.exit_code, Some(0), "{}", out.describe());
    assert_eq!(
        out.http_version,
        "2",
        "curl --http2 should speak HTTP/2 to the agent: {}",
        out.describe()
    );
    assert_eq!(out.status, 200, "{}", out.describe());
    assert_eq!(
        out.json()["choices"][0]["message"]["content"],
        FAKE_REPLY_TEXT
    );
    assert_eq!(
        stack.fake.single_request().body_json(),
        openai_chat_body(false)
    );
}

#[test]
fn anthropic_host_is_intercepted() {
    let stack = Stack::start();
    let out = Curl::new("https://api.anthropic.com/v1/messages")
        .via(&stack.agent)
        .cacert(&stack.agent.ca_pem_path())
        .header("x-api-key: sk-ant-curl")
        .header("anthropic-version: 2023-06-01")
        .post_json(&anthropic_messages_body(false))
        .run();
    assert_eq!(out.status, 200, "{}", out.describe());
    let answer = out.json();
    assert_eq!(answer["type"], "message");
    assert_eq!(answer["content"][0]["text"], FAKE_REPLY_TEXT);
    let seen = stack.fake.single_request();
    assert_eq!(seen.path(), "/v1/messages");
    assert_eq!(seen.header("x-api-key"), Some("sk-ant-curl"));
    assert_eq!(seen.sni.as_deref(), Some("api.anthropic.com"));
}

/// Time from the arrival of the first content piece to the arrival of the last one.
fn arrival_spread(pieces: &[(Instant, Vec<u8>)], first: &str, last: &str) -> Duration {
    let mut received = Vec::new();
    let (mut first_at, mut last_at) = (None, None);
    for (at, bytes) in pieces {
        received.extend_from_slice(bytes);
        let text = String::from_utf8_lossy(&received);
        if first_at.is_none() && text.contains(first) {
            first_at = Some(*at);
        }
        if last_at.is_none() && text.contains(last) {
            last_at = Some(*at);
        }
    }
    let (Some(first_at), Some(last_at)) = (first_at, last_at) else {
        panic!(
            "stream lacked {first:?} or {last:?}: {:?}",
            String::from_utf8_lossy(&received)
        );
    };
    last_at.duration_since(first_at)
}

fn assert_sse_streams_through(http2: bool) {
    let stack = Stack::start_with(
        |f| f.stream_events(5).stream_delay(Duration::from_millis(150)),
        |a| a,
    );
    let mut curl = Curl::new(OPENAI_CHAT)
        .via(&stack.agent)
        .cacert(&stack.agent.ca_pem_path());
    curl = if http2 { curl.http2() } else { curl.http1_1() };
    let streamed = curl
        .post_json(&openai_chat_body(true))
        .spawn_streaming()
        .finish();
    let out = &streamed.output;

    assert_eq!(out.exit_code, Some(0), "{}", out.describe());
    assert_eq!(out.status, 200, "{}", out.describe());
    assert_eq!(
        out.http_version,
        if http2 { "2" } else { "1.1" },
        "{}",
        out.describe()
    );
    let text = out.text();
    for piece in stack.fake.stream_pieces() {
        assert!(text.contains(&piece), "missing {piece:?} in {text}");
    }
    assert!(
        text.trim_end().ends_with("data: [DONE]"),
        "stream must end with [DONE]: {text}"
    );

    let pieces = stack.fake.stream_pieces();
    let spread = arrival_spread(&streamed.pieces, &pieces[0], pieces.last().expect("pieces"));
    let configured = stack.fake.stream_content_spread();
    // A buffered stream arrives all at once (a spread near zero); on a
    // loaded two-core machine the first event alone can come a few hundred
    // ms late, so half the configured spread is the bar.
    assert!(
        spread.as_secs_f64() >= 0.5 * configured.as_secs_f64(),
        "events arrived within {spread:?}, but the fake spread them over {configured:?}: the proxy buffers the stream"
    );
}

#[test]
fn sse_stream_is_not_buffered_http1() {
    assert_sse_streams_through(false);
}

#[test]
fn sse_stream_is_not_buffered_http2() {
    assert_sse_streams_through(true);
}

/// A Realtime client event the fake echoes back.
const ECHOED: &str = r#"{"type":"conversation.item.create","item":{"type":"message","role":"user","content":[{"type":"input_text","text":"hello through outpost"}]}}"#;

#[test]
fn websocket_realtime_is_relayed_both_ways() {
    let stack = Stack::start();
    let ca_pem = stack.agent.ca_pem_path();
    let proxy = stack.agent.proxy_addr();

    let (greeting, text_echo, binary_echo) = block_on(async {
        tokio::time::timeout(CLIENT_TIMEOUT, async {
            // WebSocket upgrades are HTTP/1.1 (no RFC 8441 here), so offer only http/1.1.
            let tls = tls_through_proxy(proxy, "api.openai.com", 443, &ca_pem, &["http/1.1"])
                .await
                .expect("TLS through the proxy");
            let mut request = "wss://api.openai.com/v1/realtime?model=gpt-realtime"
                .into_client_request()
                .expect("ws request");
            request.headers_mut().insert(
                "authorization",
                "Bearer sk-outpost-ws".parse().expect("header value"),
            );
            let (mut ws, response) = tokio_tungstenite::client_async(request, tls)
                .await
                .expect("WebSocket handshake");
            assert_eq!(response.status(), 101);

            let greeting = ws.next().await.expect("greeting").expect("greeting frame");
            ws.send(Message::text(ECHOED)).await.expect("send text");
            let text_echo = ws.next().await.expect("text echo").expect("text frame");
            ws.send(Message::binary(vec![0u8, 1, 2, 254, 255]))
                .await
                .expect("send binary");
            let binary_echo = ws.next().await.expect("binary echo").expect("binary frame");
            let _ = ws.close(None).await;
            (greeting, text_echo, binary_echo)
        })
        .await
        .expect("WebSocket exchange timed out")
    });

    assert_eq!(
        greeting,
        Message::text(REALTIME_GREETING),
        "server → client"
    );
    assert_eq!(
        text_echo,
        Message::text(ECHOED),
        "client → server → client (text)"
    );
    // Realtime speaks JSON text: a binary message cannot be inspected, so it is refused
    // with Realtime's error event (on_unparseable = "block") and never sent on.
    let Message::Text(refusal) = binary_echo else {
        panic!("expected an error event, got {binary_echo:?}");
    };
    assert!(refusal.contains("\"type\":\"error\""), "{refusal}");
    assert!(refusal.contains("on_unparseable"), "{refusal}");

    let seen = stack.fake.requests_to("/v1/realtime");
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(seen[0].path_and_query, "/v1/realtime?model=gpt-realtime");
    assert_eq!(
        seen[0].header("authorization"),
        Some("Bearer sk-outpost-ws")
    );
    assert!(seen[0]
        .header("upgrade")
        .is_some_and(|u| u.eq_ignore_ascii_case("websocket")));
}

#[test]
fn plain_http_is_forwarded() {
    let fake = FakeProvider::plain_http(&["plain.test"]).start();
    let agent = Agent::builder().resolve_to(&fake).start();
    let body = openai_chat_body(false);

    let out = Curl::new("http://plain.test/v1/chat/completions?trace=1")
        .via(&agent)
        .post_json(&body)
        .run();

    assert_eq!(out.status, 200, "{}", out.describe());
    assert_eq!(
        out.json()["choices"][0]["message"]["content"],
        FAKE_REPLY_TEXT
    );
    let seen = fake.single_request();
    assert_eq!(
        seen.path_and_query, "/v1/chat/completions?trace=1",
        "origin-form upstream"
    );
    assert_eq!(seen.authority.as_deref(), Some("plain.test"));
    assert_eq!(seen.body_json(), body);
}

#[test]
fn admin_healthz_answers() {
    let agent = Agent::builder().start();
    let out = Curl::new(&format!("http://{}/healthz", agent.admin_addr())).run();
    assert_eq!(out.status, 200, "{}", out.describe());
}

fn assert_large_bodies_pass_intact(http2: bool) {
    const RESPONSE_CHUNKS: usize = 48;
    const CHUNK: usize = 64 * 1024;
    let response_chunk: Vec<u8> = (0..CHUNK).map(|i| b'a' + (i % 26) as u8).collect();
    let stack = Stack::start_with(
        |fake| {
            fake.route("POST", "/v1/files", move |_| {
                let mut response =
                    FakeResponse::new(200).header("content-type", "application/octet-stream");
                for _ in 0..RESPONSE_CHUNKS {
                    response = response.chunk(Duration::from_millis(1), response_chunk.clone());
                }
                response
            })
        },
        |agent| agent,
    );
    // ~2 MiB up, 3 MiB down: well past the default HTTP/2 flow-control windows.
    let big = "x".repeat(2 * 1024 * 1024);
    let body = json!({"purpose": "fine-tune", "data": big});
    let mut curl = Curl::new("https://api.openai.com/v1/files")
        .via(&stack.agent)
        .cacert(&stack.agent.ca_pem_path());
    curl = if http2 { curl.http2() } else { curl.http1_1() };
    let out = curl.post_json(&body).run();

    assert_eq!(
        out.status,
        200,
        "{}",
        out.describe().chars().take(2000).collect::<String>()
    );
    assert_eq!(
        out.body.len(),
        RESPONSE_CHUNKS * CHUNK,
        "response body length"
    );
    assert!(
        out.body
            .chunks(CHUNK)
            .all(|c| c[..26] == *b"abcdefghijklmnopqrstuvwxyz"),
        "response corrupted"
    );
    assert_eq!(
        stack.fake.single_request().body_json(),
        body,
        "request body corrupted"
    );
}

#[test]
fn large_bodies_pass_intact_http1() {
    assert_large_bodies_pass_intact(false);
}

#[test]
fn large_bodies_pass_intact_http2() {
    assert_large_bodies_pass_intact(true);
}

#[test]
fn the_pac_file_sends_exactly_the_intercepted_hosts_to_the_agent() {
    let stack = Stack::start_with(
        |f| f,
        |a| {
            a.policy_file(
                "30-corp.toml",
                "[intercept]\nhosts = [\"*.corp-llm.example\"]\nexclude = [\"internal.corp-llm.example\"]\n",
            )
        },
    );
    let pac = Curl::new(&format!("http://{}/proxy.pac", stack.agent.admin_addr())).run();
    assert_eq!(pac.status, 200, "{}", pac.describe());
    assert_eq!(
        pac.header("content-type"),
        Some("application/x-ns-proxy-autoconfig")
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), pac.text()).unwrap();
    let hosts = [
        "api.openai.com",
        "API.Anthropic.com",
        "my-resource.openai.azure.com",
        "a.corp-llm.example",
        "internal.corp-llm.example",
        "corp-llm.example",
        "mtls.api.openai.com",
        "example.com",
        "openai.com.evil.example",
    ];
    let mut script = PythonScript::new("pac_eval.py").arg(&file.path().to_string_lossy());
    for host in hosts {
        script = script.arg(host);
    }
    let answers = script.run_json();
    let proxy = format!("PROXY {}", stack.agent.proxy_addr());
    for host in [
        "api.openai.com",
        "API.Anthropic.com",
        "my-resource.openai.azure.com",
        "a.corp-llm.example",
    ] {
        assert_eq!(
            answers[host],
            proxy.as_str(),
            "{host}: {answers}\n{}",
            pac.text()
        );
    }
    for host in [
        "internal.corp-llm.example",
        "corp-llm.example",
        "mtls.api.openai.com",
        "example.com",
        "openai.com.evil.example",
    ] {
        assert_eq!(answers[host], "DIRECT", "{host}: {answers}\n{}", pac.text());
    }
}
