//! WebSocket governance: Responses over WebSocket, Realtime and Gemini Live through the
//! real agent, against a fake that speaks each protocol, with the shipped default policy
//! (secrets blocked, card numbers redacted). A blocked message never reaches the provider
//! and the client reads the provider's own error event; a redacted one arrives rewritten;
//! every response has one audit record with its tokens; compression is never negotiated.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::fake_ws::{FakeUsage, FakeWs, RecordedSocket};
use support::records::wait_for_records;
use support::tunnel::tls_through_proxy;
use support::*;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// An AWS access key id the default `no-secrets` rule blocks.
const KEY: &str = "AKIAQWERTYUIOPASDFGH";
const CARD: &str = "4111 1111 1111 1111";
const TIMEOUT: Duration = Duration::from_secs(20);

type Ws = WebSocketStream<TlsStream<TcpStream>>;

/// Open `url` through the agent, offering permessage-deflate as Codex does.
async fn connect(proxy: SocketAddr, ca: &Path, url: &str) -> Result<Ws, String> {
    let host = url
        .trim_start_matches("wss://")
        .split(['/', '?'])
        .next()
        .unwrap_or_default()
        .to_string();
    let tls = tls_through_proxy(proxy, &host, 443, ca, &["http/1.1"])
        .await
        .map_err(|e| e.to_string())?;
    let mut request = url.into_client_request().map_err(|e| e.to_string())?;
    let headers = request.headers_mut();
    headers.insert("authorization", "Bearer sk-test".parse().unwrap());
    headers.insert(
        "sec-websocket-extensions",
        "permessage-deflate; client_max_window_bits"
            .parse()
            .unwrap(),
    );
    tokio_tungstenite::client_async(request, tls)
        .await
        .map(|(ws, _)| ws)
        .map_err(|e| e.to_string())
}

async fn send(ws: &mut Ws, message: &Value) {
    ws.send(Message::text(message.to_string()))
        .await
        .expect("send");
}

/// Read JSON messages until one whose `type` is in `until` (returned last).
async fn read_until(ws: &mut Ws, until: &[&str]) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let message = ws
            .next()
            .await
            .expect("socket open")
            .expect("a valid frame");
        let json: Value = match message {
            Message::Text(text) => serde_json::from_str(&text).expect("JSON text"),
            Message::Binary(bytes) => serde_json::from_slice(&bytes).expect("JSON binary"),
            Message::Close(frame) => panic!("closed: {frame:?} after {seen:#?}"),
            _ => continue,
        };
        let done = json["type"].as_str().is_some_and(|t| until.contains(&t));
        seen.push(json);
        if done {
            return seen;
        }
    }
}

fn response_create(text: &str) -> Value {
    json!({"type": "response.create", "model": "gpt-4o-mini", "max_output_tokens": 64,
           "input": [{"role": "user", "content": [{"type": "input_text", "text": text}]}]})
}

fn start(ws: &FakeWs, ca: &TestCa, extra: impl FnOnce(AgentBuilder) -> AgentBuilder) -> Agent {
    extra(ws.resolve_in(Agent::builder().trust(ca))).start()
}

