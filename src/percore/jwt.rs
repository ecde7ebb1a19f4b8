//! This core's JWT state: the tokens it verified, so that a repeated token costs a lookup and a
//! clock read rather than a signature check, and its asks to the control thread for a key set
//! again when a token names a key it does not have.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustc_hash::FxHashMap;
use serde_json::{Map, Value};

use crate::publish::ControlEvent;

/// Tokens kept per provider on each core: Envoy's jwt_authn default `jwt_cache_size`.
pub const CACHE_SIZE: usize = 100;

/// The least time between two asks of one core for one key set: an unknown `kid` repeated by
/// every request costs one message a second, and the control thread bounds the fetches.
pub const ASK_INTERVAL: Duration = Duration::from_secs(1);

/// A verified token: the request's identity, and what it adds to the upstream request.
#[derive(Debug)]
pub struct Verified {
    /// The payload, as AuthorizationPolicy's `request.auth.*` read it.
    pub claims: Map<String, Value>,
    /// `exp` and `nbf` (seconds since the epoch), checked again on every use of the token.
    pub exp: Option<u64>,
    pub nbf: Option<u64>,
    /// `outputPayloadToHeader` and `outputClaimToHeaders` lines: (lower-case name, value).
    pub lines: Box<[(Box<str>, Box<str>)]>,
}

struct Cache {
    /// The snapshot generation the tokens were verified under: a new one may carry other
    /// providers or keys, so the cache starts again.
    generation: u64,
    /// Per provider index: token → what it verified to.
    tokens: Vec<FxHashMap<Box<str>, Rc<Verified>>>,
}

pub struct JwtCore {
    cache: RefCell<Cache>,
    /// Where asks for a key set go (the control thread); `None` in tests that run no control.
    asks: Option<Sender<ControlEvent>>,
    asked: RefCell<FxHashMap<Arc<str>, Instant>>,
    /// Seconds since the epoch (the system clock; another in tests).
    clock: fn() -> u64,
}

fn system_clock() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl JwtCore {
    pub fn new(asks: Option<Sender<ControlEvent>>) -> Self {
        Self::with_clock(asks, system_clock)
    }

    pub fn with_clock(asks: Option<Sender<ControlEvent>>, clock: fn() -> u64) -> Self {
        let cache = Cache { generation: 0, tokens: Vec::new() };
        JwtCore { cache: RefCell::new(cache), asks, asked: RefCell::default(), clock }
    }

    /// Seconds since the epoch, what `exp` and `nbf` are compared with.
    pub fn now(&self) -> u64 {
        (self.clock)()
    }

    /// What `token` verified to for `provider` under `generation`, if this core verified it.
    pub fn lookup(&self, generation: u64, provider: usize, token: &str) -> Option<Rc<Verified>> {
        let cache = self.cache.borrow();
        if cache.generation != generation {
            return None;
        }
        cache.tokens.get(provider)?.get(token).cloned()
    }

    /// Keeps a verified token; when the provider's share is full, one other token leaves.
    pub fn insert(&self, generation: u64, provider: usize, token: &str, verified: Rc<Verified>) {
        let mut cache = self.cache.borrow_mut();
        if cache.generation != generation {
            cache.generation = generation;
            cache.tokens.clear();
        }
        if cache.tokens.len() <= provider {
            cache.tokens.resize_with(provider + 1, FxHashMap::default);
        }
        let tokens = &mut cache.tokens[provider];
        if tokens.len() >= CACHE_SIZE {
            if let Some(evicted) = tokens.keys().next().cloned() {
                tokens.remove(&evicted);
            }
        }
        tokens.insert(token.into(), verified);
    }

    /// Asks the control thread to fetch `uri` again, at most once per [`ASK_INTERVAL`] from
    /// this core.
    pub fn ask_keys(&self, uri: &Arc<str>) {
        let Some(asks) = &self.asks else { return };
        let now = Instant::now();
        let mut asked = self.asked.borrow_mut();
        if asked.get(uri).is_some_and(|at| now.duration_since(*at) < ASK_INTERVAL) {
            return;
        }
        asked.insert(uri.clone(), now);
        let _ = asks.send(ControlEvent::JwksRefetch(uri.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified() -> Rc<Verified> {
        Rc::new(Verified { claims: Map::new(), exp: None, nbf: None, lines: Box::default() })
    }

    #[test]
    fn tokens_are_kept_per_provider_bounded_and_dropped_with_their_generation() {
        let core = JwtCore::new(None);
        core.insert(1, 0, "a", verified());
        assert!(core.lookup(1, 0, "a").is_some());
        assert!(core.lookup(1, 1, "a").is_none(), "another provider's token");
        assert!(core.lookup(2, 0, "a").is_none(), "another generation");
        for i in 0..CACHE_SIZE * 2 {
            core.insert(1, 0, &format!("t{i}"), verified());
        }
        assert_eq!(core.cache.borrow().tokens[0].len(), CACHE_SIZE);
        core.insert(2, 0, "b", verified());
        assert!(core.lookup(2, 0, "b").is_some());
        assert!(core.lookup(2, 0, "t1").is_none() && core.lookup(1, 0, "b").is_none());
    }

    #[test]
    fn a_core_asks_for_a_key_set_at_most_once_a_second() {
        let (tx, rx) = std::sync::mpsc::channel();
        let core = JwtCore::new(Some(tx));
        let uri: Arc<str> = Arc::from("http://keys");
        core.ask_keys(&uri);
        core.ask_keys(&uri);
        core.ask_keys(&Arc::from("http://other"));
        let got: Vec<String> = rx
            .try_iter()
            .map(|e| match e {
                ControlEvent::JwksRefetch(u) => u.to_string(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(got, ["http://keys", "http://other"]);
    }
}
