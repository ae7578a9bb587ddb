//! Text generation through any OpenAI-compatible model server (OpenAI,
//! llama.cpp's server, vLLM, …): what a request may ask ([`validate`]), the
//! HTTP client ([`client`]), one bounded generation over the model servers
//! ([`generate`]), the token budgets per key and account ([`budget`]), and
//! a generation from request to record ([`pipeline`]).

pub mod budget;
pub mod client;
pub mod generate;
pub mod pipeline;
pub mod validate;
