//! The decision core of Conductor: placement, admission and the start queue, scaling
//! policies, the server lifecycle and billing rating.
//!
//! This crate is a deterministic state machine. It contains no IO and never reads a
//! clock, the environment, files or the network: every input carries the current time
//! (`now`, milliseconds since the Unix epoch) and every decision comes back as plain
//! [`Command`]s that the caller must carry out — the digital twin applies them with
//! simulated delays, the live controller with Docker, the cloud API and the database.
//! Randomness, where a policy needs it, is a seeded generator passed in by the caller.
//! Because both drivers call the same [`Scheduler`], a decision taken in the twin and in
//! the controller for the same state at the same time is identical.

pub mod backups;
pub mod billing;
pub mod catalogue;
pub mod consolidation;
pub mod lifecycle;
pub mod model;
pub mod placement;
pub mod policy;
pub mod scheduler;
pub mod time;

pub use billing::{Money, Prices};
pub use catalogue::{CloudType, DedicatedType, Reserve};
pub use model::{NodeId, NodeKind, ServerId, ServerSpec, Tier};
pub use placement::Strategy;
pub use policy::{DemandForecast, Policy, ReactiveParams, ScaleIn, ScalingPolicy};
pub use scheduler::{
    AbandonReason, Command, Note, PlacementId, Residence, Restore, ScaleAction, ScalingMemory, Scheduler,
    SchedulerConfig, Timer,
};
pub use time::Millis;
