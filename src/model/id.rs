//! Time-ordered unique ids (ULID layout: 48-bit milliseconds + 80 bits that
//! start random and count up within a millisecond). Sorting ids sorts by
//! creation time, which lets the store list events by time with a key scan.
//!
//! [`EventId`] and [`DeliveryId`] keep the two kinds apart in signatures
//! and records: both are `prefix_` + 26 characters, and a delivery id where
//! an event id belongs would otherwise only fail as "not found". On the
//! wire and in the store they are plain strings.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// What every id of this kind starts with (before the `_`).
            pub const PREFIX: &'static str = $prefix;

            /// A new id, later than every id this process made before.
            pub fn generate() -> $name {
                $name(new_id($prefix))
            }

            /// The creation time (unix ms) the id encodes.
            pub fn time(&self) -> Option<u64> {
                time_of(&self.0)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        /// Any text: ids come from paths and stored records, and one that
        /// is not well-formed is simply not found.
        impl From<String> for $name {
            fn from(s: String) -> $name {
                $name(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> $name {
                $name(s.to_string())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        /// As the string it is, quoted: messages say `no event "evt_…"`.
        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Debug::fmt(&self.0, f)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

id_type!(
    /// An event's id, `evt_…`: taken on arrival, so it carries the arrival
    /// time.
    EventId,
    "evt"
);

id_type!(
    /// A delivery's id, `msg_…`: the `webhook-id` its target sees, the same
    /// on every attempt.
    DeliveryId,
    "msg"
);

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const RANDOM_MASK: u128 = (1 << 80) - 1;

/// The first millisecond an id cannot hold (its time field is 48 bits wide,
/// up to the year 10889).
pub const TIME_LIMIT_MS: u64 = 1 << 48;

static LAST: Mutex<(u64, u128)> = Mutex::new((0, 0));

/// Current unix time in milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A new id with the given prefix, e.g. `evt_01J9...`. Strictly increasing
/// within this process even when the clock stalls or steps back.
pub fn new_id(prefix: &str) -> String {
    let value = {
        let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
        let ms = now_ms();
        if ms > last.0 {
            *last = (ms, rand::random::<u128>() & RANDOM_MASK >> 1);
        } else {
            last.1 = (last.1 + 1) & RANDOM_MASK;
        }
        ((last.0 as u128) << 80) | last.1
    };
    encode(prefix, value)
}

fn encode(prefix: &str, value: u128) -> String {
    let mut out = String::with_capacity(prefix.len() + 27);
    out.push_str(prefix);
    out.push('_');
    for i in (0..26).rev() {
        let digit = ((value >> (i * 5)) & 31) as usize;
        out.push(ALPHABET[digit] as char);
    }
    out
}

/// The creation time (unix ms) an id encodes; lets time filters and the
/// retention sweep work on keys alone, without reading records.
pub fn time_of(id: &str) -> Option<u64> {
    let (_, code) = id.rsplit_once('_')?;
    if code.len() != 26 {
        return None;
    }
    let mut value: u128 = 0;
    for c in code.bytes() {
        let digit = ALPHABET.iter().position(|&a| a == c)? as u128;
        value = value.checked_mul(32)? | digit;
    }
    Some((value >> 80) as u64)
}

/// The smallest id with this prefix created at `ms`: a key-range bound for
/// "created at or after `ms`". A time past [`TIME_LIMIT_MS`] saturates to
/// a bound above every id (masking it to 48 bits would wrap it to a time
/// long past and turn an upper bound into "nothing").
pub fn lowest_at(prefix: &str, ms: u64) -> String {
    if ms >= TIME_LIMIT_MS {
        return encode(prefix, u128::MAX);
    }
    encode(prefix, (ms as u128) << 80)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_strictly_increasing() {
        let mut prev = new_id("evt");
        for _ in 0..10_000 {
            let next = new_id("evt");
            assert!(next > prev, "{next} <= {prev}");
            prev = next;
        }
        assert_eq!(prev.len(), 30);
    }

    #[test]
    fn ids_encode_their_time() {
        let before = now_ms();
        let id = new_id("evt");
        let t = time_of(&id).unwrap();
        assert!(t >= before && t <= now_ms());
        assert!(lowest_at("evt", t) <= id);
        assert!(lowest_at("evt", t + 1) > id);
        assert_eq!(
            time_of(&lowest_at("msg", 1_763_892_000_123)),
            Some(1_763_892_000_123)
        );
        assert_eq!(time_of("evt_short"), None);
    }

    #[test]
    fn typed_ids_are_plain_strings_on_the_wire() {
        let id = EventId::generate();
        assert!(id.starts_with("evt_"), "{id}");
        assert!(id.time().is_some());
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<EventId>(&json).unwrap(), id);
        assert!(DeliveryId::generate().starts_with("msg_"));
    }

    #[test]
    fn bounds_past_the_time_field_saturate() {
        let id = new_id("evt");
        let top = lowest_at("evt", TIME_LIMIT_MS);
        assert!(top > id);
        assert!(top > lowest_at("evt", TIME_LIMIT_MS - 1));
        assert_eq!(lowest_at("evt", u64::MAX), top);
        assert_eq!(
            time_of(&lowest_at("evt", TIME_LIMIT_MS - 1)),
            Some(TIME_LIMIT_MS - 1)
        );
    }
}