fn sent_texts(socket: &RecordedSocket) -> String {
    socket
        .messages
        .iter()
        .filter_map(|m| m.json())
        .map(|j| j.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn responses_over_websocket_blocks_redacts_and_records_each_response() {
    let ca = TestCa::new();
    let fake = FakeWs::tls(&ca)
        .usage(FakeUsage {
            input_tokens: 50,
            output_tokens: 20,
            ..FakeUsage::default()
        })
        .start();
    let agent = start(&fake, &ca, |a| a);
    let (blocked, redacted) = block_on(async {
        tokio::time::timeout(TIMEOUT, async {
            let url = "wss://api.openai.com/v1/responses";
            let mut ws = connect(agent.proxy_addr(), &agent.ca_pem_path(), url)
                .await
                .expect("upgrade");
            send(&mut ws, &response_create(&format!("deploy with {KEY}"))).await;
            let blocked = read_until(&mut ws, &["error"]).await;
            // The socket stays usable: the next call goes through, redacted.
            send(&mut ws, &response_create(&format!("pay with {CARD}"))).await;
            let redacted = read_until(&mut ws, &["response.completed"]).await;
            let _ = ws.close(None).await;
            (blocked, redacted)
        })
        .await
        .expect("exchange timed out")
    });

    let error = blocked.last().unwrap();
    assert_eq!(error["status"], 400, "{error}");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("no-secrets"), "{message}");
    assert_eq!(blocked.len(), 1, "nothing but the error: {blocked:#?}");
    let text: String = redacted
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(text, fake.reply_text());

    let socket = fake.wait_for_messages(0, 1);
    assert_eq!(
        socket.header("sec-websocket-extensions"),
        None,
        "the deflate offer must not reach the provider"
    );
    assert_eq!(socket.message_types()[0], "response.create");
    let sent = sent_texts(&socket);
    assert!(!sent.contains(KEY), "the key reached the provider: {sent}");
    assert!(!sent.contains(CARD), "{sent}");
    assert!(sent.contains("[REDACTED:card-numbers]"), "{sent}");

    let records = wait_for_records(&agent.state_dir(), 2);
    assert_eq!(records[0]["decision"], "block", "{:#}", records[0]);
    assert_eq!(records[0]["transport"], "websocket");
    assert_eq!(records[0]["api"], "responses");
    assert_eq!(records[1]["decision"], "redact", "{:#}", records[1]);
    assert_eq!(records[1]["input_tokens"], 50);
    assert_eq!(records[1]["output_tokens"], 20);
    assert_eq!(records[1]["model"], "gpt-4o-mini");
    assert_eq!(records[1]["transport"], "websocket");
}

#[test]
fn a_budget_stops_the_third_call_on_one_socket_naming_the_budget() {
    let ca = TestCa::new();
    let fake = FakeWs::tls(&ca)
        .usage(FakeUsage {
            input_tokens: 1000,
            output_tokens: 1000,
            ..FakeUsage::default()
        })
        .start();
    // gpt-4o-mini: $0.15/M in, $0.60/M out: each call costs $0.00075 and reserves about
    // $0.000045 (its prompt estimate and 64 output tokens) while it runs: two calls fit
    // $0.00152, a third's reservation on top of $0.0015 spent does not.
    let policy = default_policy_with_budget("ws-day", 0.00152);
    let agent = start(&fake, &ca, |a| a.policy_file("10-budget.toml", &policy));
    let outcomes = block_on(async {
        tokio::time::timeout(TIMEOUT, async {
            let url = "wss://api.openai.com/v1/responses";
            let mut ws = connect(agent.proxy_addr(), &agent.ca_pem_path(), url)
                .await
                .expect("upgrade");
            let mut outcomes = Vec::new();
            for _ in 0..3 {
                send(&mut ws, &response_create("hello")).await;
                let events = read_until(&mut ws, &["response.completed", "error"]).await;
                outcomes.push(events.last().unwrap().clone());
            }
            outcomes
        })
        .await
        .expect("exchange timed out")
    });
    assert_eq!(outcomes[0]["type"], "response.completed");
    assert_eq!(outcomes[1]["type"], "response.completed");
    assert_eq!(outcomes[2]["type"], "error", "{:#}", outcomes[2]);
    // 400, not 429, on the socket: Codex shows the message of a 400 and stops.
    assert_eq!(outcomes[2]["status"], 400);
    assert_eq!(outcomes[2]["error"]["code"], "budget_exhausted");
    let message = outcomes[2]["error"]["message"].as_str().unwrap();
    assert!(message.contains("ws-day"), "{message}");
    let socket = fake.wait_for_messages(0, 2);
    assert_eq!(
        socket.message_types(),
        ["response.create", "response.create"]
    );
    let records = wait_for_records(&agent.state_dir(), 3);
    assert!(
        records[0]["cost_usd"].as_f64().unwrap() > 0.0,
        "{:#}",
        records[0]
    );
    assert_eq!(records[2]["decision"], "block");
}

#[test]
fn a_socket_cut_mid_response_is_recorded_and_charged_an_estimate() {
    let ca = TestCa::new();
    let fake = FakeWs::tls(&ca).cut_after(2).start();
    let policy = default_policy_with_budget("b", 10.0);
    let agent = start(&fake, &ca, |a| a.policy_file("10-budget.toml", &policy));
    block_on(async {
        tokio::time::timeout(TIMEOUT, async {
            let url = "wss://api.openai.com/v1/responses";
            let mut ws = connect(agent.proxy_addr(), &agent.ca_pem_path(), url)
                .await
                .expect("upgrade");
            send(&mut ws, &response_create("hello")).await;
            // Two deltas, then the provider's close frame is passed on.
            while let Some(Ok(message)) = ws.next().await {
                if let Message::Close(frame) = message {
                    assert_eq!(u16::from(frame.expect("a close frame").code), 1011);
                    break;
                }
            }
        })
        .await
        .expect("exchange timed out")
    });
    let records = wait_for_records(&agent.state_dir(), 1);
    assert_eq!(records[0]["decision"], "error", "{:#}", records[0]);
    assert_eq!(records[0]["estimated"], true, "{:#}", records[0]);
    assert!(records[0]["cost_usd"].as_f64().unwrap() > 0.0);
}

#[test]
fn realtime_text_items_are_governed_and_each_response_recorded() {
    let ca = TestCa::new();
    let fake = FakeWs::tls(&ca).start();
    let agent = start(&fake, &ca, |a| a);
    let (refused, answer, audio) = block_on(async {
        tokio::time::timeout(TIMEOUT, async {
            let url = "wss://api.openai.com/v1/realtime?model=gpt-realtime";
            let mut ws = connect(agent.proxy_addr(), &agent.ca_pem_path(), url)
                .await
                .expect("upgrade");
            read_until(&mut ws, &["session.created"]).await;
            let item = |text: &str| {
                json!({"type": "conversation.item.create", "item": {"type": "message",
                    "role": "user", "content": [{"type": "input_text", "text": text}]}})
            };
            send(&mut ws, &item(&format!("my key is {KEY}"))).await;
            let refused = read_until(&mut ws, &["error"]).await;
            send(&mut ws, &item(&format!("card {CARD}"))).await;
            read_until(&mut ws, &["conversation.item.done"]).await;
            send(&mut ws, &json!({"type": "response.create"})).await;
            let answer = read_until(&mut ws, &["response.done"]).await;
            // Audio cannot be scanned: refused under the default policy.
            send(
                &mut ws,
                &json!({"type": "input_audio_buffer.append", "audio": "UklGRg=="}),
            )
            .await;
            let audio = read_until(&mut ws, &["error"]).await;
            (refused, answer, audio)
        })
        .await
        .expect("exchange timed out")
    });
    let error = &refused.last().unwrap()["error"];
    assert!(
        error["message"].as_str().unwrap().contains("no-secrets"),
        "{error}"
    );
    assert_eq!(answer.last().unwrap()["type"], "response.done");
    let audio_error = audio.last().unwrap()["error"]["message"].as_str().unwrap();
    assert!(audio_error.contains("unscanned_audio"), "{audio_error}");

    let socket = fake.wait_for_messages(0, 2);
    assert_eq!(
        socket.message_types(),
        ["conversation.item.create", "response.create"]
    );
    let sent = sent_texts(&socket);
    assert!(!sent.contains(KEY) && !sent.contains(CARD), "{sent}");
    assert!(sent.contains("[REDACTED:card-numbers]"), "{sent}");

    let records = wait_for_records(&agent.state_dir(), 3);
    let decisions: Vec<&str> = records
        .iter()
        .map(|r| r["decision"].as_str().unwrap())
        .collect();
    assert_eq!(decisions, ["block", "redact", "block"], "{records:#?}");
    assert_eq!(records[1]["api"], "realtime");
    assert_eq!(records[1]["model"], "gpt-realtime");
    assert!(records[1]["input_tokens"].as_u64().unwrap() > 0);
}

#[test]
fn gemini_live_checks_the_model_and_records_each_turn() {
    let ca = TestCa::new();
    let fake = FakeWs::tls(&ca).start();
    let agent = start(&fake, &ca, |a| {
        a.policy_file(
            "10-models.toml",
            &format!(
                "{}\n",
                include_str!("../policy/default.toml")
                    .replace("deny = []", "deny = [\"*-preview*\"]")
            ),
        )
    });
    let path = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent";
    let url = format!("wss://generativelanguage.googleapis.com{path}?key=AIzaSyTEST");
    let (turn, denied) = block_on(async {
        tokio::time::timeout(TIMEOUT, async {
            let mut ws = connect(agent.proxy_addr(), &agent.ca_pem_path(), &url)
                .await
                .expect("upgrade");
            send(
                &mut ws,
                &json!({"setup": {"model": "models/gemini-live-2.5-flash"}}),
            )
            .await;
            let mut turn = Vec::new();
            send(
                &mut ws,
                &json!({"clientContent": {"turns": [{"role": "user",
                    "parts": [{"text": "hello"}]}], "turnComplete": true}}),
            )
            .await;
            while let Some(Ok(message)) = ws.next().await {
                let Message::Binary(bytes) = message else {
                    continue;
                };
                let json: Value = serde_json::from_slice(&bytes).unwrap();
                let done = json["serverContent"]["turnComplete"] == true;
                turn.push(json);
                if done {
                    break;
                }
            }
            let mut ws = connect(agent.proxy_addr(), &agent.ca_pem_path(), &url)
                .await
                .expect("upgrade");
            send(
                &mut ws,
                &json!({"setup": {"model": "models/gemini-2.0-flash-preview"}}),
            )
            .await;
            let denied = loop {
                match ws.next().await {
                    Some(Ok(Message::Close(frame))) => break frame,
                    Some(Ok(_)) => continue,
                    other => panic!("expected a close frame, got {other:?}"),
                }
            };
            (turn, denied)
        })
        .await
        .expect("exchange timed out")
    });
    assert!(turn.len() > 1, "{turn:#?}");
    let denied = denied.expect("a close frame with a reason");
    assert_eq!(u16::from(denied.code), 1008);
    assert!(
        denied.reason.contains("gemini-2.0-flash-preview"),
        "{denied:?}"
    );
    let records = wait_for_records(&agent.state_dir(), 2);
    assert_eq!(records[0]["api"], "gemini_live");
    assert_eq!(records[0]["model"], "gemini-live-2.5-flash");
    assert!(
        records[0]["output_tokens"].as_u64().unwrap() > 0,
        "{:#}",
        records[0]
    );
    assert!(
        !records[0]["path"].as_str().unwrap().contains("AIzaSy"),
        "the key stays out of the record"
    );
    assert_eq!(records[1]["decision"], "block");
    // The denied setup never reached the provider.
    assert!(fake
        .sockets()
        .iter()
        .all(|s| !sent_texts(s).contains("preview")));
}

#[test]
fn refuse_mode_and_unknown_paths_refuse_the_upgrade_with_a_record() {
    let ca = TestCa::new();
    let fake = FakeWs::tls(&ca).start();
    let refusing = start(&fake, &ca, |a| {
        a.top_level("[websocket]\nmode = \"refuse\"")
    });
    let governing = start(&fake, &ca, |a| a);
    let (refused, unknown) = block_on(async {
        let refused = connect(
            refusing.proxy_addr(),
            &refusing.ca_pem_path(),
            "wss://api.openai.com/v1/responses",
        )
        .await
        .expect_err("refused");
        let unknown = connect(
            governing.proxy_addr(),
            &governing.ca_pem_path(),
            "wss://api.openai.com/v1/some/other/socket",
        )
        .await
        .expect_err("refused");
        (refused, unknown)
    });
    assert!(refused.contains("426"), "{refused}");
    assert!(unknown.contains("400"), "{unknown}");
    assert!(fake.sockets().is_empty(), "nothing was bridged");
    let records = wait_for_records(&refusing.state_dir(), 1);
    assert_eq!(records[0]["transport"], "websocket");
    assert!(records[0]["error"]
        .as_str()
        .unwrap()
        .contains("mode = \"refuse\""));
    let records = wait_for_records(&governing.state_dir(), 1);
    assert!(records[0]["error"]
        .as_str()
        .unwrap()
        .contains("on_unparseable"));
}

#[test]
fn a_realtime_text_session_from_the_websockets_library_is_governed() {
    let ca = TestCa::new();
    let fake = FakeWs::tls(&ca).start();
    let agent = start(&fake, &ca, |a| a);
    let result = support::python::PythonScript::new("realtime_session.py")
        .through(&agent)
        .run_json();
    // The library offers permessage-deflate; Outpost never lets it be negotiated.
    assert_eq!(result["extensions"], Value::Null, "{result}");
    let events = result["events"].as_array().expect("events");
    let errors: Vec<&Value> = events.iter().filter(|e| e["type"] == "error").collect();
    assert_eq!(errors.len(), 2, "{events:#?}");
    let secret = errors[0]["error"]["message"].as_str().unwrap();
    assert!(secret.contains("no-secrets"), "{secret}");
    let binary = errors[1]["error"]["message"].as_str().unwrap();
    assert!(binary.contains("on_unparseable"), "{binary}");
    let done = events.iter().find(|e| e["type"] == "response.done");
    assert!(done.is_some(), "{events:#?}");

    let socket = fake.wait_for_messages(0, 3);
    assert_eq!(
        socket.message_types(),
        [
            "session.update",
            "conversation.item.create",
            "response.create"
        ]
    );
    let sent = sent_texts(&socket);
    assert!(!sent.contains(KEY) && !sent.contains(CARD), "{sent}");
    assert!(sent.contains("[REDACTED:card-numbers]"), "{sent}");
    let records = wait_for_records(&agent.state_dir(), 3);
    let responses: Vec<&Value> = records
        .iter()
        .filter(|r| r["decision"] != "block")
        .collect();
    assert_eq!(responses.len(), 1, "one record per response: {records:#?}");
    assert_eq!(responses[0]["decision"], "redact");
    assert_eq!(responses[0]["api"], "realtime");
    assert!(responses[0]["output_tokens"].as_u64().unwrap() > 0);
}

#[test]
fn input_sent_without_a_response_is_still_recorded() {
    let ca = TestCa::new();
    let fake = FakeWs::tls(&ca).start();
    let agent = start(&fake, &ca, |a| a);
    block_on(async {
        tokio::time::timeout(TIMEOUT, async {
            let url = "wss://api.openai.com/v1/realtime?model=gpt-realtime";
            let mut ws = connect(agent.proxy_addr(), &agent.ca_pem_path(), url)
                .await
                .expect("upgrade");
            read_until(&mut ws, &["session.created"]).await;
            send(
                &mut ws,
                &json!({"type": "conversation.item.create", "item": {"type": "message",
                    "role": "user", "content": [{"type": "input_text", "text": format!("card {CARD}")}]}}),
            )
            .await;
            read_until(&mut ws, &["conversation.item.done"]).await;
            let _ = ws.close(None).await;
        })
        .await
        .expect("exchange timed out")
    });
    let records = wait_for_records(&agent.state_dir(), 1);
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0]["decision"], "redact", "{:#}", records[0]);
    assert_eq!(records[0]["api"], "realtime");
    assert!(records[0]["cost_usd"].is_null());
}

