//! What hookyard stores and shows, shared by every stage: records (events,
//! outcomes, deliveries, attempts) and their time-ordered ids.

pub mod id;
pub mod records;
