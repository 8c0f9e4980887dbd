//! The events stages emit, one file per stage that emits them. Each event
//! is a plain struct of what happened; its `record` is the only place that
//! knows which log line and which counters it means.

mod config;
mod delivery;
mod ingest;
mod operator;
mod plugin;
mod routing;

pub use config::{ConfigReloadRefused, ConfigReloaded};
pub use delivery::{AttemptFinished, DeliveryFinished, DispatcherRestarted};
pub use ingest::{HandshakeAnswered, RequestAccepted, RequestDuplicate, RequestRejected};
pub use operator::{Replayed, RetentionSwept};
pub use plugin::{PluginCalled, PluginKnown, PluginLoadFailed};
pub use routing::{EventRouted, KvConflict, PluginDecided};
