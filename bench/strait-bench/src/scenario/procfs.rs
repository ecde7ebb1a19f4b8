//! What the kernel says a process tree used: CPU time from `/proc/PID/stat`, memory from
//! `/proc/PID/smaps_rollup`. A proxy is its process and every descendant (nginx's and
//! HAProxy's workers), so both are summed over the tree.

use std::collections::HashMap;
use std::fs;

/// The fields of `/proc/PID/stat` we use, times in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub ppid: u32,
    /// User and system time of every thread, exited ones included.
    pub utime: u64,
    pub stime: u64,
    /// The same for children that exited and were waited for.
    pub cutime: u64,
    pub cstime: u64,
}

impl Stat {
    fn ticks(&self) -> u64 {
        self.utime + self.stime + self.cutime + self.cstime
    }
}

/// Parses `/proc/PID/stat`. The command name (field 2) may hold spaces and parentheses, so
/// fields are counted from the last `)`.
pub fn parse_stat(s: &str) -> Option<Stat> {
    let rest = s.get(s.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    // `fields[0]` is field 3 (the state), so field N is `fields[N - 3]`.
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        ppid: u32::try_from(field(4)?).ok()?,
        utime: field(14)?,
        stime: field(15)?,
        cutime: field(16)?,
        cstime: field(17)?,
    })
}

fn stat(pid: u32) -> Option<Stat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// `root` and all its descendants now, root first.
pub fn tree(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if let Some(s) = stat(pid) {
            children.entry(s.ppid).or_default().push(pid);
        }
    }
    let mut pids = vec![root];
    let mut next = 0;
    while let Some(&pid) = pids.get(next) {
        pids.extend(children.get(&pid).into_iter().flatten());
        next += 1;
    }
    pids
}

/// CPU time, in seconds, that `pids` have used (processes that are gone count nothing).
pub fn cpu_seconds(pids: &[u32]) -> f64 {
    let ticks: u64 = pids.iter().filter_map(|p| stat(*p)).map(|s| s.ticks()).sum();
    ticks as f64 / clock_ticks_per_second()
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant of the system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}

/// Resident memory in KiB: RSS counts a page shared by several processes in each of them,
/// PSS divides it among them, so PSS is what a tree of processes costs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    pub rss_kib: u64,
    pub pss_kib: u64,
}

impl Memory {
    pub fn max(self, other: Memory) -> Memory {
        Memory { rss_kib: self.rss_kib.max(other.rss_kib), pss_kib: self.pss_kib.max(other.pss_kib) }
    }
}

/// The `Rss:` and `Pss:` lines of `/proc/PID/smaps_rollup`.
pub fn parse_rollup(s: &str) -> Option<Memory> {
    let kib = |name: &str| {
        s.lines().find_map(|l| l.strip_prefix(name)?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
    };
    Some(Memory { rss_kib: kib("Rss:")?, pss_kib: kib("Pss:")? })
}

/// The memory of `pids` summed. Kernels without smaps_rollup (before 4.14) give VmRSS for both.
pub fn memory(pids: &[u32]) -> Memory {
    let one = |pid: u32| {
        if let Some(m) = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok().as_deref().and_then(parse_rollup)
        {
            return m;
        }
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let rss = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?.trim().parse().ok())
            .unwrap_or(0);
        Memory { rss_kib: rss, pss_kib: rss }
    };
    pids.iter()
        .map(|p| one(*p))
        .fold(Memory::default(), |a, m| Memory { rss_kib: a.rss_kib + m.rss_kib, pss_kib: a.pss_kib + m.pss_kib })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_an_awkward_name() {
        let line = "4242 (a) b (c) R 17 4242 4242 0 -1 4194560 120 0 0 0 731 95 12 3 20 0 3 0 991 \
                    1234567 890 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";
        assert_eq!(parse_stat(line), Some(Stat { ppid: 17, utime: 731, stime: 95, cutime: 12, cstime: 3 }));
        assert_eq!(parse_stat("4242 (cut"), None);
    }

    #[test]
    fn this_process() {
        let me = std::process::id();
        let now = stat(me).expect("our own stat reads");
        assert_eq!(now.ppid, std::os::unix::process::parent_id());
        assert_eq!(tree(me)[0], me);
        let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        assert!(tree(me).contains(&child.id()));
        child.kill().unwrap();
        child.wait().unwrap();
        let m = memory(&[me]);
        assert!(m.rss_kib > 0 && m.pss_kib > 0 && m.pss_kib <= m.rss_kib, "{m:?}");
        assert!(cpu_seconds(&[me]) >= 0.0);
    }

    #[test]
    fn rollup() {
        let text = "55d0-7ffd ---p 00000000 00:00 0   [rollup]\nRss:               11520 kB\n\
                    Pss:                5213 kB\nPss_Anon:           2040 kB\n";
        assert_eq!(parse_rollup(text), Some(Memory { rss_kib: 11520, pss_kib: 5213 }));
        assert_eq!(parse_rollup("Rss: 1 kB\n"), None);
    }
}
