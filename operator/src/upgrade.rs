//! Managed upgrades: what to do about a change of `spec.version` (or
//! `spec.image`), decided from the status and what the cluster shows.
//!
//! ```text
//!            BackingUp ──> Migrating ──> RollingOut ──> Verifying ──> Succeeded
//!   (spec.backup)  │   (spec.database) │        │ deadline     │ not ready
//!                  └──────┬────────────┘        └──────┬───────┘
//!                         v                            v
//!                       Failed                    RollingBack ──> RolledBack
//!               (the old version never stopped)
//! ```
//!
//! Everything the machine needs to continue lives in `status.upgrade`:
//! the phase, when it began, and the versions and images on both sides.
//! A restarted operator therefore picks up where the last one stopped; the
//! Jobs are named after the upgrade, so a step that already ran is found,
//! not started again. [`decide`] is pure: the reconciler observes, calls it,
//! and carries the decision out.
//!
//! The SecureVault's spec is never written. After a rollback the spec still
//! names the failed version; the old one keeps running, `Degraded` says why,
//! and only a different version in the spec starts a new attempt (putting
//! the running version back clears the failure).

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use sha2::{Digest, Sha256};

use crate::{
    api::{Upgrade, UpgradePhase},
    status::Problem,
    validate,
};

/// Finished upgrades kept in `status.upgradeHistory`.
pub const HISTORY: usize = 5;

/// How often an upgrade waiting on a Job is looked at without news: the Job
/// watch normally wakes the reconciler first.
const JOB_POLL: Duration = Duration::from_secs(30);

/// A version and the image that runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// E.g. `0.2.0`.
    pub version: String,
    /// E.g. `securevault/dataplane:0.2.0`.
    pub image: String,
}

/// How a Job of the upgrade stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// Not created yet (or deleted).
    Missing,
    /// Created, not finished.
    Running,
    /// Finished successfully.
    Succeeded,
    /// Failed for good; why, as the Job controller says.
    Failed(String),
}

/// The Deployment as it is before this reconcile applies anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollout {
    /// The image of its pod template.
    pub image: String,
    /// Every pod runs that template, and all are ready and available.
    pub complete: bool,
    /// Ready pods of that template (the Deployment's ready count less the
    /// pods of older templates, which a rollout keeps ready).
    pub ready: i32,
    /// Pods wanted.
    pub desired: i32,
}

/// What [`decide`] needs from the cluster.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The release that last completed a rollout (`status.version` and the
    /// Deployment's image); `None` before the first one.
    pub running: Option<Release>,
    /// The Deployment, if it exists.
    pub rollout: Option<Rollout>,
    /// The Job of the current phase (`BackingUp`, `Migrating`).
    pub job: JobState,
}

/// A Job the reconciler must apply for the current phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The pre-upgrade backup, with the running release.
    Backup {
        /// The Job's name.
        job: String,
    },
    /// `dataplane migrate` with the new release.
    Migrate {
        /// The Job's name.
        job: String,
    },
}

/// An Event to publish on the SecureVault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Warning rather than Normal.
    pub warning: bool,
    /// `PascalCase`.
    pub reason: &'static str,
    /// What happened.
    pub message: String,
}

/// What the reconciler does next.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The release the Deployment (and the backup CronJob) runs: the spec's,
    /// or the running one while an upgrade has not reached its rollout, or
    /// after it failed.
    pub deploy: Release,
    /// The new `status.upgrade`.
    pub upgrade: Option<Upgrade>,
    /// Upgrades that finished now, for `status.upgradeHistory`.
    pub finished: Vec<Upgrade>,
    /// The Job to apply.
    pub step: Option<Step>,
    /// Events to publish.
    pub notes: Vec<Note>,
    /// Why the vault is degraded, if the upgrade is why.
    pub problem: Option<Problem>,
    /// When to look again even if nothing changes (a deadline).
    pub wake: Option<Duration>,
}

