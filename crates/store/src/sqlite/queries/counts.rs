//! The task counters (`queue_counts`, migration 0004), kept by the writes that move tasks, and
//! each queue's mean run time (`queue_runtimes`), kept by completions.
//!
//! Each write that inserts, moves or deletes tasks collects its changes here and applies them
//! before it returns, in the same transaction: one upsert per (tenant, queue, state,
//! burstability) it touched, however many tasks. Triggers would keep them with no help from the
//! queries, but a trigger makes every statement that fires it open a statement journal inside
//! the writer's per-request savepoint: measured, the store's full cycle ran at a quarter of
//! its speed.

use rusqlite::{Connection, OptionalExtension, params};
use spillway_core::Result;
use spillway_core::state::TaskState;

use crate::sqlite::rows::db;

/// Counter changes of one write, by (tenant, queue, state, burstable). A write touches a few
/// of them, so a list searched in place: no allocation per task.
#[derive(Debug, Default)]
pub(crate) struct CountChanges(Vec<(String, String, TaskState, bool, i64)>);

impl CountChanges {
    /// `n` tasks of a queue entered `state` (negative: left it).
    pub(crate) fn add(
        &mut self,
        tenant: &str,
        queue: &str,
        state: TaskState,
        burstable: bool,
        n: i64,
    ) {
        if n == 0 {
            return;
        }
        let found = self
            .0
            .iter_mut()
            .find(|(t, q, s, b, _)| t == tenant && q == queue && *s == state && *b == burstable);
        match found {
            Some((.., count)) => *count += n,
            None => self
                .0
                .push((tenant.to_string(), queue.to_string(), state, burstable, n)),
        }
    }

    /// `n` tasks of a queue moved from one state to another.
    pub(crate) fn moved(
        &mut self,
        tenant: &str,
        queue: &str,
        from: TaskState,
        to: TaskState,
        burstable: bool,
        n: i64,
    ) {
        if from != to {
            self.add(tenant, queue, from, burstable, -n);
            self.add(tenant, queue, to, burstable, n);
        }
    }

    /// Write the changes to the counters.
    pub(crate) fn apply(self, conn: &Connection) -> Result<()> {
        let mut upsert = conn
            .prepare_cached(
                "INSERT INTO queue_counts (tenant, queue, state, burstable, n)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (tenant, queue, state, burstable) DO UPDATE SET n = n + excluded.n",
            )
            .map_err(db("prepare the task counter update"))?;
        for (tenant, queue, state, burstable, n) in self.0 {
            if n != 0 {
                upsert
                    .execute(params![tenant, queue, state.as_str(), burstable, n])
                    .map_err(db("update the task counters"))?;
            }
        }
        Ok(())
    }
}

/// Successes a queue's mean run time is taken over: a running mean of the first this many,
/// then an exponential moving average in which each new one weighs as one of this many.
pub(crate) const RUNTIME_WINDOW: u32 = crate::autoscale::MEAN_DURATION_SAMPLE;

/// The mean and sample count after `durations` (microseconds), in order, from `(mean, samples)`.
pub(crate) fn fold_runtime(mut mean: f64, mut samples: u32, durations: &[i64]) -> (f64, u32) {
    for &d in durations {
        samples = samples.saturating_add(1).min(RUNTIME_WINDOW);
        mean += (d as f64 - mean) / f64::from(samples);
    }
    (mean, samples)
}

/// Run times of successes of one write, by (tenant, queue), applied to `queue_runtimes`.
#[derive(Debug, Default)]
pub(crate) struct RuntimeChanges(Vec<(String, String, Vec<i64>)>);

impl RuntimeChanges {
    /// A success of `queue` that ran `micros` microseconds.
    pub(crate) fn add(&mut self, tenant: &str, queue: &str, micros: i64) {
        match self
            .0
            .iter_mut()
            .find(|(t, q, _)| t == tenant && q == queue)
        {
            Some((.., durations)) => durations.push(micros.max(0)),
            None => self
                .0
                .push((tenant.to_string(), queue.to_string(), vec![micros.max(0)])),
        }
    }

    /// Fold the run times into each queue's mean.
    pub(crate) fn apply(self, conn: &Connection) -> Result<()> {
        let mut read = conn
            .prepare_cached(
                "SELECT mean_us, samples FROM queue_runtimes WHERE tenant = ?1 AND queue = ?2",
            )
            .map_err(db("read a queue's run time"))?;
        let mut write = conn
            .prepare_cached(
                "INSERT INTO queue_runtimes (tenant, queue, mean_us, samples) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (tenant, queue) DO UPDATE SET mean_us = excluded.mean_us,
                                                          samples = excluded.samples",
            )
            .map_err(db("record a queue's run time"))?;
        for (tenant, queue, durations) in self.0 {
            let (mean, samples) = read
                .query_row(params![tenant, queue], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
                .map_err(db("read a queue's run time"))?
                .unwrap_or((0.0, 0));
            let (mean, samples) = fold_runtime(mean, samples, &durations);
            write
                .execute(params![tenant, queue, mean, samples])
                .map_err(db("record a queue's run time"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_run_times_are_averaged_exactly() {
        let (mean, samples) = fold_runtime(0.0, 0, &[4_000_000]);
        assert_eq!((mean, samples), (4_000_000.0, 1));
        let (mean, samples) = fold_runtime(mean, samples, &[2_000_000, 6_000_000]);
        assert_eq!((mean, samples), (4_000_000.0, 3));
    }

    #[test]
    fn past_the_window_a_new_run_time_weighs_as_one_of_a_hundred() {
        let full = fold_runtime(0.0, 0, &[1_000; 100]);
        assert_eq!(full, (1_000.0, RUNTIME_WINDOW));
        let (mean, samples) = fold_runtime(full.0, full.1, &[101_000]);
        assert_eq!(samples, RUNTIME_WINDOW);
        assert!((mean - 2_000.0).abs() < 1e-9, "{mean}");
        // After many slow ones, the old fast ones no longer count.
        let (mean, _) = fold_runtime(mean, samples, &[50_000; 1_000]);
        assert!((mean - 50_000.0).abs() < 5.0, "{mean}");
    }
}
