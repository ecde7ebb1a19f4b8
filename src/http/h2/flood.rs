//! Envoy's inbound flood bounds that hyperium's h2 lacks, read off the frame headers passing
//! through the connection's transport (`io.rs`), each ending the connection past Envoy's
//! default: frames that cost work but carry nothing (CVE-2019-9518's empty frames,
//! CVE-2019-9513's PRIORITY, CVE-2019-9517's WINDOW_UPDATE), and streams reset soon after they
//! open, at any pace (CVE-2023-44487; h2 bounds only those reset before they are taken). A
//! client's PUSH_PROMISE ends it too, a connection error (RFC 9113 §8.4) that h2 would take
//! for one stream's malformed header block. h2 bounds the rest (README's "HTTP/2").

use std::time::{Duration, Instant};

use crate::http::h2_io::FrameWatch;

/// The client connection preface, which precedes the client's first frame.
const PREFACE_LEN: usize = 24;
const HEAD_LEN: usize = 9;

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
const RST_STREAM: u8 = 0x3;
const PUSH_PROMISE: u8 = 0x5;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;

/// Envoy's `max_consecutive_inbound_frames_with_empty_payload` default: DATA, HEADERS or
/// CONTINUATION frames in a row with no payload and no END_STREAM.
const MAX_EMPTY_RUN: u64 = 1;
/// Envoy's `max_inbound_priority_frames_per_stream` default: PRIORITY frames per stream opened
/// (plus one).
const PRIORITY_PER_STREAM: u64 = 100;
/// Envoy's `max_inbound_window_update_frames_per_data_frame_sent` default; the allowance is
/// Envoy's too: 5 + 2 × (streams opened + 10 × DATA frames sent).
const WINDOW_UPDATES_PER_DATA: u64 = 10;

/// Envoy's `overload.premature_reset_total_stream_count` default: once this many streams are
/// opened, half of them reset early ends the connection (before it, half of this many).
const PREMATURE_RESET_STREAMS: u64 = 500;
/// Envoy's `overload.premature_reset_min_stream_lifetime_seconds` default: a stream reset
/// sooner is reset early. Here the lifetime is judged by which second the stream opened in,
/// so it is 1 to 2 s: streams open in rising order, and the highest opened a second ago
/// divides the early from the late.
const PREMATURE_RESET_LIFETIME: Duration = Duration::from_secs(1);

/// Frame headers found in a byte stream fed in pieces of any size.
#[derive(Default)]
struct Frames {
    head: [u8; HEAD_LEN],
    have: usize,
    /// Bytes to pass over before the next frame header: a payload's rest, or the preface.
    skip: usize,
}

/// One frame header.
struct Head {
    kind: u8,
    flags: u8,
    len: usize,
    stream: u32,
}

impl Frames {
    /// Calls `each` with every frame header that `bytes` completes.
    fn feed(&mut self, mut bytes: &[u8], mut each: impl FnMut(Head)) {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (HEAD_LEN - self.have).min(bytes.len());
            self.head[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == HEAD_LEN {
                let h = &self.head;
                let len = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
                let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
                self.have = 0;
                self.skip = len;
                each(Head { kind: h[3], flags: h[4], len, stream });
            }
        }
    }
}

/// Why a connection ends: which of Envoy's flood bounds it passed, or a frame no client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flood {
    EmptyFrames,
    Priority,
    WindowUpdate,
    PushPromise,
    PrematureResets,
}

impl Flood {
    /// Why the connection ended, for its log line.
    pub(super) fn what(self) -> &'static str {
        match self {
            Flood::EmptyFrames => "HTTP/2 flood: too many consecutive frames with an empty payload",
            Flood::Priority => "HTTP/2 flood: too many PRIORITY frames",
            Flood::WindowUpdate => "HTTP/2 flood: too many WINDOW_UPDATE frames",
            Flood::PushPromise => "HTTP/2: a client sent PUSH_PROMISE",
            Flood::PrematureResets => "HTTP/2 flood: too many streams reset soon after they opened",
        }
    }
}

/// A connection's frame counts, both ways.
pub(super) struct FloodGuard {
    inbound: Frames,
    outbound: Frames,
    empty_run: u64,
    priority: u64,
    window_updates: u64,
    opened: u64,
    /// The highest stream a HEADERS frame opened: a HEADERS on a lower one is trailers.
    last_opened: u32,
    data_sent: u64,
    /// Streams the client reset early.
    premature: u64,
    /// Streams above `settled` opened less than 1 to 2 s ago; `mark` is when `marked` (the
    /// highest stream opened then) becomes `settled`.
    settled: u32,
    marked: u32,
    mark: Instant,
    tripped: Option<Flood>,
}

