//! HTTP/2 load (`h2`) and gRPC unary load (`grpc`): connections × concurrent streams. Each
//! stream slot behaves as one connection of the HTTP/1.1 mode does: the closed loop sends its
//! next request when its last answer has ended; the open loop sends each when it is due at
//! `--rate` (the rate shared evenly by every slot of the run) and measures its latency from
//! then. The codec is hyperium's `h2` over monoio's poll-io streams: h2c with prior knowledge on
//! http://, TLS with ALPN `h2` on https:// (`tls::client` says why through tokio-rustls).
//!
//! A connection task connects and handshakes, spawns the h2 connection's driver and a task per
//! slot, and once every slot has stopped reconnects (after a back-off if it failed). Slots keep
//! their pacer across connections, so the open loop's schedule holds through a reconnect.
//!
//! h2 takes an owned `Request` per stream: each request costs a header map's clone on top of
//! what h2 allocates itself. A load generator can afford it; h2load's C codec does likewise.

mod call;
#[cfg(test)]
mod tests;

use std::cell::{Cell, RefCell};
use std::future::{pending, poll_fn};
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::{Connection, SendRequest};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::cli::{GrpcArgs, H2Args, LoadArgs, StreamArgs, TrustArgs};
use crate::connect::{Connect, PollTcp, Tcp};
use crate::error::BenchError;
use crate::http::pacer::Pacer;
use crate::http::{check_rate, within, End, RequestParts, Target, Waited};
use crate::report::Report;
use crate::runner::{self, Backoff, Thread};
use crate::stats::{ErrorKind, Recorder};
use crate::tls::{self, client, ClientSide};
use call::Call;

/// Stream and connection flow-control windows the client grants, as h2load's defaults
/// (2^30 - 1): the load generator's reading never sets the pace of a large answer.
pub const WINDOW: u32 = (1 << 30) - 1;

/// `strait-bench h2 URL`.
pub fn run(args: &H2Args) -> Result<Report, BenchError> {
    let target = Target::parse(&args.url)?;
    let mut parts = RequestParts::new(&args.request)?;
    let side = client_side(&args.trust, &target)?;
    if parts.host.is_none() {
        parts.host = side.as_ref().and_then(|s| s.host.clone());
    }
    let call = Call::http(&parts, &target)?;
    let mode = if args.streams.rate.is_some() { "h2-open-loop" } else { "h2" };
    start(&args.url, &target, &args.load, &args.streams, side, call, mode)
}

/// `strait-bench grpc URL`.
pub fn run_grpc(args: &GrpcArgs) -> Result<Report, BenchError> {
    let target = Target::parse(&args.url)?;
    let side = client_side(&args.trust, &target)?;
    let host = side.as_ref().and_then(|s| s.host.clone());
    let call = Call::grpc(&target, host, &args.headers, args.size)?;
    let mode = if args.streams.rate.is_some() { "grpc-open-loop" } else { "grpc" };
    start(&args.url, &target, &args.load, &args.streams, side, call, mode)
}

/// The TLS client an https:// URL asks for; none for http://, where the trust flags mean
/// nothing.
fn client_side(trust: &TrustArgs, target: &Target) -> Result<Option<ClientSide>, BenchError> {
    if target.tls {
        return ClientSide::new(trust, target).map(Some);
    }
    if trust.sni.is_some() || trust.ca.is_some() || trust.insecure {
        return Err(BenchError::Usage("--sni, --ca and -k are for https:// URLs".into()));
    }
    Ok(None)
}

/// Checks the flags, picks the connector and runs.
fn start(
    url: &str,
    target: &Target,
    load: &LoadArgs,
    streams: &StreamArgs,
    side: Option<ClientSide>,
    call: Call,
    mode: &str,
) -> Result<Report, BenchError> {
    check_rate(streams.rate)?;
    if streams.streams == 0 {
        return Err(BenchError::Usage("--streams must be at least 1".into()));
    }
    let plan = Arc::new(Plan {
        call,
        timeout: load.timeout,
        rate: streams.rate,
        connections: load.connections,
        threads: load.threads,
        streams: streams.streams,
    });
    let tcp = Tcp { addr: target.addr, timeout: load.timeout };
    let outcome = match side {
        None => runner::run(load, mode, move |thread| thread_load(thread, plan.clone(), PollTcp(tcp.clone())))?,
        Some(side) => {
            let config = Arc::new(client::config(&side.trust, true, tls::H2)?);
            let tls = client::PollTls(client::Tls { addr: tcp.addr, name: side.name, timeout: tcp.timeout, config });
            runner::run(load, mode, move |thread| thread_load(thread, plan.clone(), tls.clone()))?
        }
    };
    let mut report = Report::new(mode, url, load.connections, load.threads, &outcome.recorder, outcome.elapsed);
    report.streams = Some(streams.streams);
    report.rate = streams.rate;
    Ok(report)
}

