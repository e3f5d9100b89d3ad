//! Tests of the WebSocket fake itself (`support::fake_ws`), with no agent in between:
//! clients connect straight to it over TLS trusting the test CA, and check each protocol's
//! event sequence, what the fake recorded, and that permessage-deflate is never accepted.

mod support;

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use support::fake_ws::{FakeUsage, FakeWs, FrameKind, WsMessage, CUT_CLOSE_CODE};
use support::{block_on, tunnel, TestCa, CLIENT_TIMEOUT};

type Ws = WebSocketStream<TlsStream<TcpStream>>;

const DEFLATE_OFFER: &str = "permessage-deflate; client_max_window_bits";

const GEMINI_V1BETA: &str =
    "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent";
const GEMINI_V1ALPHA: &str =
    "/ws/google.ai.generativelanguage.v1alpha.GenerativeService.BidiGenerateContent";

/// TLS straight to the fake for `host`, trusting only the test CA, offering `http/1.1`.
async fn tls_to(fake: &FakeWs, ca: &TestCa, host: &str) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(fake.addr())
        .await
        .expect("connect to fake");
    let connector = tokio_rustls::TlsConnector::from(tunnel::client_config(
        &[ca.cert_der().clone()],
        &["http/1.1"],
    ));
    let name = ServerName::try_from(host.to_string()).expect("server name");
    connector.connect(name, tcp).await.expect("TLS to fake")
}

/// Opens `wss://{host}{path_and_query}` with extra request headers; returns the socket and
/// the 101 response.
async fn open_ws(
    fake: &FakeWs,
    ca: &TestCa,
    host: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
) -> Result<(Ws, tungstenite::handshake::client::Response), tungstenite::Error> {
    let mut request = format!("wss://{host}{path_and_query}")
        .into_client_request()
        .expect("ws request");
    for (name, value) in headers {
        request.headers_mut().insert(
            http::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            value.parse().expect("header value"),
        );
    }
    tokio_tungstenite::client_async(request, tls_to(fake, ca, host).await).await
}

/// The next text or binary frame parsed as JSON, with whether it was binary.
async fn next_json(ws: &mut Ws) -> (Value, bool) {
    loop {
        let message = tokio::time::timeout(CLIENT_TIMEOUT, ws.next())
            .await
            .expect("fake went quiet")
            .expect("socket ended")
            .expect("frame");
        match message {
            Message::Text(text) => return (serde_json::from_str(&text).expect("JSON text"), false),
            Message::Binary(bytes) => {
                return (serde_json::from_slice(&bytes).expect("JSON binary"), true)
            }
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a data frame, got {other:?}"),
        }
    }
}

/// Reads JSON frames up to and including the first one for which `last` is true.
async fn read_through(ws: &mut Ws, last: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut events = Vec::new();
    loop {
        let (event, _) = next_json(ws).await;
        let done = last(&event);
        events.push(event);
        if done {
            return events;
        }
    }
}

fn types(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or(""))
        .collect()
}

fn deltas<'a>(events: &'a [Value], kind: &str) -> Vec<&'a str> {
    events
        .iter()
        .filter(|e| e["type"] == kind)
        .map(|e| e["delta"].as_str().expect("delta text"))
        .collect()
}

const RESPONSES_SEQUENCE: &[&str] = &[
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.delta",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
];

