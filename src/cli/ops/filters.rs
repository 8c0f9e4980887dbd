//! The filters a command was given, in the forms the admin API and the
//! operator need: query pairs for a list, a JSON body selecting what to
//! replay or retry, and a ready-to-paste command for the next page.

use std::fmt::Write as _;

use clap::Args;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use serde_json::{Map, Value};

use super::{Conn, DEFAULT_ADMIN};
use crate::model::word::Word;

/// Parses a flag into one of the words `W` allows, listing them in the help
/// and in the error for any other value: the same words the API takes.
pub(super) fn word<W: Word + Send + Sync>() -> impl TypedValueParser<Value = W> {
    PossibleValuesParser::new(W::names())
        .map(|s| W::parse(&s).expect("clap passes only the listed words"))
}

#[derive(Args, Debug)]
pub(super) struct Page {
    /// Items per page (the server allows at most 1000).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub(super) limit: Option<u32>,
    /// Continue from a previous page's next_cursor.
    #[arg(long)]
    pub(super) cursor: Option<String>,
}

/// Query pairs for the filters that were given, plus the cursor.
pub(super) fn query(
    filters: &[(&'static str, Option<String>)],
    cursor: &Option<String>,
) -> Vec<(&'static str, String)> {
    filters
        .iter()
        .chain(std::iter::once(&("cursor", cursor.clone())))
        .filter_map(|(k, v)| Some((*k, v.clone()?)))
        .collect()
}

/// A JSON object of the fields that were given.
pub(super) fn body(fields: &[(&str, Option<Value>)]) -> Map<String, Value> {
    fields
        .iter()
        .filter_map(|(k, v)| Some((k.to_string(), v.clone()?)))
        .collect()
}

/// The command that fetches the next page, ready to paste: times are the
/// resolved milliseconds so "--since 1h" does not drift between pages.
pub(super) fn next_hint(
    conn: &Conn,
    command: &str,
    filters: &[(&'static str, Option<String>)],
    cursor: &str,
) -> String {
    let mut hint = format!("next: hookyard {command}");
    if conn.admin.trim_end_matches('/') != DEFAULT_ADMIN {
        let _ = write!(hint, " --admin {}", shell_word(&conn.admin));
    }
    for (k, v) in filters {
        if let Some(v) = v {
            let _ = write!(hint, " --{k} {}", shell_word(v));
        }
    }
    let _ = writeln!(hint, " --cursor {}", shell_word(cursor));
    hint
}

/// Quotes a word for a POSIX shell when it holds anything but safe characters.
fn shell_word(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_.:/@%+=,".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_page_hint_repeats_filters_and_quotes() {
        let conn = Conn {
            admin: "http://10.0.0.2:8081".into(),
            token: Some("secret".into()),
            json: false,
        };
        let hint = next_hint(
            &conn,
            "events list",
            &[
                ("source", Some("shop".into())),
                ("status", None),
                ("since", Some("1763892000000".into())),
            ],
            "evt_01 x",
        );
        assert_eq!(
            hint,
            "next: hookyard events list --admin http://10.0.0.2:8081 --source shop \
             --since 1763892000000 --cursor 'evt_01 x'\n"
        );
        assert!(!hint.contains("secret"), "never echo the token");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }

    #[test]
    fn query_keeps_only_given_filters() {
        let q = query(
            &[("source", Some("s".into())), ("status", None)],
            &Some("c".into()),
        );
        assert_eq!(
            q,
            vec![("source", "s".to_string()), ("cursor", "c".to_string())]
        );
        assert!(body(&[("a", None)]).is_empty());
    }
}
