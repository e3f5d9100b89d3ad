//! Response guardrails and usage: the stage after the provider answered.
//!
//! - A non-2xx answer, or one to a call that generates nothing billable,
//!   passes through as the provider sent it.
//! - An event stream (`text/event-stream`) goes through a
//!   [`StreamInspector`] event by event ([`InspectedStream`]): redactions
//!   and blocks as it flows, usage and delivered text published to the
//!   call's record when the stream ends.
//! - A JSON body is read whole (up to `max_body_bytes`), scanned, and
//!   rewritten where a rule redacts.
//! - A compressed body (Outpost asked for `identity`) cannot be scanned:
//!   refused under `on_unparseable = "block"` when response rules apply.
//!
//! A provider body that fails part way, or is larger than Outpost
//! inspects, is the upstream's fault (502), never the caller's.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Response};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use super::body::read_limited;
use super::record::{ResponseFacts, ResponseSeen, SharedFacts};
use super::{full_body, ProxyBody};
use crate::policy::decide;
use crate::policy::rules::OnUnparseable;
use crate::policy::stream::StreamInspector;
use crate::policy::Policy;
use crate::provider::{self, ApiCall, ErrorKind};
use crate::refusal::Refusal;
use crate::upstream::BoxError;

/// Response header naming `warn` rules that matched.
pub const WARNING_HEADER: &str = "x-outpost-warning";

/// What the response stage needs to know about the call.
pub struct Expect {
    /// The call answered.
    pub call: ApiCall,
    /// Outpost added `stream_options.include_usage`: hide the usage chunk.
    pub hide_usage_chunk: bool,
    /// A budget waits for this call's usage.
    pub wants_usage: bool,
    /// Longest silence allowed in the response body.
    pub body_idle: std::time::Duration,
}

/// Inspect the provider's `response` to `expect.call` under `policy`.
pub async fn inspect(
    policy: &Arc<Policy>,
    expect: Expect,
    response: Response<Incoming>,
) -> Result<(Response<ProxyBody>, ResponseFacts), Refusal> {
    let response = super::forward::client_response(response, expect.body_idle);
    let call = &expect.call;
    if !response.status().is_success() || !call.api.metered() {
        return Ok((response, ResponseFacts::Unread));
    }
    let headers = response.headers();
    if !call.api.generates() {
        // Embeddings and batches: nothing to scan, but a budget needs the usage.
        if !expect.wants_usage || !is_json(headers) || is_encoded(headers) {
            return Ok((response, ResponseFacts::Unread));
        }
        let (parts, body) = response.into_parts();
        let bytes = collect(body, policy.max_body_bytes).await?;
        let seen = ResponseSeen {
            usage: provider::response_usage(call, &bytes),
            ..ResponseSeen::default()
        };
        return Ok((
            Response::from_parts(parts, full_body(bytes)),
            ResponseFacts::Whole(seen),
        ));
    }
    if is_encoded(headers) {
        if policy.response_scan.is_some() && policy.on_unparseable == OnUnparseable::Block {
            return Err(Refusal {
                rule: Some("on_unparseable".into()),
                retry: false,
                ..Refusal::upstream(
                    ErrorKind::UpstreamUnavailable,
                    "The provider sent a compressed response Outpost cannot inspect \
                     (it asked for identity encoding)."
                        .into(),
                )
            });
        }
        return Ok((response, ResponseFacts::Unread));
    }
    if is_event_stream(headers) {
        let (mut parts, body) = response.into_parts();
        parts.headers.remove(CONTENT_LENGTH);
        let mut inspector = StreamInspector::new(policy.clone(), expect.call);
        if expect.hide_usage_chunk {
            inspector.drop_usage_chunks();
        }
        let facts = SharedFacts::default();
        let stream = InspectedStream::new(body, inspector, facts.clone());
        return Ok((
            Response::from_parts(parts, stream.boxed()),
            ResponseFacts::Streaming(facts),
        ));
    }
    if !is_json(headers) {
        return Ok((response, ResponseFacts::Unread));
    }
    let (parts, body) = response.into_parts();
    let bytes = collect(body, policy.max_body_bytes).await?;
    inspect_json(policy, call, parts, bytes)
}