/// The job names of upgrade `id` of vault `name`: `<name>-upgrade-<id>-…`,
/// the vault's name shortened so that the Job's name fits in a label value
/// (63 characters), where the Job controller copies it.
pub fn job_name(name: &str, id: &str, step: &str) -> String {
    let suffix = format!("-upgrade-{id}-{step}");
    let keep = 63usize.saturating_sub(suffix.len()).min(name.len());
    let mut cut = keep;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{suffix}", name[..cut].trim_end_matches('-'))
}

/// Decides what to do about `target` (the spec's release), given the
/// previous `status.upgrade` and what was observed.
pub fn decide(
    name: &str,
    target: &Release,
    previous: Option<&Upgrade>,
    observed: &Observed,
    settings: &Settings,
    now: Timestamp,
) -> Decision {
    let mut d = Decision {
        deploy: target.clone(),
        upgrade: previous.cloned(),
        finished: Vec::new(),
        step: None,
        notes: Vec::new(),
        problem: None,
        wake: None,
    };
    let mut running = observed.running.clone();

    // An upgrade under way towards something the spec no longer asks for
    // ends here; what it started from is what runs.
    if let Some(u) = previous.filter(|u| !u.phase.is_finished())
        && u.to_image != target.image
    {
        let mut u = u.clone();
        let message = format!(
            "abandoned in phase {:?}: spec.version is now {}",
            u.phase, target.version
        );
        finish(&mut u, UpgradePhase::Failed, message, now);
        d.notes.push(Note {
            warning: true,
            reason: "UpgradeAbandoned",
            message: u.message.clone(),
        });
        running = Some(Release {
            version: u.from_version.clone(),
            image: u.from_image.clone(),
        });
        d.finished.push(u.clone());
        d.upgrade = Some(u);
    }

    let Some(mut u) = d.upgrade.clone().filter(|u| !u.phase.is_finished()) else {
        return idle(d, name, target, running, settings, now);
    };
    let from = Release {
        version: u.from_version.clone(),
        image: u.from_image.clone(),
    };
    let to_version = u.to_version.clone();
    let elapsed = since(&u.phase_time, now);
    let rollout_of = |image: &str| observed.rollout.as_ref().filter(|r| r.image == image);
    match u.phase {
        UpgradePhase::BackingUp | UpgradePhase::Migrating => {
            d.deploy = from.clone();
            let (step, what) = if u.phase == UpgradePhase::BackingUp {
                (
                    Step::Backup {
                        job: job_name(name, &u.id, "backup"),
                    },
                    "pre-upgrade backup",
                )
            } else {
                (
                    Step::Migrate {
                        job: job_name(name, &u.id, "migrate"),
                    },
                    "migration",
                )
            };
            let job = match &step {
                Step::Backup { job } | Step::Migrate { job } => job.clone(),
            };
            match &observed.job {
                JobState::Missing | JobState::Running => {
                    d.step = Some(step);
                    d.wake = Some(JOB_POLL);
                }
                JobState::Succeeded => {
                    let next = if u.phase == UpgradePhase::BackingUp && migrates(&u, settings) {
                        UpgradePhase::Migrating
                    } else {
                        UpgradePhase::RollingOut
                    };
                    enter(&mut u, next, format!("{what} Job {job} succeeded"), now);
                    d.notes.push(Note {
                        warning: false,
                        reason: "UpgradeProgressing",
                        message: format!("{}; now {:?}", u.message, next),
                    });
                    if next == UpgradePhase::Migrating {
                        d.step = Some(Step::Migrate {
                            job: job_name(name, &u.id, "migrate"),
                        });
                        d.wake = Some(JOB_POLL);
                    } else {
                        d.deploy = target.clone();
                        d.wake = Some(settings.progress_deadline);
                    }
                }
                JobState::Failed(why) => {
                    finish(
                        &mut u,
                        UpgradePhase::Failed,
                        format!(
                            "{what} Job {job} failed ({why}): {} keeps running and {} was never rolled out",
                            from.version, to_version
                        ),
                        now,
                    );
                    d.notes.push(Note {
                        warning: true,
                        reason: "UpgradeFailed",
                        message: u.message.clone(),
                    });
                    d.finished.push(u.clone());
                }
            }
        }
        UpgradePhase::RollingOut => match rollout_of(&u.to_image) {
            Some(r) if r.complete => {
                enter(
                    &mut u,
                    UpgradePhase::Verifying,
                    format!(
                        "{}/{} pods of {} ready; verifying for {} s",
                        r.ready,
                        r.desired,
                        to_version,
                        settings.verify.as_secs()
                    ),
                    now,
                );
                d.wake = Some(settings.verify);
            }
            r if elapsed >= settings.progress_deadline => {
                let ready = r.map_or(0, |r| r.ready);
                let desired = observed.rollout.as_ref().map_or(0, |r| r.desired);
                roll_back(
                    &mut d,
                    &mut u,
                    format!(
                        "{ready}/{desired} pods of {} ready {} s after the rollout began (spec.upgrade.progressDeadlineSeconds)",
                        to_version,
                        settings.progress_deadline.as_secs()
                    ),
                    &from,
                    now,
                );
            }
            _ => d.wake = Some(settings.progress_deadline.saturating_sub(elapsed)),
        },
        UpgradePhase::Verifying => match rollout_of(&u.to_image) {
            Some(r) if r.complete => {
                if elapsed >= settings.verify {
                    finish(
                        &mut u,
                        UpgradePhase::Succeeded,
                        format!(
                            "{} runs: every pod stayed ready for {} s",
                            to_version,
                            settings.verify.as_secs()
                        ),
                        now,
                    );
                    d.notes.push(Note {
                        warning: false,
                        reason: "UpgradeSucceeded",
                        message: format!(
                            "upgrade {} -> {}: {}",
                            from.version, to_version, u.message
                        ),
                    });
                    d.finished.push(u.clone());
                } else {
                    d.wake = Some(settings.verify.saturating_sub(elapsed));
                }
            }
            r => {
                let ready = r.map_or(0, |r| r.ready);
                let desired = observed.rollout.as_ref().map_or(0, |r| r.desired);
                roll_back(
                    &mut d,
                    &mut u,
                    format!(
                        "only {ready}/{desired} pods of {} ready during verification",
                        to_version
                    ),
                    &from,
                    now,
                );
            }
        },
        UpgradePhase::RollingBack => {
            d.deploy = from.clone();
            if rollout_of(&from.image).is_some_and(|r| r.complete) {
                let why = u.message.clone();
                finish(
                    &mut u,
                    UpgradePhase::RolledBack,
                    format!("{why}; {} runs again", from.version),
                    now,
                );
                d.notes.push(Note {
                    warning: true,
                    reason: "UpgradeRolledBack",
                    message: u.message.clone(),
                });
                d.finished.push(u.clone());
            } else {
                d.wake = Some(JOB_POLL);
            }
        }
        UpgradePhase::Succeeded | UpgradePhase::RolledBack | UpgradePhase::Failed => {}
    }
    d.problem = problem(&u);
    d.upgrade = Some(u);
    d
}

