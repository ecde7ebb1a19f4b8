//! A rate limit descriptor as Envoy's route `rate_limits` actions write one
//! (`envoy.extensions.common.ratelimit.v3.RateLimitDescriptor`): its entries, each a key and a
//! value, in the order the actions produced them. The local rate limit matches them against
//! its `descriptors`; the rate limit service is sent them.

/// One descriptor of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RateLimitDescriptor {
    pub entries: Vec<(String, String)>,
}

impl RateLimitDescriptor {
    /// Whether the entries are exactly `entries` (Envoy's local rate limit finds a request's
    /// descriptor among its own by equality of the whole entry list).
    pub fn is(&self, entries: &[(Box<str>, Box<str>)]) -> bool {
        self.entries.len() == entries.len()
            && self.entries.iter().zip(entries).all(|((k, v), (ek, ev))| k == &**ek && v == &**ev)
    }
}
