//! Watching the core's inputs as the twin delivers them (the controller's parity test replays
//! them on a controller that adopted the twin's state, and compares what both decide).

use super::Engine;
use conductor_core::scheduler::JobId;
use conductor_core::{Command, Millis, Note, Scheduler, ServerId, Timer};

/// A core input of the twin, in the terms the live controller takes it.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// A start is asked (`POST /v1/servers/{id}/start`, a player joining).
    Request(ServerId),
    /// Its wanted interval ended (`POST …/stop`, idle).
    WantedEnd(ServerId),
    /// A timer of the core fired (the scaling tick among them).
    Timer(Timer),
    /// A plan change (`PATCH /v1/servers/{id}`), new plan RAM in MiB.
    Upgrade(ServerId, u32),
    /// A preemptible job was submitted with this RAM (MiB).
    JobArrive(u32),
    /// A job ended by itself.
    JobDone(JobId),
}

/// Sees the inputs it `wants`: the scheduler just before and just after, and the notes and
/// commands the input made.
pub trait Observer {
    fn wants(&mut self, now: Millis, input: &Input) -> bool;
    fn seen(&mut self, now: Millis, input: &Input, seen: Seen<'_>);
}

/// One observed input's effect.
pub struct Seen<'s> {
    pub before: &'s Scheduler,
    pub after: &'s Scheduler,
    pub notes: &'s [Note],
    pub commands: &'s [Command],
}

/// The state before an observed input, and where its notes and commands begin.
pub(super) struct Mark(Scheduler, usize, usize);

impl Engine<'_> {
    pub(super) fn before_input(&mut self, now: Millis, input: &Input) -> Option<Mark> {
        let o = self.observer.as_mut()?;
        o.wants(now, input).then(|| Mark(self.core.clone(), self.out.notes.len(), self.out.commands.len()))
    }

    pub(super) fn after_input(&mut self, now: Millis, input: &Input, mark: Option<Mark>) {
        let (Some(Mark(before, notes, commands)), Some(o)) = (mark, self.observer.as_mut()) else { return };
        let seen = Seen {
            before: &before,
            after: &self.core,
            notes: &self.out.notes[notes..],
            commands: &self.out.commands[commands..],
        };
        o.seen(now, input, seen);
    }
}
