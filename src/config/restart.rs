//! What a reload can change and what needs a restart, and the list of
//! changes a reload reports, both from the file's tables as written.
//!
//! Restart-only: everything under `[server]` (listeners, data directory,
//! durability, limits, TLS files, retention) and `[store]`, and the plugin
//! and cache directories: they are bound, opened or spawned once at start.
//! A reload that changes them keeps their running values and says so.

use super::Config;

/// Top-level `[plugins]` keys that need a restart.
const RESTART_PLUGIN_KEYS: &[&str] = &["dir", "cache_dir"];

/// Keys of `new` that differ from `running` but cannot change while
/// running, as dotted names (`server.listen`).
pub fn restart_only(running: &Config, new: &Config) -> Vec<String> {
    let (old, new_raw) = (raw(running), raw(new));
    let mut out = Vec::new();
    for section in ["server", "store"] {
        out.extend(changed_keys(
            section,
            table(&old, section),
            table(&new_raw, section),
        ));
    }
    let (op, np) = (table(&old, "plugins"), table(&new_raw, "plugins"));
    for key in RESTART_PLUGIN_KEYS {
        if op.get(*key) != np.get(*key) {
            out.push(format!("plugins.{key}"));
        }
    }
    if running.meters_fuel() != new.meters_fuel() {
        // The engine meters fuel or not for its whole life.
        out.push("plugins.fuel (turning fuel metering on or off)".into());
    }
    out
}

/// `new` with the restart-only parts of `running`, so the serving config
/// always says what actually runs.
pub fn keep_running(running: &Config, mut new: Config) -> Config {
    new.server = running.server.clone();
    new.store = running.store.clone();
    new.plugins.dir = running.plugins.dir.clone();
    new.plugins.cache_dir = running.plugins.cache_dir.clone();
    new
}

/// What applying `new` over `running` changes, one line per source,
/// target or plugin table added, removed or changed, and `delivery` /
/// plugin defaults when they changed.
pub fn changes(running: &Config, new: &Config) -> Vec<String> {
    let (old, new_raw) = (raw(running), raw(new));
    let mut out = Vec::new();
    for section in ["sources", "targets"] {
        let (o, n) = (table(&old, section), table(&new_raw, section));
        out.extend(changed_entries(section, &o, &n));
    }
    let (op, np) = (table(&old, "plugins"), table(&new_raw, "plugins"));
    let (op_tables, op_defaults) = split_plugins(&op);
    let (np_tables, np_defaults) = split_plugins(&np);
    out.extend(changed_entries("plugins", &op_tables, &np_tables));
    if op_defaults != np_defaults {
        out.push("plugins: defaults changed".into());
    }
    if table(&old, "delivery") != table(&new_raw, "delivery") {
        out.push("delivery: changed".into());
    }
    out
}

fn raw(c: &Config) -> toml::Table {
    c.file.as_ref().map(|f| f.raw.clone()).unwrap_or_default()
}

fn table(t: &toml::Table, key: &str) -> toml::Table {
    match t.get(key) {
        Some(toml::Value::Table(t)) => t.clone(),
        _ => toml::Table::new(),
    }
}

/// `section.key` for each key whose value differs.
fn changed_keys(section: &str, old: toml::Table, new: toml::Table) -> Vec<String> {
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| format!("{section}.{k}"))
        .collect()
}

fn changed_entries(section: &str, old: &toml::Table, new: &toml::Table) -> Vec<String> {
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| match (old.get(k), new.get(k)) {
            (None, Some(_)) => Some(format!("{section}.{k}: added")),
            (Some(_), None) => Some(format!("{section}.{k}: removed")),
            (Some(a), Some(b)) if a != b => Some(format!("{section}.{k}: changed")),
            _ => None,
        })
        .collect()
}

/// `[plugins]` holds both defaults (plain keys) and one table per plugin.
fn split_plugins(p: &toml::Table) -> (toml::Table, toml::Table) {
    let (mut tables, mut defaults) = (toml::Table::new(), toml::Table::new());
    for (k, v) in p {
        if RESTART_PLUGIN_KEYS.contains(&k.as_str()) {
            continue;
        }
        match v {
            toml::Value::Table(_) => tables.insert(k.clone(), v.clone()),
            _ => defaults.insert(k.clone(), v.clone()),
        };
    }
    (tables, defaults)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn load(text: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hookyard.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(&path).unwrap()
    }

    #[test]
    fn restart_only_keys_are_named_and_keep_their_running_values() {
        let a = load("[server]\nlisten = \"127.0.0.1:8080\"\n[sources.a]\n");
        let b = load("[server]\nlisten = \"127.0.0.1:9999\"\n[sources.a]\n[sources.b]\n");
        assert_eq!(restart_only(&a, &b), vec!["server.listen".to_string()]);
        let kept = keep_running(&a, b);
        assert_eq!(kept.server.listen, a.server.listen);
        assert!(kept.sources.contains_key("b"));
        assert!(Path::new(&kept.file.unwrap().path).ends_with("hookyard.toml"));
    }

    #[test]
    fn changes_name_each_entry() {
        let a = load(
            "[sources.a]\ntargets = [\"x\"]\n[sources.gone]\n[targets.x]\nurl = \"http://127.0.0.1:1/\"\n",
        );
        let b = load(
            "[sources.a]\ntargets = []\n[sources.new]\n[targets.x]\nurl = \"http://127.0.0.1:1/\"\n[plugins.p]\nconfig = { k = \"v\" }\n",
        );
        assert_eq!(
            changes(&a, &b),
            vec![
                "sources.a: changed",
                "sources.gone: removed",
                "sources.new: added",
                "plugins.p: added",
            ]
        );
        assert!(changes(&a, &a).is_empty());
    }
}
