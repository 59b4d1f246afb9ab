//! Synthetic and traced workloads: when tasks arrive and how long each runs.
//!
//! Sampling is seeded, so a run is reproducible: the same specs and seed give the same tasks.

use std::str::FromStr;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use spillway_core::{Error, Result};

/// Microseconds per second: simulated time is kept in whole microseconds so that runs are exact.
pub const MICROS: f64 = 1_000_000.0;

/// When tasks arrive.
#[derive(Debug, Clone, PartialEq)]
pub enum Arrivals {
    /// `batch:N`: N tasks at time 0.
    Batch(u64),
    /// `poisson:RATE:N`: N tasks, arriving at RATE per second on average.
    Poisson {
        /// Mean arrivals per second.
        rate: f64,
        /// Number of tasks.
        count: u64,
    },
    /// Arrival times in seconds from the start, one per task (from a trace file).
    Trace(Vec<f64>),
}

/// How long tasks run.
#[derive(Debug, Clone, PartialEq)]
pub enum Durations {
    /// `fixed:1s`: every task runs this long.
    Fixed(Duration),
    /// `lognormal:MEAN:SIGMA`: log-normal with this mean and shape σ (the σ of its logarithm).
    LogNormal {
        /// Mean run time.
        mean: Duration,
        /// σ of the underlying normal; 0 is the fixed duration, 1 is a long tail.
        sigma: f64,
    },
    /// Run times in seconds, used in order and repeated when there are more tasks.
    Trace(Vec<f64>),
}

fn spec_error(what: &str, value: &str, forms: &str) -> Error {
    Error::invalid(format!("invalid {what} {value:?}: use {forms}"))
}

const ARRIVAL_FORMS: &str = "batch:N, poisson:RATE_PER_SECOND:N or trace:FILE";
const DURATION_FORMS: &str = "fixed:DURATION, lognormal:MEAN:SIGMA or trace:FILE";

impl FromStr for Arrivals {
    type Err = Error;

    /// Parse `batch:N` or `poisson:RATE:N`; `trace:FILE` is read by the caller (IO).
    fn from_str(value: &str) -> Result<Self> {
        let bad = || spec_error("arrivals", value, ARRIVAL_FORMS);
        let parts: Vec<&str> = value.split(':').collect();
        match parts[..] {
            ["batch", n] => Ok(Arrivals::Batch(n.parse().map_err(|_| bad())?)),
            ["poisson", rate, n] => {
                let rate: f64 = rate.parse().map_err(|_| bad())?;
                if !(rate.is_finite() && rate > 0.0) {
                    return Err(bad());
                }
                Ok(Arrivals::Poisson {
                    rate,
                    count: n.parse().map_err(|_| bad())?,
                })
            }
            _ => Err(bad()),
        }
    }
}

impl FromStr for Durations {
    type Err = Error;

    /// Parse `fixed:1s` or `lognormal:2s:0.8`; `trace:FILE` is read by the caller (IO).
    fn from_str(value: &str) -> Result<Self> {
        let bad = || spec_error("durations", value, DURATION_FORMS);
        let parts: Vec<&str> = value.split(':').collect();
        let duration = |text: &str| humantime::parse_duration(text).map_err(|_| bad());
        match parts[..] {
            ["fixed", d] => Ok(Durations::Fixed(duration(d)?)),
            ["lognormal", mean, sigma] => {
                let sigma: f64 = sigma.parse().map_err(|_| bad())?;
                if !(sigma.is_finite() && (0.0..=5.0).contains(&sigma)) {
                    return Err(bad());
                }
                Ok(Durations::LogNormal {
                    mean: duration(mean)?,
                    sigma,
                })
            }
            _ => Err(bad()),
        }
    }
}

/// Parse a trace: one number of seconds per line; blank lines and `#` comments are skipped.
pub fn parse_trace(what: &str, text: &str) -> Result<Vec<f64>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let value: f64 = line
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "{what} trace line {}: {line:?} is not a number of seconds of at least 0",
                    n + 1
                ))
            })?;
        out.push(value);
    }
    if out.is_empty() {
        return Err(Error::invalid(format!(
            "{what} trace is empty: give one number of seconds per line"
        )));
    }
    Ok(out)
}

/// The tasks of one run, sampled once and shared by every policy compared.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Arrival time of each task in microseconds, ascending.
    pub arrivals: Vec<u64>,
    /// Run time of each task in microseconds (at least 1).
    pub durations: Vec<u64>,
    /// Whether each task belongs to a burstable job.
    pub burstable: Vec<bool>,
}

