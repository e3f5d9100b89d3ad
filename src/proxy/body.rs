//! Request bodies on the way in: read whole up to a limit, or kept
//! replayable from their start when they are larger.
//!
//! A *whole* body has been read to its end and is what gets inspected; an
//! *over-size* one holds the bytes read so far and the rest still unread,
//! so forwarding it (when policy lets an uninspected body through) sends
//! exactly what the client sent without holding it in memory.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::header::CONTENT_LENGTH;
use http::HeaderMap;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};

use super::ProxyBody;
use crate::upstream::BoxError;

/// A request body after the read stage.
pub enum RequestBody {
    /// Read to its end.
    Whole(Bytes),
    /// Over the limit: what was read, then the rest.
    Oversize {
        /// The body, replayable from its start.
        body: PrefixedBody,
        /// `Content-Length`, if the client declared one.
        declared: Option<u64>,
    },
}

impl RequestBody {
    /// Bytes known so far (all of a whole body; the declared length, or
    /// what was read, of an over-size one).
    pub fn known_len(&self) -> u64 {
        match self {
            RequestBody::Whole(bytes) => bytes.len() as u64,
            RequestBody::Oversize { body, declared } => {
                declared.unwrap_or(body.prefix.as_ref().map_or(0, |p| p.len() as u64))
            }
        }
    }

    /// Its exact length, when known (a whole body; an over-size one's
    /// declared `Content-Length`).
    pub fn known_len_exact(&self) -> Option<usize> {
        match self {
            RequestBody::Whole(bytes) => Some(bytes.len()),
            RequestBody::Oversize { declared, .. } => declared.map(|n| n as usize),
        }
    }

    /// The body to forward as received.
    pub fn into_proxy_body(self) -> ProxyBody {
        match self {
            RequestBody::Whole(bytes) => super::full_body(bytes),
            RequestBody::Oversize { body, .. } => BodyExt::boxed(body),
        }
    }
}

/// The body length `Content-Length` declares, if it is a number.
pub fn declared_len(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Read `body` whole unless it exceeds `limit` bytes.
pub async fn read<B>(mut body: B, headers: &HeaderMap, limit: u64) -> Result<RequestBody, B::Error>
where
    B: Body<Data = Bytes> + Send + Sync + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let declared = declared_len(headers);
    if declared.is_some_and(|n| n > limit) {
        return Ok(RequestBody::Oversize {
            body: PrefixedBody::new(Bytes::new(), body),
            declared,
        });
    }
    let capacity = declared.unwrap_or(0).min(limit) as usize;
    Ok(match read_limited(&mut body, limit, capacity).await? {
        Ok(bytes) => RequestBody::Whole(bytes),
        Err(prefix) => RequestBody::Oversize {
            body: PrefixedBody::new(prefix, body),
            declared,
        },
    })
}

/// Read frames of `body` until it ends (`Ok(Ok(all))`) or passes `limit`
/// bytes (`Ok(Err(what was read))`; the rest stays in `body`).
pub async fn read_limited<B>(
    body: &mut B,
    limit: u64,
    capacity: usize,
) -> Result<Result<Bytes, Bytes>, B::Error>
where
    B: Body<Data = Bytes> + Unpin,
{
    let mut buf = BytesMut::with_capacity(capacity);
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            buf.extend_from_slice(&data);
            if buf.len() as u64 > limit {
                return Ok(Err(buf.freeze()));
            }
        }
    }
    Ok(Ok(buf.freeze()))
}

/// Read and drop frames of `body` until it ends (`Ok(true)`) or `limit`
/// bytes have gone by (`Ok(false)`); nothing is kept.
pub async fn discard<B>(body: &mut B, limit: u64) -> Result<bool, B::Error>
where
    B: Body<Data = Bytes> + Unpin,
{
    let mut seen = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            seen += data.len() as u64;
            if seen > limit {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// A body whose first bytes were already read: those, then the rest.
pub struct PrefixedBody {
    prefix: Option<Bytes>,
    rest: ProxyBody,
}

impl PrefixedBody {
    fn new<B>(prefix: Bytes, rest: B) -> PrefixedBody
    where
        B: Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        PrefixedBody {
            prefix: (!prefix.is_empty()).then_some(prefix),
            rest: BodyExt::boxed(rest.map_err(Into::into)),
        }
    }
}

impl Body for PrefixedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(prefix) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }
}
