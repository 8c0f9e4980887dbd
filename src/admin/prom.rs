//! A small Prometheus metrics registry for `GET /metrics`.
//!
//! Hand-rolled rather than pulled in as a crate: hookyard needs three metric
//! kinds and one output format, and a dependency here would be more code than
//! this file. Recording must stay cheap on the ingest and delivery paths, so
//! once a series exists, touching it costs a shared read lock and an atomic
//! operation; the write lock is taken only the first time a label set is seen.
//!
//! The output is the text exposition format 0.0.4, the one every Prometheus
//! version scrapes.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Buckets for request, plugin and delivery latencies in seconds: fine below
/// 10 ms, where a healthy plugin call or store write lands, and reaching 30 s,
/// the longest a delivery attempt is worth telling apart from a timeout.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// What `GET /metrics` must answer with, so that Prometheus picks the text
/// parser matching what [`Registry::render`] writes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every metric family hookyard exports. Created once at startup and shared
/// through an `Arc`, so that each subsystem records into the same place the
/// admin listener renders from.
pub struct Registry {
    families: RwLock<Vec<Arc<Family>>>,
}

/// A family of counters, one per label set. Cloning is cheap so that each
/// task can hold its own handle.
#[derive(Clone)]
pub struct CounterVec {
    series: Arc<Series<AtomicU64>>,
}

/// A family of gauges, one per label set. Cloning is cheap so that each task
/// can hold its own handle.
#[derive(Clone)]
pub struct GaugeVec {
    // Each value is an `f64` stored as its bits, since there is no atomic f64.
    series: Arc<Series<AtomicU64>>,
}

/// A family of histograms, one per label set. Cloning is cheap so that each
/// task can hold its own handle.
#[derive(Clone)]
pub struct HistogramVec {
    bounds: Arc<[f64]>,
    series: Arc<Series<Histogram>>,
}

type CounterFn = dyn Fn() -> Vec<(Vec<String>, u64)> + Send + Sync;
type GaugeFn = dyn Fn() -> Vec<(Vec<String>, f64)> + Send + Sync;

struct Family {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    body: Body,
}

enum Body {
    Counter(Arc<Series<AtomicU64>>),
    Gauge(Arc<Series<AtomicU64>>),
    Histogram(Arc<[f64]>, Arc<Series<Histogram>>),
    CounterFn(Box<CounterFn>),
    GaugeFn(Box<GaugeFn>),
}

impl Body {
    fn type_name(&self) -> &'static str {
        match self {
            Body::Counter(_) | Body::CounterFn(_) => "counter",
            Body::Gauge(_) | Body::GaugeFn(_) => "gauge",
            Body::Histogram(..) => "histogram",
        }
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// An empty registry; families are declared on it at startup, before the
    /// listener serves the first scrape.
    pub fn new() -> Registry {
        Registry {
            families: RwLock::new(Vec::new()),
        }
    }