/// Upgrade settings: the spec's, plus which steps apply to this vault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Deadlines.
    pub progress_deadline: Duration,
    /// Verification period.
    pub verify: Duration,
    /// A backup Job runs first (`spec.backup`).
    pub backup: bool,
    /// A migration Job runs before the rollout (`spec.database`: a SQLite
    /// store lives in the pod, which migrates it at start).
    pub migrate: bool,
}

impl Settings {
    /// The settings of a validated vault.
    pub fn of(v: &validate::ValidatedVault) -> Settings {
        Settings {
            progress_deadline: v.upgrade.progress_deadline,
            verify: v.upgrade.verify,
            // The embedded store backs itself up from its pod; a Job
            // cannot reach it.
            backup: v.backup.is_some() && v.external_database,
            migrate: v.external_database,
        }
    }
}

/// No upgrade under way: start one if the spec asks for a release other
/// than the running one.
fn idle(
    mut d: Decision,
    name: &str,
    target: &Release,
    running: Option<Release>,
    settings: &Settings,
    now: Timestamp,
) -> Decision {
    // Before the first rollout completes there is nothing good to protect
    // or return to: changes apply directly.
    let Some(running) = running else {
        return d;
    };
    if running.image == target.image {
        // Back on the running release after a failed attempt: the user has
        // seen it; the failure stays in the history only.
        if d.upgrade
            .as_ref()
            .is_some_and(|u| u.phase != UpgradePhase::Succeeded)
        {
            d.upgrade = None;
        }
        return d;
    }
    if let Some(u) = d.upgrade.as_ref().filter(|u| {
        u.to_image == target.image
            && matches!(u.phase, UpgradePhase::RolledBack | UpgradePhase::Failed)
    }) {
        // That very release already failed: keep the running one.
        d.problem = problem(u);
        d.deploy = running;
        return d;
    }
    let start = now.to_string();
    let id = {
        let digest = Sha256::digest(format!("{}\n{start}", target.image));
        digest[..3]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let mut u = Upgrade {
        id,
        from_version: running.version.clone(),
        from_image: running.image.clone(),
        to_version: target.version.clone(),
        to_image: target.image.clone(),
        phase: UpgradePhase::RollingOut,
        start_time: start.clone(),
        phase_time: start,
        completion_time: None,
        message: format!("upgrade {} -> {} started", running.version, target.version),
    };
    let first = if settings.backup {
        UpgradePhase::BackingUp
    } else if migrates(&u, settings) {
        UpgradePhase::Migrating
    } else {
        UpgradePhase::RollingOut
    };
    u.phase = first;
    d.notes.push(Note {
        warning: false,
        reason: "UpgradeStarted",
        message: format!("{}; first step: {first:?}", u.message),
    });
    // Carry out the first phase now rather than on the next reconcile.
    let previous = Some(u);
    let observed = Observed {
        running: Some(running),
        rollout: None,
        job: JobState::Missing,
    };
    let mut next = decide(name, target, previous.as_ref(), &observed, settings, now);
    d.notes.append(&mut next.notes);
    next.notes = d.notes;
    next.finished.splice(0..0, d.finished);
    next
}

/// Whether `u` runs the migration Job: with an external store, and unless
/// it goes to an older release (which has nothing to migrate).
fn migrates(u: &Upgrade, settings: &Settings) -> bool {
    settings.migrate && !crate::version::is_downgrade(&u.from_version, &u.to_version)
}

fn roll_back(d: &mut Decision, u: &mut Upgrade, why: String, from: &Release, now: Timestamp) {
    enter(u, UpgradePhase::RollingBack, why, now);
    d.notes.push(Note {
        warning: true,
        reason: "UpgradeRollingBack",
        message: format!(
            "upgrade {} -> {} failed: {}; rolling back to {}",
            u.from_version, u.to_version, u.message, u.from_version
        ),
    });
    d.deploy = from.clone();
    d.wake = Some(JOB_POLL);
}

fn enter(u: &mut Upgrade, phase: UpgradePhase, message: String, now: Timestamp) {
    u.phase = phase;
    u.phase_time = now.to_string();
    u.message = message;
}

fn finish(u: &mut Upgrade, phase: UpgradePhase, message: String, now: Timestamp) {
    enter(u, phase, message, now);
    u.completion_time = Some(now.to_string());
}

/// The `Degraded` problem a failed or failing upgrade causes.
fn problem(u: &Upgrade) -> Option<Problem> {
    let (reason, what) = match u.phase {
        UpgradePhase::RollingBack => ("UpgradeRollingBack", "is being rolled back"),
        UpgradePhase::RolledBack => ("UpgradeRolledBack", "was rolled back"),
        UpgradePhase::Failed => ("UpgradeFailed", "failed"),
        _ => return None,
    };
    let advice = if u.phase == UpgradePhase::RollingBack {
        String::new()
    } else {
        format!(
            ". spec.version still names {}: set another version to try again, or {} to clear this",
            u.to_version, u.from_version
        )
    };
    Some(Problem {
        reason,
        message: format!(
            "upgrade {} -> {} {what}: {}{advice}",
            u.from_version, u.to_version, u.message
        ),
    })
}

/// Time since an RFC 3339 timestamp in the status; zero if it cannot be
/// read (a hand-edited status), which only restarts the count.
fn since(time: &str, now: Timestamp) -> Duration {
    time.parse::<Timestamp>()
        .ok()
        .and_then(|t| Duration::try_from(now.duration_since(t)).ok())
        .unwrap_or_default()
}

/// Puts `finished` at the front of `history`, keeping [`HISTORY`] entries.
pub fn record(history: &[Upgrade], finished: &[Upgrade]) -> Vec<Upgrade> {
    finished
        .iter()
        .rev()
        .chain(
            history
                .iter()
                .filter(|h| !finished.iter().any(|f| f.id == h.id)),
        )
        .take(HISTORY)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "securevault/dataplane:0.1.0";
    const NEW: &str = "securevault/dataplane:0.2.0";

    fn release(version: &str) -> Release {
        Release {
            version: version.into(),
            image: format!("securevault/dataplane:{version}"),
        }
    }

    /// A vault with PostgreSQL and scheduled backups: every step applies.
    fn full() -> Settings {
        Settings {
            progress_deadline: Duration::from_secs(300),
            verify: Duration::from_secs(30),
            backup: true,
            migrate: true,
        }
    }

    fn sqlite() -> Settings {
        Settings {
            backup: false,
            migrate: false,
            ..full()
        }
    }

    fn rollout(image: &str, complete: bool) -> Option<Rollout> {
        Some(Rollout {
            image: image.into(),
            complete,
            ready: if complete { 2 } else { 0 },
            desired: 2,
        })
    }

    /// 0.1.0 runs, rolled out.
    fn running_old() -> Observed {
        Observed {
            running: Some(release("0.1.0")),
            rollout: rollout(OLD, true),
            job: JobState::Missing,
        }
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    /// One reconcile, `seconds` into the test, with the status `previous`.
    fn step(
        previous: Option<&Upgrade>,
        observed: &Observed,
        settings: Settings,
        seconds: i64,
    ) -> Decision {
        decide(
            "mail",
            &release("0.2.0"),
            previous,
            observed,
            &settings,
            at(seconds),
        )
    }

    /// 0.1.0 still the running release, with this Job and rollout.
    fn seen(job: JobState, rollout_: Option<Rollout>) -> Observed {
        Observed {
            job,
            rollout: rollout_,
            ..running_old()
        }
    }

    #[test]
    fn nothing_happens_when_the_spec_names_the_running_release_or_nothing_ran_yet() {
        let d = decide(
            "mail",
            &release("0.1.0"),
            None,
            &running_old(),
            &full(),
            at(0),
        );
        assert_eq!(
            (d.deploy, d.upgrade, d.step),
            (release("0.1.0"), None, None)
        );
        // The first install rolls straight to the spec's release.
        let fresh = Observed {
            running: None,
            rollout: None,
            job: JobState::Missing,
        };
        let d = step(None, &fresh, full(), 0);
        assert_eq!((d.deploy, d.upgrade), (release("0.2.0"), None));
    }

    #[test]
    fn a_good_upgrade_backs_up_migrates_rolls_out_verifies_and_succeeds() {
        let observed = running_old();
        let d = step(None, &observed, full(), 0);
        let u = d.upgrade.clone().unwrap();
        assert_eq!(u.phase, UpgradePhase::BackingUp);
        assert_eq!((u.from_image.as_str(), u.to_image.as_str()), (OLD, NEW));
        let backup = job_name("mail", &u.id, "backup");
        assert_eq!(d.step, Some(Step::Backup { job: backup }));
        assert_eq!(
            d.deploy,
            release("0.1.0"),
            "the old release serves meanwhile"
        );
        assert_eq!(d.notes[0].reason, "UpgradeStarted");
        assert!(d.problem.is_none());

        let d = step(
            Some(&u),
            &seen(JobState::Running, rollout(OLD, true)),
            full(),
            5,
        );
        assert_eq!(d.upgrade.as_ref().unwrap().phase, UpgradePhase::BackingUp);
        assert!(d.step.is_some(), "a Job still running is left to run");

        let d = step(
            Some(&u),
            &seen(JobState::Succeeded, rollout(OLD, true)),
            full(),
            10,
        );
        let u = d.upgrade.unwrap();
        assert_eq!(u.phase, UpgradePhase::Migrating);
        assert_eq!(
            d.step,
            Some(Step::Migrate {
                job: job_name("mail", &u.id, "migrate")
            })
        );
        assert_eq!(d.deploy, release("0.1.0"));

        let d = step(
            Some(&u),
            &seen(JobState::Succeeded, rollout(OLD, true)),
            full(),
            20,
        );
        let u = d.upgrade.unwrap();
        assert_eq!(u.phase, UpgradePhase::RollingOut);
        assert_eq!(d.deploy, release("0.2.0"));
        assert_eq!(d.wake, Some(Duration::from_secs(300)));

        // Half-way: still rolling, woken at the deadline.
        let d = step(
            Some(&u),
            &seen(JobState::Missing, rollout(NEW, false)),
            full(),
            120,
        );
        assert_eq!(d.upgrade.as_ref().unwrap().phase, UpgradePhase::RollingOut);
        assert_eq!(d.wake, Some(Duration::from_secs(200)));

        let d = step(
            Some(&u),
            &seen(JobState::Missing, rollout(NEW, true)),
            full(),
            140,
        );
        let u = d.upgrade.unwrap();
        assert_eq!(u.phase, UpgradePhase::Verifying);
        assert_eq!(d.deploy, release("0.2.0"));

        let d = step(
            Some(&u),
            &seen(JobState::Missing, rollout(NEW, true)),
            full(),
            160,
        );
        assert_eq!(d.upgrade.as_ref().unwrap().phase, UpgradePhase::Verifying);
        assert_eq!(d.wake, Some(Duration::from_secs(10)));

        let d = step(
            Some(&u),
            &seen(JobState::Missing, rollout(NEW, true)),
            full(),
            170,
        );
        let u = d.upgrade.unwrap();
        assert_eq!(u.phase, UpgradePhase::Succeeded);
        assert_eq!(u.completion_time, Some(at(170).to_string()));
        assert_eq!(d.finished, vec![u.clone()]);
        assert_eq!(d.notes[0].reason, "UpgradeSucceeded");

        // Afterwards 0.2.0 is the running release: nothing more to do.
        let now_running = Observed {
            running: Some(release("0.2.0")),
            rollout: rollout(NEW, true),
            job: JobState::Missing,
        };
        let d = step(Some(&u), &now_running, full(), 200);
        assert_eq!((d.upgrade, d.step, d.finished), (Some(u), None, vec![]));
    }

    #[test]
    fn a_failed_migration_never_rolls_out_and_degrades() {
        let u = step(None, &running_old(), full(), 0).upgrade.unwrap();
        let u = step(
            Some(&u),
            &seen(JobState::Succeeded, rollout(OLD, true)),
            full(),
            5,
        )
        .upgrade
        .unwrap();
        let d = step(
            Some(&u),
            &seen(
                JobState::Failed(
                    "BackoffLimitExceeded: Job has reached the specified backoff limit".into(),
                ),
                rollout(OLD, true),
            ),
            full(),
            30,
        );
        let u = d.upgrade.clone().unwrap();
        assert_eq!(u.phase, UpgradePhase::Failed);
        assert_eq!(d.deploy, release("0.1.0"));
        let problem = d.problem.unwrap();
        assert_eq!(problem.reason, "UpgradeFailed");
        assert!(
            problem.message.contains("migration Job mail-upgrade-"),
            "{}",
            problem.message
        );
        assert!(problem.message.contains("BackoffLimitExceeded"));
        assert!(problem.message.contains("0.2.0 was never rolled out"));
        assert_eq!(d.finished, vec![u.clone()]);

        // Later reconciles keep 0.1.0 and the problem while the spec says 0.2.0.
        let d = step(Some(&u), &running_old(), full(), 600);
        assert_eq!((d.deploy, d.step), (release("0.1.0"), None));
        assert_eq!(d.problem.unwrap().reason, "UpgradeFailed");
        assert!(d.finished.is_empty());
    }

    #[test]
    fn a_rollout_past_its_deadline_rolls_back_without_touching_the_spec() {
        let u = step(None, &running_old(), sqlite(), 0).upgrade.unwrap();
        assert_eq!(
            u.phase,
            UpgradePhase::RollingOut,
            "SQLite: no backup, no migration Job"
        );
        let stuck = seen(JobState::Missing, rollout(NEW, false));
        let d = step(Some(&u), &stuck, sqlite(), 300);
        let u = d.upgrade.unwrap();
        assert_eq!(u.phase, UpgradePhase::RollingBack);
        assert_eq!(d.deploy, release("0.1.0"));
        assert_eq!(d.problem.unwrap().reason, "UpgradeRollingBack");
        assert!(
            u.message.contains("0/2 pods of 0.2.0 ready 300 s after"),
            "{}",
            u.message
        );

        // Still the new pods' template: not rolled back yet.
        let d = step(Some(&u), &stuck, sqlite(), 305);
        assert_eq!(d.upgrade.as_ref().unwrap().phase, UpgradePhase::RollingBack);
        let d = step(Some(&u), &running_old(), sqlite(), 310);
        let u = d.upgrade.unwrap();
        assert_eq!(u.phase, UpgradePhase::RolledBack);
        assert_eq!(d.notes[0].reason, "UpgradeRolledBack");
        let problem = d.problem.unwrap();
        assert_eq!(problem.reason, "UpgradeRolledBack");
        assert!(problem.message.contains("set another version to try again"));

        // 0.2.0 is not tried again by itself...
        let d = step(Some(&u), &running_old(), sqlite(), 900);
        assert_eq!((d.deploy, d.upgrade.as_ref()), (release("0.1.0"), Some(&u)));
        // ...but 0.2.1 is,
        let d = decide(
            "mail",
            &release("0.2.1"),
            Some(&u),
            &running_old(),
            &sqlite(),
            at(901),
        );
        assert_eq!(d.upgrade.unwrap().to_version, "0.2.1");
        // and naming 0.1.0 again clears the failure.
        let d = decide(
            "mail",
            &release("0.1.0"),
            Some(&u),
            &running_old(),
            &sqlite(),
            at(902),
        );
        assert_eq!((d.upgrade, d.problem), (None, None));
    }

    #[test]
    fn pods_that_stop_being_ready_during_verification_roll_back() {
        let u = step(None, &running_old(), sqlite(), 0).upgrade.unwrap();
        let u = step(
            Some(&u),
            &seen(JobState::Missing, rollout(NEW, true)),
            sqlite(),
            10,
        )
        .upgrade
        .unwrap();
        assert_eq!(u.phase, UpgradePhase::Verifying);
        let d = step(
            Some(&u),
            &seen(JobState::Missing, rollout(NEW, false)),
            sqlite(),
            15,
        );
        let u = d.upgrade.unwrap();
        assert_eq!(u.phase, UpgradePhase::RollingBack);
        assert!(u.message.contains("during verification"));
        assert_eq!(d.deploy, release("0.1.0"));
    }

    #[test]
    fn a_new_version_during_an_upgrade_abandons_it_and_starts_from_the_old_release() {
        let u = step(None, &running_old(), full(), 0).upgrade.unwrap();
        let u = step(
            Some(&u),
            &seen(JobState::Succeeded, rollout(OLD, true)),
            full(),
            5,
        )
        .upgrade
        .unwrap();
        assert_eq!(u.phase, UpgradePhase::Migrating);
        let d = decide(
            "mail",
            &release("0.3.0"),
            Some(&u),
            &running_old(),
            &full(),
            at(10),
        );
        assert_eq!(d.finished.len(), 1);
        assert_eq!(d.finished[0].phase, UpgradePhase::Failed);
        assert!(
            d.finished[0]
                .message
                .contains("abandoned in phase Migrating")
        );
        let next = d.upgrade.unwrap();
        assert_eq!(
            (next.from_version.as_str(), next.to_version.as_str()),
            ("0.1.0", "0.3.0")
        );
        assert_eq!(next.phase, UpgradePhase::BackingUp);
        assert_ne!(next.id, u.id, "new Jobs, not the abandoned ones");
        let reasons: Vec<_> = d.notes.iter().map(|n| n.reason).collect();
        assert_eq!(reasons, ["UpgradeAbandoned", "UpgradeStarted"]);

        // Back to the running release: the attempt ends, nothing starts.
        let d = decide(
            "mail",
            &release("0.1.0"),
            Some(&u),
            &running_old(),
            &full(),
            at(10),
        );
        assert_eq!((d.upgrade, d.finished.len()), (None, 1));
        assert_eq!(d.deploy, release("0.1.0"));
    }

    #[test]
    fn an_allowed_downgrade_backs_up_but_runs_no_migration() {
        let running = Observed {
            running: Some(release("0.3.0")),
            rollout: rollout("securevault/dataplane:0.3.0", true),
            job: JobState::Missing,
        };
        let no_backup = Settings {
            backup: false,
            ..full()
        };
        let d = step(None, &running, no_backup, 0);
        assert_eq!(d.upgrade.unwrap().phase, UpgradePhase::RollingOut);
        let u = step(None, &running, full(), 0).upgrade.unwrap();
        let d = step(
            Some(&u),
            &Observed {
                job: JobState::Succeeded,
                rollout: None,
                ..running
            },
            full(),
            5,
        );
        assert_eq!(d.upgrade.unwrap().phase, UpgradePhase::RollingOut);
    }

    #[test]
    fn job_names_fit_in_a_label_value() {
        assert_eq!(
            job_name("mail", "a1b2c3", "migrate"),
            "mail-upgrade-a1b2c3-migrate"
        );
        let long = job_name(&"x".repeat(63), "a1b2c3", "migrate");
        assert_eq!(long.len(), 63);
        assert!(long.ends_with("-upgrade-a1b2c3-migrate"));
        let dashed = format!("{}-{}", "x".repeat(39), "y".repeat(23));
        assert!(!job_name(&dashed, "a1b2c3", "backup").contains("--"));
    }

    #[test]
    fn the_history_keeps_the_newest_five() {
        let mut u = step(None, &running_old(), full(), 0).upgrade.unwrap();
        let history: Vec<Upgrade> = (0..5)
            .map(|i| Upgrade {
                id: format!("old{i}"),
                ..u.clone()
            })
            .collect();
        u.id = "new".into();
        let recorded = record(&history, std::slice::from_ref(&u));
        let ids: Vec<_> = recorded.iter().map(|u| u.id.as_str()).collect();
        assert_eq!(ids, ["new", "old0", "old1", "old2", "old3"]);
        assert_eq!(record(&recorded, &[u]).len(), 5, "recorded once");
    }
}
