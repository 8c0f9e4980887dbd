//! Query-string parameters as the verifier and the redaction of stored
//! events both see them. They must agree on which pair is "the token
//! parameter": if one decoded names and the other compared them raw, a
//! sender could write `?%74oken=…`, pass verification and have the token
//! stored, shown by the admin API and handed to plugins.

use std::borrow::Cow;

/// Each `&`-separated pair of `query` (a leading `?` is ignored): the pair
/// as written, and its name and value decoded as
/// `application/x-www-form-urlencoded` (`%xx`, `+` as space).
pub fn pairs(query: &str) -> impl Iterator<Item = (&str, Cow<'_, str>, Cow<'_, str>)> {
    let query = query.strip_prefix('?').unwrap_or(query);
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        // A single pair (no `&`): the form decoder yields exactly it, split
        // at its first `=`.
        let (name, value) = url::form_urlencoded::parse(pair.as_bytes())
            .next()
            .unwrap_or_default();
        (pair, name, value)
    })
}

/// The query string without the parameter that carried a credential,
/// other pairs kept exactly as written.
pub fn without_param(query: &str, param: Option<&str>) -> String {
    let Some(param) = param else {
        return query.to_string();
    };
    pairs(query)
        .filter(|(_, name, _)| name != param)
        .map(|(raw, _, _)| raw)
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_compared_decoded() {
        for q in [
            "token=s3cret&keep=1",
            "%74oken=s3cret&keep=1",
            "to%6Ben=s3cret&keep=1",
            "%74%6F%6B%65%6E=s3cret&keep=1",
            "keep=1&token",
        ] {
            assert_eq!(without_param(q, Some("token")), "keep=1", "{q}");
        }
        assert_eq!(without_param("my+key=x&b=%20", Some("my key")), "b=%20");
        assert_eq!(without_param("a=1&&b=2", None), "a=1&&b=2");
        // Other pairs stay as written, encoded or not.
        assert_eq!(
            without_param("x=%41+b&token=t&y", Some("token")),
            "x=%41+b&y"
        );
        assert_eq!(without_param("tokens=1", Some("token")), "tokens=1");
    }

    #[test]
    fn pairs_decode_names_and_values() {
        let p: Vec<(String, String)> = pairs("?%74oken=a+b%2Bc==&x")
            .map(|(_, k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        assert_eq!(
            p,
            [
                ("token".to_string(), "a b+c==".to_string()),
                ("x".to_string(), String::new())
            ]
        );
    }
}
