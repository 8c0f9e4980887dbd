//! Which plugin contract a component was built against, and the glue that
//! lets hookyard run a component of any published contract.
//!
//! Every contract's host interface is in the one linker (0.1.0 and 0.2.0
//! are distinct instances, `hookyard:plugin/host@0.1.0` and `@0.2.0`), so a
//! component links whichever it imports. Which `handle` it exports is
//! decided once per compile, by type-checking the export against each
//! contract's signature, newest first: that is the check instantiating
//! needs anyway, it is exact (the event records differ), and a call then
//! only matches on an enum. An older component gets hookyard's event with
//! the fields its contract lacks left out, and its outcome is converted
//! into the newest contract's types, so nothing past this file knows there
//! is more than one contract.

use anyhow::{Result, anyhow};
use serde::{Serialize, Serializer};
use wasmtime::Store;
use wasmtime::component::{HasSelf, InstancePre, Linker};

use super::bindings::{Delivery, Event, Level, Outcome, v0_1, v0_2};
use super::host::PluginState;

/// A published version of `wit/plugin.wit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Contract {
    /// `hookyard:plugin@0.1.0` (`wit/v0.1.0/plugin.wit`).
    V0_1,
    /// `hookyard:plugin@0.2.0` (`wit/plugin.wit`): adds the event's version.
    V0_2,
}

impl Contract {
    /// The contract example plugins and `hookyard plugin new` build against.
    pub const NEWEST: Contract = Contract::V0_2;

    /// Every contract hookyard loads, newest first (the detection order).
    pub const ALL: &'static [Contract] = &[Contract::V0_2, Contract::V0_1];

    /// The package version, as the WIT file and `/admin/plugins` spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Contract::V0_1 => "0.1.0",
            Contract::V0_2 => "0.2.0",
        }
    }
}

impl std::fmt::Display for Contract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Contract {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Adds every contract's host interface to `linker`.
pub(super) fn add_to_linker(linker: &mut Linker<PluginState>) -> Result<()> {
    v0_2::Plugin::add_to_linker::<_, HasSelf<PluginState>>(linker, |s| s)?;
    v0_1::Plugin::add_to_linker::<_, HasSelf<PluginState>>(linker, |s| s)?;
    Ok(())
}

/// A component pre-linked against the contract it exports.
pub(super) enum ContractPre {
    V0_2(v0_2::PluginPre<PluginState>),
    V0_1(v0_1::PluginPre<PluginState>),
}

impl ContractPre {
    /// Finds the contract whose `handle` the component exports, newest
    /// first. The error names what each contract's check found.
    pub fn detect(pre: InstancePre<PluginState>) -> Result<ContractPre> {
        let newest = match v0_2::PluginPre::new(pre.clone()) {
            Ok(p) => return Ok(ContractPre::V0_2(p)),
            Err(e) => e,
        };
        let oldest = match v0_1::PluginPre::new(pre) {
            Ok(p) => return Ok(ContractPre::V0_1(p)),
            Err(e) => e,
        };
        Err(anyhow!(
            "it does not export the `handle` of any hookyard:plugin contract hookyard loads \
             (0.2.0: {:#}; 0.1.0: {:#})",
            anyhow::Error::from(newest),
            anyhow::Error::from(oldest)
        ))
    }

    pub fn contract(&self) -> Contract {
        match self {
            ContractPre::V0_2(_) => Contract::V0_2,
            ContractPre::V0_1(_) => Contract::V0_1,
        }
    }

    pub fn instantiate(&self, store: &mut Store<PluginState>) -> wasmtime::Result<ContractPlugin> {
        Ok(match self {
            ContractPre::V0_2(p) => ContractPlugin::V0_2(p.instantiate(store)?),
            ContractPre::V0_1(p) => ContractPlugin::V0_1(p.instantiate(store)?),
        })
    }
}

/// One instance's exports, in its contract's types.
pub(super) enum ContractPlugin {
    V0_2(v0_2::Plugin),
    V0_1(v0_1::Plugin),
}

impl ContractPlugin {
    /// Calls `handle` with hookyard's event as the instance's contract
    /// spells it. A 0.1.0 instance costs one copy of the event (its record
    /// is another type); the newest contract takes it as it is.
    pub fn call_handle(
        &self,
        store: &mut Store<PluginState>,
        event: &Event,
    ) -> wasmtime::Result<Result<Outcome, String>> {
        match self {
            ContractPlugin::V0_2(p) => p.call_handle(store, event),
            ContractPlugin::V0_1(p) => Ok(p
                .call_handle(store, &event_v0_1(event))?
                .map(outcome_from_v0_1)),
        }
    }
}

/// The 0.1.0 event: everything but the version.
fn event_v0_1(e: &Event) -> v0_1::hookyard::plugin::types::Event {
    v0_1::hookyard::plugin::types::Event {
        id: e.id.clone(),
        source: e.source.clone(),
        received_at: e.received_at,
        method: e.method.clone(),
        path: e.path.clone(),
        query: e.query.clone(),
        headers: e.headers.clone(),
        body: e.body.clone(),
    }
}

fn outcome_from_v0_1(o: v0_1::hookyard::plugin::types::Outcome) -> Outcome {
    use v0_1::hookyard::plugin::types::Outcome as Old;
    match o {
        Old::Drop(reason) => Outcome::Drop(reason),
        Old::Deliver(list) => Outcome::Deliver(
            list.into_iter()
                .map(|d| Delivery {
                    target: d.target,
                    headers: d.headers,
                    body: d.body,
                })
                .collect(),
        ),
    }
}

impl v0_1::hookyard::plugin::types::Host for PluginState {}

/// The 0.1.0 host interface is the 0.2.0 one: same functions, its own
/// generated types.
impl v0_1::hookyard::plugin::host::Host for PluginState {
    fn log(&mut self, level: v0_1::hookyard::plugin::host::Level, message: String) {
        use v0_1::hookyard::plugin::host::Level as Old;
        let level = match level {
            Old::Trace => Level::Trace,
            Old::Debug => Level::Debug,
            Old::Info => Level::Info,
            Old::Warn => Level::Warn,
            Old::Error => Level::Error,
        };
        v0_2::hookyard::plugin::host::Host::log(self, level, message)
    }

    fn config(&mut self) -> Vec<(String, String)> {
        v0_2::hookyard::plugin::host::Host::config(self)
    }

    fn kv_get(&mut self, key: String) -> Option<Vec<u8>> {
        v0_2::hookyard::plugin::host::Host::kv_get(self, key)
    }

    fn kv_set(&mut self, key: String, value: Vec<u8>) {
        v0_2::hookyard::plugin::host::Host::kv_set(self, key, value)
    }

    fn kv_delete(&mut self, key: String) {
        v0_2::hookyard::plugin::host::Host::kv_delete(self, key)
    }
}
