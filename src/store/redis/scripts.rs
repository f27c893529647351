//! The Lua scripts that make every change to one slot atomic, each with the shared prelude
//! prepended and a name its round trips are measured under. They live in `src/store/lua/`.

use redis::Script;

mod lua {
    pub const PRELUDE: &str = include_str!("../lua/prelude.lua");
    pub const FEED: &str = include_str!("../lua/feed.lua");
    pub const SEED: &str = include_str!("../lua/seed.lua");
    pub const HOLD: &str = include_str!("../lua/hold.lua");
    pub const UNHOLD: &str = include_str!("../lua/unhold.lua");
    pub const SHIP: &str = include_str!("../lua/ship.lua");
    pub const CAPACITY_TAKE: &str = include_str!("../lua/capacity_take.lua");
    pub const CAPACITY_GIVE: &str = include_str!("../lua/capacity_give.lua");
    pub const CONFIRM: &str = include_str!("../lua/confirm.lua");
    pub const RESERVE_WHOLE: &str = include_str!("../lua/reserve_whole.lua");
    pub const RECORD_CREATE: &str = include_str!("../lua/record_create.lua");
    pub const RECORD_FINISH: &str = include_str!("../lua/record_finish.lua");
    pub const RECORD_DELETE: &str = include_str!("../lua/record_delete.lua");
    pub const RECORD_COMMIT: &str = include_str!("../lua/record_commit.lua");
    pub const RECORD_EXPIRE: &str = include_str!("../lua/record_expire.lua");
    pub const RECORD_RELEASE_BEGIN: &str = include_str!("../lua/record_release_begin.lua");
    pub const RECORD_RELEASE: &str = include_str!("../lua/record_release.lua");
    pub const RECORD_SHIP: &str = include_str!("../lua/record_ship.lua");
    pub const ALERTS: &str = include_str!("../lua/alerts.lua");
    pub const RECORD_REROUTE_BEGIN: &str = include_str!("../lua/record_reroute_begin.lua");
    pub const RECORD_REROUTE_DECIDE: &str = include_str!("../lua/record_reroute_decide.lua");
    pub const RECORD_REROUTE_ABORT: &str = include_str!("../lua/record_reroute_abort.lua");
    pub const RECORD_REROUTE_FINISH: &str = include_str!("../lua/record_reroute_finish.lua");
    pub const REROUTE_HOLD: &str = include_str!("../lua/reroute_hold.lua");
    pub const REROUTE_UNDO: &str = include_str!("../lua/reroute_undo.lua");
    pub const REROUTE_SWAP: &str = include_str!("../lua/reroute_swap.lua");
    pub const REROUTE_CAPACITY: &str = include_str!("../lua/reroute_capacity.lua");
}

/// A script with the name its round trips are measured under.
pub(super) struct Named {
    pub(super) name: &'static str,
    pub(super) script: Script,
    /// The whole source, sent with `EVAL` to a node that does not have the script yet.
    pub(super) code: String,
    /// Whether it reports what it changed: its last key is then the log (see `events`).
    pub(super) emits: bool,
}

pub(super) struct Scripts {
    pub(super) feed: Named,
    pub(super) seed: Named,
    pub(super) hold: Named,
    pub(super) unhold: Named,
    pub(super) ship: Named,
    pub(super) capacity_take: Named,
    pub(super) capacity_give: Named,
    pub(super) confirm: Named,
    pub(super) reserve_whole: Named,
    pub(super) record_create: Named,
    pub(super) record_finish: Named,
    pub(super) record_delete: Named,
    pub(super) record_commit: Named,
    pub(super) record_expire: Named,
    pub(super) record_release_begin: Named,
    pub(super) record_release: Named,
    pub(super) record_ship: Named,
    pub(super) alerts: Named,
    pub(super) record_reroute_begin: Named,
    pub(super) record_reroute_decide: Named,
    pub(super) record_reroute_abort: Named,
    pub(super) record_reroute_finish: Named,
    pub(super) reroute_hold: Named,
    pub(super) reroute_undo: Named,
    pub(super) reroute_swap: Named,
    pub(super) reroute_capacity: Named,
}

/// Scripts that report their changes to the log.
const EMITTING: [&str; 11] = [
    "record_reroute_finish",
    "reroute_swap",
    "alerts",
    "feed",
    "ship",
    "reserve_whole",
    "record_finish",
    "record_commit",
    "record_expire",
    "record_release",
    "record_ship",
];

impl Scripts {
    /// Every script, each appending at most about `log_cap` entries to a log.
    pub(super) fn new(log_cap: usize) -> Self {
        let s = |name: &'static str, body: &str| {
            let code = format!("local EV_CAP = '{log_cap}'\n{}\n{body}", lua::PRELUDE);
            Named {
                name,
                script: Script::new(&code),
                code,
                emits: EMITTING.contains(&name),
            }
        };
        Self {
            feed: s("feed", lua::FEED),
            seed: s("seed", lua::SEED),
            hold: s("hold", lua::HOLD),
            unhold: s("unhold", lua::UNHOLD),
            ship: s("ship", lua::SHIP),
            capacity_take: s("capacity_take", lua::CAPACITY_TAKE),
            capacity_give: s("capacity_give", lua::CAPACITY_GIVE),
            confirm: s("confirm", lua::CONFIRM),
            reserve_whole: s("reserve_whole", lua::RESERVE_WHOLE),
            record_create: s("record_create", lua::RECORD_CREATE),
            record_finish: s("record_finish", lua::RECORD_FINISH),
            record_delete: s("record_delete", lua::RECORD_DELETE),
            record_commit: s("record_commit", lua::RECORD_COMMIT),
            record_expire: s("record_expire", lua::RECORD_EXPIRE),
            record_release_begin: s("record_release_begin", lua::RECORD_RELEASE_BEGIN),
            record_release: s("record_release", lua::RECORD_RELEASE),
            record_ship: s("record_ship", lua::RECORD_SHIP),
            alerts: s("alerts", lua::ALERTS),
            record_reroute_begin: s("record_reroute_begin", lua::RECORD_REROUTE_BEGIN),
            record_reroute_decide: s("record_reroute_decide", lua::RECORD_REROUTE_DECIDE),
            record_reroute_abort: s("record_reroute_abort", lua::RECORD_REROUTE_ABORT),
            record_reroute_finish: s("record_reroute_finish", lua::RECORD_REROUTE_FINISH),
            reroute_hold: s("reroute_hold", lua::REROUTE_HOLD),
            reroute_undo: s("reroute_undo", lua::REROUTE_UNDO),
            reroute_swap: s("reroute_swap", lua::REROUTE_SWAP),
            reroute_capacity: s("reroute_capacity", lua::REROUTE_CAPACITY),
        }
    }
}
