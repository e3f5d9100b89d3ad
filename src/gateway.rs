//! The central AI gateway route: calls whose provider policy routes
//! `"gateway"` go to `[gateway] url` (LiteLLM, Bifrost, Portkey, Kong, …)
//! with the device's own credential, after the same guardrails, budgets
//! and audit as a direct call, streaming alike.
//!
//! The request keeps its method, path and body; its URI becomes
//! `{url}{prefix}{path}?{query}` (the prefix per provider, `/<name>` by
//! default), its provider credentials are removed (`provider_keys =
//! "strip"`, also Gemini's `?key=`), and the gateway header carries the
//! credential `outpost login --gateway-key` stored (the OS keyring, or a
//! 0600 file under `state_dir` where there is none). It is never in the
//! config file. A gateway that cannot be reached is a native-format error
//! naming it, or with `fallback = "direct"` the call goes to the provider.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::header::{HeaderValue, AUTHORIZATION};
use http::{Request, Response, Uri};
use hyper::body::Incoming;

use crate::config::{Config, GatewayConfig, KeyStoreChoice};
use crate::provider::ErrorKind;
use crate::proxy::forward::{self, Route, UpstreamError};
use crate::proxy::{full_body, ProxyBody, ProxyState};
use crate::refusal::Refusal;
use crate::tls::store::{self, Secret, StoreError};
use crate::upstream::{Connector, Upstream, UpstreamBody};

/// The device's gateway credential: `state_dir/gateway/gateway.key`, or
/// the OS keyring.
pub const GATEWAY_KEY: Secret = Secret {
    dir: "gateway",
    file: "gateway.key",
    account: "gateway-key",
    what: "the gateway credential",
    remedy_missing: "run `outpost login --gateway-key` (it reads the key from stdin)",
    remedy_exposed: "Run `outpost login --gateway-key` again to store it privately",
};

/// Headers that carry a provider credential.
const PROVIDER_KEY_HEADERS: [&str; 4] = ["authorization", "x-api-key", "api-key", "x-goog-api-key"];

/// The gateway the agent routes to.
pub struct Gateway {
    config: GatewayConfig,
    upstream: Upstream,
    state_dir: PathBuf,
    /// The credential as last read (`None`: not stored).
    key: ArcSwapOption<String>,
}

/// What [`send`] got: the response, and whether it came from the
/// provider directly because the gateway was unreachable.
pub struct Sent {
    /// The response (headers; the body streams).
    pub response: Response<Incoming>,
    /// `fallback = "direct"` was used.
    pub fell_back: bool,
}

impl Gateway {
    /// A gateway client for `config`'s `[gateway]`; `pools` as the
    /// upstream's (one per worker).
    pub fn new(
        config: &Config,
        gateway: &GatewayConfig,
        connector: &Connector,
        pools: usize,
    ) -> Gateway {
        // The gateway is the config's own choice, on this machine or not.
        let upstream = Upstream::new(connector.for_configured_endpoint(), &config.upstream, pools);
        let gateway = Gateway {
            config: gateway.clone(),
            upstream,
            state_dir: config.state_dir.clone(),
            key: ArcSwapOption::empty(),
        };
        gateway.reload_key();
        gateway
    }

    /// Read the stored credential again (after `outpost login`); blocking.
    pub fn reload_key(&self) {
        match store::find_secret(&self.state_dir, &GATEWAY_KEY) {
            Ok(found) => self.key.store(found.map(|(key, _)| Arc::new(key))),
            Err(e) => {
                tracing::warn!("gateway credential unusable: {e}");
                self.key.store(None);
            }
        }
    }

    /// `{url}{prefix}{path_and_query}` for `provider`, without a `key=`
    /// query parameter when provider keys are stripped.
    fn uri(&self, provider: &str, original: &Uri) -> Result<Uri, http::Error> {
        let prefix = self
            .config
            .prefixes
            .get(provider)
            .cloned()
            .unwrap_or_else(|| format!("/{provider}"));
        let base = self.config.url.path().trim_end_matches('/');
        let mut path_and_query = format!("{base}{prefix}{}", original.path());
        if let Some(query) = original.query() {
            let kept: Vec<&str> = query
                .split('&')
                .filter(|pair| self.config.keep_provider_keys || !pair.starts_with("key="))
                .collect();
            if !kept.is_empty() {
                path_and_query.push('?');
                path_and_query.push_str(&kept.join("&"));
            }
        }
        let mut parts = self.config.url.clone().into_parts();
        parts.path_and_query = Some(path_and_query.parse()?);
        Ok(Uri::from_parts(parts)?)
    }

    /// How errors name it.
    fn label(&self) -> String {
        format!(
            "the AI gateway {}",
            self.config.url.authority().map_or("", |a| a.as_str())
        )
    }

