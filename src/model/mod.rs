//! What hookyard stores and shows, shared by every stage: records (events,
//! outcomes, deliveries, attempts), their time-ordered ids, and the
//! statuses they are spelled with.

pub mod id;
pub mod records;
pub mod word;
