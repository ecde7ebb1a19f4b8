//! The exchange's two relays over one upstream connection: the request body streamed up, and
//! the response (interim heads, the final head with the route's edits, its body) relayed down.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http::HeaderMap;
use monoio::io::AsyncWriteRent;

use super::attempt::{Failure, Try};
use super::{Client, Exchange, Replay, RequestBody, ResponseSource};
use crate::buf::ReadBuf;
use crate::http::body::BodyError;
use crate::http::body::STREAM_CHUNK;
use crate::http::codec::{self, BodyFraming, HeaderSlots, Limits, ResponseEdits};
use crate::http::compress::{self, Compressing};
use crate::http::error::ProxyError;
use crate::http::grpc;
use crate::http::head::ReqMeta;
use crate::http::headers::Merged;
use crate::http::retry;
use crate::snapshot::{Library, RetryPolicy};
use crate::upstream::{Observation, UpstreamConn, UpstreamStream, UPSTREAM_BUF};

/// What a parsed response head decided, kept once the head's borrow ends.
enum ResponseStart {
    /// A 1xx other than 101: passed on (`out` holds the client's copy, when `forward`) or
    /// dropped, then the next head is read.
    Interim { head_len: usize, forward: bool },
    /// `out` holds the client's head. `observed`: the status outlier detection is told.
    /// `compressor`: the route's compressor that compresses the body, by index.
    Final {
        status: u16,
        observed: u16,
        head_len: usize,
        framing: BodyFraming,
        keep_alive: bool,
        compressor: Option<usize>,
    },
}

/// Where a response is read from: the bytes read already, and the stream with the rest (an
/// HTTP/1.1 connection's, or an HTTP/2 stream read as HTTP/1.1).
pub(super) struct Source<'u, R> {
    pub(super) buf: &'u mut ReadBuf,
    pub(super) src: &'u mut R,
}

/// How a response relay ended.
pub(super) enum Relayed {
    /// `reusable`: the upstream connection may go back to the pool.
    Done {
        reusable: bool,
    },
    Upgraded,
}

/// Why a response `head` is retried under `policy` instead of relayed, if it is: a final
/// status the policy retries, or, to a `grpc` request, a `grpc-status` in the head (a
/// trailers-only answer) that it retries, as Envoy's retry state reads the response headers.
fn retried(policy: &RetryPolicy, head: &codec::ResponseHead<'_>, grpc: bool) -> Option<ProxyError> {
    if head.is_informational() {
        return None;
    }
    if retry::status_retried(policy, head.status) {
        return Some(ProxyError::RetriableStatus(head.status));
    }
    // Only a gRPC request under a policy with gRPC conditions looks for the line.
    if !(grpc && retry::retries_grpc_statuses(policy)) {
        return None;
    }
    let code = head.header("grpc-status").and_then(grpc::status)?;
    retry::grpc_status_retried(policy, code).then_some(ProxyError::RetriableGrpcStatus(code))
}

/// How a request body that could not be streamed up fails its try: the client's side, its
/// framing, or the upstream's.
pub(super) fn request_body_error(e: BodyError) -> ProxyError {
    match e {
        BodyError::Source(e) => ProxyError::DownstreamIo(e),
        BodyError::Framing(e) => ProxyError::BadRequest(e),
        BodyError::Sink(e) => ProxyError::UpstreamIo(e),
    }
}

/// Runs `relay` while `upload` streams the request body up, both on this core, as Envoy's
/// router moves each way as its bytes come; `whole` turns true once the body went up whole
/// (the relay reads it as the response head comes), and is returned with the relay's end. A
/// body the upstream stopped taking (it reset or closed) leaves the relay to say how the try
/// ended; one the client broke off fails it at once. A response that ends first leaves the
/// rest of the body unsent, as Envoy resets the upstream stream then.
///
/// A future of its own rather than an `async fn`: the two futures are made in the call and
/// held once, where an `async fn` would hold each as its argument and again pinned.
pub(super) fn alongside<'w, U, R, T>(upload: U, relay: R, whole: &'w Cell<bool>) -> Alongside<'w, U, R>
where
    U: Future<Output = Result<(), BodyError>>,
    R: Future<Output = Result<T, Failure>>,
{
    Alongside { upload, relay, uploading: true, whole }
}

