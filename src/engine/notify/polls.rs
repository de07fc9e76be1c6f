//! The long-polls waiting on this server, for [`Notifier`]: which one a ready task wakes, and
//! the reservation through which a start hands a poll its first task.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};

use tokio::sync::Notify;

use super::Notifier;
use crate::contract::Assignment;
use crate::domain::WorkerPolicy;

/// Why a waiter is woken: a task of this runtime and queue became ready, or a task of unknown
/// kind did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    /// A task of `runtime` in `queue`.
    Task {
        /// Its runtime.
        runtime: String,
        /// Its queue.
        queue: String,
    },
    /// A task whose runtime and queue the notification does not name.
    Any,
}

/// The registered long-polls, oldest first (ids only grow).
#[derive(Debug, Default)]
pub(super) struct Polls {
    next_id: u64,
    waiters: BTreeMap<u64, Entry>,
}

#[derive(Debug)]
struct Entry {
    runtimes: Vec<String>,
    /// The worker's policy, when it restricts what it takes, and its fingerprint.
    policy: Option<(WorkerPolicy, String)>,
    queue: String,
    worker_id: String,
    max_tasks: u32,
    notify: Arc<Notify>,
    state: PollState,
}

/// Where one long-poll stands.
#[derive(Debug)]
enum PollState {
    /// Armed and claiming: a task readied now may be missed by the claim, so it wakes this poll.
    Claiming,
    /// Found nothing and waits.
    Sleeping,
    /// Will claim again, for these wake-ups (at most its `max_tasks`).
    Woken(Vec<Wake>),
    /// A start is leasing it a task.
    Reserved,
    /// A start leased it this task; the poll returns it.
    Handed(Box<Assignment>),
}

impl Entry {
    fn serves(&self, wake: &Wake) -> bool {
        self.max_tasks > 0
            && match wake {
                Wake::Task { runtime, queue } => {
                    &self.queue == queue && self.runtimes.iter().any(|r| r == runtime)
                }
                Wake::Any => true,
            }
    }

    /// The kind of waiter, for wake-ups that do not name a runtime and queue: a task one
    /// policy refuses may suit a worker of another, so the policy is part of the kind.
    fn kind(&self) -> (&str, &[String], Option<&str>) {
        (
            &self.queue,
            &self.runtimes,
            self.policy.as_ref().map(|(_, f)| f.as_str()),
        )
    }
}

impl Polls {
    /// Wakes one waiter for `wake`, or lets a woken one with room take it along. Returns the
    /// `Notify` to fire, if a waiter changed state.
    fn wake(&mut self, wake: Wake) -> Option<Arc<Notify>> {
        let room = self.waiters.values_mut().find(|e| {
            e.serves(&wake)
                && matches!(&e.state, PollState::Woken(w) if w.len() < e.max_tasks as usize)
        });
        if let Some(entry) = room {
            if let PollState::Woken(wakes) = &mut entry.state {
                wakes.push(wake);
            }
            return None;
        }
        // A sleeping poll before one whose claim is in flight (which may see the task anyway).
        let target = self
            .waiters
            .values_mut()
            .filter(|e| e.serves(&wake))
            .filter(|e| matches!(e.state, PollState::Sleeping | PollState::Claiming))
            .min_by_key(|e| matches!(e.state, PollState::Claiming))?;
        target.state = PollState::Woken(vec![wake]);
        Some(target.notify.clone())
    }

    /// Wakes one waiter of each kind (queue and runtimes) for a task of unknown kind.
    fn wake_each_kind(&mut self) -> Vec<Arc<Notify>> {
        type Kind = (String, Vec<String>, Option<String>);
        let mut kinds: Vec<Kind> = Vec::new();
        for entry in self.waiters.values() {
            let (queue, runtimes, policy) = entry.kind();
            if entry.max_tasks > 0
                && !kinds
                    .iter()
                    .any(|(q, r, p)| q == queue && r == runtimes && p.as_deref() == policy)
            {
                kinds.push((
                    queue.to_string(),
                    runtimes.to_vec(),
                    policy.map(String::from),
                ));
            }
        }
        let mut fire = Vec::new();
        for (queue, runtimes, policy) in kinds {
            let of_kind = |e: &Entry| {
                e.max_tasks > 0 && e.kind() == (queue.as_str(), &runtimes[..], policy.as_deref())
            };
            let room = self.waiters.values_mut().find(|e| {
                of_kind(e)
                    && matches!(&e.state, PollState::Woken(w) if w.len() < e.max_tasks as usize)
            });
            if let Some(entry) = room {
                if let PollState::Woken(wakes) = &mut entry.state {
                    wakes.push(Wake::Any);
                }
                continue;
            }
            let target = self
                .waiters
                .values_mut()
                .filter(|e| of_kind(e))
                .filter(|e| matches!(e.state, PollState::Sleeping | PollState::Claiming))
                .min_by_key(|e| matches!(e.state, PollState::Claiming));
            if let Some(target) = target {
                target.state = PollState::Woken(vec![Wake::Any]);
                fire.push(target.notify.clone());
            }
        }
        fire
    }
}

