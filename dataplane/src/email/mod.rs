//! Email: validation of what a client asks to send, delivery over SMTP
//! (lettre's protocol over our own connections, `relay`), and the worker that drains the outbox (the `emails` table) with
//! retries. Knows nothing of HTTP: the route in `routes/email.rs` calls
//! [`validate::validate`] and `Store::enqueue_email`.

pub mod dkim;
pub mod relay;
pub mod relay_return;
pub mod smtp;
pub mod suppression;
pub mod validate;
pub mod worker;