    /// Declares a counter family up front so its HELP and TYPE lines are
    /// scraped before the first event, which lets dashboards and alerts tell
    /// "nothing happened" from "not exported". A family without labels starts
    /// at 0 for the same reason.
    ///
    /// Declaring the same name again with the same labels hands back the same
    /// series, so two subsystems can share a family without passing handles.
    pub fn counter(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> CounterVec {
        debug_assert!(
            name.ends_with("_total"),
            "counter {name:?} must end in _total"
        );
        let fresh = Arc::new(Series::new(labels.len()));
        let family = Family {
            name,
            help,
            labels,
            body: Body::Counter(fresh.clone()),
        };
        let series = match self.declare(family, |old| match &old.body {
            Body::Counter(s) if old.labels == labels => Some(s.clone()),
            _ => None,
        }) {
            Some(existing) => existing,
            None => fresh,
        };
        if labels.is_empty() {
            series.with(&[], || AtomicU64::new(0), |_| ());
        }
        CounterVec { series }
    }

    /// Declares a gauge family up front, for the same reasons as
    /// [`Registry::counter`].
    pub fn gauge(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> GaugeVec {
        let fresh = Arc::new(Series::new(labels.len()));
        let family = Family {
            name,
            help,
            labels,
            body: Body::Gauge(fresh.clone()),
        };
        let series = match self.declare(family, |old| match &old.body {
            Body::Gauge(s) if old.labels == labels => Some(s.clone()),
            _ => None,
        }) {
            Some(existing) => existing,
            None => fresh,
        };
        if labels.is_empty() {
            series.with(&[], zero_f64, |_| ());
        }
        GaugeVec { series }
    }

    /// Declares a histogram family up front, for the same reasons as
    /// [`Registry::counter`]. `buckets` are the upper bounds, strictly
    /// increasing; the `+Inf` bucket is always added, so listing it is
    /// optional.
    pub fn histogram(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        buckets: &'static [f64],
    ) -> HistogramVec {
        debug_assert!(
            !labels.contains(&"le"),
            "histogram {name:?} cannot have a label named le"
        );
        debug_assert!(
            buckets.iter().all(|b| !b.is_nan()) && buckets.windows(2).all(|w| w[0] < w[1]),
            "histogram {name:?} buckets must be strictly increasing"
        );
        let bounds: Arc<[f64]> = buckets
            .iter()
            .copied()
            .filter(|b| *b != f64::INFINITY)
            .collect();
        let fresh = Arc::new(Series::new(labels.len()));
        let family = Family {
            name,
            help,
            labels,
            body: Body::Histogram(bounds.clone(), fresh.clone()),
        };
        let (bounds, series) = match self.declare(family, |old| match &old.body {
            Body::Histogram(b, s) if old.labels == labels && **b == *bounds => {
                Some((b.clone(), s.clone()))
            }
            _ => None,
        }) {
            Some(existing) => existing,
            None => (bounds, fresh),
        };
        let vec = HistogramVec { bounds, series };
        if labels.is_empty() {
            vec.series
                .with(&[], || Histogram::new(vec.bounds.len()), |_| ());
        }
        vec
    }

    /// Declares a gauge whose samples are computed at scrape time, for values
    /// another component already keeps (queue lengths, plugin states) and
    /// which would otherwise have to be copied into a [`GaugeVec`] on every
    /// change. `f` runs on each render without any registry lock held; it
    /// returns `(label values, value)` pairs in any order, and if a label set
    /// repeats, the last one wins so the scrape stays valid.
    pub fn gauge_fn(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        f: impl Fn() -> Vec<(Vec<String>, f64)> + Send + Sync + 'static,
    ) {
        let family = Family {
            name,
            help,
            labels,
            body: Body::GaugeFn(Box::new(f)),
        };
        self.declare(family, |_| None::<()>);
    }

    /// Like [`Registry::gauge_fn`], for totals another component already
    /// counts (plugin call statistics, ingest results): exporting them as
    /// counters lets `rate()` handle restarts.
    pub fn counter_fn(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        f: impl Fn() -> Vec<(Vec<String>, u64)> + Send + Sync + 'static,
    ) {
        debug_assert!(
            name.ends_with("_total"),
            "counter {name:?} must end in _total"
        );
        let family = Family {
            name,
            help,
            labels,
            body: Body::CounterFn(Box::new(f)),
        };
        self.declare(family, |_| None::<()>);
    }

    /// The body of `GET /metrics`. Families come out in declaration order and
    /// series sorted by label values, so consecutive scrapes diff cleanly.
    pub fn render(&self) -> String {
        // Work on a snapshot so that collect-time callbacks run without the
        // family list locked, and may themselves declare or read metrics.
        let families: Vec<Arc<Family>> = read(&self.families).clone();
        let mut out = String::with_capacity(256 * families.len());
        for family in &families {
            family.render(&mut out);
        }
        out
    }

    /// Adds `family` unless its name is taken. When it is, `reuse` decides
    /// whether the existing family is compatible and what to share from it.
    /// An incompatible redeclaration is a bug: it fails in debug builds, and
    /// in release the newcomer is left unregistered, because a second TYPE
    /// line for one name makes Prometheus reject the whole scrape.
    fn declare<T>(&self, family: Family, reuse: impl FnOnce(&Family) -> Option<T>) -> Option<T> {
        debug_assert!(
            valid_metric_name(family.name),
            "invalid metric name {:?}",
            family.name
        );
        debug_assert!(
            family.labels.iter().all(|l| valid_label_name(l)),
            "invalid label name in {:?}: {:?}",
            family.name,
            family.labels
        );
        debug_assert!(
            (1..family.labels.len()).all(|i| !family.labels[..i].contains(&family.labels[i])),
            "duplicate label name in {:?}: {:?}",
            family.name,
            family.labels
        );
        let mut families = write(&self.families);
        if let Some(old) = families.iter().find(|f| f.name == family.name) {
            let shared = reuse(old);
            debug_assert!(
                shared.is_some(),
                "metric {:?} declared twice with different types, labels or buckets",
                family.name
            );
            return shared;
        }
        families.push(Arc::new(family));
        None
    }
}

impl CounterVec {
    /// `values` follow the label names given at declaration, in order; the
    /// first use of a label set creates its series, later ones only take a
    /// read lock.
    pub fn inc(&self, values: &[&str]) {
        self.add(values, 1);
    }

    /// For work done in batches, so a batch costs one update, not one per
    /// item.
    pub fn add(&self, values: &[&str], n: u64) {
        self.series.with(
            values,
            || AtomicU64::new(0),
            |c| {
                c.fetch_add(n, Relaxed);
            },
        );
    }

    /// Reads one series back, for tests and for admin pages that show the
    /// same numbers; an unseen label set reads as 0.
    pub fn get(&self, values: &[&str]) -> u64 {
        self.series.peek(values, |c| c.load(Relaxed)).unwrap_or(0)
    }
}

impl GaugeVec {
    /// For values read from a source of truth elsewhere; the last writer
    /// wins.
    pub fn set(&self, values: &[&str], v: f64) {
        self.series
            .with(values, zero_f64, |g| g.store(v.to_bits(), Relaxed));
    }

    /// For levels several tasks move at once (in-flight deliveries), where a
    /// read-then-`set` would lose updates. Negative `d` decrements.
    pub fn add(&self, values: &[&str], d: f64) {
        self.series.with(values, zero_f64, |g| add_f64(g, d));
    }

    /// Reads one series back, for tests and for admin pages that show the
    /// same numbers; an unseen label set reads as 0.
    pub fn get(&self, values: &[&str]) -> f64 {
        self.series
            .peek(values, |g| f64::from_bits(g.load(Relaxed)))
            .unwrap_or(0.0)
    }

    /// Drops every series, for gauges rebuilt wholesale from a snapshot: a
    /// label set that no longer exists (a removed source, an unloaded plugin)
    /// must stop being exported rather than freeze at its last value.
    pub fn clear(&self) {
        write(&self.series.map).clear();
    }
}

impl HistogramVec {
    /// Records `v`. As in the reference Go client, a bound counts values less
    /// than or equal to it, and NaN lands only in `+Inf` (and makes `_sum`
    /// NaN), so a broken measurement shows instead of vanishing.
    pub fn observe(&self, values: &[&str], v: f64) {
        let bounds = &self.bounds;
        let slot = if v.is_nan() {
            bounds.len()
        } else {
            bounds.partition_point(|b| *b < v)
        };
        self.series.with(
            values,
            || Histogram::new(bounds.len()),
            |h| {
                h.counts[slot].fetch_add(1, Relaxed);
                add_f64(&h.sum, v);
            },
        );
    }
}

/// One histogram series. Buckets are kept non-cumulative and summed at render
/// time, and the count is that sum, so a scrape racing with `observe` still
/// sees monotonic buckets and a `+Inf` bucket equal to `_count`.
struct Histogram {
    /// One slot per bound, plus one for values above every bound.
    counts: Box<[AtomicU64]>,
    /// An `f64` stored as its bits.
    sum: AtomicU64,
}

impl Histogram {
    fn new(bounds: usize) -> Histogram {
        Histogram {
            counts: (0..=bounds).map(|_| AtomicU64::new(0)).collect(),
            sum: zero_f64(),
        }
    }
}

/// The series of one family, keyed by label values in declaration order. A
/// `BTreeMap` so rendering comes out sorted without extra work.
struct Series<S> {
    arity: usize,
    map: RwLock<BTreeMap<Key, S>>,
}

impl<S> Series<S> {
    fn new(arity: usize) -> Series<S> {
        Series {
            arity,
            map: RwLock::new(BTreeMap::new()),
        }
    }

    /// Runs `f` on the series for `values`, creating it with `init` if
    /// needed. A wrong number of values is a bug at the call site: it fails
    /// in debug builds and the sample is dropped in release, since a sample
    /// with misaligned labels would be worse than none.
    fn with(&self, values: &[&str], init: impl FnOnce() -> S, f: impl FnOnce(&S)) {
        if !self.arity_ok(values.len()) {
            return;
        }
        if let Some(s) = read(&self.map).get(&values as &dyn LabelKey) {
            f(s);
            return;
        }
        let mut map = write(&self.map);
        let key = Key(values.iter().map(|v| String::from(*v)).collect());
        f(map.entry(key).or_insert_with(init));
    }

    fn peek<R>(&self, values: &[&str], f: impl FnOnce(&S) -> R) -> Option<R> {
        if !self.arity_ok(values.len()) {
            return None;
        }
        read(&self.map).get(&values as &dyn LabelKey).map(f)
    }

    fn arity_ok(&self, n: usize) -> bool {
        debug_assert_eq!(n, self.arity, "wrong number of label values");
        n == self.arity
    }
}

/// Label values owned by a map entry.
struct Key(Box<[String]>);

/// Label values as either an owned [`Key`] or the caller's `&[&str]`, so a
/// lookup on the hot path needs no allocation: `BTreeMap::get` accepts any
/// type the key borrows as, and both sides order the same way.
trait LabelKey {
    fn arity(&self) -> usize;
    fn part(&self, i: usize) -> &str;
}

impl LabelKey for Key {
    fn arity(&self) -> usize {
        self.0.len()
    }
    fn part(&self, i: usize) -> &str {
        &self.0[i]
    }
}

impl LabelKey for &[&str] {
    fn arity(&self) -> usize {
        self.len()
    }
    fn part(&self, i: usize) -> &str {
        self[i]
    }
}

impl Ord for dyn LabelKey + '_ {
    fn cmp(&self, other: &Self) -> Ordering {
        let a = (0..self.arity()).map(|i| self.part(i));
        let b = (0..other.arity()).map(|i| other.part(i));
        a.cmp(b)
    }
}

impl PartialOrd for dyn LabelKey + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for dyn LabelKey + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for dyn LabelKey + '_ {}

impl<'a> Borrow<dyn LabelKey + 'a> for Key {
    fn borrow(&self) -> &(dyn LabelKey + 'a) {
        self
    }
}

// `Key`'s own order must agree with the borrowed one, so it is defined by it.
impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        (self as &dyn LabelKey).cmp(other as &dyn LabelKey)
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Key {}

impl Family {
    fn render(&self, out: &mut String) {
        let name = self.name;
        out.push_str("# HELP ");
        out.push_str(name);
        out.push(' ');
        escape_help(out, self.help);
        out.push('\n');
        let _ = writeln!(out, "# TYPE {name} {}", self.body.type_name());
        match &self.body {
            Body::Counter(series) => {
                for (key, c) in read(&series.map).iter() {
                    self.sample(out, "", key, None);
                    let _ = writeln!(out, "{}", c.load(Relaxed));
                }
            }
            Body::Gauge(series) => {
                for (key, g) in read(&series.map).iter() {
                    self.sample(out, "", key, None);
                    write_f64(out, f64::from_bits(g.load(Relaxed)));
                    out.push('\n');
                }
            }
            Body::Histogram(bounds, series) => {
                let les: Vec<String> = bounds
                    .iter()
                    .map(|b| {
                        let mut le = String::new();
                        write_f64(&mut le, *b);
                        le
                    })
                    .chain([String::from("+Inf")])
                    .collect();
                for (key, h) in read(&series.map).iter() {
                    let mut total = 0u64;
                    for (slot, le) in h.counts.iter().zip(&les) {
                        total += slot.load(Relaxed);
                        self.sample(out, "_bucket", key, Some(le));
                        let _ = writeln!(out, "{total}");
                    }
                    self.sample(out, "_sum", key, None);
                    write_f64(out, f64::from_bits(h.sum.load(Relaxed)));
                    out.push('\n');
                    self.sample(out, "_count", key, None);
                    let _ = writeln!(out, "{total}");
                }
            }
            Body::CounterFn(f) => {
                for (key, v) in self.collect(f()) {
                    self.sample(out, "", &key, None);
                    let _ = writeln!(out, "{v}");
                }
            }
            Body::GaugeFn(f) => {
                for (key, v) in self.collect(f()) {
                    self.sample(out, "", &key, None);
                    write_f64(out, v);
                    out.push('\n');
                }
            }
        }
    }

