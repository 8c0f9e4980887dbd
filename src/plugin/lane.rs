//! Per-plugin call lanes: events queue for a plugin and a few blocking
//! runners drain the queue, so under load one thread hand-off serves many
//! calls.
//!
//! A `spawn_blocking` per call cost two thread wake-ups per event (out to a
//! blocking thread, back to the runtime) plus a semaphore hand-off between
//! calls; with every core busy those wake-ups, not the plugin, set the
//! routing rate. Here a call queues its event and wakes a runner only when
//! fewer than [`runners`] are draining: a busy runner goes from one event
//! to the next without sleeping. The runner count still bounds concurrent
//! calls, and so warm instances (a Python instance is tens of MB), and a
//! plugin that spins until its timeout holds up only its own lane.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::oneshot;

use super::instance::{CallReport, LoadedPlugin};
use super::{CallError, to_plugin_event};
use crate::model::records::Event;
use crate::telemetry::{PluginCalled, Telemetry};

/// Runners per plugin: enough to use every core.
pub fn runners() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .max(2)
}

struct Job {
    /// The version resolved when the call was made: a reload while the
    /// event queued does not change which version runs it.
    plugin: Arc<LoadedPlugin>,
    event: Arc<Event>,
    /// The event's last plugin: its KV lock goes as the call ends.
    last: bool,
    /// Carries the event id to the plugin's log lines.
    span: tracing::Span,
    reply: oneshot::Sender<CallReport>,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    running: usize,
}

/// One plugin's queue of calls and its runners.
pub struct Lane {
    state: Mutex<State>,
    max_runners: usize,
    telemetry: Arc<Telemetry>,
    /// Set at shutdown: queued calls are answered
    /// [`CallError::ShuttingDown`] instead of run, so the process exits
    /// within its grace period (their events keep their "to route" marks).
    stopping: Arc<AtomicBool>,
}

impl Lane {
    pub fn new(telemetry: Arc<Telemetry>, stopping: Arc<AtomicBool>) -> Lane {
        Lane {
            state: Mutex::default(),
            max_runners: runners(),
            telemetry,
            stopping,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues the call and waits for its report. `last`: no plugin of the
    /// event runs after this one (see [`Lane::run`]).
    pub async fn call(
        self: &Arc<Self>,
        plugin: Arc<LoadedPlugin>,
        event: Arc<Event>,
        last: bool,
    ) -> CallReport {
        if self.stopping.load(Ordering::SeqCst) {
            return CallReport::failed(CallError::ShuttingDown);
        }
        let span = tracing::info_span!("plugin", event = %event.id);
        let (reply, rx) = oneshot::channel();
        let start = {
            let mut s = self.state();
            s.jobs.push_back(Job {
                plugin,
                event,
                last,
                span,
                reply,
            });
            let start = s.running < self.max_runners;
            if start {
                s.running += 1;
            }
            start
        };
        if start {
            let lane = self.clone();
            tokio::task::spawn_blocking(move || lane.drain());
        }
        rx.await.unwrap_or_else(|_| {
            CallReport::failed(CallError::Trap("the plugin runner stopped".into()))
        })
    }

    /// Runs queued calls until the queue is empty.
    fn drain(&self) {
        loop {
            let job = {
                let mut s = self.state();
                match s.jobs.pop_front() {
                    Some(j) => j,
                    None => {
                        s.running -= 1;
                        return;
                    }
                }
            };
            if self.stopping.load(Ordering::SeqCst) {
                let _ = job.reply.send(CallReport::failed(CallError::ShuttingDown));
                continue;
            }
            let report = std::panic::catch_unwind(AssertUnwindSafe(|| self.run(&job)))
                .unwrap_or_else(|_| {
                    CallReport::failed(CallError::Trap("plugin call panicked".into()))
                });
            let _ = job.reply.send(report);
        }
    }

    fn run(&self, job: &Job) -> CallReport {
        let _span = job.span.enter();
        let ev = to_plugin_event(&job.event);
        let started = Instant::now();
        // Captured for the event's outcome (the first lines are kept with
        // it); the call's log budget bounds what there can be.
        let mut report = job.plugin.call(&ev, true);
        // The next call of a KV plugin waits for this call's KV lock. Kept
        // until routing takes the report back, the lock spanned a hand-off
        // to the runtime and back: with a counter in every event, the
        // plugin's calls ran one per wake-up of a routing task, and routing
        // fell seconds behind a burst. The event's last plugin has no later
        // turn to keep in order, so its lock goes here (unless kept until
        // the commit is ordered; see `plugin::kv`).
        if job.last
            && let Some(turn) = &mut report.kv_turn
        {
            turn.plugins_ran();
        }
        self.telemetry.emit(PluginCalled {
            plugin: job.plugin.name(),
            took: started.elapsed(),
            failed: report.result.is_err(),
            fresh_instance: report.fresh_instance,
            log_lines_cut: report.log_cut.0,
        });
        report
    }
}