#[test]
fn allowed_audio_is_sent_and_recorded_as_unscanned() {
    let ca = TestCa::new();
    let fake = FakeWs::tls(&ca).start();
    // Allowing unscanned audio loosens the baseline: only without it.
    let policy = format!(
        "baseline = false\n{}",
        include_str!("../policy/default.toml")
            .replace("unscanned_audio = \"block\"", "unscanned_audio = \"allow\"")
    );
    let agent = start(&fake, &ca, |a| a.policy_file("10-audio.toml", &policy));
    block_on(async {
        tokio::time::timeout(TIMEOUT, async {
            let url = "wss://api.openai.com/v1/realtime?model=gpt-realtime";
            let mut ws = connect(agent.proxy_addr(), &agent.ca_pem_path(), url)
                .await
                .expect("upgrade");
            read_until(&mut ws, &["session.created"]).await;
            send(
                &mut ws,
                &json!({"type": "input_audio_buffer.append", "audio": "UklGRiQAAABXQVZF"}),
            )
            .await;
            send(&mut ws, &json!({"type": "response.create"})).await;
            read_until(&mut ws, &["response.done"]).await;
        })
        .await
        .expect("exchange timed out")
    });
    let socket = fake.wait_for_messages(0, 2);
    assert_eq!(
        socket.message_types(),
        ["input_audio_buffer.append", "response.create"]
    );
    let records = wait_for_records(&agent.state_dir(), 1);
    let why = records[0]["uninspected"].as_str().unwrap_or_default();
    assert!(why.contains("audio"), "{:#}", records[0]);
}

