//! Latency percentiles of one run and the median over repeated runs.

use std::time::Duration;

use crate::cost::Cost;

/// What one run of a workload measured.
#[derive(Debug, Default, Clone)]
pub struct Run {
    /// Requests answered correctly before the deadline.
    pub completed: u64,
    pub errors: u64,
    /// Responses delivered to a session they do not belong to (must stay 0).
    pub wrong: u64,
    /// Latency of each completed request, in nanoseconds.
    pub latencies: Vec<u64>,
    pub window: Duration,
    /// The first few error messages, for the report.
    pub samples: Vec<String>,
    /// What the target's process tree used over the window, when metered.
    pub cost: Option<Cost>,
}

impl Run {
    pub fn merge(&mut self, other: Run) {
        self.completed += other.completed;
        self.errors += other.errors;
        self.wrong += other.wrong;
        self.latencies.extend(other.latencies);
        for s in other.samples {
            if self.samples.len() < 3 {
                self.samples.push(s);
            }
        }
    }

    pub fn error(&mut self, msg: impl Into<String>) {
        self.errors += 1;
        if self.samples.len() < 3 {
            self.samples.push(msg.into());
        }
    }

    pub fn point(mut self) -> Point {
        self.latencies.sort_unstable();
        let secs = self.window.as_secs_f64().max(1e-9);
        let cost = self.cost.as_ref().and_then(|c| PerRequest::of(c, self.completed));
        Point {
            rps: self.completed as f64 / secs,
            p50_us: percentile(&self.latencies, 50.0) as f64 / 1e3,
            p99_us: percentile(&self.latencies, 99.0) as f64 / 1e3,
            max_us: self.latencies.last().copied().unwrap_or(0) as f64 / 1e3,
            requests: self.completed,
            errors: self.errors,
            wrong: self.wrong,
            samples: self.samples,
            cost,
        }
    }
}

/// A metered run's costs per answered request.
#[derive(Debug, Default, Clone)]
pub struct PerRequest {
    /// CPU µs (user + system, whole process tree) per request.
    pub cpu_us: f64,
    /// The tree's CPU over the window's wall time, in % of one core.
    pub cpu_pct: f64,
    pub voluntary: f64,
    pub involuntary: f64,
    /// read + write syscalls (/proc/PID/io syscr + syscw).
    pub rw_syscalls: f64,
    /// Every syscall (perf stat), when perf ran and counted.
    pub syscalls: Option<f64>,
    /// Processes in the tree at the window's end (the fewest over repeats).
    pub processes: usize,
    /// Why perf gave no count, when it was asked and failed.
    pub perf_error: Option<String>,
}

impl PerRequest {
    fn of(c: &Cost, completed: u64) -> Option<PerRequest> {
        if completed == 0 {
            return None;
        }
        let n = completed as f64;
        let wall = c.wall.as_secs_f64();
        let (syscalls, perf_error) = match &c.perf {
            // perf counts over its own window (inside the run's): scale by the run's rate.
            Some(Ok((count, w))) => (Some(*count as f64 / (n / wall.max(1e-9) * w.as_secs_f64()).max(1e-9)), None),
            Some(Err(e)) => (None, Some(e.clone())),
            None => (None, None),
        };
        Some(PerRequest {
            cpu_us: c.cpu.as_secs_f64() * 1e6 / n,
            cpu_pct: if wall > 0.0 { c.cpu.as_secs_f64() / wall * 100.0 } else { 0.0 },
            voluntary: c.voluntary as f64 / n,
            involuntary: c.involuntary as f64 / n,
            rw_syscalls: c.rw_syscalls as f64 / n,
            syscalls,
            processes: c.processes,
            perf_error,
        })
    }
}

/// The summary of one run, or (from [`median`]) of repeated runs.
#[derive(Debug, Default, Clone)]
pub struct Point {
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub requests: u64,
    pub errors: u64,
    pub wrong: u64,
    pub samples: Vec<String>,
    pub cost: Option<PerRequest>,
}

