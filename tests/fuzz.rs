//! Hostile input against the real server, on both stores: batches of arbitrary and extreme
//! requests to every method, and damaged encodings of well-formed ones, each answer judged and
//! the stock checked after every batch (see `fuzz/oracle.rs` for what a sound answer is and
//! `fuzz/harness.rs` for what must hold after a batch).
//!
//! Each test runs one server and some thousand batches, well within a minute in a debug build.
//! Set `PROPTEST_CASES` for a longer run. A batch that fails is shrunk to a small one and its
//! seed kept in `proptest-regressions/fuzz/`, which is committed: every run replays those first.

mod common;

#[path = "fuzz/harness.rs"]
mod harness;
#[path = "fuzz/hostile.rs"]
mod hostile;
#[path = "fuzz/mutate.rs"]
mod mutate;
#[path = "fuzz/oracle.rs"]
mod oracle;
#[path = "fuzz/wire.rs"]
mod wire;

use harness::{Harness, Store};
use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, TestCaseError};

/// Cases of each test unless `PROPTEST_CASES` says otherwise, and where failing seeds are kept.
fn config(cases: u32, seeds: &'static str) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(seeds))),
        // a shrink step is a batch against the server: bound the time spent on them
        max_shrink_iters: 1_000,
        max_shrink_time: 120_000,
        ..ProptestConfig::default()
    }
}

const REQUEST_SEEDS: &str = "proptest-regressions/fuzz/requests.txt";
const BYTE_SEEDS: &str = "proptest-regressions/fuzz/bytes.txt";

/// Batches of each test: half a minute to a minute per store in a debug build, Redis being the
/// slower store.
fn batches(store: Store, requests: bool) -> u32 {
    match (store, requests) {
        (Store::Memory, true) => 2_500,
        (Store::Memory, false) => 2_000,
        (Store::Redis, true) => 1_500,
        (Store::Redis, false) => 1_200,
    }
}

fn hostile_requests(store: Store) {
    let harness = Harness::start(store);
    proptest!(config(batches(store, true), REQUEST_SEEDS), |(batch in hostile::batch())| {
        harness.run_steps(&batch).map_err(TestCaseError::fail)?;
    });
}

fn damaged_bytes(store: Store) {
    let harness = Harness::start(store);
    proptest!(config(batches(store, false), BYTE_SEEDS), |(batch in mutate::batch())| {
        harness.run_mangled(&batch).map_err(TestCaseError::fail)?;
    });
}

#[test]
fn hostile_requests_on_the_memory_store() {
    hostile_requests(Store::Memory);
}

#[test]
fn hostile_requests_on_redis() {
    hostile_requests(Store::Redis);
}

#[test]
fn damaged_bytes_on_the_memory_store() {
    damaged_bytes(Store::Memory);
}

#[test]
fn damaged_bytes_on_redis() {
    damaged_bytes(Store::Redis);
}