#[test]
fn responses_websocket_streams_events_records_frames_and_refuses_deflate() {
    let ca = TestCa::new();
    let usage = FakeUsage {
        input_tokens: 120,
        output_tokens: 40,
        cached_tokens: 30,
        reasoning_tokens: 12,
        ..FakeUsage::default()
    };
    let fake = FakeWs::tls(&ca).reply("abcdefgh", 3).usage(usage).start();

    let (first, second, extensions) = block_on(async {
        let (mut ws, response) = open_ws(
            &fake,
            &ca,
            "api.openai.com",
            "/v1/responses?trace=1",
            &[
                ("authorization", "Bearer sk-ws-test"),
                ("sec-websocket-extensions", DEFLATE_OFFER),
            ],
        )
        .await
        .expect("handshake");
        assert_eq!(response.status(), 101);
        let extensions = response.headers().get("sec-websocket-extensions").cloned();

        let create = json!({"type": "response.create", "model": "gpt-5", "input": "hi", "instructions": "be brief"});
        ws.send(Message::text(create.to_string()))
            .await
            .expect("send");
        let first = read_through(&mut ws, |e| e["type"] == "response.completed").await;
        ws.send(Message::text(r#"{"type":"response.processed"}"#))
            .await
            .expect("send");
        ws.send(Message::text(
            json!({"type": "response.create", "input": "again"}).to_string(),
        ))
        .await
        .expect("send");
        let second = read_through(&mut ws, |e| e["type"] == "response.completed").await;
        ws.close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        }))
        .await
        .expect("close");
        while let Some(Ok(_)) = ws.next().await {}
        (first, second, extensions)
    });

    assert_eq!(
        extensions, None,
        "the fake must not accept permessage-deflate"
    );
    assert_eq!(types(&first), RESPONSES_SEQUENCE);
    assert_eq!(
        deltas(&first, "response.output_text.delta"),
        ["ab", "cde", "fgh"]
    );
    for (n, event) in first.iter().enumerate() {
        assert_eq!(event["sequence_number"], n, "{event}");
    }
    let delta = &first[4];
    assert_eq!(delta["item_id"], first[2]["item"]["id"]);
    assert_eq!(
        (
            delta["output_index"].clone(),
            delta["content_index"].clone()
        ),
        (json!(0), json!(0))
    );
    assert_eq!(first[0]["response"]["status"], "in_progress");
    assert_eq!(first[0]["response"]["model"], "gpt-5");
    assert_eq!(first[0]["response"]["instructions"], "be brief");
    assert_eq!(first[7]["text"], "abcdefgh");
    let completed = &first[10]["response"];
    assert_eq!(completed["status"], "completed");
    assert_eq!(completed["output"][0]["content"][0]["text"], "abcdefgh");
    assert_eq!(
        completed["usage"],
        json!({
            "input_tokens": 120, "input_tokens_details": {"cached_tokens": 30},
            "output_tokens": 40, "output_tokens_details": {"reasoning_tokens": 12},
            "total_tokens": 160,
        })
    );
    assert_eq!(
        types(&second),
        RESPONSES_SEQUENCE,
        "response.processed is ignored"
    );
    assert_ne!(second[0]["response"]["id"], first[0]["response"]["id"]);

    let socket = fake.wait_for_end(0);
    assert_eq!(socket.path, "/v1/responses");
    assert_eq!(socket.query, "trace=1");
    assert_eq!(socket.query_param("trace").as_deref(), Some("1"));
    assert_eq!(socket.sni.as_deref(), Some("api.openai.com"));
    assert_eq!(socket.header("authorization"), Some("Bearer sk-ws-test"));
    assert_eq!(
        socket.header("sec-websocket-extensions"),
        Some(DEFLATE_OFFER)
    );
    assert_eq!(
        socket.message_types(),
        ["response.create", "response.processed", "response.create"]
    );
    assert_eq!(socket.json_messages()[0]["model"], "gpt-5");
    assert_eq!(
        socket.messages.last(),
        Some(&WsMessage::Close {
            code: 1000,
            reason: "bye".to_string()
        })
    );
    assert_eq!(socket.close(), Some((1000, "bye")));
    assert!(fake.http_requests().is_empty());
}

