//! The event loop: tasks arrive, wait, run on worker slots and finish; workers start after their
//! pool's start-up time, may be preempted, and are started or stopped by a [`Controller`].
//!
//! Time is whole microseconds. Events sit in a binary heap ordered by (time, sequence), so runs
//! are deterministic. Everything per task lives in vectors sized once up front; the hot loop
//! allocates nothing per task.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::config::PoolConfig;
use crate::sim::controller::Controller;
use crate::sim::workload::{MICROS, Workload, exponential};
use crate::sim::{Sample, SimReport, SimSetup};

/// Where a simulated worker is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WorkerState {
    Starting,
    Running,
    /// Finishing its tasks, leasing no more.
    Draining,
    Gone,
}

/// One simulated worker.
#[derive(Debug)]
pub(crate) struct SimWorker {
    pub(crate) id: String,
    pub(crate) pool: usize,
    pub(crate) state: WorkerState,
    /// Tasks it runs now (at most its pool's concurrency).
    pub(crate) tasks: Vec<u32>,
    pub(crate) idle_since: u64,
    created: u64,
    ended: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// A task finished on a worker.
    Done { worker: u32, task: u32 },
    /// A worker finished starting.
    Ready { worker: u32 },
    /// A worker is taken away by its provider.
    Preempt { worker: u32 },
    /// The controller's turn.
    Tick,
}

/// The state of one run, handed to the controller at each tick.
pub(crate) struct Sim<'a> {
    pub(crate) now: u64,
    pub(crate) pools: &'a [PoolConfig],
    pub(crate) workers: Vec<SimWorker>,
    /// Per pool, ids of workers not yet gone (compacted at each tick).
    pub(crate) members: Vec<Vec<u32>>,
    /// Waiting tasks of jobs that are not burstable, oldest first.
    pub(crate) home_queue: VecDeque<u32>,
    /// Waiting burstable tasks, oldest first.
    pub(crate) any_queue: VecDeque<u32>,
    pub(crate) in_flight: u64,
    /// Tasks finished since the last tick, and their run time in seconds.
    pub(crate) finished_since_tick: (u64, f64),
    /// Arrivals since the last tick.
    pub(crate) arrivals_since_tick: u64,
    workload: &'a Workload,
    events: BinaryHeap<Reverse<(u64, u64, Event)>>,
    seq: u64,
    free_home: Vec<u32>,
    free_burst: Vec<u32>,
    first_start: Vec<u64>,
    rng: StdRng,
    preempt_rate_per_us: f64,
    interrupted: u64,
    lost_work_us: u64,
    started_at: Vec<u64>,
}

impl<'a> Sim<'a> {
    fn push(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.events.push(Reverse((at, self.seq, event)));
    }

    /// Live workers (starting or running) of one pool.
    pub(crate) fn live(&self, pool: usize) -> u32 {
        self.members[pool]
            .iter()
            .filter(|&&w| {
                matches!(
                    self.workers[w as usize].state,
                    WorkerState::Starting | WorkerState::Running
                )
            })
            .count() as u32
    }

    /// Ask for one more worker in `pool`; it runs after the pool's start-up time.
    pub(crate) fn start_worker(&mut self, pool: usize) {
        let index = self.workers.len() as u32;
        let startup = (self.pools[pool].startup.as_secs_f64() * MICROS) as u64;
        self.workers.push(SimWorker {
            id: format!("w{index}"),
            pool,
            state: WorkerState::Starting,
            tasks: Vec::with_capacity(self.pools[pool].concurrency as usize),
            idle_since: self.now,
            created: self.now,
            ended: None,
        });
        self.members[pool].push(index);
        self.push(self.now + startup, Event::Ready { worker: index });
    }

    fn end_worker(&mut self, worker: u32) {
        let w = &mut self.workers[worker as usize];
        w.state = WorkerState::Gone;
        w.ended = Some(self.now);
    }

