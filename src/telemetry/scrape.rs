//! Values read at scrape time from the component that keeps them: delivery
//! queue depths and target state, plugins serving, events waiting for a
//! plugin, the store's size. Copying them into gauges on every change would
//! be a second bookkeeping of what the component already knows.
//!
//! The telemetry layer cannot call those components (it sits below them),
//! so the server hands it one closure per kind of value when it wires them
//! together. A family whose closure is not set (a test, the CLI) is exposed
//! without series, or as 0 when it has no labels.

use std::sync::RwLock;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

use super::labels::{NodeLabel, PluginLabel, TargetLabel, TargetState, TargetStateLabels};

/// One configured target as the delivery stage sees it at scrape time.
#[derive(Debug, Clone)]
pub struct TargetGauges {
    pub target: String,
    /// Deliveries waiting for an attempt.
    pub scheduled: i64,
    /// Dead deliveries (the dead-letter queue).
    pub dead: i64,
    pub in_flight: i64,
    pub state: TargetState,
}

/// Whether a version of a plugin is serving.
#[derive(Debug, Clone)]
pub struct PluginUp {
    pub plugin: String,
    pub up: bool,
}

type Probe<T> = Box<dyn Fn() -> T + Send + Sync>;

/// The closures, each set once when the server is wired.
#[derive(Default)]
pub struct Scraped {
    targets: RwLock<Option<Probe<Vec<TargetGauges>>>>,
    plugins: RwLock<Option<Probe<Vec<PluginUp>>>>,
    events_waiting: RwLock<Option<Probe<u64>>>,
    store_size: RwLock<Option<Probe<u64>>>,
    ready: RwLock<Option<Probe<bool>>>,
    node: RwLock<Option<Probe<String>>>,
}

fn set<T>(slot: &RwLock<Option<Probe<T>>>, f: Probe<T>) {
    *slot.write().unwrap_or_else(|e| e.into_inner()) = Some(f);
}

fn read<T: Default>(slot: &RwLock<Option<Probe<T>>>) -> T {
    slot.read()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .map(|f| f())
        .unwrap_or_default()
}

impl Scraped {
    pub fn targets(&self, f: impl Fn() -> Vec<TargetGauges> + Send + Sync + 'static) {
        set(&self.targets, Box::new(f));
    }

    pub fn plugins(&self, f: impl Fn() -> Vec<PluginUp> + Send + Sync + 'static) {
        set(&self.plugins, Box::new(f));
    }

    pub fn events_waiting(&self, f: impl Fn() -> u64 + Send + Sync + 'static) {
        set(&self.events_waiting, Box::new(f));
    }

    pub fn store_size(&self, f: impl Fn() -> u64 + Send + Sync + 'static) {
        set(&self.store_size, Box::new(f));
    }

    pub fn ready(&self, f: impl Fn() -> bool + Send + Sync + 'static) {
        set(&self.ready, Box::new(f));
    }

    pub fn node(&self, f: impl Fn() -> String + Send + Sync + 'static) {
        set(&self.node, Box::new(f));
    }
}

impl std::fmt::Debug for Scraped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scraped").finish_non_exhaustive()
    }
}

/// One gauge family: its descriptor, then a sample per label set.
fn gauges<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (L, i64)>,
) -> std::fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in series {
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn target(t: &TargetGauges) -> TargetLabel {
    TargetLabel {
        target: t.target.clone(),
    }
}

impl Collector for Scraped {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let waiting = read(&self.events_waiting);
        let family = encoder.encode_descriptor(
            "hookyard_events_waiting",
            "Events waiting for a plugin that is not loaded.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::try_from(waiting).unwrap_or(i64::MAX)).encode(family)?;

        let plugins = read(&self.plugins);
        gauges(
            &mut encoder,
            "hookyard_plugin_up",
            "1 if a version of the plugin is serving.",
            plugins.into_iter().map(|p| {
                let up = i64::from(p.up);
                (PluginLabel { plugin: p.plugin }, up)
            }),
        )?;

        let targets = read(&self.targets);
        gauges(
            &mut encoder,
            "hookyard_deliveries_scheduled",
            "Deliveries waiting for an attempt (the delivery queue), per target.",
            targets.iter().map(|t| (target(t), t.scheduled)),
        )?;
        gauges(
            &mut encoder,
            "hookyard_deliveries_dead",
            "Dead deliveries (the dead-letter queue), per target.",
            targets.iter().map(|t| (target(t), t.dead)),
        )?;
        gauges(
            &mut encoder,
            "hookyard_deliveries_in_flight",
            "Delivery attempts in flight, per target.",
            targets.iter().map(|t| (target(t), t.in_flight)),
        )?;
        gauges(
            &mut encoder,
            "hookyard_target_state",
            "1 for the target's current state: closed, open, half_open, paused or disabled.",
            targets.iter().flat_map(|t| {
                TargetState::ALL.iter().map(move |&state| {
                    let labels = TargetStateLabels {
                        target: t.target.clone(),
                        state,
                    };
                    (labels, i64::from(state == t.state))
                })
            }),
        )?;

        let size = read(&self.store_size);
        let family = encoder.encode_descriptor(
            "hookyard_store_size",
            "Bytes the store occupies on disk.",
            Some(&Unit::Bytes),
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::try_from(size).unwrap_or(i64::MAX)).encode(family)?;

        let family = encoder.encode_descriptor(
            "hookyard_ready",
            "1 while the process is ready for webhooks (its store takes writes), as /readyz.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::from(read(&self.ready))).encode(family)?;
        gauges(
            &mut encoder,
            "hookyard_node_info",
            "1, labelled with this process's node id (cluster mode: as in leases and the admin API).",
            // No series until the server has said which node it is.
            Some(read(&self.node))
                .filter(|n| !n.is_empty())
                .map(|node| (NodeLabel { node }, 1)),
        )?;
        Ok(())
    }
}
