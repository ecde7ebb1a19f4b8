//! Envoy's inbound flood bounds that hyperium's h2 lacks, read off the frame headers passing
//! through the connection's transport (`h2_io.rs`), each ending the connection past Envoy's
//! default: frames that cost work but carry nothing (CVE-2019-9518's empty frames,
//! CVE-2019-9513's PRIORITY, CVE-2019-9517's WINDOW_UPDATE), and streams reset soon after they
//! open, at any pace (CVE-2023-44487; h2 bounds only those reset before they are taken). A
//! client's PUSH_PROMISE ends it too, a connection error (RFC 9113 §8.4) that h2 would take
//! for one stream's malformed header block. h2 bounds the rest (README's "HTTP/2").
//!
//! The same walk catches the frame errors h2 ends the connection for with a plain
//! PROTOCOL_ERROR where RFC 9113 names the code (a control frame of the wrong length, an
//! initial window past 2^31-1, DATA or HEADERS on a stream the client had ended): the
//! connection ends as before, and its GOAWAY carries the RFC's code, as nghttp2 (Envoy's codec)
//! sends it.

use std::time::{Duration, Instant};

use crate::http::h2_io::FrameWatch;

/// The client connection preface, which precedes the client's first frame.
const PREFACE_LEN: usize = 24;
const HEAD_LEN: usize = 9;

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PUSH_PROMISE: u8 = 0x5;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;

const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
const MAX_WINDOW: u32 = (1 << 31) - 1;

/// Client streams (odd ids) whose end is remembered: the most recent this many.
const ENDED_WINDOW: u32 = 1024;

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
    /// The type of the frame whose payload `skip` counts down (none in the preface).
    payload_of: Option<u8>,
}

/// What [`Frames::feed`] finds: a frame header, or a piece of the payload of the last one.
enum Found<'a> {
    Head(Head),
    Payload(u8, &'a [u8]),
}

/// One frame header.
struct Head {
    kind: u8,
    flags: u8,
    len: usize,
    stream: u32,
}

impl Frames {
    /// Calls `each` with every frame header that `bytes` completes, and each piece of payload.
    fn feed<'b>(&mut self, mut bytes: &'b [u8], mut each: impl FnMut(Found<'b>)) {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                if let Some(kind) = self.payload_of {
                    each(Found::Payload(kind, &bytes[..n]));
                }
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
                self.payload_of = Some(h[3]);
                each(Found::Head(Head { kind: h[3], flags: h[4], len, stream }));
            }
        }
    }

    /// Whether the bytes fed so far end on a frame boundary.
    fn at_boundary(&self) -> bool {
        self.have == 0 && self.skip == 0
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
    /// A PING, SETTINGS, PRIORITY, RST_STREAM, WINDOW_UPDATE or GOAWAY of a length its type
    /// forbids (RFC 9113 §6).
    FrameSize,
    /// SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1 (RFC 9113 §6.5.2).
    WindowTooLarge,
    /// DATA or HEADERS on a stream the client had ended or reset (RFC 9113 §5.1).
    StreamClosed,
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
            Flood::FrameSize => "HTTP/2: a frame of a length its type forbids",
            Flood::WindowTooLarge => "HTTP/2: SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1",
            Flood::StreamClosed => "HTTP/2: DATA or HEADERS on a stream the client had ended",
        }
    }

    /// The GOAWAY error code RFC 9113 names for it; none for a flood, which is cut short as
    /// Envoy cuts it.
    fn code(self) -> Option<u32> {
        match self {
            Flood::EmptyFrames | Flood::Priority | Flood::WindowUpdate | Flood::PrematureResets => None,
            Flood::PushPromise => Some(0x1),
            Flood::FrameSize => Some(0x6),
            Flood::WindowTooLarge => Some(0x3),
            Flood::StreamClosed => Some(0x5),
        }
    }
}

/// Whether a control frame's length is one its type allows (RFC 9113 §6).
fn size_ok(f: &Head) -> bool {
    match f.kind {
        PRIORITY => f.len == 5,
        RST_STREAM | WINDOW_UPDATE => f.len == 4,
        PING => f.len == 8,
        SETTINGS if f.flags & ACK != 0 => f.len == 0,
        SETTINGS => f.len.is_multiple_of(6),
        GOAWAY => f.len >= 8,
        _ => true,
    }
}

/// The client streams among the latest [`ENDED_WINDOW`] that it ended (END_STREAM) or reset:
/// one bit each, so that a frame on one of them is known to be on a closed stream. Older
/// streams are h2's to judge.
#[derive(Default)]
struct Ended {
    bits: [u64; ENDED_WINDOW as usize / 64],
}

impl Ended {
    fn slot(stream: u32) -> (usize, u64) {
        let i = (stream >> 1) % ENDED_WINDOW;
        ((i / 64) as usize, 1 << (i % 64))
    }