#[test]
fn an_unknown_socket_path_under_forward_is_bridged_with_a_record() {
    let ca = TestCa::new();
    // The Realtime fake echoes: a path the agent does not govern reaches it as is.
    let fake = FakeProvider::tls(&ca).start();
    let agent = Agent::builder()
        .fake_upstream(&fake)
        .policy_file(
            "10-forward.toml",
            &format!(
                "baseline = false\n{}",
                include_str!("../policy/default.toml")
                    .replace("on_unparseable = \"block\"", "on_unparseable = \"forward\"")
            ),
        )
        .start();
    let echo = block_on(async {
        tokio::time::timeout(TIMEOUT, async {
            // Not a path Outpost knows as a socket API.
            let url = "wss://api.openai.com/v1/realtime/other";
            let tls = tls_through_proxy(
                agent.proxy_addr(),
                "api.openai.com",
                443,
                &agent.ca_pem_path(),
                &["http/1.1"],
            )
            .await
            .expect("tls");
            let request = url.into_client_request().unwrap();
            let (mut ws, _) = tokio_tungstenite::client_async(request, tls)
                .await
                .expect("upgrade");
            ws.next().await;
            ws.send(Message::text("not json")).await.expect("send");
            let echo = ws.next().await.expect("echo").expect("frame");
            let _ = ws.close(None).await;
            echo
        })
        .await
        .expect("exchange timed out")
    });
    assert_eq!(echo, Message::text("not json"));
    let records = wait_for_records(&agent.state_dir(), 1);
    assert_eq!(records[0]["api"], "unknown");
    assert_eq!(records[0]["transport"], "websocket");
    assert!(records[0]["uninspected"]
        .as_str()
        .is_some_and(|w| w.contains("WebSocket endpoint")));

    // unknown_endpoints = "block" wins over on_unparseable = "forward", on
    // sockets as over HTTPS.
    let blocking = Agent::builder()
        .fake_upstream(&fake)
        .policy_file(
            "10-forward.toml",
            &include_str!("../policy/default.toml")
                .replace("on_unparseable = \"block\"", "on_unparseable = \"forward\"")
                .replace(
                    "# unknown_endpoints = \"scan\"",
                    "unknown_endpoints = \"block\"",
                ),
        )
        .start();
    let refused = block_on(async {
        let tls = tls_through_proxy(
            blocking.proxy_addr(),
            "api.openai.com",
            443,
            &blocking.ca_pem_path(),
            &["http/1.1"],
        )
        .await
        .expect("tls");
        let request = "wss://api.openai.com/v1/realtime/other"
            .into_client_request()
            .unwrap();
        tokio_tungstenite::client_async(request, tls)
            .await
            .expect_err("refused")
            .to_string()
    });
    assert!(refused.contains("400"), "{refused}");
    let refusal = &wait_for_records(&blocking.state_dir(), 1)[0];
    assert!(
        refusal["error"]
            .as_str()
            .is_some_and(|e| e.contains("unknown_endpoints")),
        "{refusal:#}"
    );
}