impl FloodGuard {
    /// For a server connection: the client's bytes open with the preface.
    pub(super) fn new() -> Self {
        FloodGuard {
            inbound: Frames { skip: PREFACE_LEN, ..Frames::default() },
            outbound: Frames::default(),
            empty_run: 0,
            priority: 0,
            window_updates: 0,
            opened: 0,
            last_opened: 0,
            data_sent: 0,
            premature: 0,
            settled: 0,
            marked: 0,
            mark: Instant::now(),
            tripped: None,
        }
    }

    /// The bound passed, if any (then the connection is to end: nothing more is read).
    pub(super) fn tripped(&self) -> Option<Flood> {
        self.tripped
    }

    /// Counts the frames in bytes the client sent: one clock read and a walk over the frame
    /// headers per socket read, on the HTTP/2 path only.
    pub(super) fn inbound(&mut self, bytes: &[u8]) {
        self.inbound_at(bytes, Instant::now());
    }

    /// [`Self::inbound`] at `now`.
    fn inbound_at(&mut self, bytes: &[u8], now: Instant) {
        // Streams opened a second ago settle: a reset of one of them is no longer early.
        if now.duration_since(self.mark) >= PREMATURE_RESET_LIFETIME {
            self.settled = self.marked;
            self.marked = self.last_opened;
            self.mark = now;
        }
        let Self {
            inbound, empty_run, priority, window_updates, opened, last_opened, premature, settled, tripped, ..
        } = self;
        inbound.feed(bytes, |f| match f.kind {
            DATA | HEADERS | CONTINUATION => {
                if f.kind == HEADERS && f.stream > *last_opened {
                    *last_opened = f.stream;
                    *opened += 1;
                }
                // CONTINUATION has no END_STREAM flag: its bit there is unused, read as Envoy
                // (nghttp2) reads it, never set by a well-behaved client.
                *empty_run = if f.len == 0 && f.flags & END_STREAM == 0 { *empty_run + 1 } else { 0 };
            }
            PRIORITY => *priority += 1,
            WINDOW_UPDATE => *window_updates += 1,
            RST_STREAM if f.stream > *settled && f.stream <= *last_opened => *premature += 1,
            PUSH_PROMISE => *tripped = tripped.or(Some(Flood::PushPromise)),
            _ => {}
        });
        if self.tripped.is_none() {
            self.tripped = self.check();
        }
    }

    /// Counts the DATA frames in bytes the server sent (each allows the client more
    /// WINDOW_UPDATEs).
    pub(super) fn outbound(&mut self, bytes: &[u8]) {
        let data_sent = &mut self.data_sent;
        self.outbound.feed(bytes, |f| *data_sent += u64::from(f.kind == DATA));
    }

    fn check(&self) -> Option<Flood> {
        if self.empty_run > MAX_EMPTY_RUN {
            Some(Flood::EmptyFrames)
        } else if self.priority > PRIORITY_PER_STREAM * (1 + self.opened) {
            Some(Flood::Priority)
        } else if self.window_updates > 5 + 2 * (self.opened + WINDOW_UPDATES_PER_DATA * self.data_sent) {
            Some(Flood::WindowUpdate)
        } else if self.premature * 2 >= self.opened.max(PREMATURE_RESET_STREAMS) {
            // Envoy's: under 500 streams, 250 early resets; past it, half the streams.
            Some(Flood::PrematureResets)
        } else {
            None
        }
    }
}

impl FrameWatch for FloodGuard {
    fn inbound(&mut self, bytes: &[u8]) {
        FloodGuard::inbound(self, bytes);
    }

    fn outbound(&mut self, bytes: &[u8]) {
        FloodGuard::outbound(self, bytes);
    }

    fn tripped(&self) -> Option<&'static str> {
        FloodGuard::tripped(self).map(Flood::what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, len: usize) -> Vec<u8> {
        let mut out = (len as u32).to_be_bytes()[1..].to_vec();
        out.extend_from_slice(&[kind, flags]);
        out.extend_from_slice(&stream.to_be_bytes());
        out.resize(out.len() + len, 0);
        out
    }

