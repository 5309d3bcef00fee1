//! Every kind of event the controller appends to its log, as constants (the table in
//! ARCHITECTURE.md lists them with their meaning; a test checks both agree). Billing
//! (`billing::Usage`) and `conductor export` read the log by these kinds, so a restart that
//! replays it decides and bills as the running controller did.

// Servers: what was asked.
pub const SERVER_CREATED: &str = "server.created";
pub const SERVER_REQUESTED: &str = "server.requested";
pub const SERVER_STOP_REQUESTED: &str = "server.stop-requested";
pub const SERVER_IDLE: &str = "server.idle";
pub const SERVER_DELETED: &str = "server.deleted";
// Servers: what the core decided.
pub const SERVER_QUEUED: &str = "server.queued";
pub const SERVER_PLACED: &str = "server.placed";
pub const SERVER_ABANDONED: &str = "server.abandoned";
// Servers: what was observed or carried out.
pub const SERVER_STARTED: &str = "server.started";
pub const SERVER_RESUMED: &str = "server.resumed";
pub const SERVER_SLEPT: &str = "server.slept";
pub const SERVER_RESTORED: &str = "server.restored";
pub const SERVER_ARCHIVED: &str = "server.archived";
pub const SERVER_CRASHED: &str = "server.crashed";
pub const SERVER_CRASH_LOOP: &str = "server.crash-loop";
pub const SERVER_START_FAILED: &str = "server.start-failed";
pub const SERVER_LOST: &str = "server.lost";
pub const SERVER_FAILED: &str = "server.failed";

// Worlds: copies, sizes and recovery.
pub const BACKUP_CREATED: &str = "backup.created";
pub const BACKUP_DELETED: &str = "backup.deleted";
pub const BACKUP_RESTORED: &str = "backup.restored";
pub const WORLD_MEASURED: &str = "world.measured";
pub const WORLD_OVER_QUOTA: &str = "world.over-quota";
pub const WORLD_RECOVERED: &str = "world.recovered";
// Nodes.
pub const NODE_CREATE_REQUESTED: &str = "node.create-requested";
pub const NODE_CREATED: &str = "node.created";
pub const NODE_READY: &str = "node.ready";
pub const NODE_NEVER_READY: &str = "node.never-ready";
/// A joining node's engine certificate was issued (`{name, serial}`; never the key).
pub const NODE_CERTIFICATE_ISSUED: &str = "node.certificate-issued";
/// A dedicated node joined through the admin API (`{name, type, docker, address}`).
pub const NODE_ADDED: &str = "node.added";
/// An operator drained a joined node or took it back (`{name, drained}`).
pub const NODE_DRAINING: &str = "node.draining";
/// A drained, empty joined node was removed (`{name}`).
pub const NODE_REMOVED: &str = "node.removed";
/// A stopped server was given another template (`{from, to}`), applied at its next start.
pub const SERVER_TEMPLATE_CHANGED: &str = "server.template-changed";
/// Pay-per-use switched on or off (`PATCH /v1/servers/{id}`): whether it stops when idle.
pub const SERVER_PAY_PER_USE: &str = "server.pay-per-use";
/// The plan's RAM changed (`from`, `ram_mib`, `how`: restart, move or next start); billing
/// charges the new RAM from the server's next (re)start.
pub const SERVER_PLAN_CHANGED: &str = "server.plan-changed";
/// A console command was sent, the audit trail (`{by, command, ok, error}`).
pub const CONSOLE_COMMAND: &str = "console.command";
/// A VM has an address and its Docker API is being checked (`{name, address}`).
pub const NODE_BOOTED: &str = "node.booted";
pub const NODE_UNREACHABLE: &str = "node.unreachable";
pub const NODE_REACHABLE: &str = "node.reachable";
pub const NODE_DEAD: &str = "node.dead";
pub const NODE_DELETED: &str = "node.deleted";
pub const NODE_CLEANED_UP: &str = "node.cleaned-up";
// Intents (external actions).
pub const INTENT_RESUMED: &str = "intent.resumed";
pub const INTENT_RETRY: &str = "intent.retry";
pub const INTENT_FAILED: &str = "intent.failed";
pub const INTENT_UNNECESSARY: &str = "intent.unnecessary";
pub const INTENT_STALE: &str = "intent.stale";
// Garbage collection.
pub const GC_FOUND: &str = "gc.found";
pub const GC_REMOVED: &str = "gc.removed";
pub const CONTAINER_STOPPED: &str = "container.stopped";
// Scaling.
pub const SCALING_DECISION: &str = "scaling.decision";
pub const SCALING_SHADOW: &str = "scaling.shadow";
pub const SCALING_MEMORY: &str = "scaling.memory";
/// The core moves a running server (consolidation, a plan change): from, to, players.
pub const SERVER_MIGRATING: &str = "server.migrating";
/// An `auto` owner is told their server will move (not before `moves_at`).
pub const SERVER_ANNOUNCED: &str = "server.announced";
/// A `suggest` owner is asked to accept a move that saves this much per hour.
pub const SERVER_RECOMMENDED: &str = "server.recommended";
/// The owner (or an admin) accepted a recommended move.
pub const SERVER_CONSENTED: &str = "server.consented";
// Preemptible jobs (`data.job` is the job's id).
pub const JOB_SUBMITTED: &str = "job.submitted";
pub const JOB_STARTED: &str = "job.started";
/// SIGTERM: a paying server needs the room; killed at `kill_at`.
pub const JOB_NOTICED: &str = "job.noticed";
/// Over: `state` (done, killed, cancelled, failed), `outcome`, `run_ms`, `charge`.
pub const JOB_ENDED: &str = "job.ended";
/// An admin switched a policy between shadow and enforce.
pub const POLICY_MODE: &str = "policy.mode";
/// The configuration file was read again (SIGHUP): `switched` policy modes applied,
/// `restart_needed` the parts it changed that apply at the next start.
pub const CONFIG_RELOADED: &str = "config.reloaded";
/// The configuration file could not be read again (`error`); the running one stays.
pub const CONFIG_RELOAD_FAILED: &str = "config.reload-failed";
// The nightly forecast.
pub const FORECAST_MADE: &str = "forecast.made";
pub const FORECAST_FAILED: &str = "forecast.failed";
/// The scheduler was handed a stored forecast.
pub const FORECAST_APPLIED: &str = "forecast.applied";
/// A stored forecast the scheduler cannot read (no `ram_mib.peak` series, …).
pub const FORECAST_UNUSABLE: &str = "forecast.unusable";
/// The forecast in use got older than `max_age_h`: forecast-driven policies go neutral.
pub const FORECAST_STALE: &str = "forecast.stale";
// Billing.
pub const BILLING_METERED: &str = "billing.metered";
pub const ACCOUNT_LOW_BALANCE: &str = "account.low-balance";
pub const ACCOUNT_EXHAUSTED: &str = "account.exhausted";
// The controller itself.
pub const CONTROLLER_STARTED: &str = "controller.started";
pub const CONTROLLER_MODE: &str = "controller.mode";
pub const DECISION_OBSERVED: &str = "decision.observed";
pub const COMMAND_UNSUPPORTED: &str = "command.unsupported";
pub const WEBHOOK_FAILED: &str = "webhook.failed";