    /// Sorts and dedupes what a collect-time callback returned, dropping
    /// samples with the wrong number of label values (a bug: debug builds
    /// fail).
    fn collect<V>(&self, samples: Vec<(Vec<String>, V)>) -> BTreeMap<Key, V> {
        let arity = self.labels.len();
        samples
            .into_iter()
            .filter(|(values, _)| {
                debug_assert_eq!(
                    values.len(),
                    arity,
                    "wrong number of label values from {:?}",
                    self.name
                );
                values.len() == arity
            })
            .map(|(values, v)| (Key(values.into_boxed_slice()), v))
            .collect()
    }

    /// Writes a sample's name and labels, up to and including the space
    /// before the value.
    fn sample(&self, out: &mut String, suffix: &str, key: &Key, le: Option<&str>) {
        out.push_str(self.name);
        out.push_str(suffix);
        let extra = le.map(|le| ("le", le));
        let pairs = self
            .labels
            .iter()
            .copied()
            .zip(key.0.iter().map(String::as_str))
            .chain(extra);
        let mut first = true;
        for (label, value) in pairs {
            out.push(if first { '{' } else { ',' });
            first = false;
            out.push_str(label);
            out.push_str("=\"");
            escape_label_value(out, value);
            out.push('"');
        }
        if !first {
            out.push('}');
        }
        out.push(' ');
    }
}

/// Label values may hold anything; the format reserves `\`, `"` and newline.
fn escape_label_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// HELP text reserves only `\` and newline; a quote stays as is.
fn escape_help(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Writes a float the way Prometheus (Go's `ParseFloat`) reads it back:
/// `+Inf`, `-Inf`, `NaN`, whole numbers without a trailing `.0` (so `le`
/// labels match what other exporters write), and otherwise Rust's shortest
/// round-tripping form, which switches to an exponent for very small or
/// large magnitudes instead of printing hundreds of digits.
fn write_f64(out: &mut String, v: f64) {
    let _ = if v.is_nan() {
        out.write_str("NaN")
    } else if v == f64::INFINITY {
        out.write_str("+Inf")
    } else if v == f64::NEG_INFINITY {
        out.write_str("-Inf")
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        write!(out, "{v}")
    } else {
        write!(out, "{v:?}")
    };
}

fn zero_f64() -> AtomicU64 {
    AtomicU64::new(0f64.to_bits())
}

fn add_f64(cell: &AtomicU64, d: f64) {
    let _ = cell.fetch_update(Relaxed, Relaxed, |bits| {
        Some((f64::from_bits(bits) + d).to_bits())
    });
}

fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    !name.starts_with("__")
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

// Every lock here guards plain data updated atomically or by one insert, so
// a panic elsewhere cannot leave it half-written; keep serving metrics rather
// than propagate the poison.
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::thread;

    use prometheus_parse::{Scrape, Value};

    use super::*;

    const QUOTES: &str = "say \"hi\" now";
    const BACKSLASH: &str = "C:\\dir\\";
    const NEWLINE: &str = "line1\nline2";
    const UNICODE: &str = "héllo ✓ 日本 🚀";
    const TRICKY: [&str; 4] = [QUOTES, BACKSLASH, NEWLINE, UNICODE];

    /// One sample as a strict reader of the format sees it.
    #[derive(Debug, Clone, PartialEq)]
    struct Sample {
        name: String,
        labels: Vec<(String, String)>,
        value: f64,
    }

    impl Sample {
        fn label(&self, name: &str) -> Option<&str> {
            self.labels
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        }
    }

    /// A family as a strict reader sees it: name, type, unescaped help.
    type Header = (String, String, String);

    /// Reads the exposition format strictly, panicking on anything
    /// Prometheus would reject or misread. `prometheus-parse` splits label
    /// lists on `,` and `=` and does not unescape, so it cannot check
    /// escaping or values containing separators on its own.
    fn strict_parse(text: &str) -> (Vec<Header>, Vec<Sample>) {
        assert!(text.is_empty() || text.ends_with('\n'), "no final newline");
        let mut headers: Vec<Header> = Vec::new();
        let mut samples = Vec::new();
        let mut pending_help: Option<(String, String)> = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                assert!(pending_help.is_none(), "HELP without TYPE before {line:?}");
                let (name, help) = rest.split_once(' ').expect("HELP without text");
                pending_help = Some((name.to_string(), unescape(help, false)));
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE without type");
                assert!(
                    ["counter", "gauge", "histogram"].contains(&kind),
                    "type {kind:?}"
                );
                assert!(valid_metric_name(name), "bad name {name:?}");
                assert!(
                    headers.iter().all(|(n, _, _)| n != name),
                    "second TYPE for {name}"
                );
                if kind == "counter" {
                    assert!(name.ends_with("_total"), "counter {name} without _total");
                }
                let (help_name, help) = pending_help.take().expect("TYPE without HELP");
                assert_eq!(help_name, name, "HELP and TYPE disagree");
                headers.push((name.to_string(), kind.to_string(), help));
            } else {
                assert!(!line.starts_with('#'), "stray comment {line:?}");
                let sample = parse_sample(line);
                let (family, kind, _) = headers.last().expect("sample before TYPE");
                let suffix = sample.name.strip_prefix(family.as_str());
                let ok = match kind.as_str() {
                    "histogram" => matches!(suffix, Some("_bucket" | "_sum" | "_count")),
                    _ => suffix == Some(""),
                };
                assert!(ok, "{} outside its family {family}", sample.name);
                samples.push(sample);
            }
        }
        assert!(pending_help.is_none(), "trailing HELP");
        (headers, samples)
    }

