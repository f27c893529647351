//! dom-router: distributed order management routing. It keeps stock across warehouses,
//! stores, 3PL sites and dropship vendors, and decides for each order which nodes ship which
//! lines under customer-segment rules, over a gRPC API (`proto/dom/v1`).
//!
//! # Layout
//!
//! The folders follow the layers, from the core outwards. The core takes its settings and
//! rules as plain data from [`config`] and stock through the [`store`] trait, and never names
//! gRPC or Redis: tonic and prost appear only in [`api`], [`server`] and `metrics`, and the
//! redis crate only under `store/redis/`.
//!
//! | layer | modules | what |
//! | --- | --- | --- |
//! | domain core | [`domain`], [`sourcing`], [`engine`], [`events`], [`Error`], [`clock`] | nodes, segments, orders, plans and refusals; admission, candidates, the numeric instance and the strategies; quotes, reservations and feeds in domain terms; the log of what changed, its cursors and filters |
//! | storage | [`store`] (`memory`, `redis/`, `conformance/`) | stock, holds and reservations behind one trait, in memory or in Redis (one server or a cluster), with one suite every store passes |
//! | configuration | [`config`] | settings layered from files and the environment, the network, segments, stock and rule files, each checked with errors that name file, field and problem |
//! | transport | [`api`] | gRPC adapters: they check and convert messages, call the engine, and map its errors to status codes once |
//! | serving | [`server`] (`access`, `deadline`, `reload`, `telemetry`, `webhooks`), `metrics` | listeners, TLS, tokens and roles, the request timeout, health, reflection, rule reloads, alerts, webhook delivery, logs, traces and Prometheus metrics, graceful stop |
//! | planner tools | [`replay`] | past orders through the engine against one config or two, and the report |
//!
//! The binary (`src/main.rs`) only parses its flags and calls into [`server`], [`config`] and
//! [`replay`]. With the `testkit` feature (on for this crate's own tests, benchmarks and
//! examples) come `store::conformance` and `synth`, the synthetic networks and orders.

pub mod api;
pub mod clock;
pub mod config;
pub mod domain;
pub mod engine;
mod error;
pub mod events;
pub mod lookahead;
pub(crate) mod metrics;
pub mod replay;
pub mod server;
pub mod sourcing;
pub mod store;
#[cfg(any(test, feature = "testkit"))]
pub mod synth;

pub use engine::Engine;
pub use error::Error;
