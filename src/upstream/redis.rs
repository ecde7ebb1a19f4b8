//! The per-core Redis connection the global rate limits count in (`--redis`): each worker
//! its own (no lock, nothing shared between cores), pipelined (the commands of every stream on
//! the core go out on it in the order asked, and its replies are matched to them in that
//! order), RESP through the `redis-protocol` crate's codec on our own buffers, reconnected with
//! a doubling backoff. A request waits for its reply at most the limit's timeout; while the
//! connection is down it fails at once, so a stopped Redis costs no request its timeout.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::io::{AsyncWriteRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;
use redis_protocol::resp2::decode::decode_range;
use redis_protocol::resp2::encode::encode_borrowed;
use redis_protocol::resp2::types::{BorrowedFrame, RangeFrame};
use tokio::sync::{oneshot, Notify};

use crate::buf::ReadBuf;

/// The first wait before reconnecting, doubled per failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Commands awaiting replies on one core past which a new one fails at once: a Redis that
/// accepts but never answers must not grow the queue without end.
const MAX_IN_FLIGHT: usize = 4096;
/// How long a connection may leave asks unanswered before it is dropped and made again: a
/// Redis that hangs, or a connection half-open since a network fault, would otherwise hold
/// every check on the core to its timeout until [`MAX_IN_FLIGHT`] fills.
const STALL: Duration = Duration::from_secs(1);

/// `--redis redis://[:PASSWORD@]HOST:PORT[/DB]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisTarget {
    pub host: String,
    pub port: u16,
    pub db: u32,
    pub password: Option<String>,
    /// `--ratelimit-failure-mode-deny`: a failed check answers 500 instead of allowing.
    pub failure_mode_deny: bool,
}

impl RedisTarget {
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url.strip_prefix("redis://").ok_or_else(|| format!("{url}: not a redis:// URL"))?;
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((auth, rest)) => (Some(auth), rest),
            None => (None, rest),
        };
        // `redis://:PASSWORD@` and `redis://USER:PASSWORD@` (the user is Redis 6's ACL name,
        // which AUTH with one argument does not take: only the default user is supported).
        let password = auth.map(|a| a.rsplit_once(':').map_or(a, |(_, p)| p).to_string()).filter(|p| !p.is_empty());
        let (hostport, db) = match rest.split_once('/') {
            Some((hp, "")) => (hp, 0),
            Some((hp, db)) => (hp, db.parse().map_err(|_| format!("{url}: database {db:?} is not a number"))?),
            None => (rest, 0),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| format!("{url}: port {p:?} is not a port number"))?),
            None => (hostport, 6379),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("{url}: no host"));
        }
        Ok(Self { host: host.to_string(), port, db, password, failure_mode_deny: false })
    }
}

/// Why a count did not come back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisError {
    /// No connection (Redis stopped, refused, or the connection just broke).
    Down,
    /// No reply within the limit's timeout.
    Timeout,
    /// An error reply, or one of another type than asked.
    Reply,
    /// [`MAX_IN_FLIGHT`] commands already wait.
    Busy,
}

/// One core's connection to Redis.
pub struct Redis {
    shared: Rc<Shared>,
    /// The target's `failure_mode_deny`.
    pub failure_mode_deny: bool,
}

struct Shared {
    state: RefCell<State>,
    /// Wakes the writer: commands queued, or the connection ended.
    wake: Notify,
}

struct State {
    /// A connection is up and its writer takes what is queued.
    up: bool,
    /// The first connection is being made: asks queue for it (up to their timeout) instead of
    /// failing, so the requests of a gateway just started are counted.
    starting: bool,
    /// Which connection is current: a reader of an earlier one touches nothing.
    generation: u64,
    /// Encoded commands not yet written.
    out: Vec<u8>,
    /// Those written or queued, in order, awaiting their replies.
    waiting: VecDeque<Waiter>,
    /// The key of the command being encoded, kept for the next one.
    key: Vec<u8>,
    /// When the current connection last gave a reply (or came up).
    last_reply: Instant,
}

/// The replies one ask takes: the first is its answer, the rest (an EXPIRE's) are read past.
struct Waiter {
    replies: u8,
    answer: Option<Result<i64, RedisError>>,
    tx: Option<oneshot::Sender<Result<i64, RedisError>>>,
}

impl Redis {
    /// Starts connecting on this core's runtime; the connection is kept up from then on.
    pub fn start(target: RedisTarget) -> Self {
        let state = State {
            up: false,
            starting: true,
            generation: 0,
            out: Vec::new(),
            waiting: VecDeque::new(),
            key: Vec::new(),
            last_reply: Instant::now(),
        };
        let shared = Rc::new(Shared { state: RefCell::new(state), wake: Notify::new() });
        let failure_mode_deny = target.failure_mode_deny;
        monoio::spawn(run(shared.clone(), target));
        Self { shared, failure_mode_deny }
    }

