//! Global rate limits: ASM's `ASMGlobalRateLimiter` configs as the fixed windows of
//! envoyproxy/ratelimit, counted in Redis by every instance together. A limit names the
//! Redis key of each window as that service's `CacheKeyGenerator` does (`domain_` then each
//! descriptor entry's `key_value_`, then the window's start in Unix seconds), so Strait
//! instances, and a ratelimit service beside them, share one count.

use std::time::Duration;

use super::super::matcher::{MatchBlock, RequestInfo};

/// Index into [`crate::snapshot::Snapshot::global_rate_limits`].
pub type GlobalLimitId = u32;

/// Which of a limit's windows counts a request.
pub type WindowIndex = u16;

/// One window: its key's prefix and the requests it admits per `unit_s`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// `domain_generic_key_VALUE_`, (an override's) `header_match_VALUE_`.
    pub prefix: Box<str>,
    pub quota: u32,
    /// envoyproxy/ratelimit's `UnitToDivider`: 1, 60, 3600, 86400.
    pub unit_s: u64,
}

impl Window {
    /// Writes into `out` the Redis key of the window `now_s` (Unix seconds) falls in.
    pub fn write_key(&self, now_s: u64, out: &mut Vec<u8>) {
        let mut start = itoa::Buffer::new();
        out.extend_from_slice(self.prefix.as_bytes());
        out.extend_from_slice(start.format(now_s / self.unit_s * self.unit_s).as_bytes());
    }
}

/// One `ASMGlobalRateLimiter` config as one route (or one virtual host's routes) applies it.
#[derive(Debug)]
pub struct GlobalRateLimit {
    /// Where it came from and what it applies to, for the admin's dumps.
    pub key: Box<str>,
    /// `match.vhost.route.header_match`: only requests of the route that match are counted.
    pub route: MatchBlock,
    pub window: Window,
    /// `limit_overrides`: the first a request matches is its window instead.
    pub overrides: Box<[(MatchBlock, Window)]>,
    /// `rateLimitService.timeout`, else Envoy's 20 ms.
    pub timeout: Duration,
}

impl GlobalRateLimit {
    /// Which window counts the request (see [`GlobalRateLimit::window`]), or none when the
    /// route's `header_match` fails.
    pub fn pick(&self, req: &RequestInfo<'_>) -> Option<WindowIndex> {
        if !self.route.matches(req) {
            return None;
        }
        let o = self.overrides.iter().position(|(m, _)| m.matches(req));
        Some(o.map_or(0, |o| o as WindowIndex + 1))
    }

    /// 0: the config's window; `j + 1`: override `j`'s.
    pub fn window(&self, at: WindowIndex) -> &Window {
        match at {
            0 => &self.window,
            o => self.overrides.get(usize::from(o) - 1).map_or(&self.window, |(_, w)| w),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Window {
        fn key(&self, now_s: u64) -> String {
            let mut out = Vec::new();
            self.write_key(now_s, &mut out);
            String::from_utf8(out).unwrap()
        }
    }

    #[test]
    fn keys_are_envoyproxy_ratelimits_fixed_windows() {
        let w = Window { prefix: "ratelimit.default.svc.cluster.local_generic_key_v_".into(), quota: 1, unit_s: 60 };
        assert_eq!(w.key(1_700_000_059), "ratelimit.default.svc.cluster.local_generic_key_v_1700000040");
        assert_eq!(w.key(1_700_000_040), w.key(1_700_000_099));
        assert_ne!(w.key(1_700_000_099), w.key(1_700_000_100));
        let day = Window { unit_s: 86_400, ..w };
        assert_eq!(day.key(86_400 * 3 + 5), "ratelimit.default.svc.cluster.local_generic_key_v_259200");
    }
}
