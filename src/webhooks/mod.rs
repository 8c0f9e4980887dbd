//! Webhook signature schemes hookyard both sends and receives, written once
//! for every side that uses them: outbound delivery, inbound verification
//! and the local tools.

pub mod standard;