/// Scan a whole JSON answer; redact, block, or pass it.
fn inspect_json(
    policy: &Policy,
    call: &ApiCall,
    mut parts: http::response::Parts,
    bytes: Bytes,
) -> Result<(Response<ProxyBody>, ResponseFacts), Refusal> {
    let (usage, texts) = provider::read_response(call, &bytes);
    let texts = match texts {
        Ok(texts) => texts,
        Err(err)
            if policy.on_unparseable == OnUnparseable::Forward
                || policy.response_scan.is_none() =>
        {
            tracing::info!("response not inspected: {err}");
            let seen = ResponseSeen {
                usage,
                ..ResponseSeen::default()
            };
            return Ok((
                Response::from_parts(parts, full_body(bytes)),
                ResponseFacts::Whole(seen),
            ));
        }
        Err(err) => {
            return Err(Refusal::upstream(
                ErrorKind::UpstreamUnavailable,
                format!("Outpost could not inspect the provider's response: {err}"),
            ))
        }
    };
    let joined = |texts: &[provider::TextSpan]| {
        texts
            .iter()
            .map(|t| t.text.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let Some(scan) = &policy.response_scan else {
        let seen = ResponseSeen {
            usage,
            completion: Some(joined(&texts)),
            ..ResponseSeen::default()
        };
        return Ok((
            Response::from_parts(parts, full_body(bytes)),
            ResponseFacts::Whole(seen),
        ));
    };
    let inspection = decide::inspect_texts(policy, scan, &texts);
    if let Some(block) = inspection.block {
        return Err(Refusal {
            message: format!(
                "Response {}",
                block.message.replacen("Blocked", "blocked", 1)
            ),
            ..block
        });
    }
    let (bytes, completion) = if inspection.edits.is_empty() {
        let completion = joined(&texts);
        (bytes, completion)
    } else {
        let rewritten = provider::rewrite_texts(&bytes, &inspection.edits)
            .map(Bytes::from)
            .map_err(|err| {
                Refusal::upstream(
                    ErrorKind::UpstreamUnavailable,
                    format!("Outpost could not redact the provider's response: {err}"),
                )
            })?;
        let completion = provider::response_texts(call, &rewritten)
            .map(|t| joined(&t))
            .unwrap_or_default();
        (rewritten, completion)
    };
    parts
        .headers
        .insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    add_warnings(&mut parts.headers, inspection.warnings());
    let seen = ResponseSeen {
        hits: inspection.hits,
        completion: Some(completion),
        usage,
        blocked: false,
    };
    Ok((
        Response::from_parts(parts, full_body(bytes)),
        ResponseFacts::Whole(seen),
    ))
}

/// Add the ids of `warn` rules to the warning header.
pub fn add_warnings<'a>(headers: &mut HeaderMap, rules: impl Iterator<Item = &'a str>) {
    let rules: Vec<&str> = rules.collect();
    if rules.is_empty() {
        return;
    }
    if let Ok(value) = HeaderValue::from_str(&rules.join(", ")) {
        headers.append(WARNING_HEADER, value);
    }
}

async fn collect(mut body: ProxyBody, limit: u64) -> Result<Bytes, Refusal> {
    match read_limited(&mut body, limit, 0).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(Refusal::upstream(
            ErrorKind::UpstreamUnavailable,
            format!(
                "The provider's response is larger than the {limit} bytes Outpost inspects \
                 (max_body_bytes)."
            ),
        )),
        Err(err) => Err(Refusal::upstream(
            ErrorKind::UpstreamUnavailable,
            format!("The provider's response failed part way: {err}"),
        )),
    }
}

fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"))
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"))
}

fn is_encoded(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.eq_ignore_ascii_case("identity"))
}

/// A response stream passed through a [`StreamInspector`], frame by frame.
pub struct InspectedStream {
    inner: ProxyBody,
    inspector: StreamInspector,
    queue: VecDeque<Bytes>,
    done: bool,
    error: Option<BoxError>,
    facts: SharedFacts,
}

impl InspectedStream {
    fn new(inner: ProxyBody, inspector: StreamInspector, facts: SharedFacts) -> InspectedStream {
        InspectedStream {
            inner,
            inspector,
            queue: VecDeque::new(),
            done: false,
            error: None,
            facts,
        }
    }

    /// Publish what the stream showed, for the audit record.
    fn publish(&self) {
        self.facts.publish(ResponseSeen {
            hits: self.inspector.hits(),
            completion: Some(self.inspector.delivered_text().to_string()),
            usage: self.inspector.state().usage(),
            blocked: self.inspector.blocked().is_some(),
        });
    }
}

impl Drop for InspectedStream {
    fn drop(&mut self) {
        self.publish();
    }
}

impl Body for InspectedStream {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if let Some(bytes) = this.queue.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(bytes))));
            }
            if this.done {
                return Poll::Ready(this.error.take().map(Err));
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        let out = this.inspector.push(&data);
                        this.queue.extend(out);
                        if this.inspector.blocked().is_some() {
                            this.done = true;
                            this.publish();
                        }
                    }
                    Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
                },
                Poll::Ready(Some(Err(err))) => {
                    this.queue.extend(this.inspector.finish());
                    this.error = Some(err);
                    this.done = true;
                    this.publish();
                }
                Poll::Ready(None) => {
                    this.queue.extend(this.inspector.finish());
                    this.done = true;
                    this.publish();
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.queue.is_empty() && self.error.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