#[test]
fn a_session_silent_both_ways_is_closed_after_the_socket_idle_timeout() {
    let ca = TestCa::new();
    let fake = FakeWs::tls(&ca).start();
    let agent = start(&fake, &ca, |a| {
        a.top_level("[limits]\nsocket_idle_timeout_secs = 2")
    });
    let (closed, after) = block_on(async {
        tokio::time::timeout(TIMEOUT, async {
            let url = "wss://api.openai.com/v1/realtime?model=gpt-realtime";
            let mut ws = connect(agent.proxy_addr(), &agent.ca_pem_path(), url)
                .await
                .expect("upgrade");
            read_until(&mut ws, &["session.created"]).await;
            // Then nothing either way.
            let silent = std::time::Instant::now();
            loop {
                match ws.next().await {
                    Some(Ok(Message::Close(frame))) => break (frame, silent.elapsed()),
                    Some(Ok(_)) => continue,
                    other => panic!("expected a close frame, got {other:?}"),
                }
            }
        })
        .await
        .expect("the silent session was never closed")
    });
    let frame = closed.expect("a close frame with a reason");
    assert_eq!(u16::from(frame.code), 1001);
    assert!(
        frame.reason.contains("socket_idle_timeout_secs"),
        "{}",
        frame.reason
    );
    assert!(
        after >= Duration::from_millis(1500),
        "closed after {after:?}"
    );
    // The provider's side is closed too (the fake notes it as it reads it).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let upstream_closed = || {
        fake.sockets()
            .iter()
            .any(|s| s.close().is_some_and(|(code, _)| code == 1001))
    };
    while !upstream_closed() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        upstream_closed(),
        "{:#?}",
        fake.sockets()
            .iter()
            .map(|s| s.close().map(|(c, r)| (c, r.to_string())))
            .collect::<Vec<_>>()
    );
}

