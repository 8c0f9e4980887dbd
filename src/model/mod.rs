//! What hookyard stores and shows, shared by every stage: records (events,
//! outcomes, deliveries, attempts), their time-ordered ids, the statuses
//! they are spelled with, and the trace context an event carries.

pub mod id;
pub mod records;
pub mod trace;
pub mod word;