pin_project_lite::pin_project! {
    pub(super) struct Alongside<'w, U, R> {
        #[pin]
        upload: U,
        #[pin]
        relay: R,
        uploading: bool,
        whole: &'w Cell<bool>,
    }
}

impl<U, R, T> Future for Alongside<'_, U, R>
where
    U: Future<Output = Result<(), BodyError>>,
    R: Future<Output = Result<T, Failure>>,
{
    type Output = Result<(Result<T, Failure>, bool), BodyError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if *this.uploading {
            match this.upload.poll(cx) {
                Poll::Ready(Ok(())) => (*this.uploading, _) = (false, this.whole.set(true)),
                Poll::Ready(Err(BodyError::Sink(_))) => *this.uploading = false,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
        }
        this.relay.poll(cx).map(|relayed| Ok((relayed, this.whole.get())))
    }
}

/// A response body's relay that failed once the response started.
fn relay_failure(e: BodyError) -> Failure {
    Failure::started(match e {
        BodyError::Sink(e) => ProxyError::DownstreamIo(e),
        BodyError::Source(e) => ProxyError::UpstreamIo(e),
        BodyError::Framing(e) => ProxyError::UpstreamProtocol(e),
    })
}

impl<C: Client> Exchange<'_, C> {
    /// Judges a response head; for a final one, has the client's head written into `out` and
    /// notes the status.
    #[allow(clippy::too_many_arguments)]
    fn start_response(
        &mut self,
        head: &codec::ResponseHead<'_>,
        raw: &[u8],
        upstream: Option<HeaderMap>,
        meta: ReqMeta,
        sent_at: Instant,
        response: &Merged<'_>,
        request_whole: bool,
    ) -> Result<ResponseStart, Failure> {
        let (status, head_len, framing, keep_alive) = (head.status, head.head_len, head.framing, head.keep_alive);
        if head.is_informational() && !head.is_switching_protocols() {
            // Interim answers (103 Early Hints…) pass through; 100 was answered by us. One
            // dropped leaves `out` with the request, for a retry.
            let forward = !head.is_continue() && self.client.interim(self.out, raw);
            return Ok(ResponseStart::Interim { head_len, forward });
        }
        if head.is_switching_protocols() && !meta.upgrade {
            return Err(Failure::before(ProxyError::UnexpectedUpgrade));
        }
        self.out.clear();
        let service_time = sent_at.elapsed().as_millis() as u64;
        let decision = response.compress.map(|(c, accept)| compress::decide(c, &accept, head)).unwrap_or_default();
        // The compressor's edits come after the router's, as Envoy's filter chain runs them.
        // Only a compressible response pays for the copy of the edits.
        let (edited, vary);
        let (head, response) = if decision.vary || decision.compressor.is_some() {
            let mut m = Merged { remove: response.remove.clone(), add: response.add.clone(), ..Merged::default() };
            vary = decision.vary.then(|| compress::vary(head.header("vary"))).flatten();
            if let Some(v) = &vary {
                m.remove.push("vary");
                m.add.push(("vary", v));
            }
            let head = match decision.compressor.zip(response.compress) {
                Some((i, (c, _))) => {
                    if head.header("etag").is_some_and(compress::strong_etag) {
                        m.remove.push("etag");
                    }
                    m.add.push(("content-encoding", c.compressors[i].library.encoding()));
                    compress::rechunked(head)
                }
                None => head.clone(),
            };
            edited = m;
            (head, &edited)
        } else {
            (head.clone(), response)
        };
        // A response without `date` gets the gateway's, as Envoy's connection manager adds one.
        codec::with_date(|date| {
            let edits = ResponseEdits {
                upstream_service_time_ms: Some(service_time),
                date: Some(date),
                add: &response.add,
                remove: &response.remove,
                ..ResponseEdits::default()
            };
            self.client.response_head(self.out, &head, edits, request_whole, upstream);
        });
        self.account.note_status(&self.ctx.stats, status, "-", "via_upstream");
        if let Some(r) = &mut self.account.log {
            r.upstream_service_time = Some(service_time);
        }
        // Envoy's router tells outlier detection what a gRPC request's `grpc-status` in the
        // response head stands for; one in trailers it never sees.
        let grpc_status = meta.grpc.then(|| head.header("grpc-status")).flatten().and_then(grpc::status);
        self.account.tally.grpc_status = grpc_status;
        let observed = grpc_status.map_or(status, grpc::to_http);
        Ok(ResponseStart::Final { status, observed, head_len, framing, keep_alive, compressor: decision.compressor })
    }

    /// Streams the request body to the upstream, unless the upstream answers (or closes)
    /// first, as a server refusing an upload with 413 or 401 does: then `Ok(false)`, the rest
    /// of the body stays unread, and neither connection may carry another request.
    pub(super) async fn stream_request_body(
        &mut self,
        conn: &mut UpstreamConn,
        replay: &mut Replay<'_>,
    ) -> Result<bool, Failure> {
        let io = |e| Failure::before(ProxyError::UpstreamIo(e));
        let res = if let UpstreamStream::Tls(tls) = &mut conn.stream {
            // Over TLS a readable socket may only carry the server's session tickets: the
            // session's reader tells an answer.
            let (mut reader, mut writer) = tls.lend().map_err(io)?;
            monoio::select! {
                res = self.client.send_body(&mut writer, replay) => res,
                answered = reader.answered() => return answered.map(|()| false).map_err(io),
            }
        } else {
            let watcher = conn.watcher().map_err(io)?;
            let copy = self.client.send_body(&mut conn.stream, replay);
            match watcher {
                Some(watcher) => monoio::select! {
                    res = copy => res,
                    _ = watcher.readable(false) => return Ok(false),
                },
                None => copy.await,
            }
        };
        res.map(|()| true).map_err(|e| Failure::before(request_body_error(e)))
    }

    /// Streams the lent `body` up through `to` while the response is relayed `from` (see
    /// [`alongside`]); the relay's end, and whether the body went up whole.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn both_ways<R: ResponseSource, W: AsyncWriteRent>(
        &mut self,
        body: C::Body,
        to: &mut W,
        from: Source<'_, R>,
        replay: &mut Replay<'_>,
        meta: ReqMeta,
        sent_at: Instant,
        at: &Try<'_>,
        response: &Merged<'_>,
    ) -> Result<(Result<Relayed, Failure>, bool), Failure> {
        let whole = Cell::new(false);
        // Both made in the call: see `alongside`.
        alongside(body.send(to, replay), self.relay_response(from, meta, sent_at, at, response, &whole), &whole)
            .await
            .map_err(|e| self.body_failure(e))
    }

    /// A try's failure for a request body that could not go up.
    pub(super) fn body_failure(&self, e: BodyError) -> Failure {
        self.failure(request_body_error(e))
    }

    /// Sends `out` to the client, counting it.
    async fn send_out(&mut self) -> Result<(), Failure> {
        self.account.tally.sent += self.out.len() as u64;
        self.client.send(self.out).await.map_err(|e| Failure::started(ProxyError::DownstreamIo(e)))
    }

    /// Relays the body through `library`'s compressor, the head first: the client gets the
    /// body as the chunks the compressor makes of it.
    async fn relay_compressed<R: ResponseSource>(
        &mut self,
        src: &mut R,
        buf: &mut ReadBuf,
        framing: BodyFraming,
        library: Library,
    ) -> Result<(), Failure> {
        self.send_out().await?;
        let mut source =
            Compressing::new(src, buf, framing, library).map_err(|e| Failure::started(ProxyError::UpstreamIo(e)))?;
        let mut down = ReadBuf::with_capacity(STREAM_CHUNK);
        self.client.relay_body(&mut source, &mut down, BodyFraming::Chunked).await.map_err(relay_failure)?;
        let streamed = down.take_written();
        self.account.tally.sent += streamed;
        if let Some(r) = &mut self.account.log {
            r.bytes_sent = streamed;
        }
        Ok(())
    }

    /// Reads the response head `from` its source, relays head and body. Returns whether the
    /// upstream connection may go back to the pool; `request_whole`: the request body went up
    /// whole, as of the response head (a body still streaming may end later).
    /// With `at.retry_statuses`, a final response whose status (or head's `grpc-status`) that
    /// policy retries is not relayed: it fails the try with [`ProxyError::RetriableStatus`]
    /// or [`ProxyError::RetriableGrpcStatus`] (`out` still holds the request then). A relayed
    /// final status reaches outlier detection before the client sees it, as Envoy's router
    /// reports it on the upstream's headers: a client holding the head that ejects an endpoint
    /// finds it ejected.
    pub(super) async fn relay_response<R: ResponseSource>(
        &mut self,
        from: Source<'_, R>,
        meta: ReqMeta,
        sent_at: Instant,
        at: &Try<'_>,
        response: &Merged<'_>,
        request_whole: &Cell<bool>,
    ) -> Result<Relayed, Failure> {
        let Source { buf, src } = from;
        loop {
            // As for requests: the parsed head and its slots end before any await. Nothing to
            // parse before the first read (the buffer is empty then on every request).
            let start = if buf.is_empty() {
                None
            } else {
                let mut slots = HeaderSlots::new();
                let data = buf.data();
                match codec::parse_response(data, &mut slots, meta.is_head, &Limits::default()) {
                    Ok(Some(head)) => {
                        let retry_statuses = at.retry_statuses.filter(|_| !at.abandoned.is_some_and(Cell::get));
                        if let Some(err) = retry_statuses.and_then(|p| retried(p, &head, meta.grpc)) {
                            return Err(Failure::before(err));
                        }
                        let raw = &data[..head.head_len];
                        // Only an HTTP/2 client takes an HTTP/2 upstream's fields as they are.
                        let upstream = (C::HTTP2 && !head.is_informational()).then(|| src.head_fields()).flatten();
                        let whole = request_whole.get();
                        Some(self.start_response(&head, raw, upstream, meta, sent_at, response, whole)?)
                    }
                    Ok(None) => None,
                    Err(e) => return Err(Failure::before(ProxyError::UpstreamProtocol(e))),
                }
            };
            let (status, head_len, framing, upstream_keep_alive, compressor) = match start {
                None => {
                    let had = !buf.is_empty();
                    match buf.fill(src, UPSTREAM_BUF).await {
                        Ok(0) if had => {
                            return Err(Failure::before(ProxyError::UpstreamIo(
                                std::io::ErrorKind::UnexpectedEof.into(),
                            )))
                        }
                        Ok(0) => return Err(Failure::before(ProxyError::ResetBeforeResponse)),
                        Ok(_) => continue,
                        Err(_) if !had => return Err(Failure::before(ProxyError::ResetBeforeResponse)),
                        Err(e) => return Err(Failure::before(ProxyError::UpstreamIo(e))),
                    }
                }
                Some(ResponseStart::Interim { head_len, forward }) => {
                    buf.consume(head_len);
                    if forward {
                        self.account.response_started = true;
                        self.send_out().await?;
                    }
                    continue;
                }
                Some(ResponseStart::Final { status, observed, head_len, framing, keep_alive, compressor }) => {
                    at.live.observe(at.cluster, at.endpoint, Observation::Status(observed));
                    at.stats.record_status(status);
                    (status, head_len, framing, keep_alive, compressor)
                }
            };
            buf.consume(head_len);
            self.account.response_started = true;
            if status == 101 {
                self.send_out().await?;
                return Ok(Relayed::Upgraded);
            }
            let library = compressor.zip(response.compress).map(|(i, (c, _))| c.compressors[i].library);
            if let Some(library) = library {
                // Boxed: the compressor's relay is a future of kilobytes that would otherwise
                // sit in every response's future, compressed or not.
                Box::pin(self.relay_compressed(src, buf, framing, library)).await?;
                let reusable = upstream_keep_alive && buf.is_empty() && !matches!(framing, BodyFraming::UntilClose);
                return Ok(Relayed::Done { reusable });
            }
            // A small body already read goes out in the same write as the head: one segment
            // and one wake-up of the client instead of two.
            let body_inline = self.client.inline_response(self.out, buf, framing);
            self.send_out().await?;
            buf.take_written();
            if body_inline.is_none() {
                self.client.relay_body(src, buf, framing).await.map_err(relay_failure)?;
            }
            let streamed = buf.take_written();
            self.account.tally.sent += streamed;
            if let Some(r) = &mut self.account.log {
                r.bytes_sent = body_inline.unwrap_or(0) + streamed;
            }
            // Bytes beyond the framed response mean the upstream is confused: never reuse it.
            let reusable = upstream_keep_alive && buf.is_empty() && !matches!(framing, BodyFraming::UntilClose);
            return Ok(Relayed::Done { reusable });
        }
    }
}