    /// Streams up to `to` are opened (or skipped, thereby closed as idle, which h2 judges):
    /// their slots, last used by streams `ENDED_WINDOW` ids older, start clear.
    fn open(&mut self, from: u32, to: u32) {
        if (to - from) / 2 >= ENDED_WINDOW {
            self.bits = [0; ENDED_WINDOW as usize / 64];
            return;
        }
        let mut s = (from + 1) | 1;
        while s <= to {
            let (w, bit) = Self::slot(s);
            self.bits[w] &= !bit;
            s += 2;
        }
    }

    fn end(&mut self, stream: u32) {
        let (w, bit) = Self::slot(stream);
        self.bits[w] |= bit;
    }

    fn ended(&self, stream: u32) -> bool {
        let (w, bit) = Self::slot(stream);
        self.bits[w] & bit != 0
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
    ended: Ended,
    /// Inside a header block (a HEADERS without END_HEADERS, until its last CONTINUATION):
    /// any other frame is h2's PROTOCOL_ERROR, whatever else is wrong with it.
    in_block: bool,
    /// The SETTINGS entry being read, and how much of it is in.
    setting: [u8; 6],
    setting_have: usize,
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
            ended: Ended::default(),
            in_block: false,
            setting: [0; 6],
            setting_have: 0,
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
            inbound,
            empty_run,
            priority,
            window_updates,
            opened,
            last_opened,
            ended,
            in_block,
            setting,
            setting_have,
            premature,
            settled,
            tripped,
            ..
        } = self;
        let mut trip = |why: Flood| *tripped = tripped.or(Some(why));
        inbound.feed(bytes, |found| match found {
            Found::Head(f) => {
                if !size_ok(&f) {
                    trip(Flood::FrameSize);
                }
                let ends = f.flags & END_STREAM != 0;
                let interrupts = *in_block && f.kind != CONTINUATION;
                if matches!(f.kind, HEADERS | CONTINUATION) {
                    *in_block = f.flags & END_HEADERS == 0;
                }
                match f.kind {
                    DATA | HEADERS | CONTINUATION => {
                        let opens = f.kind == HEADERS && f.stream > *last_opened;
                        if opens {
                            ended.open(*last_opened, f.stream);
                            *last_opened = f.stream;
                            *opened += 1;
                        } else if f.kind != CONTINUATION
                            && !interrupts
                            && f.stream % 2 == 1
                            && f.stream <= *last_opened
                            && *last_opened - f.stream < 2 * ENDED_WINDOW
                            && ended.ended(f.stream)
                        {
                            trip(Flood::StreamClosed);
                        }
                        if ends && f.kind != CONTINUATION && f.stream % 2 == 1 && f.stream <= *last_opened {
                            ended.end(f.stream);
                        }
                        // CONTINUATION has no END_STREAM flag: its bit there is unused, read as
                        // Envoy (nghttp2) reads it, never set by a well-behaved client.
                        *empty_run = if f.len == 0 && !ends { *empty_run + 1 } else { 0 };
                    }
                    PRIORITY => *priority += 1,
                    WINDOW_UPDATE => *window_updates += 1,
                    RST_STREAM if f.stream <= *last_opened && f.stream % 2 == 1 => {
                        ended.end(f.stream);
                        if f.stream > *settled {
                            *premature += 1;
                        }
                    }
                    SETTINGS => *setting_have = 0,
                    PUSH_PROMISE => trip(Flood::PushPromise),
                    _ => {}
                }
            }
            Found::Payload(SETTINGS, mut piece) => {
                while !piece.is_empty() {
                    let n = (6 - *setting_have).min(piece.len());
                    setting[*setting_have..*setting_have + n].copy_from_slice(&piece[..n]);
                    *setting_have += n;
                    piece = &piece[n..];
                    if *setting_have == 6 {
                        *setting_have = 0;
                        let id = u16::from_be_bytes([setting[0], setting[1]]);
                        let value = u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]]);
                        if id == SETTINGS_INITIAL_WINDOW_SIZE && value > MAX_WINDOW {
                            trip(Flood::WindowTooLarge);
                        }
                    }
                }
            }
            Found::Payload(..) => {}
        });
        if self.tripped.is_none() {
            self.tripped = self.check();
        }
    }

    /// Counts the DATA frames in bytes the server sent (each allows the client more
    /// WINDOW_UPDATEs).
    pub(super) fn outbound(&mut self, bytes: &[u8]) {
        let data_sent = &mut self.data_sent;
        self.outbound.feed(bytes, |found| {
            if let Found::Head(f) = found {
                *data_sent += u64::from(f.kind == DATA);
            }
        });
    }

    /// The GOAWAY that ends the connection with RFC 9113's code for why it ends, when there
    /// is one and what was sent so far ends on a frame boundary (else the connection just
    /// closes, as it does past a flood).
    fn goaway(&self) -> Option<[u8; HEAD_LEN + 8]> {
        let code = self.tripped?.code()?;
        if !self.outbound.at_boundary() {
            return None;
        }
        let mut frame = [0u8; HEAD_LEN + 8];
        frame[2] = 8;
        frame[3] = GOAWAY;
        frame[HEAD_LEN..HEAD_LEN + 4].copy_from_slice(&self.last_opened.to_be_bytes());
        frame[HEAD_LEN + 4..].copy_from_slice(&code.to_be_bytes());
        Some(frame)
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

    fn goaway(&self) -> Option<[u8; 17]> {
        FloodGuard::goaway(self)
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
    fn control_frames_of_a_forbidden_length_end_the_connection_with_frame_size_error() {
        let headers = frame(HEADERS, 0x4, 1, 10);
        for bad in [
            frame(PING, 0, 0, 6),
            frame(PRIORITY, 0, 1, 4),
            frame(RST_STREAM, 0, 1, 3),
            frame(WINDOW_UPDATE, 0, 0, 3),
            frame(SETTINGS, ACK, 0, 1),
            frame(SETTINGS, 0, 0, 5),
            frame(GOAWAY, 0, 0, 7),
        ] {
            let g = guard_after(&[headers.clone(), bad]);
            assert_eq!(g.tripped(), Some(Flood::FrameSize));
            let goaway = g.goaway().expect("a GOAWAY");
            assert_eq!(&goaway[..9], &[0, 0, 8, GOAWAY, 0, 0, 0, 0, 0]);
            assert_eq!(&goaway[9..], &[0, 0, 0, 1, 0, 0, 0, 6], "last stream 1, FRAME_SIZE_ERROR");
        }
        let fine =
            [frame(PING, 0, 0, 8), frame(SETTINGS, ACK, 0, 0), frame(SETTINGS, 0, 0, 12), frame(PRIORITY, 0, 3, 5)];
        assert_eq!(guard_after(&fine).tripped(), None);
    }

    #[test]
    fn an_initial_window_past_2_31_ends_the_connection_with_flow_control_error() {
        let settings = |value: u32| {
            let mut f = frame(SETTINGS, 0, 0, 0);
            f[2] = 12;
            f.extend_from_slice(&[0, 3, 0, 0, 0, 100]);
            f.extend_from_slice(&SETTINGS_INITIAL_WINDOW_SIZE.to_be_bytes());
            f.extend_from_slice(&value.to_be_bytes());
            f
        };
        assert_eq!(guard_after(&[settings(MAX_WINDOW)]).tripped(), None);
        let g = guard_after(&[settings(MAX_WINDOW + 1)]);
        assert_eq!(g.tripped(), Some(Flood::WindowTooLarge));
        assert_eq!(&g.goaway().unwrap()[13..], &[0, 0, 0, 3]);
    }

    #[test]
    fn data_or_headers_on_a_stream_the_client_ended_is_stream_closed() {
        let get = frame(HEADERS, 0x5, 1, 10);
        let post = frame(HEADERS, 0x4, 1, 10);
        let closed = |frames: &[Vec<u8>]| guard_after(frames).tripped() == Some(Flood::StreamClosed);
        assert!(closed(&[get.clone(), frame(DATA, END_STREAM, 1, 4)]));
        assert!(closed(&[get.clone(), frame(HEADERS, 0x5, 1, 10)]));
        assert!(closed(&[post.clone(), frame(DATA, END_STREAM, 1, 4), frame(DATA, 0, 1, 4)]));
        assert!(closed(&[post.clone(), frame(RST_STREAM, 0, 1, 4), frame(HEADERS, 0x5, 1, 10)]));
        // A frame that interrupts a header block is h2's PROTOCOL_ERROR.
        assert!(!closed(&[frame(HEADERS, END_STREAM, 1, 10), frame(DATA, END_STREAM, 1, 4)]));
        // Body, trailers, and streams after a closed one are fine.
        assert!(!closed(&[post.clone(), frame(DATA, 0, 1, 4), frame(HEADERS, 0x5, 1, 10)]));
        assert!(!closed(&[get.clone(), frame(HEADERS, 0x4, 3, 10), frame(DATA, END_STREAM, 3, 0)]));
        // A stream's slot is reused ENDED_WINDOW streams later, starting clear.
        let mut frames = vec![get];
        frames.extend((1..=ENDED_WINDOW).map(|i| frame(HEADERS, 0x5, 1 + 2 * i, 10)));
        frames.push(frame(HEADERS, 0x4, 1 + 2 * (ENDED_WINDOW + 1), 10));
        frames.push(frame(DATA, END_STREAM, 1 + 2 * (ENDED_WINDOW + 1), 4));
        assert!(!closed(&frames));
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