/// What every connection of the run shares.
struct Plan {
    call: Call,
    timeout: Duration,
    rate: Option<f64>,
    connections: usize,
    threads: usize,
    /// Concurrent streams per connection.
    streams: usize,
}

/// What one thread's connections share.
struct Shared {
    thread: Thread,
    plan: Arc<Plan>,
    rec: RefCell<Recorder>,
}

/// One thread's load: its share of the connections, each a task, until all are done.
async fn thread_load<C>(thread: Thread, plan: Arc<Plan>, connector: C) -> Recorder
where
    C: Connect<Stream: AsyncRead + AsyncWrite + Unpin>,
{
    let first = runner::first(plan.connections as u64, plan.threads, thread.index) as usize;
    let count = thread.connections;
    let shared = Rc::new(Shared { rec: RefCell::new(thread.recorder()), thread, plan });
    let tasks: Vec<_> =
        (0..count).map(|i| monoio::spawn(connection(shared.clone(), connector.clone(), first + i))).collect();
    for task in tasks {
        task.await;
    }
    shared.rec.replace(Recorder::empty())
}

/// One connection task: connect, run the slots until they stop, reconnect as needed.
async fn connection<C>(shared: Rc<Shared>, connector: C, index: usize)
where
    C: Connect<Stream: AsyncRead + AsyncWrite + Unpin>,
{
    let plan = &*shared.plan;
    let run_end = shared.thread.deadline;
    let mut timer = pin!(monoio::time::sleep_until(monoio::time::Instant::from_std(run_end)));
    let mut backoff = Backoff::new();
    // Slots are numbered across the run so that the open loop spaces them all evenly.
    let mut slots: Vec<Slot> = (0..plan.streams)
        .map(|s| Slot { index: index * plan.streams + s, position: s, pacer: None, answered: false })
        .collect();
    loop {
        let limit = Instant::now() + plan.timeout;
        let end = match within(timer.as_mut(), limit, run_end, handshake(&connector)).await {
            Waited::Ready(Ok((send, conn))) => {
                let gone = Rc::new(Gone { gone: Cell::new(false), waiting: RefCell::new(vec![None; plan.streams]) });
                monoio::spawn(drive(conn, gone.clone()));
                let tasks: Vec<_> = slots
                    .drain(..)
                    .map(|slot| monoio::spawn(slot.run(shared.clone(), send.clone(), gone.clone())))
                    .collect();
                drop(send);
                let mut end = End::Reconnect;
                for task in tasks {
                    let (slot, slot_end) = task.await;
                    if slot.answered {
                        backoff.reset();
                    }
                    slots.push(slot);
                    end = match (end, slot_end) {
                        (End::Done, _) | (_, End::Done) => End::Done,
                        (End::Failed, _) | (_, End::Failed) => End::Failed,
                        _ => End::Reconnect,
                    };
                }
                end
            }
            Waited::Ready(Err(kind)) => {
                shared.rec.borrow_mut().error(Instant::now(), kind);
                End::Failed
            }
            Waited::TimedOut => {
                shared.rec.borrow_mut().error(Instant::now(), ErrorKind::Timeout);
                End::Failed
            }
            Waited::RunOver => End::Done,
        };
        match end {
            End::Done => return,
            End::Reconnect => {}
            End::Failed => {
                let pause = Instant::now() + backoff.next();
                if let Waited::RunOver = within(timer.as_mut(), pause, run_end, pending::<()>()).await {
                    return;
                }
            }
        }
    }
}