#[test]
fn an_upgrade_the_provider_never_answers_gets_a_504() {
    let ca = TestCa::new();
    let fake = FakeWs::tls(&ca).hang_upgrades().start();
    let agent = start(&fake, &ca, |a| {
        a.upstream_setting("response_timeout_secs = 1")
    });
    let refused = block_on(async {
        tokio::time::timeout(
            TIMEOUT,
            connect(
                agent.proxy_addr(),
                &agent.ca_pem_path(),
                "wss://api.openai.com/v1/responses",
            ),
        )
        .await
        .expect("the agent kept waiting for the provider")
        .expect_err("no upgrade")
    });
    assert!(refused.contains("504"), "{refused}");
}

#[test]
fn a_provider_that_refuses_the_upgrade_is_answered_with_its_status() {
    let ca = TestCa::new();
    let fake = FakeWs::tls(&ca).refuse_upgrades(401).start();
    let agent = start(&fake, &ca, |a| a);
    let refused = block_on(async {
        tokio::time::timeout(
            TIMEOUT,
            connect(
                agent.proxy_addr(),
                &agent.ca_pem_path(),
                "wss://api.openai.com/v1/responses",
            ),
        )
        .await
        .expect("answered")
        .expect_err("no upgrade")
    });
    assert!(refused.contains("401"), "{refused}");
}
