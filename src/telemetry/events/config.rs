//! Config reloads: the one place their log lines and counters are decided.

use crate::telemetry::InternalEvent;
use crate::telemetry::families::Families;
use crate::telemetry::labels::{ReloadLabel, ReloadResult, ReloadTrigger};

/// A reload validated and swapped in a new config.
pub struct ConfigReloaded<'a> {
    pub trigger: ReloadTrigger,
    pub sha256: &'a str,
    /// One line per change applied (`targets.x: added`, ...).
    pub changes: &'a [String],
    /// Keys that changed in the file but only take effect after a restart.
    pub needs_restart: &'a [String],
}

impl InternalEvent for ConfigReloaded<'_> {
    fn record(self, m: &Families) {
        tracing::info!(
            trigger = %self.trigger,
            sha256 = self.sha256,
            changes = %self.changes.join("; "),
            "config reloaded"
        );
        for key in self.needs_restart {
            tracing::warn!(key = %key, "config changed a setting that only takes effect after a restart; the running value stays");
        }
        m.config_reloads
            .get_or_create(&ReloadLabel {
                result: ReloadResult::Applied,
            })
            .inc();
        m.config_reload_ok.set(1);
        m.config_reload_ok_at
            .set(super::super::families::unix_seconds());
    }
}

/// A reload found the file invalid: nothing changed.
pub struct ConfigReloadRefused<'a> {
    pub trigger: ReloadTrigger,
    /// The validation error; it names the key at fault.
    pub error: &'a str,
}

impl InternalEvent for ConfigReloadRefused<'_> {
    fn record(self, m: &Families) {
        tracing::error!(trigger = %self.trigger, error = self.error, "config reload refused; the running config stays");
        m.config_reloads
            .get_or_create(&ReloadLabel {
                result: ReloadResult::Refused,
            })
            .inc();
        m.config_reload_ok.set(0);
    }
}
