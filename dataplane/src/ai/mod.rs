//! Text generation through any OpenAI-compatible model server (OpenAI,
//! llama.cpp's server, vLLM, …): what a request may ask ([`validate`]), the
//! HTTP client ([`client`]), and one bounded generation ([`generate`]).

pub mod client;
pub mod generate;
pub mod validate;
