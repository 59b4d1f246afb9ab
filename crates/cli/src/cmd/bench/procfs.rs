//! What the bench reads about a server process from /proc: its resident set.

/// The resident set size of process `pid` in MiB, read from /proc/PID/status.
pub fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_rss_kib(&status).map(|kib| kib as f64 / 1024.0)
}

/// The `VmRSS` line of a /proc status file, in KiB.
fn parse_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
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
    fn this_process_has_a_resident_set() {
        let me = std::process::id();
        assert!(rss_mib(me).is_some_and(|mib| mib > 0.0));
    }
}
