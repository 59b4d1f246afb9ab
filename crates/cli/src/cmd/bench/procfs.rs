//! What the bench reads about a server process from /proc: its resident set and its CPU time.

use std::time::Instant;

/// Clock ticks per second of the CPU times in /proc/PID/stat (`USER_HZ`): 100 in the
/// user-space ABI of every architecture Linux runs the bench on, whatever the kernel's own HZ.
const USER_HZ: f64 = 100.0;

/// The resident set size of process `pid` in MiB, read from /proc/PID/status.
pub fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_rss_kib(&status).map(|kib| kib as f64 / 1024.0)
}

/// The CPU time process `pid` has used so far (user plus system, all its threads), seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_ticks(&stat).map(|ticks| ticks as f64 / USER_HZ)
}

/// A window over which a process's CPU use is measured.
#[derive(Debug, Clone, Copy)]
pub struct CpuWindow {
    pid: u32,
    started: Instant,
    cpu_at_start: f64,
}

impl CpuWindow {
    /// Start measuring process `pid` now; `None` when /proc cannot be read.
    pub fn start(pid: u32) -> Option<Self> {
        Some(Self {
            pid,
            started: Instant::now(),
            cpu_at_start: cpu_seconds(pid)?,
        })
    }

    /// The CPU used since the start, as a percentage of one core, and the window's length in
    /// seconds.
    pub fn percent_of_one_core(&self) -> Option<(f64, f64)> {
        let used = cpu_seconds(self.pid)? - self.cpu_at_start;
        let elapsed = self.started.elapsed().as_secs_f64().max(f64::EPSILON);
        Some((used * 100.0 / elapsed, elapsed))
    }
}

/// The `VmRSS` line of a /proc status file, in KiB.
fn parse_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `utime + stime` (fields 14 and 15) of a /proc/PID/stat line, in clock ticks. The command
/// name (field 2) may hold spaces and parentheses, so fields are counted after its last ')'.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // After the name come field 3 (state) onwards: utime is field 14, the 12th here.
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_is_read_from_the_status_line_in_kib() {
        let status = "Name:\tspillway\nVmPeak:\t  99 kB\nVmRSS:\t   20480 kB\nThreads:\t4\n";
        assert_eq!(parse_rss_kib(status), Some(20480));
        assert_eq!(parse_rss_kib("Name:\tx\n"), None);
    }

    #[test]
    fn cpu_ticks_are_user_plus_system_counted_after_the_name() {
        let stat = "4242 (spill way (x)) S 1 4242 4242 0 -1 4194560 500 0 0 0 \
                    700 55 0 0 20 0 9 0 123 456 789";
        assert_eq!(parse_cpu_ticks(stat), Some(755));
        assert_eq!(parse_cpu_ticks("4242 (x) S 1"), None);
    }

    #[test]
    fn this_process_has_a_resident_set_and_cpu_time() {
        let me = std::process::id();
        assert!(rss_mib(me).is_some_and(|mib| mib > 0.0));
        assert!(cpu_seconds(me).is_some());
    }
}
