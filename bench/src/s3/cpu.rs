//! CPU time used while something ran: the whole machine's (from /proc/stat, so other work on
//! the machine counts too), the S3 server's, and the client's: the process doing the work with
//! the children it has waited for (the worker with its pg_dump or `cat`; the benchmark with its
//! `aws s3 cp`). On two cores, a server that needs a core of its own slows everything else
//! down; and CPU seconds vary less than wall time on a machine shared with other work.

use std::fs;

use super::seaweed::Seaweed;

/// Linux reports both files in USER_HZ ticks, 100 a second on every architecture it runs on.
const TICKS_PER_SEC: f64 = 100.0;

/// CPU seconds used between [`CpuMeter::start`] and [`CpuMeter::stop`].
#[derive(Clone, Copy, Default)]
pub(crate) struct CpuUse {
    pub(crate) machine: f64,
    pub(crate) server: f64,
    pub(crate) client: f64,
}

pub(crate) struct CpuMeter {
    server_pids: Vec<u32>,
    client_pid: u32,
    at_start: CpuUse,
}

impl CpuMeter {
    /// `client_pid`: the process whose time, with its waited-for children's, is the client's.
    pub(crate) fn start(server: &Seaweed, client_pid: u32) -> CpuMeter {
        let mut meter = CpuMeter {
            server_pids: server.pids(),
            client_pid,
            at_start: CpuUse::default(),
        };
        meter.at_start = meter.now();
        meter
    }

    pub(crate) fn stop(self) -> CpuUse {
        let now = self.now();
        CpuUse {
            machine: now.machine - self.at_start.machine,
            server: now.server - self.at_start.server,
            client: now.client - self.at_start.client,
        }
    }

    fn now(&self) -> CpuUse {
        let stat = |pid: u32| fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        CpuUse {
            machine: busy_secs(&fs::read_to_string("/proc/stat").unwrap_or_default()),
            server: self
                .server_pids
                .iter()
                .map(|p| process_secs(&stat(*p), false))
                .sum(),
            client: process_secs(&stat(self.client_pid), true),
        }
    }
}

/// From the `cpu` line of /proc/stat: user nice system idle iowait irq softirq steal ... (guest
/// time is inside user).
fn busy_secs(proc_stat: &str) -> f64 {
    let ticks: Vec<f64> = proc_stat
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("cpu "))
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let busy: f64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| ticks.get(i))
        .sum();
    busy / TICKS_PER_SEC
}

/// From /proc/<pid>/stat: fields 14 and 15, utime and stime, and with `children` 16 and 17,
/// those of the children waited for.
fn process_secs(stat: &str, children: bool) -> f64 {
    // The command name, in parentheses, may contain spaces and parentheses: count fields
    // after the last ") ".
    let Some((_, rest)) = stat.rsplit_once(") ") else {
        return 0.0;
    };
    // `rest` starts at field 3, the state.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let wanted: &[usize] = if children {
        &[11, 12, 13, 14]
    } else {
        &[11, 12]
    };
    let ticks: f64 = wanted
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<f64>().ok())
        .sum();
    ticks / TICKS_PER_SEC
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_busy_time_leaves_out_idle_and_iowait() {
        let stat = "cpu  100 20 30 5000 700 4 6 40 0 0\ncpu0 50 10 15 2500 350 2 3 20 0 0\n";
        assert_eq!(busy_secs(stat), 2.0);
        assert_eq!(busy_secs(""), 0.0);
    }

    #[test]
    fn process_time_is_counted_after_the_command_name() {
        let stat = "4242 (weed (mini) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    250 75 3 4 20 0 12 0 900 1000000 2000 18446744073709551615";
        assert_eq!(process_secs(stat, false), 3.25);
        assert_eq!(process_secs(stat, true), 3.32);
        assert_eq!(process_secs("", true), 0.0);
    }
}