    /// Drain a worker: it takes no more tasks and leaves once its tasks are done.
    pub(crate) fn drain_worker(&mut self, worker: u32) {
        let w = &mut self.workers[worker as usize];
        match w.state {
            WorkerState::Starting => self.end_worker(worker),
            WorkerState::Running if w.tasks.is_empty() => self.end_worker(worker),
            WorkerState::Running => w.state = WorkerState::Draining,
            WorkerState::Draining | WorkerState::Gone => {}
        }
    }

    /// Stop a worker at once; its running tasks go back to the front of the queue.
    pub(crate) fn kill_worker(&mut self, worker: u32) {
        if self.workers[worker as usize].state == WorkerState::Gone {
            return;
        }
        let tasks = std::mem::take(&mut self.workers[worker as usize].tasks);
        for &task in tasks.iter().rev() {
            self.interrupted += 1;
            self.lost_work_us += self.now - self.started_at[task as usize];
            self.in_flight -= 1;
            if self.workload.burstable[task as usize] {
                self.any_queue.push_front(task);
            } else {
                self.home_queue.push_front(task);
            }
        }
        self.end_worker(worker);
        // Give the requeued tasks to free slots elsewhere.
        for _ in 0..tasks.len() {
            if !self.dispatch_waiting() {
                break;
            }
        }
    }

    /// The next task a worker of `pool` may take: the oldest waiting one it is allowed to run.
    fn next_task(&mut self, pool: usize) -> Option<u32> {
        let arrivals = &self.workload.arrivals;
        if self.pools[pool].tier > 0 {
            return self.any_queue.pop_front();
        }
        match (self.home_queue.front(), self.any_queue.front()) {
            (Some(&h), Some(&a)) if arrivals[a as usize] < arrivals[h as usize] => {
                self.any_queue.pop_front()
            }
            (Some(_), _) => self.home_queue.pop_front(),
            (None, _) => self.any_queue.pop_front(),
        }
    }

    fn run_task(&mut self, worker: u32, task: u32) {
        let t = task as usize;
        if self.first_start[t] == u64::MAX {
            self.first_start[t] = self.now;
        }
        self.started_at[t] = self.now;
        self.in_flight += 1;
        self.workers[worker as usize].tasks.push(task);
        let done = self.now + self.workload.durations[t];
        self.push(done, Event::Done { worker, task });
    }

    /// Fill one free slot of `worker` from the queue, or record the slot as free.
    fn fill_slot(&mut self, worker: u32) {
        let pool = self.workers[worker as usize].pool;
        match self.next_task(pool) {
            Some(task) => self.run_task(worker, task),
            None => {
                let w = &mut self.workers[worker as usize];
                if w.tasks.is_empty() {
                    w.idle_since = self.now;
                }
                if self.pools[pool].tier == 0 {
                    self.free_home.push(worker);
                } else {
                    self.free_burst.push(worker);
                }
            }
        }
    }

    /// A free slot that may run a task, popping stale entries (workers gone or draining).
    fn pop_free(&mut self, burstable: bool) -> Option<u32> {
        loop {
            let worker = match self.free_home.pop() {
                Some(w) => w,
                None if burstable => self.free_burst.pop()?,
                None => return None,
            };
            let w = &self.workers[worker as usize];
            if w.state == WorkerState::Running
                && w.tasks.len() < self.pools[w.pool].concurrency as usize
            {
                return Some(worker);
            }
        }
    }

