//! Tests that run the built `sealroom` binary (and the repository's scripts): its
//! commands (but the demo, in `tests/cli_demo.rs`), a relay node started from a config file, its metrics and their docs. One test
//! binary, so that CI links it once.

mod support;

mod cli_token;
mod docs_metrics;
mod mls_restart;
mod ops_config;
mod ops_node;
mod relay_deps;
mod sla_restart;