    /// envoyproxy/ratelimit's fixed-window count (`src/redis/fixed_cache_impl.go`): `INCRBY key
    /// 1` and `EXPIRE key expire_s`, pipelined, one round trip; the count after this hit.
    /// `key` writes the key (into a buffer the core reuses). The reply's channel is one
    /// allocation per check, which a reply across tasks needs.
    pub async fn hit(
        &self,
        key: impl FnOnce(&mut Vec<u8>),
        expire_s: u64,
        timeout: Duration,
    ) -> Result<i64, RedisError> {
        let rx = {
            let mut state = self.shared.state.borrow_mut();
            if !state.up && !state.starting {
                return Err(RedisError::Down);
            }
            if state.waiting.len() >= MAX_IN_FLIGHT {
                return Err(RedisError::Busy);
            }
            let mut expire = itoa::Buffer::new();
            let expire = expire.format(expire_s);
            let State { out, key: scratch, .. } = &mut *state;
            scratch.clear();
            key(scratch);
            encode(out, [b"INCRBY", scratch, b"1"]);
            encode(out, [b"EXPIRE", scratch, expire.as_bytes()]);
            let (tx, rx) = oneshot::channel();
            state.waiting.push_back(Waiter { replies: 2, answer: None, tx: Some(tx) });
            rx
        };
        self.shared.wake.notify_one();
        match monoio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(RedisError::Down),
            Err(_) => {
                self.shared.end_if_stalled();
                Err(RedisError::Timeout)
            }
        }
    }
}

/// Appends one command, an array of bulk strings, to `out`.
fn encode<const N: usize>(out: &mut Vec<u8>, args: [&[u8]; N]) {
    let frames = args.map(BorrowedFrame::BulkString);
    let frame = BorrowedFrame::Array(&frames);
    let at = out.len();
    out.resize(at + frame.encode_len(false), 0);
    // The length was just made room for: encoding cannot run out of buffer.
    let _ = encode_borrowed(&mut out[at..], &frame, false);
}

impl Shared {
    /// Ends the current connection when it has answered nothing for [`STALL`]: the next one
    /// is made after the backoff, and asks fail at once (fail-open) meanwhile.
    fn end_if_stalled(&self) {
        let generation = {
            let state = self.state.borrow();
            if !state.up || state.last_reply.elapsed() < STALL {
                return;
            }
            state.generation
        };
        tracing::warn!("redis: no reply for {STALL:?}; reconnecting");
        self.end(generation);
    }

    /// The current connection ended: every ask waiting on it fails (`Down`), as later ones
    /// will until the next connection is up.
    fn end(&self, generation: u64) {
        let waiting = {
            let mut state = self.state.borrow_mut();
            if state.generation != generation || !(state.up || state.starting) {
                return;
            }
            state.up = false;
            state.starting = false;
            state.out.clear();
            std::mem::take(&mut state.waiting)
        };
        for mut w in waiting {
            if let Some(tx) = w.tx.take() {
                let _ = tx.send(Err(RedisError::Down));
            }
        }
        self.wake.notify_one();
    }
}