/// Connects and starts HTTP/2 on the connection (the preface and SETTINGS go out with the
/// first request; the server's SETTINGS are read by the driver).
async fn handshake<C>(connector: &C) -> Result<(SendRequest<Bytes>, Connection<C::Stream, Bytes>), ErrorKind>
where
    C: Connect<Stream: AsyncRead + AsyncWrite + Unpin>,
{
    let io = connector.connect().await?;
    h2::client::Builder::new()
        .enable_push(false)
        .initial_window_size(WINDOW)
        .initial_connection_window_size(WINDOW)
        .handshake(io)
        .await
        .map_err(|e| failure(&e).kind())
}

/// Runs the connection's reads and writes until it ends, then tells the slots.
async fn drive<S: AsyncRead + AsyncWrite + Unpin>(conn: Connection<S, Bytes>, gone: Rc<Gone>) {
    // Its error reaches every stream in flight, and each counts its own.
    let _ = conn.await;
    gone.set();
}

/// Whether a connection's driver has ended, so that slots waiting for a due time stop waiting
/// for it. One waker per slot, replaced on every wait: a long-lived connection's waits do not
/// pile up.
struct Gone {
    gone: Cell<bool>,
    /// By slot position on the connection.
    waiting: RefCell<Vec<Option<Waker>>>,
}

impl Gone {
    fn set(&self) {
        self.gone.set(true);
        for waker in self.waiting.borrow_mut().iter_mut().filter_map(Option::take) {
            waker.wake();
        }
    }

