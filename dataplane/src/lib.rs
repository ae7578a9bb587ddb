//! The SecureVault data plane: an HTTP API for transactional email and AI text
//! generation, with health, statistics and Prometheus metrics.
//!
//! How a request flows, and where to read about each step:
//!
//! - [`config`] turns the environment ([`cli::Settings`]) into a validated
//!   [`config::Config`] before anything starts.
//! - [`server`] opens the [`store`], migrates it, binds and serves until
//!   SIGTERM, then drains requests in flight; [`connections`] serves each
//!   client connection, with a cap on how many and timeouts for slow ones.
//! - [`app`] assembles the router and the [`middleware`] (request id, security
//!   headers, metrics, JSON errors, timeout, body limit), in one place.
//! - [`routes`] map paths to handlers, one file per area; handlers parse,
//!   call one domain function ([`stats`], [`health`], …) and map its error to
//!   an [`error::ApiError`].
//! - [`middleware::auth`] guards every route but health, metrics, OpenAPI and
//!   login: [`auth`] says who the caller is (session or API key), the scope
//!   decides what it may call, [`ratelimit`] whether it is within budget;
//!   [`audit`] records what it did.
//! - [`store`] is the SQL store (SQLite or PostgreSQL, the same queries),
//!   [`cache`] the Redis or in-process cache, [`telemetry`] logs and metrics;
//!   what they write on disk is private ([`private_files`]).
//! - [`console`] is the web console under `/console`: HTML pages over the
//!   same handlers, for people.

pub mod ai;
pub mod app;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod cache;
pub mod cli;
pub mod config;
pub mod connections;
pub mod console;
pub mod email;
pub mod error;
pub mod extract;
pub mod health;
pub mod middleware;
pub mod private_files;
pub mod queue_loop;
pub mod ratelimit;
pub mod retention;
pub mod routes;
pub mod server;
pub mod shutdown;
pub mod stats;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod webhooks;