#[test]
fn responses_websocket_cut_sends_close_1011_after_k_deltas() {
    let ca = TestCa::new();
    let fake = FakeWs::tls(&ca).cut_after(2).start();

    let (events, close) = block_on(async {
        let (mut ws, _) = open_ws(&fake, &ca, "api.openai.com", "/v1/responses", &[])
            .await
            .expect("handshake");
        ws.send(Message::text(
            r#"{"type":"response.create","model":"gpt-5","input":"hi"}"#,
        ))
        .await
        .expect("send");
        let mut events = Vec::new();
        let close = loop {
            match tokio::time::timeout(CLIENT_TIMEOUT, ws.next())
                .await
                .expect("quiet")
            {
                Some(Ok(Message::Text(text))) => {
                    events.push(serde_json::from_str::<Value>(&text).expect("JSON"))
                }
                Some(Ok(Message::Close(frame))) => break frame,
                other => panic!("expected events then a close frame, got {other:?}"),
            }
        };
        while let Some(Ok(_)) = ws.next().await {}
        (events, close)
    });

    assert_eq!(
        types(&events),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
        ]
    );
    assert_eq!(
        deltas(&events, "response.output_text.delta").concat(),
        fake.reply_pieces()[..2].concat()
    );
    let close = close.expect("close frame with a code");
    assert_eq!(u16::from(close.code), CUT_CLOSE_CODE);
    let socket = fake.wait_for_end(0);
    assert_eq!(socket.message_types(), ["response.create"]);
}

