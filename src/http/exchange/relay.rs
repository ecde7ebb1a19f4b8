//! The exchange's two relays over one upstream connection: the request body streamed up, and
//! the response (interim heads, the final head with the route's edits, its body) relayed down.

use std::time::Instant;

use super::attempt::{Failure, Try};
use crate::duplex::Duplex;
use crate::http::body::{self, inline_body, BodyError};
use crate::http::codec::{self, BodyFraming, ChunkedDecoder, HeaderSlots, Limits, ResponseEdits, ResponseWritten};
use crate::http::dechunk;
use crate::http::error::ProxyError;
use crate::http::head::ReqMeta;
use crate::http::headers::Merged;
use crate::http::retry;
use crate::http::session::{self, Next, Session};
use crate::upstream::{Observation, UpstreamConn, UPSTREAM_BUF};

/// What a parsed response head decided, kept once the head's borrow ends.
enum ResponseStart {
    /// A 1xx other than 101: passed on (`forward`) or dropped, then the next head is read.
    Interim { head_len: usize, forward: bool },
    /// `out` holds the client's head.
    Final { status: u16, head_len: usize, framing: BodyFraming, keep_alive: bool, written: ResponseWritten },
}

/// How a response relay ended.
pub(super) enum Relayed {
    Done { next: Next, reusable: bool },
    Upgraded,
}

impl<S: Duplex> Session<S> {
    /// Judges a response head; for a final one, writes the client's head into `out` and notes
    /// the status.
    fn start_response(
        &mut self,
        head: &codec::ResponseHead<'_>,
        meta: ReqMeta,
        sent_at: Instant,
        response: &Merged<'_>,
    ) -> Result<ResponseStart, Failure> {
        let (status, head_len) = (head.status, head.head_len);
        if head.is_informational() && !head.is_switching_protocols() {
            // Interim answers (103 Early Hints…) pass through; 100 was answered by us.
            return Ok(ResponseStart::Interim { head_len, forward: !head.is_continue() && !meta.http1.http10 });
        }
        if head.is_switching_protocols() && !meta.http1.upgrade {
            return Err(Failure::before(ProxyError::UnexpectedUpgrade));
        }
        self.out.clear();
        let service_time = sent_at.elapsed().as_millis() as u64;
        let close = !meta.http1.keep_alive || self.closing();
        // A response without `date` gets the gateway's, as Envoy's connection manager adds one.
        let written = session::date(|date| {
            let edits = ResponseEdits {
                upstream_service_time_ms: Some(service_time),
                date: Some(date),
                close,
                http10_client: meta.http1.http10,
                add: &response.add,
                remove: &response.remove,
                ..ResponseEdits::default()
            };
            codec::write_response_head(&mut self.out, head, &edits)
        });
        self.note_status(status, "-", "via_upstream");
        if let Some(r) = &mut self.log {
            r.upstream_service_time = Some(service_time);
        }
        Ok(ResponseStart::Final { status, head_len, framing: head.framing, keep_alive: head.keep_alive, written })
    }

    /// Streams the request body to the upstream, unless the upstream answers (or closes)
    /// first, as a server refusing an upload with 413 or 401 does: then `Ok(false)`, the rest
    /// of the body stays unread, and neither connection may carry another request.
    pub(super) async fn stream_request_body(
        &mut self,
        conn: &mut UpstreamConn,
        framing: BodyFraming,
    ) -> Result<bool, Failure> {
        let watcher = match conn.watcher() {
            Ok(w) => w,
            Err(e) => return Err(Failure::before(ProxyError::UpstreamIo(e))),
        };
        let copy = async {
            match framing {
                BodyFraming::ContentLength(n) => {
                    body::copy_exact(&mut self.client, &mut self.rb, &mut conn.stream, n).await
                }
                BodyFraming::Chunked => {
                    let mut dec = ChunkedDecoder::new();
                    body::copy_chunked(&mut self.client, &mut self.rb, &mut conn.stream, &mut dec).await
                }
                _ => Ok(()),
            }
        };
        let res = match watcher {
            Some(watcher) => monoio::select! {
                res = copy => res,
                _ = watcher.readable(false) => return Ok(false),
            },
            None => copy.await,
        };
        res.map(|()| true).map_err(|e| match e {
            BodyError::Source(e) => Failure::before(ProxyError::DownstreamIo(e)),
            BodyError::Framing(e) => Failure::before(ProxyError::BadRequest(e)),
            BodyError::Sink(e) => Failure::before(ProxyError::UpstreamIo(e)),
        })
    }

