//! dom-router: distributed order management routing. It keeps stock across warehouses,
//! stores, 3PL sites and dropship vendors, and decides for each order which nodes ship which
//! lines under customer-segment rules, over a gRPC API (`proto/dom/v1`).
//!
//! The domain core ([`domain`], [`sourcing`], [`engine`]) knows nothing of transport or
//! storage; [`api`] adapts it to gRPC and [`store`] keeps stock behind one trait. [`replay`]
//! runs a file of past orders through the engine, for planners trying a rule change.

pub mod api;
pub mod clock;
pub mod config;
pub mod domain;
pub mod engine;
pub mod error;
pub mod metrics;
pub mod replay;
pub mod server;
pub mod sourcing;
pub mod store;
#[cfg(any(test, feature = "testkit"))]
pub mod synth;

pub use engine::Engine;
pub use error::Error;
