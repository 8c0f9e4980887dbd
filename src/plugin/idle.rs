//! Gives back the memory of warm instances a quiet plugin stopped using.
//!
//! After a burst, the Python and JavaScript examples' instances held
//! ~50 MiB of linear memory between them, and a router that then sat idle
//! kept it for good: a pool only shrinks when a call takes from it. Once a
//! second this drops the instances unused for
//! [`WARM_IDLE`](super::instance::WARM_IDLE); the next event
//! instantiates again, as the first after a start does.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;

use super::registry::Plugins;

/// How often pools are checked: an idle instance goes between `WARM_IDLE`
/// and `WARM_IDLE + CHECK` after its last call.
pub const CHECK: Duration = Duration::from_secs(1);

/// Starts the once-a-second check; it lives as long as the runtime.
pub fn spawn(plugins: Arc<Plugins>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECK);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let idle = plugins.take_idle_instances();
            if idle.is_empty() {
                continue;
            }
            // Unmapping linear memories and freeing stores is blocking
            // work; the thread then returns what it freed to the OS.
            let _ = tokio::task::spawn_blocking(move || {
                drop(idle);
                crate::memory::release_thread_memory();
            })
            .await;
        }
    });
}