impl Workload {
    /// Sample a workload. `burstable_share` of the tasks (0 to 1) are burstable.
    pub fn generate(
        arrivals: &Arrivals,
        durations: &Durations,
        burstable_share: f64,
        seed: u64,
    ) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let times: Vec<u64> = match arrivals {
            Arrivals::Batch(n) => vec![0; *n as usize],
            Arrivals::Poisson { rate, count } => {
                let mut t = 0.0;
                (0..*count)
                    .map(|_| {
                        t += exponential(&mut rng, *rate);
                        (t * MICROS) as u64
                    })
                    .collect()
            }
            Arrivals::Trace(seconds) => {
                let mut t: Vec<u64> = seconds.iter().map(|s| (s * MICROS) as u64).collect();
                t.sort_unstable();
                t
            }
        };
        let n = times.len();
        let runs = (0..n)
            .map(|i| {
                let seconds = match durations {
                    Durations::Fixed(d) => d.as_secs_f64(),
                    Durations::LogNormal { mean, sigma } => {
                        // E[exp(N(μ, σ²))] = exp(μ + σ²/2), so μ = ln(mean) − σ²/2.
                        let mu = mean.as_secs_f64().max(1e-6).ln() - sigma * sigma / 2.0;
                        (mu + sigma * standard_normal(&mut rng)).exp()
                    }
                    Durations::Trace(seconds) => seconds[i % seconds.len()],
                };
                ((seconds * MICROS) as u64).max(1)
            })
            .collect();
        let share = burstable_share.clamp(0.0, 1.0);
        let burstable = (0..n).map(|_| rng.random_bool(share)).collect();
        Workload {
            arrivals: times,
            durations: runs,
            burstable,
        }
    }

    /// Number of tasks.
    pub fn len(&self) -> usize {
        self.arrivals.len()
    }

    /// Whether there are no tasks.
    pub fn is_empty(&self) -> bool {
        self.arrivals.is_empty()
    }
}

/// A sample of the exponential distribution with `rate` events per unit.
pub fn exponential(rng: &mut StdRng, rate: f64) -> f64 {
    // 1 − U lies in (0, 1], so the logarithm is finite.
    -(1.0 - rng.random::<f64>()).ln() / rate
}

/// A sample of the standard normal distribution (Box–Muller).
pub fn standard_normal(rng: &mut StdRng) -> f64 {
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_bad_ones_name_the_forms() {
        assert_eq!(
            "batch:10".parse::<Arrivals>().ok(),
            Some(Arrivals::Batch(10))
        );
        assert_eq!(
            "poisson:2.5:100".parse::<Arrivals>().ok(),
            Some(Arrivals::Poisson {
                rate: 2.5,
                count: 100
            })
        );
        assert_eq!(
            "lognormal:2s:0.5".parse::<Durations>().ok(),
            Some(Durations::LogNormal {
                mean: Duration::from_secs(2),
                sigma: 0.5
            })
        );
        for bad in ["batch", "poisson:0:10", "uniform:1"] {
            let err = bad.parse::<Arrivals>().expect_err(bad);
            assert!(err.message().contains("batch:N"), "{err}");
        }
        let err = "fixed:soon".parse::<Durations>().expect_err("bad duration");
        assert!(err.message().contains("fixed:DURATION"), "{err}");
    }

    #[test]
    fn traces_parse_and_refuse_garbage_with_the_line() {
        assert_eq!(
            parse_trace("arrival", "# t\n0\n\n1.5\n").ok(),
            Some(vec![0.0, 1.5])
        );
        let err = parse_trace("arrival", "0\nsoon\n").expect_err("garbage");
        assert!(err.message().contains("line 2"), "{err}");
    }

    #[test]
    fn sampling_is_seeded_and_has_the_asked_means() {
        let arrivals = Arrivals::Poisson {
            rate: 10.0,
            count: 20_000,
        };
        let durations = Durations::LogNormal {
            mean: Duration::from_secs(4),
            sigma: 0.8,
        };
        let a = Workload::generate(&arrivals, &durations, 0.5, 7);
        let b = Workload::generate(&arrivals, &durations, 0.5, 7);
        assert_eq!(a.arrivals, b.arrivals);
        assert_eq!(a.durations, b.durations);
        let span = *a.arrivals.last().unwrap_or(&0) as f64 / MICROS;
        assert!(
            (span - 2000.0).abs() < 100.0,
            "20000 at 10/s spans ~2000 s, got {span}"
        );
        let mean = a.durations.iter().sum::<u64>() as f64 / a.len() as f64 / MICROS;
        assert!((mean - 4.0).abs() < 0.2, "mean {mean}");
        let share = a.burstable.iter().filter(|b| **b).count() as f64 / a.len() as f64;
        assert!((share - 0.5).abs() < 0.02, "share {share}");
    }
}
