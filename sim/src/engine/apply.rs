//! Carrying out the scheduler's commands with simulated delays, and recording its notes:
//! the engine's hands. Nothing here decides; every branch follows a command or a note.

use super::*;

impl Engine<'_> {
    /// Carries out the scheduler's commands and records its notes.
    pub(super) fn apply(&mut self, now: Millis) {
        let mut out = std::mem::take(&mut self.out);
        for note in out.notes.drain(..) {
            match note {
                Note::Running { server, requested_at } => {
                    self.end_loss(server.0 as usize, now);
                    self.phase_ram[server.0 as usize] = self.core.plan_ram(server);
                    self.o.starts += 1;
                    self.o.waits.push(now - requested_at);
                    let (placed_at, restored) = self.placed[server.0 as usize];
                    self.o.queue_waits.push(placed_at - requested_at);
                    self.o.starts_restored += u64::from(restored);
                    self.enter(server.0 as usize, Phase::Running(now));
                    self.schedule_crash(now, server);
                }
                Note::Abandoned { reason, server, .. } => match reason {
                    conductor_core::AbandonReason::GaveUp => {
                        self.end_loss(server.0 as usize, now);
                        self.o.abandoned_gave_up += 1
                    }
                    // Failed starts and crash loops (injected by `[failures]`): a give-up.
                    conductor_core::AbandonReason::StartFailed => {
                        self.end_loss(server.0 as usize, now);
                        self.o.abandoned_gave_up += 1
                    }
                    conductor_core::AbandonReason::IntervalEnded => {
                        self.end_loss(server.0 as usize, now);
                        self.o.abandoned_interval_ended += 1
                    }
                },
                Note::Scaled { action, policy, reason, .. } => {
                    let (name, node) = match action {
                        ScaleAction::Create { node } => {
                            self.o.scale_ups += 1;
                            ("create", node)
                        }
                        ScaleAction::Delete { node } => {
                            self.o.scale_downs += 1;
                            ("delete", node)
                        }
                        ScaleAction::Cordon { node } => ("cordon", node),
                        ScaleAction::Uncordon { node } => ("uncordon", node),
                    };
                    *self.o.decisions.entry(format!("{policy} {name}")).or_default() += 1;
                    if self.o.decision_log.len() < DECISION_LOG {
                        self.o.decision_log.push(Decision {
                            t: crate::timefmt::format_rfc3339(now),
                            action: name,
                            node: node.0,
                            policy,
                            reason,
                        });
                    }
                }
                Note::Shadow { policy, add, reason } => {
                    *self.o.decisions.entry(format!("{policy} would-create")).or_default() += u64::from(add);
                    if self.o.decision_log.len() < DECISION_LOG {
                        let t = crate::timefmt::format_rfc3339(now);
                        self.o.decision_log.push(Decision { t, action: "would-create", node: 0, policy, reason });
                    }
                }
                Note::NodeDead { .. } => self.o.nodes_dead += 1,
                Note::Failed { server, was_active } => {
                    // Its node copy is gone: from now on it lives in its latest archive.
                    let i = server.0 as usize;
                    if !was_active {
                        self.close_phase(i, now);
                        self.phases[i] = Phase::Archived(now);
                    }
                }
                Note::Migrated { .. } => self.o.migrations += 1,
                Note::Resumed { server } => {
                    self.phase_ram[server.0 as usize] = self.core.plan_ram(server);
                    self.enter(server.0 as usize, Phase::Running(now));
                }
                Note::Announced { .. } => self.o.announcements += 1,
                Note::Recommended { server, saving_per_hour } => {
                    self.o.recommendations += 1;
                    self.o.recommended_saving_per_hour += saving_per_hour;
                    let p = self.scenario.migration.as_ref().map_or(0.0, |m| m.suggest_acceptance);
                    if self.consent_rng.random::<f64>() < p {
                        self.o.recommendations_accepted += 1;
                        self.core.accept_recommendation(server);
                    }
                }
                Note::StartFailed { .. } => self.o.failed_starts += 1,
                Note::Crashed { restarted, .. } => {
                    self.o.crashes += 1;
                    self.o.crash_loops += u64::from(!restarted);
                }
                // The twin's VM creates never fail.
                Note::Queued { .. } | Note::VmFailed { .. } => {}
            }
        }
        for command in out.commands.drain(..) {
            match command {
                Command::Place { server, restore, placement, .. } => {
                    let i = server.0 as usize;
                    let restored = matches!(restore, Restore::FromArchive | Restore::FromNode(_));
                    self.placed[i] = (now, restored);
                    self.close_phase(i, now);
                    self.phases[i] = Phase::Starting;
                    let mut delay = self.boot_rng.sample(&self.scenario.lifecycle.boot);
                    match restore {
                        Restore::None => {}
                        Restore::Staged => {
                            self.o.staged_used += 1;
                            self.o.restore_avoided_ms += self.restore_ms(i) as u64;
                        }
                        Restore::FromArchive | Restore::FromNode(_) => {
                            delay += self.restore_ms(i);
                            match restore {
                                Restore::FromArchive => self.o.restores_from_archive += 1,
                                _ => self.o.restores_from_node += 1,
                            }
                        }
                    }
                    let fails = self.scenario.failures.failed_start_share > 0.0
                        && self.crash_rng.random::<f64>() < self.scenario.failures.failed_start_share;
                    let kind = if fails { Kind::StartFail(server, placement) } else { Kind::Boot(server, placement) };
                    self.push(now + delay, class::BOOT, None, kind);
                }
                Command::Migrate { server, placement, from, to } => {
                    // Downtime: save, copy the disk over, boot. Not billed, players wait.
                    let i = server.0 as usize;
                    self.close_phase(i, now);
                    self.phases[i] = Phase::Starting;
                    let save = self.scenario.migration.as_ref().map_or(0, |m| m.save);
                    let mb = self.dataset.servers[i].disk_mb;
                    // A restart in place (plan change with room) copies nothing.
                    let copy = if from == to {
                        0
                    } else {
                        ((mb * 1000).div_ceil(u64::from(self.scenario.lifecycle.restore_mb_per_s))) as Millis
                    };
                    let delay = save + copy + self.boot_rng.sample(&self.scenario.lifecycle.boot);
                    self.o.disrupted_player_ms += self.players[i].max(0) as u64 * delay as u64;
                    self.push(now + delay, class::BOOT, None, Kind::Boot(server, placement));
                }
                Command::StartJob { job, .. } => {
                    let j = &mut self.jobs[job.0 as usize];
                    j.started = Some(now);
                    let done = now + j.duration;
                    self.push(done, class::NODE_READY, None, Kind::JobDone(job.0));
                }
                Command::NoticeJob { .. } => self.o.job_notices += 1,
                Command::Discard { .. } => {}
                Command::Stage { server, node } => {
                    let i = server.0 as usize;
                    self.o.staged += 1;
                    self.o.staged_mb += self.dataset.servers[i].disk_mb;
                    let done = now + self.restore_ms(i);
                    self.push(done, class::BOOT, None, Kind::Staged(server, node, now));
                }
                Command::Unstage { .. } => self.o.staged_dropped += 1,
                Command::KillJob { job, .. } => {
                    self.end_job(job.0 as usize, now);
                    self.o.jobs_preempted += 1;
                }
                Command::Stop { server, .. } => {
                    let i = server.0 as usize;
                    self.end_loss(i, now);
                    self.close_phase(i, now);
                    self.enter(i, Phase::Sleeping(now));
                }
                Command::Archive { server, .. } => {
                    let i = server.0 as usize;
                    self.close_phase(i, now);
                    self.phases[i] = Phase::Archived(now);
                    self.o.archived += 1;
                }
                Command::CreateVm { node, .. } => {
                    self.vms.push(VmRecord { node, created: now, deleted: None });
                    self.vms_existing += 1;
                    self.o.cloud_vms_created += 1;
                    self.o.peak_cloud_vms = self.o.peak_cloud_vms.max(self.vms_existing);
                    let delay = self.provisioning_rng.sample(&self.scenario.lifecycle.provisioning);
                    self.push(now + delay, class::NODE_READY, None, Kind::NodeReady(node));
                }
                Command::DeleteVm { node } => {
                    if let Some(vm) = self.vms.iter_mut().rev().find(|v| v.node == node) {
                        vm.deleted = Some(now);
                        self.vms_existing -= 1;
                    }
                }
                Command::Wake { at, timer } => {
                    let class = match timer {
                        Timer::GiveUp { .. } => class::ABANDON,
                        Timer::Archive { .. } => class::ARCHIVE,
                        Timer::Tick => class::TICK,
                        Timer::DeadCheck { .. } | Timer::JobKill { .. } => class::NODE_READY,
                    };
                    self.push(at, class, None, Kind::Timer(timer));
                }
            }
        }
        self.out = out;
    }
}
