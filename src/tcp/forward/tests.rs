//! The forwarding engine on real loopback sockets, with each stage (pipe and the buffer
//! fallback) on both drivers: bytes and an end of stream each way, counters, a reset passed on.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream as StdStream};
use std::thread;
use std::time::Duration;

use monoio::net::TcpStream;

use super::{run_with, RelayEnd, Stage, Traffic, Transferred};
use crate::stats::L4Counters;

const HOUR: Duration = Duration::from_secs(3600);

/// A connected pair: the far end (blocking std, driven by a thread) and the near end (monoio).
fn pair() -> (StdStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let far = StdStream::connect(listener.local_addr().unwrap()).unwrap();
    let (near, _) = listener.accept().unwrap();
    (far, TcpStream::from_std(near).unwrap())
}

/// Joins a thread without blocking the runtime: on io_uring the near ends' closes are ring ops,
/// submitted only while the runtime runs.
async fn join<T>(thread: thread::JoinHandle<T>) -> T {
    while !thread.is_finished() {
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
    thread.join().unwrap()
}

/// What a far end reads next, in a thread: 0 bytes at a close, or the error of a reset.
fn next_read(mut far: StdStream) -> thread::JoinHandle<std::io::Result<usize>> {
    far.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    thread::spawn(move || far.read(&mut [0; 16]))
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// The client sends `up` bytes and ends its stream; the server reads to the end, then answers
/// `down` bytes and closes. Both see exactly the other's bytes, and the counters agree.
async fn both_ways(stages: [Stage; 2]) {
    let (up, down) = (3 * 1024 * 1024 + 7, 2 * 1024 * 1024 + 3);
    let (mut client, client_near) = pair();
    let (server, upstream_near) = pair();
    let client_side = thread::spawn(move || {
        client.write_all(&pattern(up)).unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        got
    });
    let server_side = thread::spawn(move || {
        let mut server = server;
        let mut got = Vec::new();
        server.read_to_end(&mut got).unwrap();
        server.write_all(&pattern(down)).unwrap();
        got
    });
    let (route, cluster, moved) = (L4Counters::default(), L4Counters::default(), Transferred::default());
    let traffic = Traffic { downstream: &route, upstream: &cluster, connection: &moved };
    let outcome = run_with(stages, client_near, upstream_near, HOUR, traffic).await;
    assert_eq!(outcome, RelayEnd::Closed);
    assert!(join(server_side).await == pattern(up), "the server got other bytes");
    assert!(join(client_side).await == pattern(down), "the client got other bytes");
    let counts = |c: &L4Counters| (c.rx_bytes.get(), c.tx_bytes.get());
    assert_eq!(counts(&route), (up as u64, down as u64));
    assert_eq!(counts(&cluster), (down as u64, up as u64));
    assert_eq!((moved.received.get(), moved.sent.get()), (up as u64, down as u64));
}

/// The server resets its connection (closing with unread bytes): the client is reset too.
async fn reset_passes_on(stages: [Stage; 2]) {
    let (mut client, client_near) = pair();
    let (server, upstream_near) = pair();
    let server_side = thread::spawn(move || {
        let mut server = server;
        let mut first = [0; 1];
        server.read_exact(&mut first).unwrap();
        // Unread bytes left at close make the kernel send an RST.
        thread::sleep(Duration::from_millis(100));
        drop(server);
    });
    client.write_all(b"ab").unwrap();
    let (route, cluster, moved) = (L4Counters::default(), L4Counters::default(), Transferred::default());
    let traffic = Traffic { downstream: &route, upstream: &cluster, connection: &moved };
    let outcome = run_with(stages, client_near, upstream_near, HOUR, traffic).await;
    join(server_side).await;
    assert_eq!(outcome, RelayEnd::Reset);
    let err = join(next_read(client)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
}

/// Nothing moves: both sides are closed once the idle timeout passes.
async fn idle_closes(stages: [Stage; 2]) {
    let (client, client_near) = pair();
    let (server, upstream_near) = pair();
    let (route, cluster, moved) = (L4Counters::default(), L4Counters::default(), Transferred::default());
    let traffic = Traffic { downstream: &route, upstream: &cluster, connection: &moved };
    let outcome = run_with(stages, client_near, upstream_near, Duration::from_millis(200), traffic).await;
    assert_eq!(outcome, RelayEnd::IdleTimeout);
    assert_eq!(join(next_read(client)).await.unwrap(), 0);
    assert_eq!(join(next_read(server)).await.unwrap(), 0);
}

#[monoio::test_all(timer_enabled = true)]
async fn pipes_carry_both_ways() {
    both_ways([Stage::new(), Stage::new()]).await;
}

#[monoio::test_all(timer_enabled = true)]
async fn buffers_carry_both_ways() {
    both_ways([Stage::buffer(), Stage::buffer()]).await;
}

#[monoio::test_all(timer_enabled = true)]
async fn pipes_pass_a_reset_on() {
    reset_passes_on([Stage::new(), Stage::new()]).await;
}

#[monoio::test_all(timer_enabled = true)]
async fn buffers_pass_a_reset_on() {
    reset_passes_on([Stage::buffer(), Stage::buffer()]).await;
}

#[monoio::test_all(timer_enabled = true)]
async fn idle_streams_are_closed() {
    idle_closes([Stage::new(), Stage::buffer()]).await;
}
