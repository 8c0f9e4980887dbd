//! A strict reader of the OpenMetrics text format (1.0.0), for what
//! `/metrics` serves: `# HELP`, `# TYPE` and `# UNIT` lines, counter, gauge
//! and histogram families, samples without timestamps or exemplars, and
//! the closing `# EOF`. Anything it does not understand is an error, not a
//! line skipped: a lenient parser would let a malformed scrape pass.
//!
//! Checked: every line's syntax (names, label escapes, numbers), that each
//! family is declared once with a type before its samples and that its
//! samples are contiguous and carry the names its type allows (a counter's
//! `_total`, a histogram's `_bucket`/`_sum`/`_count`), no series twice, no
//! label twice, counts that are not negative, and each histogram's buckets
//! in increasing `le` order, cumulative, ending with `+Inf` equal to its
//! `_count`, with a `_sum`.
#![allow(dead_code)]

use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, Clone)]
pub struct Family {
    pub name: String,
    pub kind: Kind,
    pub help: Option<String>,
    pub unit: Option<String>,
    pub samples: Vec<Sample>,
}

#[derive(Debug, Clone)]
pub struct Scrape {
    pub families: Vec<Family>,
}

/// One histogram series: `(le, cumulative count)` in order, `_count` and
/// `_sum`.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub buckets: Vec<(f64, f64)>,
    pub count: f64,
    pub sum: f64,
}

impl Scrape {
    pub fn family(&self, name: &str) -> Option<&Family> {
        self.families.iter().find(|f| f.name == name)
    }

    pub fn samples(&self) -> impl Iterator<Item = &Sample> {
        self.families.iter().flat_map(|f| f.samples.iter())
    }

    /// The value of the one sample named `name` whose labels include
    /// `labels`; `None` when there is none, a panic when several match.
    pub fn sample(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<f64> = self
            .samples()
            .filter(|s| s.name == name && has_labels(s, labels))
            .map(|s| s.value)
            .collect();
        assert!(
            found.len() <= 1,
            "{name}{labels:?} matches {} samples",
            found.len()
        );
        found.first().copied()
    }

    /// The histogram series of family `name` whose labels (other than
    /// `le`) include `labels`.
    pub fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Option<Histogram> {
        let family = self.family(name)?;
        assert_eq!(family.kind, Kind::Histogram, "{name}");
        let pick = |suffix: &str| {
            let wanted = format!("{name}{suffix}");
            family
                .samples
                .iter()
                .filter(move |s| s.name == wanted && has_labels(s, labels))
        };
        let buckets: Vec<(f64, f64)> = pick("_bucket")
            .map(|s| (parse_number(&s.labels["le"]).unwrap(), s.value))
            .collect();
        if buckets.is_empty() {
            return None;
        }
        let one = |suffix: &str| {
            let v: Vec<f64> = pick(suffix).map(|s| s.value).collect();
            assert_eq!(v.len(), 1, "{name}{suffix}{labels:?}: {v:?}");
            v[0]
        };
        Some(Histogram {
            count: one("_count"),
            sum: one("_sum"),
            buckets,
        })
    }
}

fn has_labels(s: &Sample, labels: &[(&str, &str)]) -> bool {
    labels
        .iter()
        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
}

/// A family while its lines are read: its type is known only once its
/// `# TYPE` line is.
struct Building {
    name: String,
    kind: Option<Kind>,
    help: Option<String>,
    unit: Option<String>,
    samples: Vec<Sample>,
}

