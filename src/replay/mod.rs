//! Replaying past orders against a config, so a planner sees what a change to the network or
//! the segment rules would do before it goes live. Each order of a file (JSON lines: the
//! `dom.v1.Order` message as JSON, plus when it was placed) is reserved and committed through
//! the real [`Engine`](crate::engine::Engine), in file order, on a private in-memory store
//! seeded with a starting stock, so scarce skus run short as the day goes on just as they would
//! in the service. Stock events and rejections between the orders happen where the file has
//! them, and units waiting for supply are filled as the service fills them. Two replays of the
//! same orders from the same stock compare two configs order by order.
//!
//! Orders are checked by the gRPC adapter's own conversion
//! ([`convert::order`](crate::api::convert::order)), so an order is refused here for the same
//! reason, naming the same field, as it would be over gRPC.
//!
//! One concern per file: `orders` reads the orders file, `run` replays it through the
//! engine, `totals` adds the decisions up, `compare` finds the orders two replays decide
//! differently, `report` prints it all for people and scripts, and `files` does all of that
//! for the command line.

mod compare;
mod files;
mod orders;
mod report;
mod run;
mod totals;

#[cfg(test)]
mod fixtures;

pub use compare::{Change, changes};
pub use files::{Request, from_files};
pub use orders::{
    DestinationRecord, EventKind, EventRecord, LineRecord, LocationRecord, OrderFileError,
    OrderRecord, OrdersFile, RejectLineRecord, ReplayEvent, ReplayOrder,
};
pub use report::{Labelled, Report};
pub use run::{Decision, Options, Outcome, ReplayError, Run, refusal_reason, run};
pub use totals::{Summary, Totals};
