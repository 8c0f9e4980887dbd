//! Label values that are closed sets, as enums: a misspelt result is a
//! compile error rather than a new series, and the admin API can walk every
//! value of a set to read its counts back. The text of each value is part
//! of the metrics' contract (docs/admin-api.md).

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};

/// An enum whose variants are label values, with their text.
macro_rules! closed_set {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// Every value, in the order the docs list them.
            pub const ALL: &[$name] = &[$($name::$variant,)+];

            /// The label value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
                std::fmt::Write::write_str(encoder, self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

closed_set! {
    /// Why a webhook request was refused. Requests for a source that is not
    /// configured are not counted: the sender picks that name, and each
    /// would be a new series.
    RejectReason {
        IpNotAllowed => "ip_not_allowed",
        ClientIpUnknown => "client_ip_unknown",
        RateLimited => "rate_limited",
        BodyTooLarge => "body_too_large",
        BodyUnreadable => "body_unreadable",
        BodyTimeout => "body_timeout",
        /// A `Content-Encoding` hookyard does not decode (415).
        UnsupportedEncoding => "unsupported_encoding",
        /// A body that decodes to more than the source's `max_decoded_body`.
        DecodedTooLarge => "decoded_too_large",
        /// A body that is not what its `Content-Encoding` says.
        BodyUndecodable => "body_undecodable",
        MissingHeader => "missing_header",
        BadFormat => "bad_format",
        StaleTimestamp => "stale_timestamp",
        FutureTimestamp => "future_timestamp",
        SignatureMismatch => "signature_mismatch",
        /// A provider handshake without its challenge, with one too long,
        /// or asking for something other than a subscription.
        HandshakeInvalid => "handshake_invalid",
        /// A Meta subscription handshake with the wrong verify token.
        VerifyTokenMismatch => "verify_token_mismatch",
    }
}

closed_set! {
    /// The providers whose endpoint handshakes a source can answer.
    HandshakeProvider {
        Slack => "slack",
        Meta => "meta",
        Graph => "graph",
        Zoom => "zoom",
        Twitter => "twitter",
        Dropbox => "dropbox",
    }
}

closed_set! {
    /// What routing made of an event, or what one plugin decided for it.
    RouteResult {
        /// Deliveries were asked for.
        Routed => "routed",
        Dropped => "dropped",
        Failed => "failed",
    }
}

closed_set! {
    /// How one delivery attempt went.
    AttemptResult {
        Success => "success",
        /// The target answered with a status that is not 2xx.
        HttpError => "http_error",
        Timeout => "timeout",
        ConnectError => "connect_error",
        /// The SSRF guard refused the target's address.
        Refused => "refused",
        RequestError => "request_error",
        /// Its target or its event is gone: the delivery dies unsent.
        Undeliverable => "undeliverable",
    }
}

closed_set! {
    /// The final state a delivery reached.
    DeliveryEnd {
        Delivered => "delivered",
        Dead => "dead",
    }
}

closed_set! {
    /// What an operator asked to run again.
    ReplayKind {
        Event => "event",
        Delivery => "delivery",
    }
}

closed_set! {
    /// How a config reload ended.
    ReloadResult {
        /// Validated and swapped in.
        Applied => "applied",
        /// Refused (the file did not validate); the running config stays.
        Refused => "refused",
    }
}

closed_set! {
    /// What asked for a config reload.
    ReloadTrigger {
        /// SIGHUP (what `hookyard reload` without an admin address sends
        /// is the admin API instead).
        Signal => "signal",
        /// `POST /admin/config/reload` (and `hookyard reload`).
        Admin => "admin",
        /// The file changed (`server.watch_config`).
        File => "file",
    }
}

closed_set! {
    /// Records the retention sweep removes.
    SweptKind {
        Events => "events",
        Deliveries => "deliveries",
        Attempts => "attempts",
    }
}

closed_set! {
    /// A target's state in one word: disabled and paused win over the
    /// circuit.
    TargetState {
        Closed => "closed",
        Open => "open",
        HalfOpen => "half_open",
        Paused => "paused",
        Disabled => "disabled",
    }
}

// Label sets. The field order is the label order in the exposition.

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct SourceLabel {
    pub(super) source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RejectLabels {
    pub(super) source: String,
    pub(super) reason: RejectReason,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct HandshakeLabels {
    pub(super) source: String,
    pub(super) provider: HandshakeProvider,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ResultLabel {
    pub(super) result: RouteResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct NodeLabel {
    pub(super) node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct PluginLabel {
    pub(super) plugin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct PluginResultLabels {
    pub(super) plugin: String,
    pub(super) result: RouteResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct TargetLabel {
    pub(super) target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct AttemptLabels {
    pub(super) target: String,
    pub(super) result: AttemptResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct DeliveryLabels {
    pub(super) target: String,
    pub(super) result: DeliveryEnd,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct TargetStateLabels {
    pub(super) target: String,
    pub(super) state: TargetState,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ReplayLabel {
    pub(super) kind: ReplayKind,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ReloadLabel {
    pub(super) result: ReloadResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct SweptLabel {
    pub(super) kind: SweptKind,
}
