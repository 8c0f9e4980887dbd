//! W3C Trace Context (`traceparent`, `tracestate`) as an event carries it
//! from its sender to every delivery, so a request can be followed from the
//! provider to the receiver.
//!
//! The headers are stored with the event as they arrived (an event keeps
//! all its headers); what is *forwarded* is checked here first. A receiver
//! that trusts `traceparent` would otherwise be fed whatever a sender
//! wrote, so an invalid one is dropped rather than passed on, and
//! `tracestate` travels only with a valid `traceparent` and within the
//! 512 bytes the specification asks vendors to propagate.

/// The most bytes of `tracestate` forwarded; a longer one is dropped whole
/// (cutting it could split an entry).
pub const MAX_TRACESTATE: usize = 512;

pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// A valid `traceparent` and the `tracestate` that goes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    traceparent: String,
    tracestate: Option<String>,
}

impl TraceContext {
    /// From a request's headers (lower-case names, in order). `None` when
    /// there is no `traceparent`, more than one, or it is not valid.
    pub fn from_headers(headers: &[(String, String)]) -> Option<TraceContext> {
        let mut parents = headers.iter().filter(|(k, _)| k == TRACEPARENT);
        let (_, parent) = parents.next()?;
        if parents.next().is_some() || !valid_traceparent(parent) {
            return None;
        }
        // Several tracestate lines are one list (RFC 9110 field combining).
        let states: Vec<&str> = headers
            .iter()
            .filter(|(k, _)| k == TRACESTATE)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
            .collect();
        let state = states.join(",");
        let tracestate = (!state.is_empty()
            && state.len() <= MAX_TRACESTATE
            && state.bytes().all(|b| (0x20..=0x7e).contains(&b)))
        .then_some(state);
        Some(TraceContext {
            traceparent: parent.clone(),
            tracestate,
        })
    }

    pub fn traceparent(&self) -> &str {
        &self.traceparent
    }

    pub fn tracestate(&self) -> Option<&str> {
        self.tracestate.as_deref()
    }

    /// The 32 hex digits naming the trace, for log lines.
    pub fn trace_id(&self) -> &str {
        &self.traceparent[3..35]
    }
}

/// `version-traceid-parentid-flags`: 2, 32, 16 and 2 lowercase hex digits.
/// Version `ff` is invalid, as are an all-zero trace or parent id. Only the
/// 55-character form is accepted: a future version's extra fields are not
/// forwarded on a guess about their meaning.
fn valid_traceparent(value: &str) -> bool {
    let b = value.as_bytes();
    if b.len() != 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return false;
    }
    let hex = |r: std::ops::Range<usize>| {
        b[r].iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
    };
    let zero = |r: std::ops::Range<usize>| b[r].iter().all(|&c| c == b'0');
    hex(0..2)
        && &b[0..2] != b"ff"
        && hex(3..35)
        && !zero(3..35)
        && hex(36..52)
        && !zero(36..52)
        && hex(53..55)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the W3C Trace Context specification, section 3.2.
    const SPEC: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_specification_example_is_forwarded_with_its_state() {
        let t = TraceContext::from_headers(&headers(&[
            ("content-type", "application/json"),
            ("traceparent", SPEC),
            ("tracestate", "rojo=00f067aa0ba902b7"),
            ("tracestate", "congo=t61rcWkgMzE"),
        ]))
        .unwrap();
        assert_eq!(t.traceparent(), SPEC);
        assert_eq!(t.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            t.tracestate(),
            Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
        );
    }

    #[test]
    fn invalid_traceparents_are_dropped() {
        for bad in [
            "",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "junk",
        ] {
            assert_eq!(
                TraceContext::from_headers(&headers(&[
                    ("traceparent", bad),
                    ("tracestate", "a=b")
                ])),
                None,
                "{bad:?}"
            );
        }
        // Two traceparents: which one is the sender's?
        assert_eq!(
            TraceContext::from_headers(&headers(&[("traceparent", SPEC), ("traceparent", SPEC)])),
            None
        );
    }

    #[test]
    fn tracestate_is_bounded() {
        let at_limit = format!("a={}", "x".repeat(MAX_TRACESTATE - 2));
        let t = TraceContext::from_headers(&headers(&[
            ("traceparent", SPEC),
            ("tracestate", &at_limit),
        ]))
        .unwrap();
        assert_eq!(t.tracestate(), Some(at_limit.as_str()));
        let over = format!("a={}", "x".repeat(MAX_TRACESTATE - 1));
        let t =
            TraceContext::from_headers(&headers(&[("traceparent", SPEC), ("tracestate", &over)]))
                .unwrap();
        assert_eq!(t.traceparent(), SPEC);
        assert_eq!(t.tracestate(), None);
    }
}