/// Parses `text`, or says what is wrong with it and where.
pub fn parse(text: &str) -> Result<Scrape, String> {
    let body = text
        .strip_suffix("# EOF\n")
        .or_else(|| text.strip_suffix("# EOF"))
        .ok_or("the exposition does not end with `# EOF`")?;
    let mut families: Vec<Family> = Vec::new();
    let mut current: Option<Building> = None;
    // Every line before `# EOF` ends with a newline.
    let lines = match body.strip_suffix('\n') {
        Some(lines) => lines.split('\n').collect(),
        None if body.is_empty() => vec![],
        None => return Err("no newline before `# EOF`".into()),
    };
    for (i, line) in lines.into_iter().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", i + 1);
        if line.is_empty() {
            return Err(at("empty line".into()));
        }
        if let Some(meta) = line.strip_prefix('#') {
            let meta = meta
                .strip_prefix(' ')
                .ok_or_else(|| at("`#` without a space".into()))?;
            let (keyword, rest) = meta
                .split_once(' ')
                .ok_or_else(|| at("metadata without a name".into()))?;
            let (name, value) = rest.split_once(' ').unwrap_or((rest, ""));
            check_metric_name(name).map_err(at)?;
            if current.as_ref().is_none_or(|f| f.name != name) {
                if let Some(done) = current.take() {
                    families.push(finish(done)?);
                }
                if families.iter().any(|f| f.name == name) {
                    return Err(at(format!("family {name} declared twice")));
                }
                current = Some(Building {
                    name: name.to_string(),
                    kind: None,
                    help: None,
                    unit: None,
                    samples: vec![],
                });
            }
            let f = current.as_mut().unwrap();
            if !f.samples.is_empty() {
                return Err(at("metadata after the family's samples".into()));
            }
            match keyword {
                "HELP" if f.help.is_none() => f.help = Some(unescape(value, false).map_err(at)?),
                "TYPE" if f.kind.is_none() => {
                    f.kind = Some(match value {
                        "counter" => Kind::Counter,
                        "gauge" => Kind::Gauge,
                        "histogram" => Kind::Histogram,
                        other => return Err(at(format!("type {other:?} is not served"))),
                    })
                }
                "UNIT" if f.unit.is_none() => {
                    if value.is_empty() || !name.ends_with(&format!("_{value}")) {
                        return Err(at("the family name does not end with its unit".into()));
                    }
                    f.unit = Some(value.to_string());
                }
                "HELP" | "TYPE" | "UNIT" => return Err(at(format!("a second {keyword}"))),
                other => return Err(at(format!("unknown metadata {other:?}"))),
            }
            continue;
        }
        let sample = parse_sample(line).map_err(at)?;
        let family = current
            .as_mut()
            .ok_or_else(|| at("a sample before any family".into()))?;
        let allowed: &[&str] = match family.kind {
            None => return Err(at("a sample before its family's TYPE".into())),
            Some(Kind::Counter) => &["_total", "_created"],
            Some(Kind::Gauge) => &[""],
            Some(Kind::Histogram) => &["_bucket", "_sum", "_count", "_created"],
        };
        let suffix = sample
            .name
            .strip_prefix(family.name.as_str())
            .filter(|s| allowed.contains(s))
            .ok_or_else(|| {
                at(format!(
                    "not a sample of {} ({:?})",
                    family.name, family.kind
                ))
            })?;
        if (suffix == "_bucket") != sample.labels.contains_key("le") {
            return Err(at("`le` belongs on buckets, and only there".into()));
        }
        let counts = matches!(suffix, "_total" | "_bucket" | "_count");
        if counts && (sample.value.is_nan() || sample.value < 0.0) {
            return Err(at("a count below zero (or NaN)".into()));
        }
        if family
            .samples
            .iter()
            .any(|s| s.name == sample.name && s.labels == sample.labels)
        {
            return Err(at("the same series twice".into()));
        }
        family.samples.push(sample);
    }
    if let Some(done) = current.take() {
        families.push(finish(done)?);
    }
    Ok(Scrape { families })
}

/// Checks a family once all its lines are read.
fn finish(f: Building) -> Result<Family, String> {
    let kind = f
        .kind
        .ok_or_else(|| format!("family {} has no TYPE", f.name))?;
    if kind == Kind::Histogram {
        check_histograms(&f.name, &f.samples)?;
    }
    Ok(Family {
        name: f.name,
        kind,
        help: f.help,
        unit: f.unit,
        samples: f.samples,
    })
}

