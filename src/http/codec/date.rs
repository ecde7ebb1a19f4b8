//! The `date` header value (IMF-fixdate, RFC 9110 §5.6.7), formatted at most once per
//! second per core.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

/// Length of an IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
pub const HTTP_DATE_LEN: usize = 29;

thread_local! {
    /// One formatted `date` per second per worker.
    static DATE: RefCell<DateCache> = RefCell::new(DateCache::default());
}

/// Calls `f` with the current `date` value, formatted at most once a second on this thread.
pub fn with_date<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    DATE.with(|d| f(d.borrow_mut().now()))
}

/// Per-core cache of the formatted date. `now()` costs one clock read and, once a second,
/// 29 bytes of formatting; never an allocation.
#[derive(Debug, Clone)]
pub struct DateCache {
    secs: u64,
    buf: [u8; HTTP_DATE_LEN],
}

impl Default for DateCache {
    fn default() -> Self {
        Self::new()
    }
}

impl DateCache {
    pub fn new() -> Self {
        let mut c = DateCache { secs: 0, buf: [0; HTTP_DATE_LEN] };
        format_http_date(0, &mut c.buf);
        c
    }

    /// The current date, from the system clock.
    pub fn now(&mut self) -> &[u8] {
        let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        self.at(secs)
    }

    /// The date for `unix_secs` (for callers that already hold a coarse clock).
    pub fn at(&mut self, unix_secs: u64) -> &[u8] {
        if unix_secs != self.secs {
            self.secs = unix_secs;
            format_http_date(unix_secs, &mut self.buf);
        }
        &self.buf
    }
}

/// Formats `unix_secs` as an IMF-fixdate into `out`.
pub fn format_http_date(unix_secs: u64, out: &mut [u8; HTTP_DATE_LEN]) {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] =
        [b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"];
    let days = unix_secs / 86_400;
    let rem = unix_secs % 86_400;
    let (h, m, s) = (rem / 3600, (rem / 60) % 60, rem % 60);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm), in u64 since the
    // epoch never goes negative here.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);

    let d2 = |v: u64| [b'0' + (v / 10 % 10) as u8, b'0' + (v % 10) as u8];
    out[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    out[3..5].copy_from_slice(b", ");
    out[5..7].copy_from_slice(&d2(day));
    out[7] = b' ';
    out[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    out[11] = b' ';
    let y = year % 10_000;
    out[12..14].copy_from_slice(&d2(y / 100));
    out[14..16].copy_from_slice(&d2(y));
    out[16] = b' ';
    out[17..19].copy_from_slice(&d2(h));
    out[19] = b':';
    out[20..22].copy_from_slice(&d2(m));
    out[22] = b':';
    out[23..25].copy_from_slice(&d2(s));
    out[25..].copy_from_slice(b" GMT");
}
