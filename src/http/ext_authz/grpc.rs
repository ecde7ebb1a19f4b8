//! The gRPC check: envoy.service.auth.v3 `Authorization/Check` as Envoy's ext_authz filter
//! calls it, one unary call on the worker's pooled HTTP/2 connection to the provider's endpoint.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use prost::Message;

use super::proto::{
    Address, AttributeContext, CheckRequest, CheckResponse, HeaderValueOption, HttpRequest, Peer as PeerMsg, Request,
    SocketAddress,
};
use super::{BodyRead, Verdict, DENIED, MAX_ANSWER, NOT_RELAYED, PARTIAL_BODY};
use crate::http::exchange::{mux_stream, send_h2, Try};
use crate::http::peer::Peer;
use crate::percore::WorkerCtx;
use crate::snapshot::authz::ext_authz::WithBody;
use crate::snapshot::RequestInfo;

/// Envoy's answer to a denial that names no status: 403.
const FORBIDDEN: u16 = 403;

/// The `CheckRequest` for the request: the peer and the listener's addresses, the client
/// certificate's URI SAN, and the request's method, target, host, scheme, protocol and lines
/// (pseudo-headers included, as Envoy's are).
pub(super) fn request(info: &RequestInfo<'_>, target: &str, peer: &Peer, protocol: &str) -> CheckRequest {
    let mut headers: HashMap<String, String> = HashMap::with_capacity(info.headers.len() + 3);
    for h in info.headers {
        let value = String::from_utf8_lossy(h.value);
        headers
            .entry(h.name.to_ascii_lowercase())
            .and_modify(|v| {
                v.push(',');
                v.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    for (name, value) in [(":authority", info.host), (":method", info.method), (":path", target)] {
        headers.insert(name.to_owned(), value.to_owned());
    }
    let principal = peer.tls.as_ref().and_then(|t| t.peer_uri.as_deref());
    let mut check = connection(peer.conn.peer, peer.conn.local, principal);
    if let Some(attributes) = check.attributes.as_mut() {
        attributes.request = Some(Request {
            http: Some(HttpRequest {
                id: String::new(),
                method: info.method.to_owned(),
                headers,
                path: target.to_owned(),
                host: info.host.to_owned(),
                scheme: info.scheme.to_owned(),
                protocol: protocol.to_owned(),
                body: Vec::new(),
                raw_body: Vec::new(),
            }),
        });
    }
    check
}

/// The `CheckRequest`'s connection part: the `source` (the client, with the verified client
/// certificate's URI SAN as its principal) and `destination` (the listener) addresses. Alone,
/// it is Envoy's network ext_authz filter's check of a TCP connection.
pub(super) fn connection(source: SocketAddr, destination: SocketAddr, principal: Option<&str>) -> CheckRequest {
    let address = |a: SocketAddr| {
        Some(Address {
            socket_address: Some(SocketAddress { address: a.ip().to_string(), port_value: u32::from(a.port()) }),
        })
    };
    let principal = principal.unwrap_or_default().to_owned();
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(PeerMsg { address: address(source), principal }),
            destination: Some(PeerMsg { address: address(destination), principal: String::new() }),
            request: None,
        }),
    }
}

/// `check` as one length-prefixed gRPC message, with the body read for it in `body` (its
/// `raw_body` under `packAsBytes`, else `body`) and Envoy's partial-body line.
pub(super) fn encode(mut check: CheckRequest, body: Option<(BodyRead, WithBody)>) -> Vec<u8> {
    let http = check.attributes.as_mut().and_then(|a| a.request.as_mut()).and_then(|r| r.http.as_mut());
    if let (Some(http), Some((read, with))) = (http, body) {
        http.headers.insert(PARTIAL_BODY.to_owned(), if read.whole { "false" } else { "true" }.to_owned());
        if with.raw {
            http.raw_body = read.data;
        } else {
            http.body = read.data;
        }
    }
    frame(&check.encode_to_vec())
}