    /// Start the oldest waiting task that has a free slot; false when none could start.
    fn dispatch_waiting(&mut self) -> bool {
        let arrivals = &self.workload.arrivals;
        let take_any = match (self.home_queue.front(), self.any_queue.front()) {
            (Some(&h), Some(&a)) => arrivals[a as usize] < arrivals[h as usize],
            (None, Some(_)) => true,
            (Some(_), None) => false,
            (None, None) => return false,
        };
        if let Some(worker) = self.pop_free(take_any) {
            let task = if take_any {
                self.any_queue.pop_front()
            } else {
                self.home_queue.pop_front()
            };
            if let Some(task) = task {
                self.run_task(worker, task);
                return true;
            }
        }
        // The oldest kind has no slot; a burstable task may still fit a burst slot.
        if !take_any
            && !self.any_queue.is_empty()
            && let Some(worker) = self.pop_free(true)
            && let Some(task) = self.any_queue.pop_front()
        {
            self.run_task(worker, task);
            return true;
        }
        false
    }

    fn arrive(&mut self, task: u32) {
        self.arrivals_since_tick += 1;
        if self.workload.burstable[task as usize] {
            self.any_queue.push_back(task);
        } else {
            self.home_queue.push_back(task);
        }
        self.dispatch_waiting();
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Done { worker, task } => {
                let w = &mut self.workers[worker as usize];
                if w.state == WorkerState::Gone {
                    return; // killed: the task was requeued.
                }
                if let Some(pos) = w.tasks.iter().position(|&t| t == task) {
                    w.tasks.swap_remove(pos);
                }
                self.in_flight -= 1;
                self.finished_since_tick.0 += 1;
                self.finished_since_tick.1 +=
                    self.workload.durations[task as usize] as f64 / MICROS;
                match self.workers[worker as usize].state {
                    WorkerState::Draining => {
                        if self.workers[worker as usize].tasks.is_empty() {
                            self.end_worker(worker);
                        }
                    }
                    _ => self.fill_slot(worker),
                }
            }
            Event::Ready { worker } => {
                if self.workers[worker as usize].state != WorkerState::Starting {
                    return;
                }
                self.workers[worker as usize].state = WorkerState::Running;
                self.workers[worker as usize].idle_since = self.now;
                if self.preempt_rate_per_us > 0.0 {
                    let after = exponential(&mut self.rng, self.preempt_rate_per_us) as u64;
                    self.push(self.now.saturating_add(after), Event::Preempt { worker });
                }
                let slots = self.pools[self.workers[worker as usize].pool].concurrency;
                for _ in 0..slots {
                    self.fill_slot(worker);
                }
            }
            Event::Preempt { worker } => self.kill_worker(worker),
            Event::Tick => {}
        }
    }

    /// Whether every task has finished.
    fn all_done(&self, next_arrival: usize) -> bool {
        next_arrival == self.workload.len()
            && self.in_flight == 0
            && self.home_queue.is_empty()
            && self.any_queue.is_empty()
    }

    fn at_rest(&self) -> bool {
        (0..self.pools.len()).all(|p| self.live(p) <= self.pools[p].min)
    }
}