    async fn wait(&self, position: usize) {
        poll_fn(|cx| {
            if self.gone.get() {
                return Poll::Ready(());
            }
            self.waiting.borrow_mut()[position] = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

/// How a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// This stream only: the slot goes on with its next request.
    Stream(ErrorKind),
    /// The whole connection.
    Connection(ErrorKind, End),
}

impl Failure {
    fn kind(self) -> ErrorKind {
        match self {
            Failure::Stream(kind) | Failure::Connection(kind, _) => kind,
        }
    }
}

/// What an h2 error means for the load.
fn failure(e: &h2::Error) -> Failure {
    if let Some(io) = e.get_io() {
        let kind = if io.kind() == std::io::ErrorKind::UnexpectedEof { ErrorKind::Closed } else { ErrorKind::Io };
        return Failure::Connection(kind, End::Failed);
    }
    if e.is_go_away() {
        // A graceful GOAWAY refuses the streams past its last one: they are lost, but the
        // server is well, as after an HTTP/1.1 `Connection: close`.
        return match (e.is_remote(), e.reason()) {
            (true, Some(h2::Reason::NO_ERROR)) => Failure::Connection(ErrorKind::Closed, End::Reconnect),
            (true, _) => Failure::Connection(ErrorKind::Closed, End::Failed),
            (false, _) => Failure::Connection(ErrorKind::Parse, End::Failed),
        };
    }
    if e.is_reset() {
        return Failure::Stream(if e.is_remote() { ErrorKind::Reset } else { ErrorKind::Parse });
    }
    Failure::Connection(ErrorKind::Parse, End::Failed)
}

/// One stream slot: a request at a time, on whichever connection its task is given.
struct Slot {
    /// Among all slots of the run (the open loop's spacing).
    index: usize,
    /// Among its connection's slots.
    position: usize,
    /// The open loop's schedule, from the first connect on.
    pacer: Option<Pacer>,
    /// Whether an answer came on the last connection (the back-off then starts over).
    answered: bool,
}

impl Slot {
    /// Sends on `send` until the run ends or the connection does, and hands itself back.
    async fn run(mut self, shared: Rc<Shared>, send: SendRequest<Bytes>, gone: Rc<Gone>) -> (Slot, End) {
        self.answered = false;
        let end = self.requests(&shared, send, &gone).await;
        (self, end)
    }

    async fn requests(&mut self, shared: &Shared, mut send: SendRequest<Bytes>, gone: &Gone) -> End {
        let plan = &*shared.plan;
        let thread = &shared.thread;
        let run_end = thread.deadline;
        let mut timer = pin!(monoio::time::sleep_until(monoio::time::Instant::from_std(run_end)));
        if let Some(rate) = plan.rate {
            let slots = plan.connections * plan.streams;
            self.pacer.get_or_insert_with(|| Pacer::new(Instant::now(), rate, slots, self.index));
        }
        loop {
            let mut now = Instant::now();
            // The time the latency is measured from (see http.rs: late because the last answer
            // was, from when it was due; woken by our own timer, from when it woke).
            let from = match &self.pacer {
                None => now,
                Some(pacer) => {
                    let due = pacer.due();
                    if due >= run_end {
                        return End::Done;
                    }
                    if due > now {
                        match within(timer.as_mut(), due, run_end, gone.wait(self.position)).await {
                            Waited::Ready(()) => return End::Failed,
                            Waited::RunOver => return End::Done,
                            Waited::TimedOut => {}
                        }
                        now = Instant::now();
                        now
                    } else {
                        due
                    }
                }
            };
            // A stream may have to wait for the server's SETTINGS_MAX_CONCURRENT_STREAMS: the
            // request is ready, so the wait counts in its latency.
            match within(timer.as_mut(), run_end, run_end, poll_fn(|cx| send.poll_ready(cx))).await {
                Waited::Ready(Ok(())) => {}
                Waited::Ready(Err(e)) => {
                    // Nothing was sent: nothing lost.
                    return match failure(&e) {
                        Failure::Connection(_, end) => end,
                        Failure::Stream(_) => End::Failed,
                    };
                }
                Waited::TimedOut | Waited::RunOver => return End::Done,
            }
            if !thread.start_one(Instant::now()) {
                return End::Done;
            }
            if let Some(pacer) = &mut self.pacer {
                pacer.next_due();
            }
            let limit = now + plan.timeout;
            let result = within(timer.as_mut(), limit, run_end, exchange(shared, &mut send)).await;
            let at = Instant::now();
            let mut rec = shared.rec.borrow_mut();
            match result {
                Waited::Ready(Ok(answer)) => {
                    rec.answer(at, at.saturating_duration_since(from), answer.status);
                    if answer.grpc_failed {
                        rec.error(at, ErrorKind::Grpc);
                    }
                    self.answered = true;
                }
                Waited::Ready(Err(Failure::Stream(kind))) => rec.error(at, kind),
                Waited::Ready(Err(Failure::Connection(kind, end))) => {
                    rec.error(at, kind);
                    return end;
                }
                // Dropping the exchange resets the stream (CANCEL): the connection goes on.
                Waited::TimedOut => rec.error(at, ErrorKind::Timeout),
                Waited::RunOver => return End::Done,
            }
        }
    }
}

/// An answer read to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Answer {
    status: u16,
    /// A gRPC call whose `grpc-status` is not 0, or missing, in a 200 answer.
    grpc_failed: bool,
}

/// One request and its whole answer (body and, for gRPC, trailers).
async fn exchange(shared: &Shared, send: &mut SendRequest<Bytes>) -> Result<Answer, Failure> {
    let call = &shared.plan.call;
    let err = |e: h2::Error| failure(&e);
    let (response, mut body) = send.send_request(call.request(), call.body.is_none()).map_err(err)?;
    if let Some(data) = &call.body {
        body.send_data(data.clone(), true).map_err(err)?;
    }
    let response = response.await.map_err(err)?;
    let status = response.status().as_u16();
    // A trailers-only answer carries the gRPC status in its headers.
    let early = call.grpc.then(|| response.headers().get(call::GRPC_STATUS).cloned()).flatten();
    let mut recv = response.into_body();
    while let Some(chunk) = poll_fn(|cx| recv.poll_data(cx)).await {
        let n = chunk.map_err(err)?.len();
        // Gives the window back at once: the body is not kept.
        let _ = recv.flow_control().release_capacity(n);
        shared.rec.borrow_mut().bytes(Instant::now(), n as u64);
    }
    let mut grpc_failed = false;
    if call.grpc && status == 200 {
        let trailers = poll_fn(|cx| recv.poll_trailers(cx)).await.map_err(err)?;
        let grpc_status = early.or_else(|| trailers.and_then(|t| t.get(call::GRPC_STATUS).cloned()));
        grpc_failed = grpc_status.is_none_or(|s| s != "0");
    }
    Ok(Answer { status, grpc_failed })
}
