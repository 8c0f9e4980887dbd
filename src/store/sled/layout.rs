//! Where each record lives in the store's one sled tree: a one-byte
//! prefix per kind, then the record's ids. Public so that
//! `benches/sled_floor.rs` writes the keys the store writes, and a change
//! of layout moves both.
//!
//! Ids are time-ordered, so new events, deliveries and attempts go to the
//! right edge of their kind's range, and a prefix scan lists a kind in
//! creation order.

pub const EVENT: u8 = b'e';
pub const TO_ROUTE: u8 = b'r';
pub const OUTCOME: u8 = b'o';
pub const DELIVERY: u8 = b'd';
pub const EVENT_DELIVERY: u8 = b'x';
/// Schedule entries of stores from before the per-target schedule; moved
/// to [`SCHEDULE`] when such a store is opened.
pub const LEGACY_SCHEDULE: u8 = b's';
pub const SCHEDULE: u8 = b'q';
pub const ATTEMPT: u8 = b'a';
pub const DEAD: u8 = b'z';
pub const TARGET: u8 = b't';
pub const KV: u8 = b'k';
pub const IDEMPOTENCY: u8 = b'i';
pub const DELIVERY_BODY: u8 = b'y';
pub const LIVE: u8 = b'l';
/// The recovery probe's key (see `recovery`).
pub const PROBE: u8 = b'p';

pub fn key(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len = 1 + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut k = Vec::with_capacity(len);
    k.push(prefix);
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

/// Per target, then by due time: the dispatcher reads the head of its
/// target's range. The NUL ends the target's name so that one target's
/// range never runs into another whose name it prefixes.
pub fn schedule_key(target: &str, due_ms: u64, delivery_id: &str) -> Vec<u8> {
    key(
        SCHEDULE,
        &[
            target.as_bytes(),
            &[0],
            &due_ms.to_be_bytes(),
            delivery_id.as_bytes(),
        ],
    )
}

pub fn schedule_prefix(target: &str) -> Vec<u8> {
    key(SCHEDULE, &[target.as_bytes(), &[0]])
}

/// A schedule key's target, due time and delivery id; `None` for a key
/// of another kind or one cut short.
pub fn parse_schedule_key(k: &[u8]) -> Option<(&str, u64, &str)> {
    let rest = k.strip_prefix(&[SCHEDULE])?;
    let end = rest.iter().position(|&b| b == 0)?;
    let target = std::str::from_utf8(&rest[..end]).ok()?;
    let rest = &rest[end + 1..];
    let due = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
    let id = std::str::from_utf8(&rest[8..]).ok()?;
    Some((target, due, id))
}

pub fn kv_key(plugin: &str, k: &str) -> Vec<u8> {
    key(KV, &[plugin.as_bytes(), &[0], k.as_bytes()])
}

/// An event's index entry for one of its deliveries, so the deliveries of
/// an event are one prefix scan ([`event_deliveries_prefix`]).
pub fn event_delivery_key(event_id: &str, delivery_id: &str) -> Vec<u8> {
    key(
        EVENT_DELIVERY,
        &[event_id.as_bytes(), b"/", delivery_id.as_bytes()],
    )
}

pub fn event_deliveries_prefix(event_id: &str) -> Vec<u8> {
    key(EVENT_DELIVERY, &[event_id.as_bytes(), b"/"])
}

/// Attempt `n` of a delivery; big-endian so attempts list in order.
pub fn attempt_key(delivery_id: &str, n: u32) -> Vec<u8> {
    key(ATTEMPT, &[delivery_id.as_bytes(), b"/", &n.to_be_bytes()])
}

pub fn attempts_prefix(delivery_id: &str) -> Vec<u8> {
    key(ATTEMPT, &[delivery_id.as_bytes(), b"/"])
}