/// One uncompressed length-prefixed gRPC message: flag 0, a 4-byte length, the bytes.
pub(in crate::http) fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + message.len());
    out.push(0);
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// One unary call of `path` (`message` framed): the answer's message, or `None` when the call
/// failed (no connection, a status other than OK, an unframed answer). The call is a stream on
/// this worker's multiplexed connection to the endpoint, as a proxied HTTP/2 request's (Envoy's
/// gRPC client shares its cluster's connection); one a closed connection refuses goes on a new
/// one.
pub(super) async fn call(
    ctx: &WorkerCtx,
    at: &Try<'_>,
    authority: &str,
    path: &str,
    timeout: Duration,
    message: Vec<u8>,
) -> Option<Vec<u8>> {
    let stream = mux_stream(at, ctx).await.ok()?;
    let scheme = if at.cluster.policy.tls.is_some() { "https" } else { "http" };
    let call = http::Request::post(format!("{scheme}://{authority}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        // gRPC's TimeoutValue has at most 8 digits.
        .header("grpc-timeout", format!("{}m", timeout.as_millis().clamp(1, 99_999_999)))
        .body(())
        .ok()?;
    // Held until the answer is read: the connection counts it as a stream under way.
    let (_stream, (response, mut up)) = send_h2(at, ctx, stream, || Ok(call.clone()), false, |_| {}).await.ok()?;
    up.send_data(Bytes::from(message), true).ok()?;
    let response = response.await.ok()?;
    let ok = |h: &http::HeaderMap| h.get("grpc-status").map(|s| s.as_bytes() == b"0");
    // A trailers-only answer carries its status in the head.
    if response.status() != 200 || ok(response.headers()) == Some(false) {
        return None;
    }
    let mut body = response.into_body();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.ok()?;
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
        if data.len() > MAX_ANSWER {
            return None;
        }
    }
    let trailers = body.trailers().await.ok()?;
    if trailers.as_ref().and_then(ok) != Some(true) {
        return None;
    }
    // One uncompressed message: flag 0, a 4-byte length, the bytes.
    let (&[0, a, b, c, d], rest) = data.split_first_chunk::<5>()? else {
        return None;
    };
    let len = u32::from_be_bytes([a, b, c, d]) as usize;
    Some(rest.get(..len)?.to_vec())
}

/// Envoy's reading of a `CheckResponse`: status OK allows, with `ok_response`'s lines set on
/// the upstream request and its `response_headers_to_add` added to the client's response; any other status denies with `denied_response`'s status (403 when it
/// names none), lines and body.
pub(super) fn verdict(r: CheckResponse) -> Verdict {
    let lines = |options: Vec<HeaderValueOption>| -> Vec<(String, String)> {
        options.into_iter().filter_map(|o| o.header).map(|h| (h.key.to_ascii_lowercase(), h.value)).collect()
    };
    if r.status.map_or(0, |s| s.code) == 0 {
        let ok = r.ok_response.unwrap_or_default();
        return Verdict::Allow { upstream: lines(ok.headers), downstream: lines(ok.response_headers_to_add) };
    }
    let denied = r.denied_response.unwrap_or_default();
    let status =
        denied.status.and_then(|s| u16::try_from(s.code).ok()).filter(|c| (200..600).contains(c)).unwrap_or(FORBIDDEN);
    let mut headers = lines(denied.headers);
    headers.retain(|(n, _)| !NOT_RELAYED.contains(&n.as_str()));
    Verdict::Deny { status, headers, body: denied.body.into_bytes(), details: DENIED }
}

#[cfg(test)]
mod tests {
    use super::super::proto::{DeniedHttpResponse, HeaderValue, HttpStatus, OkHttpResponse, RpcStatus};
    use super::*;

    fn line(key: &str, value: &str) -> HeaderValueOption {
        HeaderValueOption { header: Some(HeaderValue { key: key.into(), value: value.into() }) }
    }

    #[test]
    fn status_ok_allows_with_its_lines_and_another_denies_with_403_unless_it_names_a_status() {
        let ok = CheckResponse {
            status: Some(RpcStatus { code: 0 }),
            ok_response: Some(OkHttpResponse {
                headers: vec![line("X-User", "alice")],
                response_headers_to_add: vec![line("X-Session", "s1")],
            }),
            ..CheckResponse::default()
        };
        let Verdict::Allow { upstream, downstream } = verdict(ok) else { panic!("allowed") };
        assert_eq!(
            (upstream, downstream),
            (vec![("x-user".to_owned(), "alice".to_owned())], vec![("x-session".to_owned(), "s1".to_owned())])
        );
        let bare = CheckResponse { status: Some(RpcStatus { code: 7 }), ..CheckResponse::default() };
        assert!(matches!(verdict(bare), Verdict::Deny { status: 403, .. }));
        let named = CheckResponse {
            status: Some(RpcStatus { code: 16 }),
            denied_response: Some(DeniedHttpResponse {
                status: Some(HttpStatus { code: 401 }),
                headers: vec![line("content-length", "9"), line("x-reason", "no")],
                body: "no".into(),
            }),
            ..CheckResponse::default()
        };
        let Verdict::Deny { status, headers, body, .. } = verdict(named) else { panic!("denied") };
        assert_eq!((status, headers, body), (401, vec![("x-reason".to_owned(), "no".to_owned())], b"no".to_vec()));
    }
}