    fn parse_sample(line: &str) -> Sample {
        let name_end = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .expect("sample without value");
        let name = &line[..name_end];
        let mut rest = &line[name_end..];
        let mut labels: Vec<(String, String)> = Vec::new();
        if let Some(after) = rest.strip_prefix('{') {
            rest = after;
            loop {
                let (label, after) = rest.split_once("=\"").expect("label without value");
                assert!(valid_label_name(label), "bad label name {label:?}");
                assert!(labels.iter().all(|(l, _)| l != label), "repeated {label}");
                let mut value = String::new();
                let mut chars = after.char_indices();
                let end = loop {
                    match chars.next().expect("unterminated label value") {
                        (i, '"') => break i,
                        (_, '\\') => match chars.next().expect("dangling backslash").1 {
                            '\\' => value.push('\\'),
                            '"' => value.push('"'),
                            'n' => value.push('\n'),
                            c => panic!("bad escape \\{c}"),
                        },
                        (_, '\n') => panic!("raw newline in label value"),
                        (_, c) => value.push(c),
                    }
                };
                labels.push((label.to_string(), value));
                rest = &after[end + 1..];
                if let Some(after) = rest.strip_prefix(',') {
                    rest = after;
                } else {
                    rest = rest.strip_prefix('}').expect("label list not closed");
                    break;
                }
            }
        }
        let value = rest.strip_prefix(' ').expect("no space before value");
        assert!(
            !value.contains(' '),
            "timestamp or junk after value: {line:?}"
        );
        Sample {
            name: name.to_string(),
            labels,
            value: parse_go_float(value),
        }
    }

