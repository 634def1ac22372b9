//! The built `sealroom` binary, and the node-process helpers of `sealroom-test-support`.

use std::process::Command;

pub(crate) use sealroom_test_support::TempDir;
pub(crate) use sealroom_test_support::node::{Node, http, join, metric, next_event, ticket};

/// The `sealroom` binary these tests were built with.
pub(crate) fn sealroom() -> Command {
    sealroom_test_support::node::binary(env!("CARGO_BIN_EXE_sealroom"))
}