    /// Reads the response head, relays head and body. Returns the client's fate and whether
    /// the upstream connection may go back to the pool.
    /// With `at.retry_statuses`, a final response whose status that policy retries is not
    /// relayed: it fails the try with [`ProxyError::RetriableStatus`] (`out` still holds the
    /// request then). A relayed final status reaches outlier detection before the client sees
    /// it, as Envoy's router reports it on the upstream's headers: a client holding the head
    /// that ejects an endpoint finds it ejected.
    pub(super) async fn relay_response(
        &mut self,
        conn: &mut UpstreamConn,
        meta: ReqMeta,
        sent_at: Instant,
        at: &Try<'_>,
        response: &Merged<'_>,
    ) -> Result<Relayed, Failure> {
        loop {
            // As for requests: the parsed head and its slots end before any await.
            let start = {
                let mut slots = HeaderSlots::new();
                match codec::parse_response(conn.buf.data(), &mut slots, meta.is_head, &Limits::default()) {
                    Ok(Some(head))
                        if !head.is_informational()
                            && at.retry_statuses.is_some_and(|p| retry::status_retried(p, head.status)) =>
                    {
                        return Err(Failure::before(ProxyError::RetriableStatus(head.status)));
                    }
                    Ok(Some(head)) => Some(self.start_response(&head, meta, sent_at, response)?),
                    Ok(None) => None,
                    Err(e) => return Err(Failure::before(ProxyError::UpstreamProtocol(e))),
                }
            };
            let (status, head_len, framing, upstream_keep_alive, written) = match start {
                None => {
                    let had = !conn.buf.is_empty();
                    match conn.buf.fill(&mut conn.stream, UPSTREAM_BUF).await {
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
                Some(ResponseStart::Interim { head_len, forward: true }) => {
                    self.response_started = true;
                    conn.buf
                        .write_to(&mut self.client, head_len)
                        .await
                        .map_err(|e| Failure::started(ProxyError::DownstreamIo(e)))?;
                    continue;
                }
                Some(ResponseStart::Interim { head_len, forward: false }) => {
                    conn.buf.consume(head_len);
                    continue;
                }
                Some(ResponseStart::Final { status, head_len, framing, keep_alive, written }) => {
                    at.live.observe(at.cluster, at.endpoint, Observation::Status(status));
                    at.stats.record_status(status);
                    (status, head_len, framing, keep_alive, written)
                }
            };
            let (dechunk, close_client) = (written.dechunk, written.close);
            conn.buf.consume(head_len);
            self.response_started = true;
            if status == 101 {
                self.write_out().await.map_err(|e| Failure::started(ProxyError::DownstreamIo(e)))?;
                return Ok(Relayed::Upgraded);
            }
            // A small body already read goes out in the same write as the head: one segment
            // and one wake-up of the client instead of two.
            let body_inline = if dechunk { None } else { inline_body(&mut conn.buf, framing, &mut self.out) };
            self.write_out().await.map_err(|e| Failure::started(ProxyError::DownstreamIo(e)))?;
            conn.buf.take_written();
            let relayed = match framing {
                _ if body_inline.is_some() => Ok(()),
                BodyFraming::None => Ok(()),
                BodyFraming::ContentLength(n) => {
                    body::copy_exact(&mut conn.stream, &mut conn.buf, &mut self.client, n).await
                }
                BodyFraming::Chunked if dechunk => {
                    dechunk::relay(&mut conn.stream, &mut conn.buf, &mut self.client).await
                }
                BodyFraming::Chunked => {
                    let mut dec = ChunkedDecoder::new();
                    body::copy_chunked(&mut conn.stream, &mut conn.buf, &mut self.client, &mut dec).await
                }
                BodyFraming::UntilClose => {
                    body::copy_until_close(&mut conn.stream, &mut conn.buf, &mut self.client).await
                }
            };
            relayed.map_err(|e| {
                Failure::started(match e {
                    BodyError::Sink(e) => ProxyError::DownstreamIo(e),
                    BodyError::Source(e) => ProxyError::UpstreamIo(e),
                    BodyError::Framing(e) => ProxyError::UpstreamProtocol(e),
                })
            })?;
            let streamed = conn.buf.take_written();
            self.tally.sent += streamed;
            if let Some(r) = &mut self.log {
                r.bytes_sent = body_inline.unwrap_or(0) + streamed;
            }
            // Bytes beyond the framed response mean the upstream is confused: never reuse it.
            let reusable = upstream_keep_alive && conn.buf.is_empty() && !matches!(framing, BodyFraming::UntilClose);
            let next = if close_client { Next::Close } else { Next::KeepAlive };
            return Ok(Relayed::Done { next, reusable });
        }
    }
}