    fn guard_after(frames: &[Vec<u8>]) -> FloodGuard {
        let mut g = FloodGuard::new();
        // The preface and the frames, fed a byte at a time: headers split anywhere are found.
        for b in [vec![b'P'; PREFACE_LEN], frames.concat()].concat() {
            g.inbound(&[b]);
        }
        g
    }

    #[test]
    fn one_empty_frame_passes_two_in_a_row_end_the_connection() {
        let headers = frame(HEADERS, 0x4, 1, 10);
        let empty = frame(DATA, 0, 1, 0);
        assert_eq!(guard_after(&[headers.clone(), empty.clone(), frame(DATA, 0, 1, 3), empty.clone()]).tripped(), None);
        assert_eq!(guard_after(&[headers.clone(), empty.clone(), frame(DATA, END_STREAM, 1, 0)]).tripped(), None);
        assert_eq!(guard_after(&[headers, empty.clone(), empty]).tripped(), Some(Flood::EmptyFrames));
    }

    #[test]
    fn priority_frames_are_bounded_per_stream_opened() {
        let priority = frame(PRIORITY, 0, 3, 5);
        let mut frames = vec![frame(HEADERS, 0x5, 1, 10)];
        frames.extend(std::iter::repeat_n(priority.clone(), 200));
        assert_eq!(guard_after(&frames).tripped(), None);
        frames.push(priority);
        assert_eq!(guard_after(&frames).tripped(), Some(Flood::Priority));
    }

    #[test]
    fn streams_reset_early_end_the_connection_at_half_of_500() {
        let mut g = FloodGuard::new();
        let start = g.mark;
        g.inbound_at(&[b'P'; PREFACE_LEN], start);
        let pair = |id| [frame(HEADERS, 0x5, id, 10), frame(RST_STREAM, 0, id, 4)].concat();
        for id in (1..499).step_by(2) {
            g.inbound_at(&pair(id), start);
        }
        assert_eq!(g.tripped(), None, "249 early resets");
        g.inbound_at(&pair(499), start);
        assert_eq!(g.tripped(), Some(Flood::PrematureResets));
    }

    #[test]
    fn streams_reset_late_are_not_early() {
        let mut g = FloodGuard::new();
        let start = g.mark;
        g.inbound_at(&[b'P'; PREFACE_LEN], start);
        let opens: Vec<u8> = (1..1000).step_by(2).flat_map(|id| frame(HEADERS, 0x5, id, 10)).collect();
        g.inbound_at(&opens, start);
        // Two marks later, every one of them is settled.
        g.inbound_at(&[], start + PREMATURE_RESET_LIFETIME);
        let later = start + 2 * PREMATURE_RESET_LIFETIME;
        let resets: Vec<u8> = (1..1000).step_by(2).flat_map(|id| frame(RST_STREAM, 0, id, 4)).collect();
        g.inbound_at(&resets, later);
        assert_eq!(g.tripped(), None);
        // A reset of a stream that never opened is h2's to refuse, not an early reset.
        g.inbound_at(&frame(RST_STREAM, 0, 2001, 4).repeat(600), later);
        assert_eq!(g.tripped(), None);
    }

    #[test]
    fn a_client_push_promise_ends_the_connection() {
        let push = frame(PUSH_PROMISE, 0x4, 1, 6);
        assert_eq!(guard_after(&[frame(HEADERS, 0x4, 1, 10), push]).tripped(), Some(Flood::PushPromise));
    }

    #[test]
    fn window_updates_are_bounded_by_streams_and_data_sent() {
        let update = frame(WINDOW_UPDATE, 0, 0, 4);
        // One stream: 5 + 2 × 1.
        let mut frames = vec![frame(HEADERS, 0x5, 1, 10)];
        frames.extend(std::iter::repeat_n(update.clone(), 7));
        assert_eq!(guard_after(&frames).tripped(), None);
        frames.push(update.clone());
        assert_eq!(guard_after(&frames).tripped(), Some(Flood::WindowUpdate));
        // A DATA frame sent allows 20 more.
        let mut g = FloodGuard::new();
        g.outbound(&[frame(HEADERS, 0x4, 1, 3), frame(DATA, 0, 1, 100)].concat());
        g.inbound(&[vec![b'P'; PREFACE_LEN], frames.concat()].concat());
        assert_eq!(g.tripped(), None);
    }
}