/// A long-poll registered with the [`Notifier`]; dropping it unregisters, passing on the
/// wake-ups it was woken for and handing back (through `orphaned`) a task a start leased to it.
pub struct PollWaiter {
    notifier: Arc<Notifier>,
    id: u64,
    notify: Arc<Notify>,
    orphaned: Option<Box<dyn FnOnce(Assignment) + Send + Sync>>,
}

/// What a long-poll does next.
#[derive(Debug)]
pub enum PollStep {
    /// Claim (again): it was woken, or a reservation fell through.
    Claim,
    /// Nothing happened since its last claim: keep waiting.
    Wait,
    /// A start is leasing it a task: wait for the hand-over.
    Reserved,
    /// A start leased it this task.
    Handed(Box<Assignment>),
}

impl PollWaiter {
    /// Arms the poll before it claims: a task readied from now on wakes it again.
    pub fn arm(&self) {
        self.notifier.claims.fetch_add(1, Ordering::Relaxed);
        let mut polls = self.notifier.lock_polls();
        if let Some(entry) = polls.waiters.get_mut(&self.id) {
            entry.state = PollState::Claiming;
        }
    }

    /// After a claim that found nothing: what happened meanwhile, and from then on the poll
    /// sleeps (a start may reserve it) until [`PollWaiter::woken`].
    pub fn sleep(&self) -> PollStep {
        self.step(true)
    }

    /// Waits for a wake-up, a hand-over or an undone reservation.
    pub async fn woken(&self) {
        self.notify.notified().await;
    }

    /// What a wake-up (or a stray one: then [`PollStep::Wait`]) asks of the poll.
    pub fn after_wake(&self) -> PollStep {
        self.step(false)
    }

    fn step(&self, going_to_sleep: bool) -> PollStep {
        let mut polls = self.notifier.lock_polls();
        let Some(entry) = polls.waiters.get_mut(&self.id) else {
            return PollStep::Wait;
        };
        match &entry.state {
            PollState::Woken(_) => PollStep::Claim,
            PollState::Reserved => PollStep::Reserved,
            PollState::Handed(_) => {
                let PollState::Handed(assignment) =
                    std::mem::replace(&mut entry.state, PollState::Claiming)
                else {
                    unreachable!("matched above")
                };
                PollStep::Handed(assignment)
            }
            PollState::Claiming if going_to_sleep => {
                entry.state = PollState::Sleeping;
                PollStep::Wait
            }
            // A stray permit of the `Notify` (a wake-up already acted on): nothing new.
            PollState::Claiming | PollState::Sleeping => PollStep::Wait,
        }
    }
}

impl Drop for PollWaiter {
    fn drop(&mut self) {
        let (entry, fire) = {
            let mut polls = self.notifier.lock_polls();
            let Some(entry) = polls.waiters.remove(&self.id) else {
                return;
            };
            let mut fire = Vec::new();
            if let PollState::Woken(wakes) = &entry.state {
                // It will not claim for these: someone else must.
                for wake in wakes {
                    match wake {
                        Wake::Any => fire.extend(polls.wake_each_kind()),
                        wake => fire.extend(polls.wake(wake.clone())),
                    }
                }
            }
            (entry, fire)
        };
        for notify in fire {
            notify.notify_one();
        }
        // A task handed over after the poll stopped listening: it is leased to nobody who knows,
        // so it goes back to the queue at once rather than when its lease expires. (A reserved
        // poll that leaves is seen by the start, whose hand-over then fails.)
        if let PollState::Handed(assignment) = entry.state
            && let Some(orphaned) = self.orphaned.take()
        {
            orphaned(*assignment);
        }
    }
}

/// A sleeping long-poll set aside for the first task of a start, which its transition leases
/// to the poll's worker. Dropping it without [`Reservation::hand`] wakes the poll to claim.
pub struct Reservation {
    notifier: Arc<Notifier>,
    id: u64,
    /// The poll's worker.
    pub worker_id: String,
    /// The runtimes it has.
    pub runtimes: Vec<String>,
    /// The queue it serves.
    pub queue: String,
    handed: bool,
}

