//! Enums that cross the wire as one word: in JSON, in query strings and
//! on the command line. serde gives the JSON form; [`Word`] gives the rest
//! from the same list, so a filter, a flag and a field cannot disagree on
//! the spelling (each enum's tests check that serde spells them alike).

/// A closed set of words; `ALL` in the order messages list them.
pub trait Word: Copy + Eq + 'static {
    const ALL: &'static [Self];

    fn as_str(self) -> &'static str;

    /// The variant spelled `text`, exactly.
    fn parse(text: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|w| w.as_str() == text)
    }

    /// Every spelling, for help and error messages.
    fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|w| w.as_str()).collect()
    }
}

/// Checks that serde writes and reads every variant of `W` as
/// [`Word::as_str`] spells it.
#[cfg(test)]
pub fn assert_serde_agrees<W>()
where
    W: Word + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
{
    for &w in W::ALL {
        let json = serde_json::to_value(w).unwrap();
        assert_eq!(json, serde_json::json!(w.as_str()), "{w:?}");
        assert_eq!(serde_json::from_value::<W>(json).unwrap(), w);
        assert_eq!(W::parse(w.as_str()), Some(w));
    }
}