async fn run(shared: Rc<Shared>, target: RedisTarget) {
    let mut backoff = MIN_BACKOFF;
    loop {
        match connect(&target).await {
            Ok(stream) => {
                backoff = MIN_BACKOFF;
                tracing::info!(host = %target.host, port = target.port, "redis: connected");
                serve(&shared, stream).await;
                tracing::warn!(host = %target.host, port = target.port, "redis: connection lost");
            }
            Err(e) => {
                tracing::debug!(host = %target.host, port = target.port, "redis: cannot connect: {e}");
                let generation = shared.state.borrow().generation;
                shared.end(generation);
            }
        }
        monoio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Connects, then AUTH and SELECT when the URL asks, each answered before the connection
/// serves. The name is resolved on each attempt (blocking, on reconnects only).
async fn connect(target: &RedisTarget) -> std::io::Result<TcpStream> {
    let addr = (target.host.as_str(), target.port);
    let mut stream = match monoio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(s) => s?,
        Err(_) => return Err(std::io::ErrorKind::TimedOut.into()),
    };
    let _ = stream.set_nodelay(true);
    let mut hello = Vec::new();
    let mut replies = 0;
    if let Some(password) = &target.password {
        encode(&mut hello, [b"AUTH", password.as_bytes()]);
        replies += 1;
    }
    let db = target.db.to_string();
    if target.db != 0 {
        encode(&mut hello, [b"SELECT", db.as_bytes()]);
        replies += 1;
    }
    if replies == 0 {
        return Ok(stream);
    }
    let (res, _) = stream.write_all(hello).await;
    res?;
    let mut rb = ReadBuf::with_capacity(512);
    let refused = |what: &str| std::io::Error::other(format!("redis refused {what}"));
    let answered = async {
        while replies > 0 {
            match decode_range(rb.data()) {
                Ok(Some((RangeFrame::Error(_), _))) => return Err(refused("AUTH or SELECT")),
                Ok(Some((_, n))) => {
                    rb.consume(n);
                    replies -= 1;
                }
                Ok(None) => {
                    if rb.fill(&mut stream, 512).await? == 0 {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                }
                Err(_) => return Err(refused("with a reply that is not RESP")),
            }
        }
        Ok(())
    };
    match monoio::time::timeout(CONNECT_TIMEOUT, answered).await {
        Ok(r) => r.map(|()| stream),
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

/// Serves one connection: this task writes what is queued, a task of its own reads replies.
async fn serve(shared: &Rc<Shared>, stream: TcpStream) {
    let generation = {
        let mut state = shared.state.borrow_mut();
        state.generation += 1;
        state.up = true;
        state.last_reply = Instant::now();
        state.starting = false;
        state.generation
    };
    let (rd, wr) = stream.into_split();
    monoio::spawn(read(shared.clone(), rd, generation));
    write(shared, wr, generation).await;
    shared.end(generation);
}

async fn write(shared: &Shared, mut wr: OwnedWriteHalf<TcpStream>, generation: u64) {
    let mut spare = Vec::with_capacity(4096);
    loop {
        let batch = {
            let mut state = shared.state.borrow_mut();
            if !state.up || state.generation != generation {
                break;
            }
            (!state.out.is_empty()).then(|| std::mem::replace(&mut state.out, std::mem::take(&mut spare)))
        };
        match batch {
            None => shared.wake.notified().await,
            Some(batch) => {
                let (res, mut batch) = wr.write_all(batch).await;
                if res.is_err() {
                    break;
                }
                batch.clear();
                spare = batch;
            }
        }
    }
    // Redis closes its end on our EOF, which ends the reader too.
    let _ = wr.shutdown().await;
}

async fn read(shared: Rc<Shared>, mut rd: OwnedReadHalf<TcpStream>, generation: u64) {
    let mut rb = ReadBuf::with_capacity(4096);
    loop {
        loop {
            let (frame, n) = match decode_range(rb.data()) {
                Ok(Some(decoded)) => decoded,
                Ok(None) => break,
                Err(_) => return shared.end(generation),
            };
            rb.consume(n);
            let reply = match frame {
                RangeFrame::Integer(i) => Ok(i),
                _ => Err(RedisError::Reply),
            };
            let done = {
                let mut state = shared.state.borrow_mut();
                if state.generation != generation {
                    return;
                }
                state.last_reply = Instant::now();
                let Some(w) = state.waiting.front_mut() else {
                    // A reply nothing asked for: the stream is out of step.
                    drop(state);
                    return shared.end(generation);
                };
                w.answer.get_or_insert(reply);
                w.replies -= 1;
                (w.replies == 0).then(|| state.waiting.pop_front()).flatten()
            };
            if let Some(mut w) = done {
                if let (Some(tx), Some(answer)) = (w.tx.take(), w.answer.take()) {
                    // The asker may have timed out and gone: nothing to tell then.
                    let _ = tx.send(answer);
                }
            }
        }
        match rb.fill(&mut rd, 4096).await {
            Ok(n) if n > 0 => {}
            _ => return shared.end(generation),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_host_port_db_and_password() {
        let t = RedisTarget::parse("redis://127.0.0.1:6380").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.db, t.password), ("127.0.0.1", 6380, 0, None));
        let t = RedisTarget::parse("redis://:s3cret@redis.cache:6379/2").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.db, t.password.as_deref()), ("redis.cache", 6379, 2, Some("s3cret")));
        let t = RedisTarget::parse("redis://redis").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("redis", 6379));
        assert!(RedisTarget::parse("http://redis:6379").is_err());
        assert!(RedisTarget::parse("redis://redis:port").is_err());
        assert!(RedisTarget::parse("redis://redis:6379/x").is_err());
    }

    #[test]
    fn commands_are_resp_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode(&mut out, [b"INCRBY", b"d_generic_key_v_60", b"1"]);
        encode(&mut out, [b"EXPIRE", b"d_generic_key_v_60", b"60"]);
        assert_eq!(
            out,
            b"*3\r\n$6\r\nINCRBY\r\n$18\r\nd_generic_key_v_60\r\n$1\r\n1\r\n\
              *3\r\n$6\r\nEXPIRE\r\n$18\r\nd_generic_key_v_60\r\n$2\r\n60\r\n"
        );
    }
}