impl Reservation {
    /// Hands the committed lease to the poll, which returns it. `Err` gives the assignment back
    /// when the poll has gone meanwhile: the caller must release its lease.
    pub fn hand(mut self, assignment: Box<Assignment>) -> Result<(), Box<Assignment>> {
        self.handed = true;
        let notify = {
            let mut polls = self.notifier.lock_polls();
            match polls.waiters.get_mut(&self.id) {
                Some(entry) if matches!(entry.state, PollState::Reserved) => {
                    entry.state = PollState::Handed(assignment);
                    entry.notify.clone()
                }
                _ => return Err(assignment),
            }
        };
        notify.notify_one();
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.handed {
            return;
        }
        let notify = {
            let mut polls = self.notifier.lock_polls();
            match polls.waiters.get_mut(&self.id) {
                // Wake-ups passed it by while it was reserved: it claims again.
                Some(entry) if matches!(entry.state, PollState::Reserved) => {
                    entry.state = PollState::Woken(vec![Wake::Any]);
                    entry.notify.clone()
                }
                _ => return,
            }
        };
        notify.notify_one();
    }
}

impl Notifier {
    pub(super) fn lock_polls(&self) -> MutexGuard<'_, Polls> {
        self.polls.lock().expect("the lock is never poisoned")
    }

    /// A task became ready: wakes one long-poll that can take it.
    pub fn task_ready(&self, wake: Wake) {
        let fire = {
            let mut polls = self.lock_polls();
            match wake {
                Wake::Any => polls.wake_each_kind(),
                wake => polls.wake(wake).into_iter().collect(),
            }
        };
        for notify in fire {
            notify.notify_one();
        }
    }

    /// Registers a long-poll of `worker_id`, which takes up to `max_tasks` tasks of `runtimes`
    /// in `queue`. `orphaned` gets a task a start leased to it if the poll is dropped before
    /// returning it.
    pub fn register_poll(
        self: &Arc<Self>,
        worker_id: &str,
        runtimes: &[String],
        queue: &str,
        max_tasks: u32,
        policy: Option<&WorkerPolicy>,
        orphaned: Box<dyn FnOnce(Assignment) + Send + Sync>,
    ) -> PollWaiter {
        let notify = Arc::new(Notify::new());
        let mut polls = self.lock_polls();
        let id = polls.next_id;
        polls.next_id += 1;
        polls.waiters.insert(
            id,
            Entry {
                runtimes: runtimes.to_vec(),
                policy: policy.map(|p| (p.clone(), p.fingerprint())),
                queue: queue.to_string(),
                worker_id: worker_id.to_string(),
                max_tasks,
                notify: notify.clone(),
                state: PollState::Claiming,
            },
        );
        PollWaiter {
            notifier: self.clone(),
            id,
            notify,
            orphaned: Some(orphaned),
        }
    }

    /// Sets aside the longest-sleeping long-poll that takes tasks of `runtime` in `queue`, for a
    /// start to lease its first task to (eager dispatch).
    pub fn reserve(self: &Arc<Self>, runtime: &str, queue: &str) -> Option<Reservation> {
        self.reserve_admitted(runtime, queue, &|_| true)
    }

    /// [`Notifier::reserve`] among the polls whose policy `admits` the task (those without a
    /// restrictive policy always do).
    pub fn reserve_admitted(
        self: &Arc<Self>,
        runtime: &str,
        queue: &str,
        admits: &dyn Fn(&WorkerPolicy) -> bool,
    ) -> Option<Reservation> {
        let wake = Wake::Task {
            runtime: runtime.to_string(),
            queue: queue.to_string(),
        };
        let mut polls = self.lock_polls();
        let (id, entry) = polls.waiters.iter_mut().find(|(_, e)| {
            e.serves(&wake)
                && matches!(e.state, PollState::Sleeping)
                && e.policy.as_ref().is_none_or(|(p, _)| admits(p))
        })?;
        entry.state = PollState::Reserved;
        Some(Reservation {
            notifier: self.clone(),
            id: *id,
            worker_id: entry.worker_id.clone(),
            runtimes: entry.runtimes.clone(),
            queue: entry.queue.clone(),
            handed: false,
        })
    }

    /// How many long-polls sleep, waiting for a task.
    pub fn sleeping_polls(&self) -> usize {
        self.lock_polls()
            .waiters
            .values()
            .filter(|e| matches!(e.state, PollState::Sleeping))
            .count()
    }

    /// How many claims long-polls have made (each looks for ready tasks in the store), for tests
    /// that count wake-ups.
    pub fn claim_attempts(&self) -> u64 {
        self.claims.load(Ordering::Relaxed)
    }

    /// Wakes every long-poll to claim (missed notifications).
    pub(super) fn wake_all_polls(&self) {
        let fire: Vec<_> = {
            let mut polls = self.lock_polls();
            polls
                .waiters
                .values_mut()
                .filter(|e| matches!(e.state, PollState::Sleeping | PollState::Claiming))
                .map(|e| {
                    e.state = PollState::Woken(vec![Wake::Any]);
                    e.notify.clone()
                })
                .collect()
        };
        for notify in fire {
            notify.notify_one();
        }
    }
}