fn check_histograms(name: &str, samples: &[Sample]) -> Result<(), String> {
    let mut series: BTreeMap<Vec<(String, String)>, Vec<&Sample>> = BTreeMap::new();
    for s in samples {
        let key = s
            .labels
            .iter()
            .filter(|(k, _)| *k != "le")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        series.entry(key).or_default().push(s);
    }
    for (labels, samples) in series {
        let what = format!("{name}{labels:?}");
        let named = |suffix: &str| -> Vec<&Sample> {
            let wanted = format!("{name}{suffix}");
            samples
                .iter()
                .copied()
                .filter(|s| s.name == wanted)
                .collect()
        };
        let mut last_le = f64::NEG_INFINITY;
        let mut last_count = 0.0;
        for b in named("_bucket") {
            let le = parse_number(&b.labels["le"]).map_err(|e| format!("{what}: le: {e}"))?;
            if le <= last_le {
                return Err(format!("{what}: buckets not in increasing `le` order"));
            }
            if b.value < last_count {
                return Err(format!("{what}: buckets not cumulative"));
            }
            (last_le, last_count) = (le, b.value);
        }
        if last_le != f64::INFINITY {
            return Err(format!("{what}: no +Inf bucket last"));
        }
        match named("_count").as_slice() {
            [c] if c.value == last_count => {}
            other => return Err(format!("{what}: _count {other:?} is not the +Inf bucket")),
        }
        if named("_sum").len() != 1 {
            return Err(format!("{what}: no single _sum"));
        }
    }
    Ok(())
}

fn check_metric_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first = chars.next().ok_or("empty metric name")?;
    if (first.is_ascii_alphabetic() || first == '_' || first == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        Ok(())
    } else {
        Err(format!("bad metric name {name:?}"))
    }
}

fn check_label_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first = chars.next().ok_or("empty label name")?;
    if (first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        Ok(())
    } else {
        Err(format!("bad label name {name:?}"))
    }
}

/// `name{labels} value`, nothing after the value.
fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("a sample without a value")?;
    let name = &line[..name_end];
    check_metric_name(name)?;
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = after;
        loop {
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            if !labels.is_empty() {
                rest = rest
                    .strip_prefix(',')
                    .ok_or("labels not separated by `,`")?;
            }
            let eq = rest.find('=').ok_or("a label without `=`")?;
            let key = &rest[..eq];
            check_label_name(key)?;
            rest = rest[eq + 1..]
                .strip_prefix('"')
                .ok_or("a label value without quotes")?;
            let (value, after) = split_quoted(rest)?;
            rest = after;
            if labels.insert(key.to_string(), value).is_some() {
                return Err(format!("label {key} twice"));
            }
        }
    }
    let value = rest.strip_prefix(' ').ok_or("no space before the value")?;
    if value.contains(' ') {
        return Err("something after the value (timestamps and exemplars are not served)".into());
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value: parse_number(value)?,
    })
}

/// The label value up to its closing quote (unescaped), and what follows.
fn split_quoted(s: &str) -> Result<(String, &str), String> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match (escaped, c) {
            (true, _) => escaped = false,
            (false, '\\') => escaped = true,
            (false, '"') => return Ok((unescape(&s[..i], true)?, &s[i + 1..])),
            (false, '\n') => return Err("a newline in a label value".into()),
            _ => {}
        }
    }
    Err("an unterminated label value".into())
}

/// Resolves `\\`, `\n` and (in label values) `\"`; any other escape is an
/// error.
fn unescape(s: &str, quotes: bool) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            if quotes && c == '"' {
                return Err("an unescaped quote".into());
            }
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if quotes => out.push('"'),
            other => return Err(format!("bad escape \\{other:?}")),
        }
    }
    Ok(out)
}

/// An OpenMetrics number: decimal or exponent notation, `+Inf`, `-Inf` or
/// `NaN`; Rust's other spellings (`inf`, `infinity`, `nan`) are refused.
fn parse_number(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => return Ok(f64::INFINITY),
        "-Inf" => return Ok(f64::NEG_INFINITY),
        "NaN" => return Ok(f64::NAN),
        _ => {}
    }
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if !digits.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        || !digits
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'))
    {
        return Err(format!("bad number {s:?}"));
    }
    s.parse().map_err(|_| format!("bad number {s:?}"))
}
