//! Notifications to `WEBHOOK_URL`: `email.sent`, `email.failed` and
//! `system.error`.
//!
//! An event is a row in the store's `webhook_events` queue before anything
//! is sent: the email worker writes `email.sent` or `email.failed` in the same
//! transaction as the email's new status, and the [`monitor`] writes
//! `system.error` when a dependency stops answering. The [`worker`] delivers
//! the queue with retries, signed per Standard Webhooks ([`signature`]), as
//! the same event id every time so receivers can drop duplicates.

pub mod event;
pub mod monitor;
pub mod signature;
pub mod worker;

pub use event::{EventType, NewEvent};