/// Nearest-rank percentile of sorted values; 0 when empty.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn median_of(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Median of each rate and latency over repeats; errors and wrong deliveries are summed, so a
/// single bad repeat still shows.
pub fn median(points: &[Point]) -> Point {
    let m = |f: fn(&Point) -> f64| median_of(points.iter().map(f).collect());
    Point {
        rps: m(|p| p.rps),
        p50_us: m(|p| p.p50_us),
        p99_us: m(|p| p.p99_us),
        max_us: m(|p| p.max_us),
        requests: points.iter().map(|p| p.requests).sum(),
        errors: points.iter().map(|p| p.errors).sum(),
        wrong: points.iter().map(|p| p.wrong).sum(),
        samples: points.iter().flat_map(|p| p.samples.iter().cloned()).take(3).collect(),
        cost: median_cost(points),
    }
}

/// Each cost figure's median over the repeats that were metered.
fn median_cost(points: &[Point]) -> Option<PerRequest> {
    let costs: Vec<&PerRequest> = points.iter().filter_map(|p| p.cost.as_ref()).collect();
    if costs.is_empty() {
        return None;
    }
    let m = |f: fn(&PerRequest) -> f64| median_of(costs.iter().map(|c| f(c)).collect());
    let sys: Vec<f64> = costs.iter().filter_map(|c| c.syscalls).collect();
    Some(PerRequest {
        cpu_us: m(|c| c.cpu_us),
        cpu_pct: m(|c| c.cpu_pct),
        voluntary: m(|c| c.voluntary),
        involuntary: m(|c| c.involuntary),
        rw_syscalls: m(|c| c.rw_syscalls),
        syscalls: (!sys.is_empty()).then(|| median_of(sys)),
        processes: costs.iter().map(|c| c.processes).min().unwrap_or(0),
        perf_error: costs.iter().find_map(|c| c.perf_error.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
    }

    #[test]
    fn median_over_repeats_sums_errors() {
        let p = |rps, wrong| Point { rps, wrong, ..Point::default() };
        let m = median(&[p(10.0, 0), p(30.0, 2), p(20.0, 0)]);
        assert_eq!(m.rps, 20.0);
        assert_eq!(m.wrong, 2);
        assert_eq!(median(&[p(10.0, 0), p(20.0, 0)]).rps, 15.0);
        assert!(m.cost.is_none(), "no repeat metered");
    }

    #[test]
    fn cost_per_request_and_its_median() {
        let run = |cpu_ms: u64, completed: u64| Run {
            completed,
            window: Duration::from_secs(1),
            cost: Some(Cost {
                cpu: Duration::from_millis(cpu_ms),
                wall: Duration::from_secs(1),
                voluntary: completed * 2,
                involuntary: completed / 2,
                rw_syscalls: completed * 4,
                processes: 3,
                perf: Some(Ok((completed * 8, Duration::from_millis(500)))),
            }),
            ..Run::default()
        };
        let a = run(500, 10_000).point();
        let c = a.cost.clone().unwrap();
        assert!((c.cpu_us - 50.0).abs() < 1e-9, "{c:?}");
        assert!((c.cpu_pct - 50.0).abs() < 1e-9);
        assert_eq!((c.voluntary, c.involuntary, c.rw_syscalls), (2.0, 0.5, 4.0));
        // 80,000 syscalls over half the window, at 10,000 req/s: 16 per request.
        assert!((c.syscalls.unwrap() - 16.0).abs() < 1e-9, "{c:?}");
        let m = median(&[a, run(300, 10_000).point(), run(900, 10_000).point()]);
        assert!((m.cost.unwrap().cpu_us - 50.0).abs() < 1e-9, "median of 30, 50, 90");
        assert!(run(1, 0).point().cost.is_none(), "nothing answered: no per-request cost");
    }
}