    /// Parses what Go's `strconv.ParseFloat` accepts among the forms we emit.
    fn parse_go_float(s: &str) -> f64 {
        match s {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            _ => {
                assert!(
                    s.chars()
                        .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | 'e')),
                    "unexpected float form {s:?}"
                );
                s.parse().unwrap_or_else(|e| panic!("float {s:?}: {e}"))
            }
        }
    }

    /// Undoes exposition escaping; HELP text has no `\"` escape.
    fn unescape(s: &str, quotes: bool) -> String {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('\\') => out.push('\\'),
                Some('n') => out.push('\n'),
                Some('"') if quotes => out.push('"'),
                other => panic!("bad escape {other:?} in {s:?}"),
            }
        }
        out
    }

    /// Cumulative `(le, count)` pairs per label set (without `le`).
    type HistogramSeries = BTreeMap<Vec<(String, String)>, Vec<(f64, f64)>>;

    /// Checks the histogram invariants of every series and returns, per
    /// series (its labels without `le`), the cumulative `(le, count)` pairs.
    fn histograms(samples: &[Sample], name: &str) -> HistogramSeries {
        let mut buckets = HistogramSeries::new();
        let mut counts = HashMap::new();
        for s in samples {
            let mut labels = s.labels.clone();
            if s.name == format!("{name}_bucket") {
                let le = labels.pop().expect("bucket without labels");
                assert_eq!(le.0, "le", "le must come last");
                buckets
                    .entry(labels)
                    .or_default()
                    .push((parse_go_float(&le.1), s.value));
            } else if s.name == format!("{name}_count") {
                counts.insert(labels, s.value);
            }
        }
        for (labels, series) in &buckets {
            assert!(
                series
                    .windows(2)
                    .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
                "buckets not ascending and cumulative: {series:?}"
            );
            let last = series.last().unwrap();
            assert_eq!(last.0, f64::INFINITY, "no +Inf bucket");
            assert_eq!(Some(&last.1), counts.get(labels), "+Inf != _count");
        }
        assert_eq!(buckets.len(), counts.len(), "_count without buckets");
        buckets
    }

    fn parse_with_prometheus_parse(text: &str) -> Scrape {
        Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("scrape parses")
    }

    #[test]
    fn renders_exact_text_format() {
        let reg = Registry::new();
        let req = reg.counter(
            "hy_requests_total",
            "Requests by source.\nA \\ and a \"quote\".",
            &["source", "result"],
        );
        req.inc(&["b", "ok"]);
        req.add(&["a", "say \"hi\"\n\\"], 2);
        let up = reg.gauge("hy_up", "1 when up.", &[]);
        up.set(&[], 1.0);
        let lat = reg.histogram(
            "hy_latency_seconds",
            "Latency.",
            &["route"],
            &[0.5, 1.0, 2.5],
        );
        lat.observe(&["x"], 0.5);
        lat.observe(&["x"], 2.0);
        lat.observe(&["x"], 100.0);
        reg.gauge_fn("hy_queue", "Queued events.", &["target"], || {
            vec![(vec!["z".into()], 2.0), (vec!["y".into()], 0.25)]
        });
        reg.counter_fn("hy_calls_total", "Plugin calls.", &[], || vec![(vec![], 7)]);

        let expected = r##"# HELP hy_requests_total Requests by source.\nA \\ and a "quote".
# TYPE hy_requests_total counter
hy_requests_total{source="a",result="say \"hi\"\n\\"} 2
hy_requests_total{source="b",result="ok"} 1
# HELP hy_up 1 when up.
# TYPE hy_up gauge
hy_up 1
# HELP hy_latency_seconds Latency.
# TYPE hy_latency_seconds histogram
hy_latency_seconds_bucket{route="x",le="0.5"} 1
hy_latency_seconds_bucket{route="x",le="1"} 1
hy_latency_seconds_bucket{route="x",le="2.5"} 2
hy_latency_seconds_bucket{route="x",le="+Inf"} 3
hy_latency_seconds_sum{route="x"} 102.5
hy_latency_seconds_count{route="x"} 3
# HELP hy_queue Queued events.
# TYPE hy_queue gauge
hy_queue{target="y"} 0.25
hy_queue{target="z"} 2
# HELP hy_calls_total Plugin calls.
# TYPE hy_calls_total counter
hy_calls_total 7
"##;
        let text = reg.render();
        assert_eq!(text, expected);
        let (headers, _) = strict_parse(&text);
        assert_eq!(headers[0].2, "Requests by source.\nA \\ and a \"quote\".");
    }

    #[test]
    fn tricky_label_values_round_trip_through_prometheus_parse() {
        let reg = Registry::new();
        let deliveries = reg.counter(
            "hy_deliveries_total",
            "Delivery attempts by target and outcome.",
            &["target", "outcome"],
        );
        let inflight = reg.gauge("hy_inflight", "Deliveries in flight.", &["target"]);
        let latency = reg.histogram(
            "hy_delivery_seconds",
            "Delivery latency.",
            &["target"],
            LATENCY_BUCKETS,
        );
        reg.gauge_fn(
            "hy_plugin_up",
            "1 if the plugin serves.",
            &["plugin"],
            || {
                TRICKY
                    .iter()
                    .enumerate()
                    .map(|(i, p)| (vec![p.to_string()], (i % 2) as f64))
                    .collect()
            },
        );
        for (i, t) in TRICKY.iter().enumerate() {
            let n = i as u64 + 1;
            deliveries.add(&[t, "ok"], n);
            inflight.set(&[t], -(n as f64) / 4.0);
            for _ in 0..n {
                latency.observe(&[t], 0.003);
            }
            latency.observe(&[t], 45.0);
        }

        let text = reg.render();
        let scrape = parse_with_prometheus_parse(&text);
        assert_eq!(
            scrape.docs.get("hy_deliveries_total").map(String::as_str),
            Some("Delivery attempts by target and outcome.")
        );
        assert_eq!(
            scrape.docs.get("hy_delivery_seconds").map(String::as_str),
            Some("Delivery latency.")
        );
        let find = |metric: &str, label: &str, value: &str| {
            let found: Vec<_> = scrape
                .samples
                .iter()
                .filter(|s| {
                    s.metric == metric
                        && s.labels.get(label).map(|v| unescape(v, true)).as_deref() == Some(value)
                })
                .collect();
            assert_eq!(found.len(), 1, "{metric}{{{label}={value:?}}} in\n{text}");
            found[0].value.clone()
        };
        for (i, t) in TRICKY.iter().enumerate() {
            let n = i as f64 + 1.0;
            assert_eq!(find("hy_deliveries_total", "target", t), Value::Counter(n));
            assert_eq!(find("hy_inflight", "target", t), Value::Gauge(-n / 4.0));
            assert_eq!(
                find("hy_plugin_up", "plugin", t),
                Value::Gauge((i % 2) as f64)
            );
            let Value::Histogram(buckets) = find("hy_delivery_seconds", "target", t) else {
                panic!("not a histogram");
            };
            let les: Vec<f64> = buckets.iter().map(|b| b.less_than).collect();
            let mut want_les = LATENCY_BUCKETS.to_vec();
            want_les.push(f64::INFINITY);
            assert_eq!(les, want_les);
            for b in &buckets {
                let want = if b.less_than < 0.003 {
                    0.0
                } else if b.less_than < 45.0 {
                    n
                } else {
                    n + 1.0
                };
                assert_eq!(b.count, want, "bucket le={}", b.less_than);
            }
            assert_eq!(
                find("hy_delivery_seconds_count", "target", t),
                Value::Untyped(n + 1.0)
            );
            let Value::Untyped(sum) = find("hy_delivery_seconds_sum", "target", t) else {
                panic!("sum not untyped");
            };
            assert!((sum - (n * 0.003 + 45.0)).abs() < 1e-9, "sum {sum}");
        }

        // The strict reader agrees, label values included.
        let (headers, samples) = strict_parse(&text);
        let kinds: Vec<&str> = headers.iter().map(|h| h.1.as_str()).collect();
        assert_eq!(kinds, ["counter", "gauge", "histogram", "gauge"]);
        let targets: Vec<&str> = samples
            .iter()
            .filter(|s| s.name == "hy_deliveries_total")
            .map(|s| s.label("target").unwrap())
            .collect();
        let mut sorted = TRICKY.to_vec();
        sorted.sort();
        assert_eq!(targets, sorted, "series sorted by label value");
        assert_eq!(
            histograms(&samples, "hy_delivery_seconds").len(),
            TRICKY.len()
        );
    }

    #[test]
    fn separators_in_label_values_round_trip_strictly() {
        // Legal in the format, but beyond what prometheus-parse can split.
        let odd = [
            "a,b=c}d{e",
            "ends with quote\"",
            "\\",
            "",
            " spaced ",
            "\\n is not a newline",
            "\"\"\n\n\\\\",
        ];
        let reg = Registry::new();
        let c = reg.counter("hy_odd_total", "Odd labels.", &["v", "w"]);
        let h = reg.histogram("hy_odd_seconds", "Odd labels.", &["v"], &[1.0]);
        for (i, v) in odd.iter().enumerate() {
            c.add(&[v, v], i as u64 + 1);
            h.observe(&[v], 0.5);
        }
        let (_, samples) = strict_parse(&reg.render());
        for (i, v) in odd.iter().enumerate() {
            let s = samples
                .iter()
                .find(|s| s.name == "hy_odd_total" && s.label("v") == Some(v))
                .unwrap_or_else(|| panic!("{v:?} lost"));
            assert_eq!(s.label("w"), Some(*v));
            assert_eq!(s.value, i as f64 + 1.0);
            assert_eq!(c.get(&[v, v]), i as u64 + 1);
        }
        let hist = histograms(&samples, "hy_odd_seconds");
        for v in odd {
            let key = vec![("v".to_string(), v.to_string())];
            assert_eq!(hist[&key], [(1.0, 1.0), (f64::INFINITY, 1.0)]);
        }
    }

    #[test]
    fn families_render_before_first_sample() {
        let reg = Registry::new();
        reg.counter("hy_a_total", "A.", &["x"]);
        reg.counter("hy_b_total", "B.", &[]);
        reg.gauge("hy_c", "C.", &["x"]);
        reg.gauge("hy_d", "D.", &[]);
        reg.histogram("hy_e_seconds", "E.", &["x"], &[1.0]);
        reg.histogram("hy_f_seconds", "F.", &[], &[1.0]);
        reg.gauge_fn("hy_g", "G.", &["x"], Vec::new);
        let text = reg.render();
        let (headers, samples) = strict_parse(&text);
        let names: Vec<&str> = headers.iter().map(|h| h.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "hy_a_total",
                "hy_b_total",
                "hy_c",
                "hy_d",
                "hy_e_seconds",
                "hy_f_seconds",
                "hy_g"
            ],
            "declaration order"
        );
        // Label-less families exist from the start, at zero.
        let lines: Vec<String> = samples
            .iter()
            .map(|s| format!("{}{:?} {}", s.name, s.labels, s.value))
            .collect();
        assert_eq!(
            lines,
            [
                "hy_b_total[] 0",
                "hy_d[] 0",
                "hy_f_seconds_bucket[(\"le\", \"1\")] 0",
                "hy_f_seconds_bucket[(\"le\", \"+Inf\")] 0",
                "hy_f_seconds_sum[] 0",
                "hy_f_seconds_count[] 0",
            ]
        );
        parse_with_prometheus_parse(&text);
    }

    #[test]
    fn histogram_buckets_are_inclusive_and_cumulative() {
        let reg = Registry::new();
        // An explicit +Inf bound is accepted and not rendered twice.
        let h = reg.histogram("hy_h", "H.", &[], &[-1.0, 0.0, 0.1, 1.0, f64::INFINITY]);
        for v in [
            -5.0,
            -1.0,
            0.0,
            0.05,
            0.1,
            0.1000001,
            1.0,
            7.0,
            f64::INFINITY,
        ] {
            h.observe(&[], v);
        }
        let (_, samples) = strict_parse(&reg.render());
        let hist = histograms(&samples, "hy_h");
        assert_eq!(
            hist[&Vec::new()],
            [
                (-1.0, 2.0),
                (0.0, 3.0),
                (0.1, 5.0),
                (1.0, 7.0),
                (f64::INFINITY, 9.0)
            ]
        );
        let sum = samples.iter().find(|s| s.name == "hy_h_sum").unwrap();
        assert_eq!(sum.value, f64::INFINITY);

        // NaN counts only in +Inf and poisons the sum, as in the Go client.
        h.observe(&[], f64::NAN);
        let text = reg.render();
        assert!(text.contains("hy_h_bucket{le=\"1\"} 7\n"), "{text}");
        assert!(text.contains("hy_h_bucket{le=\"+Inf\"} 10\n"), "{text}");
        assert!(text.contains("hy_h_sum NaN\n"), "{text}");
        assert!(text.contains("hy_h_count 10\n"), "{text}");
        parse_with_prometheus_parse(&text);
    }

    #[test]
    fn floats_render_so_prometheus_parses_them() {
        let cases: [(f64, &str); 12] = [
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (-3.0, "-3"),
            (0.0005, "0.0005"),
            (2.5, "2.5"),
            (1e-7, "1e-7"),
            (1e300, "1e300"),
            (123456789012345.0, "123456789012345"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ];
        for (v, want) in cases {
            let mut s = String::new();
            write_f64(&mut s, v);
            assert_eq!(s, want);
            let back = parse_go_float(&s);
            assert!(back == v || (back.is_nan() && v.is_nan()), "{v} -> {s}");
        }
        // Shortest round-trip form, never lossy.
        for v in [0.1 + 0.2, 1.0 / 3.0, f64::MAX, f64::MIN_POSITIVE, 5e-324] {
            let mut s = String::new();
            write_f64(&mut s, v);
            assert_eq!(parse_go_float(&s), v, "{s}");
        }
    }

    #[test]
    fn concurrent_increments_are_exact() {
        const THREADS: usize = 4;
        const N: u64 = 10_000;
        let reg = Arc::new(Registry::new());
        let c = reg.counter("hy_c_total", "C.", &["k"]);
        let g = reg.gauge("hy_g", "G.", &["k"]);
        let h = reg.histogram("hy_h_seconds", "H.", &["k"], LATENCY_BUCKETS);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Scrape while writers run: every snapshot must stay valid.
        let scraper = {
            let (reg, stop) = (reg.clone(), stop.clone());
            thread::spawn(move || {
                let mut scrapes = 0;
                while !stop.load(Relaxed) || scrapes == 0 {
                    let (_, samples) = strict_parse(&reg.render());
                    histograms(&samples, "hy_h_seconds");
                    scrapes += 1;
                }
            })
        };
        let writers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (c, g, h) = (c.clone(), g.clone(), h.clone());
                thread::spawn(move || {
                    let own = format!("t{t}");
                    for i in 0..N {
                        c.inc(&["shared"]);
                        c.inc(&[&own]);
                        g.add(&["shared"], 1.0);
                        h.observe(&["shared"], if i % 2 == 0 { 0.25 } else { 50.0 });
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        stop.store(true, Relaxed);
        scraper.join().unwrap();

        let total = THREADS as u64 * N;
        assert_eq!(c.get(&["shared"]), total);
        for t in 0..THREADS {
            assert_eq!(c.get(&[&format!("t{t}")]), N);
        }
        assert_eq!(g.get(&["shared"]), total as f64);
        let (_, samples) = strict_parse(&reg.render());
        let hist = histograms(&samples, "hy_h_seconds");
        let buckets = &hist[&vec![("k".to_string(), "shared".to_string())]];
        assert_eq!(buckets.last().unwrap().1, total as f64);
        let le_quarter = buckets.iter().find(|b| b.0 == 0.25).unwrap();
        assert_eq!(le_quarter.1, (total / 2) as f64);
        let sum = samples
            .iter()
            .find(|s| s.name == "hy_h_seconds_sum")
            .unwrap();
        assert_eq!(sum.value, (total / 2) as f64 * 50.25);
    }

    #[test]
    fn redeclaring_a_family_shares_its_series() {
        let reg = Registry::new();
        let a = reg.counter("hy_x_total", "X.", &["k"]);
        let b = reg.counter("hy_x_total", "X.", &["k"]);
        a.inc(&["v"]);
        b.add(&["v"], 2);
        assert_eq!(a.get(&["v"]), 3);
        let h1 = reg.histogram("hy_y_seconds", "Y.", &[], LATENCY_BUCKETS);
        let h2 = reg.histogram("hy_y_seconds", "Y.", &[], LATENCY_BUCKETS);
        h1.observe(&[], 1.0);
        h2.observe(&[], 1.0);
        let text = reg.render();
        assert_eq!(text.matches("# TYPE hy_x_total").count(), 1);
        assert!(text.contains("hy_x_total{k=\"v\"} 3\n"));
        assert!(text.contains("hy_y_seconds_count 2\n"));
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "declared twice")]
    fn conflicting_redeclaration_fails_in_debug() {
        let reg = Registry::new();
        reg.counter("hy_x_total", "X.", &["k"]);
        reg.counter("hy_x_total", "X.", &["other"]);
    }

    #[test]
    #[cfg(not(debug_assertions))]
    fn conflicting_redeclaration_is_detached_in_release() {
        let reg = Registry::new();
        reg.counter("hy_x_total", "X.", &["k"]);
        let detached = reg.counter("hy_x_total", "X.", &["other"]);
        detached.inc(&["v"]);
        let (headers, samples) = strict_parse(&reg.render());
        assert_eq!(headers.len(), 1);
        assert!(samples.is_empty());
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "wrong number of label values")]
    fn wrong_label_count_fails_in_debug() {
        let reg = Registry::new();
        reg.counter("hy_x_total", "X.", &["a", "b"])
            .inc(&["only one"]);
    }

    #[test]
    #[cfg(not(debug_assertions))]
    fn wrong_label_count_is_ignored_in_release() {
        let reg = Registry::new();
        let c = reg.counter("hy_x_total", "X.", &["a", "b"]);
        c.inc(&["only one"]);
        c.inc(&["a", "b", "c"]);
        assert_eq!(c.get(&["only one"]), 0);
        reg.gauge_fn("hy_y", "Y.", &["a"], || vec![(vec![], 1.0)]);
        let (_, samples) = strict_parse(&reg.render());
        assert!(samples.is_empty());
    }

    #[test]
    fn gauge_set_add_and_clear() {
        let reg = Registry::new();
        let g = reg.gauge("hy_g", "G.", &["k"]);
        g.set(&["a"], 1.5);
        g.add(&["a"], -0.25);
        g.add(&["b"], 2.0);
        assert_eq!(g.get(&["a"]), 1.25);
        assert_eq!(g.get(&["b"]), 2.0);
        assert_eq!(g.get(&["never"]), 0.0);
        g.clear();
        assert_eq!(g.get(&["a"]), 0.0);
        g.set(&["c"], f64::NEG_INFINITY);
        assert_eq!(
            reg.render(),
            "# HELP hy_g G.\n# TYPE hy_g gauge\nhy_g{k=\"c\"} -Inf\n"
        );
    }

    #[test]
    fn collect_fns_run_at_scrape_time_sorted_and_deduped() {
        let reg = Registry::new();
        let source = reg.counter("hy_src_total", "Src.", &[]);
        let mirror = source.clone();
        // A callback may read other metrics: render holds no registry lock.
        reg.counter_fn("hy_mirror_total", "Mirror.", &["k"], move || {
            vec![
                (vec!["z".into()], mirror.get(&[])),
                (vec!["a".into()], 1),
                (vec!["z".into()], mirror.get(&[]) + 100),
            ]
        });
        source.add(&[], 5);
        let text = reg.render();
        assert!(
            text.ends_with("hy_mirror_total{k=\"a\"} 1\nhy_mirror_total{k=\"z\"} 105\n"),
            "{text}"
        );
        source.inc(&[]);
        assert!(reg.render().ends_with("hy_mirror_total{k=\"z\"} 106\n"));
    }

    #[test]
    fn registry_and_handles_are_send_sync() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Registry>();
        assert_send_sync::<CounterVec>();
        assert_send_sync::<GaugeVec>();
        assert_send_sync::<HistogramVec>();
    }
}