#[test]
fn responses_websocket_abort_drops_without_close_frame() {
    let ca = TestCa::new();
    let fake = FakeWs::tls(&ca).abort_after(1).start();

    let (events, ending) = block_on(async {
        let (mut ws, _) = open_ws(&fake, &ca, "api.openai.com", "/v1/responses", &[])
            .await
            .expect("handshake");
        ws.send(Message::text(r#"{"type":"response.create","input":"hi"}"#))
            .await
            .expect("send");
        let mut events = Vec::new();
        let ending = loop {
            match tokio::time::timeout(CLIENT_TIMEOUT, ws.next())
                .await
                .expect("quiet")
            {
                Some(Ok(Message::Text(text))) => {
                    events.push(serde_json::from_str::<Value>(&text).expect("JSON"))
                }
                Some(Ok(other)) => panic!("unexpected frame {other:?}"),
                Some(Err(e)) => break format!("error: {e}"),
                None => break "end of stream".to_string(),
            }
        };
        (events, ending)
    });

    assert_eq!(deltas(&events, "response.output_text.delta").len(), 1);
    assert_eq!(
        events.last().map(|e| e["type"].clone()),
        Some(json!("response.output_text.delta"))
    );
    // No close frame (the loop panics on one): the connection just drops, TLS and all.
    assert!(
        ending.starts_with("error: IO error") || ending == "end of stream",
        "{ending}"
    );
    fake.wait_for_end(0);
}

/// `POST path` over HTTP/1.1 with a JSON body; returns status, content type and body text.
async fn post_json(fake: &FakeWs, ca: &TestCa, path: &str, body: &Value) -> (u16, String, String) {
    let tls = tls_to(fake, ca, "api.openai.com").await;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("HTTP handshake");
    tokio::spawn(connection);
    let request = http::Request::post(path)
        .header("host", "api.openai.com")
        .header("content-type", "application/json")
        .header("authorization", "Bearer sk-http-test")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (
        status,
        content_type,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[test]
fn responses_over_https_answer_sse_or_json_and_are_recorded() {
    let ca = TestCa::new();
    let fake = FakeWs::tls(&ca).reply("one two three", 3).start();

    let (streamed, whole) = block_on(async {
        let streamed = post_json(
            &fake,
            &ca,
            "/v1/responses",
            &json!({"model": "gpt-5", "input": "hi", "stream": true}),
        )
        .await;
        let whole = post_json(
            &fake,
            &ca,
            "/v1/responses",
            &json!({"model": "gpt-5", "input": "hi"}),
        )
        .await;
        (streamed, whole)
    });

    let (status, content_type, body) = streamed;
    assert_eq!((status, content_type.as_str()), (200, "text/event-stream"));
    let events: Vec<Value> = body
        .split("\n\n")
        .filter(|block| !block.is_empty())
        .map(|block| {
            let (event_line, data_line) = block.split_once('\n').expect("event and data lines");
            let name = event_line.strip_prefix("event: ").expect("event line");
            let data: Value =
                serde_json::from_str(data_line.strip_prefix("data: ").expect("data line"))
                    .expect("JSON");
            assert_eq!(data["type"], name, "event name matches data type");
            data
        })
        .collect();
    assert_eq!(types(&events), RESPONSES_SEQUENCE);
    assert_eq!(
        deltas(&events, "response.output_text.delta").concat(),
        "one two three"
    );
    assert_eq!(
        events[10]["response"]["usage"]["total_tokens"],
        FakeUsage::default().total_tokens()
    );

    let (status, content_type, body) = whole;
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    let response: Value = serde_json::from_str(&body).expect("JSON response");
    assert_eq!(response["object"], "response");
    assert_eq!(response["status"], "completed");
    assert_eq!(response["output"][0]["content"][0]["text"], "one two three");

    let requests = fake.wait_for_http_requests(2);
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].path(), "/v1/responses");
    assert_eq!(
        requests[0].header("authorization"),
        Some("Bearer sk-http-test")
    );
    assert_eq!(requests[0].body_json()["stream"], true);
    assert!(fake.sockets().is_empty());
}

#[test]
fn responses_sse_cut_ends_the_body_early() {
    let ca = TestCa::new();
    let fake = FakeWs::tls(&ca).cut_after(1).start();

    let outcome = block_on(async {
        let tls = tls_to(&fake, &ca, "api.openai.com").await;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .expect("HTTP handshake");
        tokio::spawn(connection);
        let request = http::Request::post("/v1/responses")
            .header("host", "api.openai.com")
            .body(Full::new(Bytes::from(r#"{"input":"hi","stream":true}"#)))
            .expect("request");
        let response = sender.send_request(request).await.expect("response head");
        response.into_body().collect().await.map(|b| b.to_bytes())
    });
    assert!(
        outcome.is_err(),
        "a cut SSE body ends with an error, not cleanly"
    );
}

#[test]
fn refused_upgrades_get_the_status_and_are_recorded_as_http() {
    let ca = TestCa::new();
    let fake = FakeWs::tls(&ca).refuse_upgrades(426).start();

    let (refused, unknown, fallback) = block_on(async {
        let refused = open_ws(&fake, &ca, "api.openai.com", "/v1/responses", &[]).await;
        let unknown = open_ws(&fake, &ca, "api.openai.com", "/v1/nowhere", &[]).await;
        let fallback = post_json(&fake, &ca, "/v1/responses", &json!({"input": "hi"})).await;
        (refused, unknown, fallback)
    });

    match refused {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 426),
        other => panic!("expected an HTTP refusal, got {other:?}"),
    }
    match unknown {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 404),
        other => panic!("expected 404 for an unknown path, got {other:?}"),
    }
    assert_eq!(fallback.0, 200, "HTTPS still answers: {}", fallback.2);
    let requests = fake.wait_for_http_requests(3);
    assert_eq!(requests[0].method, "GET");
    assert_eq!(requests[0].path(), "/v1/responses");
    assert_eq!(requests[0].header("upgrade"), Some("websocket"));
    assert_eq!(requests[2].method, "POST");
    assert!(fake.sockets().is_empty());
}

#[test]
fn realtime_session_items_and_response() {
    let ca = TestCa::new();
    let usage = FakeUsage {
        input_tokens: 50,
        output_tokens: 20,
        cached_tokens: 8,
        input_audio_tokens: 30,
        output_audio_tokens: 5,
        ..FakeUsage::default()
    };
    let fake = FakeWs::tls(&ca).reply("Hi there", 2).usage(usage).start();

    let (protocol, created, updated, item_events, response_events) = block_on(async {
        let (mut ws, response) = open_ws(
            &fake,
            &ca,
            "api.openai.com",
            "/v1/realtime?model=gpt-realtime-mini",
            &[
                ("sec-websocket-protocol", "realtime"),
                ("sec-websocket-extensions", DEFLATE_OFFER),
            ],
        )
        .await
        .expect("handshake");
        assert!(response.headers().get("sec-websocket-extensions").is_none());
        let protocol = response.headers().get("sec-websocket-protocol").cloned();
        let (created, _) = next_json(&mut ws).await;
        let send = |v: Value| Message::text(v.to_string());
        ws.send(send(json!({"type": "session.update", "session": {"type": "realtime", "instructions": "Be terse."}})))
            .await
            .expect("send");
        let (updated, _) = next_json(&mut ws).await;
        ws.send(send(json!({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello"}]}})))
            .await
            .expect("send");
        let item_events = read_through(&mut ws, |e| e["type"] == "conversation.item.done").await;
        ws.send(send(
            json!({"type": "input_audio_buffer.append", "audio": "AAAA"}),
        ))
        .await
        .expect("send");
        ws.send(send(json!({"type": "response.create"})))
            .await
            .expect("send");
        let response_events = read_through(&mut ws, |e| e["type"] == "response.done").await;
        let _ = ws.close(None).await;
        (protocol, created, updated, item_events, response_events)
    });

    assert_eq!(
        protocol.as_ref().and_then(|p| p.to_str().ok()),
        Some("realtime")
    );
    assert_eq!(created["type"], "session.created");
    assert_eq!(created["session"]["model"], "gpt-realtime-mini");
    assert_eq!(updated["type"], "session.updated");
    assert_eq!(updated["session"]["instructions"], "Be terse.");
    assert_eq!(
        types(&item_events),
        ["conversation.item.added", "conversation.item.done"]
    );
    let item = &item_events[0]["item"];
    assert!(
        item["id"].as_str().is_some_and(|id| !id.is_empty()),
        "{item}"
    );
    assert_eq!(item["content"][0]["text"], "hello");
    assert_eq!(
        types(&response_events),
        [
            "response.created",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.done",
        ],
        "input_audio_buffer.append gets no answer"
    );
    assert_eq!(
        deltas(&response_events, "response.output_text.delta"),
        ["Hi t", "here"]
    );
    let done = &response_events[8]["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"][0]["content"][0]["text"], "Hi there");
    assert_eq!(
        done["usage"],
        json!({
            "total_tokens": 70, "input_tokens": 50, "output_tokens": 20,
            "input_token_details": {"text_tokens": 20, "audio_tokens": 30, "image_tokens": 0, "cached_tokens": 8,
                "cached_tokens_details": {"text_tokens": 8, "audio_tokens": 0, "image_tokens": 0}},
            "output_token_details": {"text_tokens": 15, "audio_tokens": 5},
        })
    );

    let socket = fake.wait_for_end(0);
    assert_eq!(socket.path, "/v1/realtime");
    assert_eq!(
        socket.query_param("model").as_deref(),
        Some("gpt-realtime-mini")
    );
    assert_eq!(
        socket.header("sec-websocket-extensions"),
        Some(DEFLATE_OFFER)
    );
    assert_eq!(
        socket.message_types(),
        [
            "session.update",
            "conversation.item.create",
            "input_audio_buffer.append",
            "response.create"
        ]
    );
    assert_eq!(socket.close(), Some((1005, "")));
}

/// Sends `value` as a text or binary frame.
async fn send_json(ws: &mut Ws, value: Value, binary: bool) {
    let frame = if binary {
        Message::binary(value.to_string())
    } else {
        Message::text(value.to_string())
    };
    ws.send(frame).await.expect("send");
}

/// Reads a Gemini turn up to `turnComplete`; returns the messages and whether all were binary.
async fn read_gemini_turn(ws: &mut Ws) -> (Vec<Value>, Vec<bool>) {
    let mut messages = Vec::new();
    let mut binary = Vec::new();
    loop {
        let (message, is_binary) = next_json(ws).await;
        let done = message["serverContent"]["turnComplete"] == true;
        messages.push(message);
        binary.push(is_binary);
        if done {
            return (messages, binary);
        }
    }
}

#[test]
fn gemini_live_answers_in_binary_frames_by_default() {
    let ca = TestCa::new();
    let usage = FakeUsage {
        input_tokens: 9,
        output_tokens: 6,
        reasoning_tokens: 2,
        ..FakeUsage::default()
    };
    let fake = FakeWs::tls(&ca).reply("Bonjour!", 2).usage(usage).start();
    let host = "generativelanguage.googleapis.com";

    let (setup_reply, turn, frames) = block_on(async {
        let (mut ws, response) = open_ws(
            &fake,
            &ca,
            host,
            &format!("{GEMINI_V1BETA}?key=AIza-test"),
            &[("sec-websocket-extensions", DEFLATE_OFFER)],
        )
        .await
        .expect("handshake");
        assert!(response.headers().get("sec-websocket-extensions").is_none());
        send_json(
            &mut ws,
            json!({"setup": {"model": "models/gemini-2.0-flash-live-001"}}),
            false,
        )
        .await;
        let setup_reply = next_json(&mut ws).await;
        // An unfinished turn is recorded but not answered.
        send_json(
            &mut ws,
            json!({"clientContent": {"turns": [{"role": "user", "parts": [{"text": "Hel"}]}]}}),
            false,
        )
        .await;
        send_json(
            &mut ws,
            json!({"clientContent": {"turns": [{"role": "user", "parts": [{"text": "lo"}]}], "turnComplete": true}}),
            false,
        )
        .await;
        let (turn, frames) = read_gemini_turn(&mut ws).await;
        let _ = ws.close(None).await;
        (setup_reply, turn, frames)
    });

    assert_eq!(setup_reply, (json!({"setupComplete": {}}), true));
    assert!(
        frames.iter().all(|b| *b),
        "every server message is a binary frame"
    );
    assert_eq!(turn.len(), 4, "{turn:#?}");
    let texts: Vec<&str> = turn[..2]
        .iter()
        .map(|m| {
            m["serverContent"]["modelTurn"]["parts"][0]["text"]
                .as_str()
                .expect("text part")
        })
        .collect();
    assert_eq!(texts.concat(), "Bonjour!");
    assert_eq!(
        turn[2],
        json!({"serverContent": {"generationComplete": true}})
    );
    let usage = &turn[3]["usageMetadata"];
    assert_eq!(usage["promptTokenCount"], 9);
    assert_eq!(usage["responseTokenCount"], 4);
    assert_eq!(usage["thoughtsTokenCount"], 2);
    assert_eq!(usage["totalTokenCount"], 15);

    let socket = fake.wait_for_end(0);
    assert_eq!(socket.path, GEMINI_V1BETA);
    assert_eq!(socket.query_param("key").as_deref(), Some("AIza-test"));
    assert_eq!(socket.sni.as_deref(), Some(host));
    let received = socket.json_messages();
    assert_eq!(received.len(), 3);
    assert_eq!(
        received[0]["setup"]["model"],
        "models/gemini-2.0-flash-live-001"
    );
    assert!(matches!(socket.messages[0], WsMessage::Text(_)));
}

#[test]
fn gemini_live_text_frames_and_realtime_input() {
    let ca = TestCa::new();
    let fake = FakeWs::tls(&ca)
        .gemini_frames(FrameKind::Text)
        .delta_delay(Duration::from_millis(20))
        .start();
    let host = "generativelanguage.googleapis.com";

    let (turn, frames) = block_on(async {
        let (mut ws, _) = open_ws(&fake, &ca, host, &format!("{GEMINI_V1ALPHA}?key=k"), &[])
            .await
            .expect("handshake");
        send_json(
            &mut ws,
            json!({"setup": {"model": "models/gemini-live-2.5-flash"}}),
            true,
        )
        .await;
        assert_eq!(
            next_json(&mut ws).await,
            (json!({"setupComplete": {}}), false)
        );
        send_json(&mut ws, json!({"realtimeInput": {"audio": {"data": "AAAA", "mimeType": "audio/pcm;rate=16000"}}}), true).await;
        send_json(&mut ws, json!({"realtimeInput": {"text": "hello"}}), true).await;
        let turn = read_gemini_turn(&mut ws).await;
        let _ = ws.close(None).await;
        turn
    });

    assert!(frames.iter().all(|b| !b), "text frames when asked");
    assert_eq!(turn.len(), fake.reply_pieces().len() + 2);
    let socket = fake.wait_for_end(0);
    assert_eq!(socket.path, GEMINI_V1ALPHA);
    assert!(
        matches!(socket.messages[0], WsMessage::Binary(_)),
        "binary from clients is read"
    );
    assert_eq!(socket.json_messages()[2]["realtimeInput"]["text"], "hello");
}
