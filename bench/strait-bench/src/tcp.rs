//! `strait-bench tcp`: raw TCP load. `throughput`: every connection writes as fast as the path
//! takes it until the deadline, and the bytes written are counted (bytes/s, as iperf3 sends).
//! `echo`: a message out and the same bytes back, one round trip at a time per connection
//! (round trips/s and their latency). A failed connection is counted by kind and opened again
//! after a short back-off, and every wait ends at the deadline, so a run against a dead or
//! stalled peer still ends on time.

use std::cell::RefCell;
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use crate::cli::{TcpArgs, TcpMode};
use crate::connect;
use crate::error::BenchError;
use crate::report::Report;
use crate::runner::{self, Backoff, Thread};
use crate::stats::{ErrorKind, Recorder};

pub fn run(args: &TcpArgs) -> Result<Report, BenchError> {
    let size = args.size();
    if size == 0 {
        return Err(BenchError::Usage("--size must be at least 1".into()));
    }
    let target = Target { addr: args.addr, mode: args.mode, size, timeout: args.load.timeout };
    let outcome = runner::run(&args.load, "tcp", move |thread| load(thread, target))?;
    let mode = match args.mode {
        TcpMode::Throughput => "tcp-throughput",
        TcpMode::Echo => "tcp-echo",
    };
    let (load, rec) = (&args.load, &outcome.recorder);
    let mut report = Report::new(mode, &args.addr.to_string(), load.connections, load.threads, rec, outcome.elapsed);
    if args.mode == TcpMode::Throughput {
        // A write's duration is only how long the socket buffer took to take it: not a latency.
        report.latency_us = None;
    }
    Ok(report)
}

#[derive(Debug, Clone, Copy)]
struct Target {
    addr: SocketAddr,
    mode: TcpMode,
    size: usize,
    timeout: Duration,
}

/// One load thread: its connections as tasks sharing the thread's recorder and one payload.
async fn load(thread: Thread, target: Target) -> Recorder {
    let rec = Rc::new(RefCell::new(thread.recorder()));
    // Varied bytes, so an echo that comes back reordered or shifted does not match.
    let payload: Rc<Vec<u8>> = Rc::new((0..target.size).map(|i| (i % 251) as u8).collect());
    let thread = Rc::new(thread);
    let tasks: Vec<_> = (0..thread.connections)
        .map(|_| monoio::spawn(connection(thread.clone(), rec.clone(), target, payload.clone())))
        .collect();
    for task in tasks {
        task.await;
    }
    Rc::try_unwrap(rec).expect("every connection task has ended").into_inner()
}

/// How a connection's life ended.
enum End {
    /// The run is over.
    RunOver,
    Failed(ErrorKind),
}

/// One connection slot: connects, runs the mode until the run ends or the connection fails,
/// and connects again after a failure.
async fn connection(thread: Rc<Thread>, rec: Rc<RefCell<Recorder>>, target: Target, payload: Rc<Vec<u8>>) {
    let mut backoff = Backoff::new();
    loop {
        let left = thread.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let end = match connect::tcp(target.addr, target.timeout.min(left)).await {
            Ok(mut stream) => {
                backoff.reset();
                match target.mode {
                    TcpMode::Throughput => push(&mut stream, &thread, &rec, target, &payload).await,
                    TcpMode::Echo => echo(&mut stream, &thread, &rec, target, &payload).await,
                }
            }
            // The deadline, not --timeout, cut the connect short.
            Err(ErrorKind::Timeout) if left <= target.timeout => End::RunOver,
            Err(kind) => End::Failed(kind),
        };
        match end {
            End::RunOver => return,
            End::Failed(kind) => rec.borrow_mut().error(Instant::now(), kind),
        }
        thread.pause(&mut backoff).await;
    }
}

/// Writes the payload over and over, counting what the socket takes.
async fn push(
    stream: &mut TcpStream,
    thread: &Thread,
    rec: &RefCell<Recorder>,
    target: Target,
    payload: &Rc<Vec<u8>>,
) -> End {
    loop {
        let start = Instant::now();
        if !thread.start_one(start) {
            return End::RunOver;
        }
        // A partial write is fine: the next write goes on with the stream, not the chunk.
        let written = bounded(thread, target.timeout, async { stream.write(payload.clone()).await.0 }).await;
        let now = Instant::now();
        match written {
            Ok(Ok(0)) => return End::Failed(ErrorKind::Closed),
            Ok(Ok(n)) => {
                let mut rec = rec.borrow_mut();
                rec.record(now, now - start);
                rec.bytes(now, n as u64);
            }
            Ok(Err(_)) => return End::Failed(ErrorKind::Io),
            Err(end) => return end,
        }
    }
}

/// Sends the payload and reads it back, one round trip at a time.
async fn echo(
    stream: &mut TcpStream,
    thread: &Thread,
    rec: &RefCell<Recorder>,
    target: Target,
    payload: &Rc<Vec<u8>>,
) -> End {
    let mut back = Vec::with_capacity(target.size);
    loop {
        let start = Instant::now();
        if !thread.start_one(start) {
            return End::RunOver;
        }
        let trip = async {
            let (res, _) = stream.write_all(payload.clone()).await;
            res.map_err(|_| ErrorKind::Io)?;
            back.clear();
            while back.len() < target.size {
                // Exactly the rest of the message, appended (monoio reads into a Vec from 0).
                let got = back.len();
                let (res, slice) = stream.read(std::mem::take(&mut back).slice_mut(got..target.size)).await;
                back = slice.into_inner();
                match res {
                    Ok(0) => return Err(ErrorKind::Closed),
                    Ok(_) => {}
                    Err(_) => return Err(ErrorKind::Io),
                }
            }
            Ok(())
        };
        let res = bounded(thread, target.timeout, trip).await;
        let now = Instant::now();
        match res {
            // What came back is not what was sent: the stream is out of step, start over.
            Ok(Ok(())) if back[..] != payload[..] => return End::Failed(ErrorKind::Parse),
            Ok(Ok(())) => {
                let mut rec = rec.borrow_mut();
                rec.record(now, now - start);
                rec.bytes(now, target.size as u64);
            }
            Ok(Err(kind)) => return End::Failed(kind),
            Err(end) => return end,
        }
    }
}

/// Runs `op` for at most `--timeout`, and not past the deadline.
async fn bounded<T>(thread: &Thread, timeout: Duration, op: impl Future<Output = T>) -> Result<T, End> {
    let left = thread.deadline.saturating_duration_since(Instant::now());
    match monoio::time::timeout(timeout.min(left), op).await {
        Ok(out) => Ok(out),
        Err(_) if left <= timeout => Err(End::RunOver),
        Err(_) => Err(End::Failed(ErrorKind::Timeout)),
    }
}
