//! What the gateway reads of a gRPC exchange's bodies as they pass, without copying or holding
//! them: the length-prefixed messages each way (as Envoy's `grpc_stats` filter counts them for
//! Istio's `istio_request_messages_total` and `istio_response_messages_total`), and the
//! `grpc-status` among a chunked HTTP/1.1 body's framing lines (`body::Watch` walks the
//! framing).

/// A message's prefix: the compressed flag, then its length (4 bytes, big-endian).
const PREFIX: u8 = 5;

/// Counts messages in a body's payload, fed in pieces split anywhere.
#[derive(Debug, Default, Clone)]
pub struct MessageCounter {
    /// Prefix bytes seen of the current message; [`PREFIX`]: in its payload.
    prefix: u8,
    /// The length as read so far, then the payload bytes still to come.
    rest: u64,
    count: u64,
}

impl MessageCounter {
    /// A message counts from its first byte, as Envoy's frame inspector counts it.
    pub fn feed(&mut self, mut data: &[u8]) {
        while let Some((&b, tail)) = data.split_first() {
            if self.prefix == PREFIX {
                // The payload is skipped whole, never looked at.
                let take = usize::try_from(self.rest).unwrap_or(usize::MAX).min(data.len());
                data = &data[take..];
                self.rest -= take as u64;
                if self.rest == 0 {
                    self.prefix = 0;
                }
                continue;
            }
            data = tail;
            if self.prefix == 0 {
                self.count += 1;
                self.rest = 0;
            } else {
                self.rest = self.rest << 8 | u64::from(b);
            }
            self.prefix += 1;
            if self.prefix == PREFIX && self.rest == 0 {
                self.prefix = 0;
            }
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }
}

/// The trailer name looked for, as trailer lines are matched (lowercase).
const GRPC_STATUS: &[u8] = b"grpc-status:";
/// Room for a status value: more digits than any code has make it no code.
const VALUE_ROOM: usize = 10;

/// Finds `grpc-status` among the framing lines of a chunked body (chunk-size lines, which
/// start with a hex digit, and the trailer section), a byte at a time.
#[derive(Debug, Clone)]
pub struct TrailerStatus {
    /// Bytes of the current line that matched [`GRPC_STATUS`]; past it, in the value; `None`:
    /// not the line.
    matched: Option<usize>,
    value: [u8; VALUE_ROOM],
    value_len: usize,
    status: Option<u8>,
}

impl Default for TrailerStatus {
    fn default() -> Self {
        TrailerStatus { matched: Some(0), value: [0; VALUE_ROOM], value_len: 0, status: None }
    }
}

impl TrailerStatus {
    /// The next framing bytes (none of the body's data).
    pub fn feed(&mut self, framing: &[u8]) {
        for &b in framing {
            match (b, self.matched) {
                (b'\n', matched) => {
                    if matched.is_some_and(|m| m >= GRPC_STATUS.len()) {
                        let value = self.value[..self.value_len.min(VALUE_ROOM)].trim_ascii();
                        self.status = super::status(value);
                    }
                    self.matched = Some(0);
                    self.value_len = 0;
                }
                (b'\r', _) | (_, None) => {}
                (b, Some(m)) if m < GRPC_STATUS.len() => {
                    self.matched = (b.to_ascii_lowercase() == GRPC_STATUS[m]).then_some(m + 1);
                }
                (b, Some(_)) => {
                    if let Some(slot) = self.value.get_mut(self.value_len) {
                        *slot = b;
                    }
                    self.value_len += 1;
                }
            }
        }
    }

    /// The last `grpc-status` line's code (`None`: none, or not a code).
    pub fn status(&self) -> Option<u8> {
        self.status
    }
}

/// What a gRPC exchange's bodies showed, for the request's accounting.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// Messages from the client and to it.
    pub messages: [u64; 2],
    /// The `grpc-status` of the response trailers.
    pub trailer_status: Option<u8>,
}
