//! Latency percentiles of one run and the median over repeated runs.

use std::time::Duration;

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
        Point {
            rps: self.completed as f64 / secs,
            p50_us: percentile(&self.latencies, 50.0) as f64 / 1e3,
            p99_us: percentile(&self.latencies, 99.0) as f64 / 1e3,
            max_us: self.latencies.last().copied().unwrap_or(0) as f64 / 1e3,
            requests: self.completed,
            errors: self.errors,
            wrong: self.wrong,
            samples: self.samples,
        }
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
    }
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
    }
}