/// Run `workload` against `setup` under `controller`.
pub(crate) fn run(workload: &Workload, setup: &SimSetup, controller: &mut Controller) -> SimReport {
    let n = workload.len();
    let pools = &setup.pools[..];
    let mut sim = Sim {
        now: 0,
        pools,
        workers: Vec::new(),
        members: vec![Vec::new(); pools.len()],
        home_queue: VecDeque::with_capacity(n),
        any_queue: VecDeque::with_capacity(n),
        in_flight: 0,
        finished_since_tick: (0, 0.0),
        arrivals_since_tick: 0,
        workload,
        events: BinaryHeap::new(),
        seq: 0,
        free_home: Vec::new(),
        free_burst: Vec::new(),
        first_start: vec![u64::MAX; n],
        rng: StdRng::seed_from_u64(setup.seed ^ 0x5eed),
        preempt_rate_per_us: setup.preemption_per_hour.max(0.0) / 3600.0 / MICROS,
        interrupted: 0,
        lost_work_us: 0,
        started_at: vec![0; n],
    };
    // Pools start at their minimum, already running.
    for (p, pool) in pools.iter().enumerate() {
        for _ in 0..pool.min {
            sim.start_worker(p);
        }
    }
    sim.events.clear();
    for w in 0..sim.workers.len() as u32 {
        sim.on_event(Event::Ready { worker: w });
    }
    let interval = (controller.interval().as_secs_f64() * MICROS).max(1.0) as u64;
    sim.push(0, Event::Tick);
    let tail = (setup.tail_limit.as_secs_f64() * MICROS) as u64;
    let mut next_arrival = 0;
    let mut last_done = 0;
    let mut timeline = Vec::new();
    let mut peak_workers = 0;
    loop {
        let next_event = sim.events.peek().map(|Reverse((t, _, _))| *t);
        let arrival = workload.arrivals.get(next_arrival).copied();
        // Arrivals go before events at the same time, so a tick sees them.
        if let Some(t) = arrival.filter(|&t| next_event.is_none_or(|e| t <= e)) {
            sim.now = t;
            sim.arrive(next_arrival as u32);
            next_arrival += 1;
            continue;
        }
        let Some(Reverse((t, _, event))) = sim.events.pop() else {
            break;
        };
        sim.now = t;
        if event == Event::Tick {
            let done = sim.all_done(next_arrival);
            if done && (sim.at_rest() || sim.now >= last_done + tail) {
                break;
            }
            for members in &mut sim.members {
                let workers = &sim.workers;
                members.retain(|&w| workers[w as usize].state != WorkerState::Gone);
            }
            controller.tick(&mut sim);
            sim.arrivals_since_tick = 0;
            sim.finished_since_tick = (0, 0.0);
            let workers: u32 = (0..pools.len()).map(|p| sim.members[p].len() as u32).sum();
            peak_workers = peak_workers.max(workers);
            timeline.push(Sample {
                seconds: sim.now as f64 / MICROS,
                waiting: (sim.home_queue.len() + sim.any_queue.len()) as u64,
                workers,
            });
            sim.push(sim.now + interval, Event::Tick);
            continue;
        }
        let was_done = matches!(event, Event::Done { .. });
        sim.on_event(event);
        if was_done && sim.all_done(next_arrival) {
            last_done = sim.now;
        }
    }
    report(&sim, controller.name(), last_done, timeline, peak_workers)
}

fn report(
    sim: &Sim<'_>,
    policy: &'static str,
    last_done: u64,
    timeline: Vec<Sample>,
    peak_workers: u32,
) -> SimReport {
    let end = sim.now;
    let mut worker_hours = 0.0;
    let mut cost = 0.0;
    for w in &sim.workers {
        let hours = (w.ended.unwrap_or(end) - w.created) as f64 / MICROS / 3600.0;
        worker_hours += hours;
        cost += hours * sim.pools[w.pool].cost_per_hour;
    }
    let mut waits: Vec<u64> = sim
        .first_start
        .iter()
        .zip(&sim.workload.arrivals)
        .filter(|(s, _)| **s != u64::MAX)
        .map(|(s, a)| s - a)
        .collect();
    let quantile = |waits: &mut Vec<u64>, q: f64| -> f64 {
        if waits.is_empty() {
            return 0.0;
        }
        let k = ((waits.len() as f64 * q).ceil() as usize).clamp(1, waits.len()) - 1;
        *waits.select_nth_unstable(k).1 as f64 / MICROS
    };
    let first_arrival = sim.workload.arrivals.first().copied().unwrap_or(0);
    SimReport {
        policy,
        tasks: sim.workload.len() as u64,
        drain_seconds: last_done.saturating_sub(first_arrival) as f64 / MICROS,
        wait_p50_seconds: quantile(&mut waits, 0.50),
        wait_p95_seconds: quantile(&mut waits, 0.95),
        worker_hours,
        cost,
        interrupted_tasks: sim.interrupted,
        lost_work_hours: sim.lost_work_us as f64 / MICROS / 3600.0,
        workers_started: sim.workers.len() as u64,
        peak_workers,
        simulated_seconds: end as f64 / MICROS,
        timeline,
    }
}
