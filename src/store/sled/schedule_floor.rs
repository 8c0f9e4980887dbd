//! Where a scan of a target's schedule may start.
//!
//! A delivered attempt removes its schedule entry. On fjall (an LSM tree) a
//! removed key stays behind as a tombstone until compaction drops it, and a
//! range scan steps over each one: a scan from the start of a target's
//! schedule walked every entry delivered since the last compaction, which
//! was 13 % of the router's CPU in the end-to-end benchmark. A floor is a
//! due time below which the target has no entry, so the scan seeks past
//! those tombstones instead of reading them.
//!
//! The floor only ever claims what the store holds: the writer lowers it
//! after applying each schedule entry it writes, and a scan raises it only
//! when no schedule entry of that target was written while the scan ran
//! (the write counter is unchanged). An entry applied after the scan's
//! snapshot is thus never left below a floor the scan raised. Floors start
//! unknown (0, the whole schedule) when the store opens, so the repairs
//! made while opening, before any scan, need not report theirs.

use std::collections::HashMap;
use std::sync::Mutex;

/// A floor as a scan saw it before reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    pub due: u64,
    writes: u64,
}

#[derive(Default)]
pub struct ScheduleFloors(Mutex<HashMap<String, Seen>>);

impl ScheduleFloors {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Seen>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where a scan of `target`'s schedule starts.
    pub fn seen(&self, target: &str) -> Seen {
        self.map()
            .get(target)
            .copied()
            .unwrap_or(Seen { due: 0, writes: 0 })
    }

    /// Schedule entries (target, due) a batch just applied.
    pub fn written<'a>(&self, entries: impl IntoIterator<Item = (&'a str, u64)>) {
        let mut map = self.map();
        for (target, due) in entries {
            match map.get_mut(target) {
                Some(f) => {
                    f.due = f.due.min(due);
                    f.writes += 1;
                }
                // Unknown stays unknown (0); the count still tells a scan
                // that began before this write not to raise the floor.
                None => {
                    map.insert(target.to_string(), Seen { due: 0, writes: 1 });
                }
            }
        }
    }

    /// After a scan that began at `seen` found no entry below `due`.
    pub fn raise(&self, target: &str, seen: Seen, due: u64) {
        let mut map = self.map();
        match map.get_mut(target) {
            Some(f) if f.writes == seen.writes => f.due = f.due.max(due),
            Some(_) => {}
            None if seen.writes == 0 => {
                map.insert(target.to_string(), Seen { due, writes: 0 });
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scan_raises_the_floor_unless_an_entry_was_written_meanwhile() {
        let f = ScheduleFloors::default();
        let before = f.seen("t");
        assert_eq!(before.due, 0);
        f.raise("t", before, 100);
        assert_eq!(f.seen("t").due, 100);

        // An entry written while a scan ran: the scan's raise is dropped,
        // the write's due stands.
        let before = f.seen("t");
        f.written([("t", 40)]);
        f.raise("t", before, 500);
        assert_eq!(f.seen("t").due, 40);

        // A target first written while a scan of it ran stays unknown.
        let before = f.seen("u");
        f.written([("u", 7)]);
        f.raise("u", before, 900);
        assert_eq!(f.seen("u").due, 0);

        // Floors are per target.
        assert_eq!(f.seen("v").due, 0);
    }
}