/// Every kind, for the documentation check.
pub const ALL: &[&str] = &[
    SERVER_CREATED,
    SERVER_REQUESTED,
    SERVER_STOP_REQUESTED,
    SERVER_IDLE,
    SERVER_DELETED,
    SERVER_QUEUED,
    SERVER_PLACED,
    SERVER_ABANDONED,
    SERVER_STARTED,
    SERVER_RESUMED,
    SERVER_SLEPT,
    SERVER_RESTORED,
    SERVER_ARCHIVED,
    SERVER_CRASHED,
    SERVER_CRASH_LOOP,
    SERVER_START_FAILED,
    SERVER_LOST,
    SERVER_FAILED,
    BACKUP_CREATED,
    BACKUP_DELETED,
    BACKUP_RESTORED,
    WORLD_MEASURED,
    WORLD_OVER_QUOTA,
    WORLD_RECOVERED,
    NODE_CREATE_REQUESTED,
    SERVER_TEMPLATE_CHANGED,
    SERVER_PAY_PER_USE,
    SERVER_PLAN_CHANGED,
    CONSOLE_COMMAND,
    NODE_CREATED,
    NODE_READY,
    NODE_BOOTED,
    NODE_CERTIFICATE_ISSUED,
    NODE_ADDED,
    NODE_DRAINING,
    NODE_REMOVED,
    NODE_NEVER_READY,
    NODE_UNREACHABLE,
    NODE_REACHABLE,
    NODE_DEAD,
    NODE_DELETED,
    NODE_CLEANED_UP,
    INTENT_RESUMED,
    INTENT_RETRY,
    INTENT_FAILED,
    INTENT_UNNECESSARY,
    INTENT_STALE,
    GC_FOUND,
    GC_REMOVED,
    CONTAINER_STOPPED,
    SCALING_DECISION,
    SCALING_SHADOW,
    SCALING_MEMORY,
    SERVER_MIGRATING,
    SERVER_ANNOUNCED,
    SERVER_RECOMMENDED,
    SERVER_CONSENTED,
    POLICY_MODE,
    CONFIG_RELOADED,
    CONFIG_RELOAD_FAILED,
    JOB_SUBMITTED,
    JOB_STARTED,
    JOB_NOTICED,
    JOB_ENDED,
    FORECAST_MADE,
    FORECAST_FAILED,
    FORECAST_APPLIED,
    FORECAST_UNUSABLE,
    FORECAST_STALE,
    BILLING_METERED,
    ACCOUNT_LOW_BALANCE,
    ACCOUNT_EXHAUSTED,
    CONTROLLER_STARTED,
    CONTROLLER_MODE,
    DECISION_OBSERVED,
    COMMAND_UNSUPPORTED,
    WEBHOOK_FAILED,
];