    /// `req` (as it would go direct) rewritten for the gateway.
    fn rewrite(
        &self,
        provider: &str,
        mut req: Request<UpstreamBody>,
    ) -> Result<Request<UpstreamBody>, Refusal> {
        let Some(key) = self.key.load_full() else {
            return Err(Refusal::upstream(
                ErrorKind::UpstreamUnavailable,
                format!(
                    "Outpost routes {provider} through {} but this device has no gateway \
                     credential: {}",
                    self.label(),
                    GATEWAY_KEY.remedy_missing
                ),
            ));
        };
        if escapes_prefix(req.uri().path()) {
            return Err(Refusal::client(
                Some("gateway_path"),
                format!(
                    "Outpost refuses this path on the route to {}: dot segments and encoded \
                     dots or slashes could leave the provider's prefix there",
                    self.label()
                ),
            ));
        }
        *req.uri_mut() = self.uri(provider, req.uri()).map_err(|e| {
            Refusal::upstream(
                ErrorKind::UpstreamUnavailable,
                format!(
                    "Outpost could not build the request to {}: {e}",
                    self.label()
                ),
            )
        })?;
        let headers = req.headers_mut();
        if !self.config.keep_provider_keys {
            for name in PROVIDER_KEY_HEADERS {
                headers.remove(name);
            }
        }
        let value = if self.config.header == AUTHORIZATION {
            format!("Bearer {key}")
        } else {
            key.to_string()
        };
        let mut value = HeaderValue::try_from(value).map_err(|_| {
            Refusal::upstream(
                ErrorKind::UpstreamUnavailable,
                "the stored gateway credential is not a valid header value; run `outpost login --gateway-key` again".to_string(),
            )
        })?;
        value.set_sensitive(true);
        headers.insert(self.config.header.clone(), value);
        Ok(req)
    }
}

/// Whether `path` could resolve outside the prefix it is put under: a `.`
/// or `..` segment, or a percent-encoded dot, slash or backslash that the
/// gateway might decode into one.
fn escapes_prefix(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    lower
        .split('/')
        .any(|segment| segment == "." || segment == "..")
        || ["%2e", "%2f", "%5c"].iter().any(|e| lower.contains(e))
        || path.contains('\\')
}

/// Send `req` (an inspected call to `provider` on `route`) through the
/// gateway; `replay` is its body again, for `fallback = "direct"`.
pub async fn send(
    state: &ProxyState,
    route: &Route,
    provider: &str,
    req: Request<ProxyBody>,
    replay: Option<Bytes>,
) -> Result<Sent, Refusal> {
    let Some(gateway) = &state.gateway else {
        return Err(Refusal::upstream(
            ErrorKind::UpstreamUnavailable,
            format!(
                "Outpost policy routes {provider} through the AI gateway, but this agent has no \
                 [gateway] url configured; ask your administrator"
            ),
        ));
    };
    // Kept only for a call that can fall back: its head, to send it again.
    let again = match replay {
        Some(body) if gateway.config.fallback_direct => Some((
            (
                req.method().clone(),
                req.uri().clone(),
                req.headers().clone(),
                req.version(),
            ),
            body,
        )),
        _ => None,
    };
    let direct = forward::upstream_request(route, req).map_err(|err| {
        Refusal::upstream(
            ErrorKind::UpstreamUnavailable,
            format!("Outpost could not build the request: {err}"),
        )
    })?;
    let via = gateway.rewrite(provider, direct)?;
    match forward::send_prepared(&gateway.upstream, &gateway.label(), via).await {
        Ok(response) => Ok(Sent {
            response,
            fell_back: false,
        }),
        Err(err) => match again {
            Some(again) if err.kind == ErrorKind::UpstreamUnavailable => {
                fall_back(state, route, err, again).await
            }
            _ => Err(err.into()),
        },
    }
}

type Head = (http::Method, Uri, http::HeaderMap, http::Version);

/// `fallback = "direct"`: the same inspected bytes, to the provider.
async fn fall_back(
    state: &ProxyState,
    route: &Route,
    err: UpstreamError,
    ((method, uri, headers, version), body): (Head, Bytes),
) -> Result<Sent, Refusal> {
    tracing::warn!(
        "{}; sending the call direct (gateway fallback = \"direct\")",
        err.message
    );
    let mut req = Request::new(full_body(body));
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    *req.version_mut() = version;
    let response = forward::send(state, route, req).await?;
    Ok(Sent {
        response,
        fell_back: true,
    })
}

/// `outpost login --gateway-key`: store `key` (the first line of stdin).
pub fn login(state_dir: &Path, key: &str, choice: KeyStoreChoice) -> Result<String, StoreError> {
    let location = store::store_secret(state_dir, &GATEWAY_KEY, key, choice)?;
    Ok(location.to_string())
}

/// `outpost logout`: remove the stored credential, wherever it is.
pub fn logout(state_dir: &Path) -> Result<bool, StoreError> {
    store::remove_secret(state_dir, &GATEWAY_KEY)
}

#[cfg(test)]
mod tests {
    use super::escapes_prefix;

    #[test]
    fn paths_that_could_leave_the_prefix_are_caught() {
        for bad in [
            "/v1/../key/generate",
            "/v1/./chat/completions",
            "/v1/%2e%2e/key",
            "/v1%2Fkey",
            "/v1/..",
            "/v1\\..\\key",
        ] {
            assert!(escapes_prefix(bad), "{bad}");
        }
        for good in [
            "/v1/chat/completions",
            "/v1/models/gpt-4o",
            "/v1beta/models/x:generateContent",
        ] {
            assert!(!escapes_prefix(good), "{good}");
        }
    }
}
