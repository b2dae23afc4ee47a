//! The media clock: a few pacing threads that move every call's media
//! (the pjmedia idea: passive media ports, one clock ticks them).
//!
//! Each worker is a std thread with a heap of `(deadline, call)`. It wakes
//! at most once per quantum (default 2 ms; earlier only when a call asks for
//! a deadline before the planned wake-up), asks every call whose deadline
//! has passed what is due ([`Paced::tick`]: `handle_timeout`, then
//! `poll_transmit` into a non-blocking `send_to`, one after another) and
//! puts it back with its next deadline. No call has a timer or a task
//! wake-up of its own for pacing; receiving stays with the call's task,
//! which wakes only for input.
//!
//! A call is armed for one deadline at a time ([`Armed`]). Its task arms
//! it again only when the core's `poll_timeout` moves earlier than what the
//! clock holds (a new call, a talkspurt started by an input); a later
//! deadline is picked up by the clock itself when the old one passes and
//! the tick finds nothing due. Heap entries hold a [`Weak`] reference, so a
//! finished call is freed at once and its stale entries are skipped.
//!
//! The clock never awaits and needs no async runtime: what a tick cannot do
//! itself (the call's commands: SIP, jobs, queue) is left for the call's
//! task, which the [`Paced`] implementation wakes. See `docs/runtime.md`.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// Default time between two wake-ups of a worker.
pub const DEFAULT_QUANTUM: Duration = Duration::from_millis(2);
/// How often a worker adds its [`Lateness`] to the metrics (while it
/// has calls to tick).
const PUBLISH_EVERY: Duration = Duration::from_secs(1);
/// Size of the send buffer a tick gets (one RTP packet).
pub const TX_BUFFER: usize = 1500;

/// What the clock moves: one call.
pub trait Paced: Send + Sync {
    /// The deadline `armed` (which this call was armed for) has passed:
    /// do what is due at `now` (sending through `buf`) and return the next
    /// deadline, or `None` when the clock should forget the call (done,
    /// nothing scheduled, or `armed` is stale: see [`Armed::is_current`]).
    fn tick(&self, armed: Instant, now: Instant, buf: &mut [u8]) -> Option<Instant>;
}

/// The one deadline the clock holds for a call (kept with the call, under
/// its lock). Sans-IO: both sides report what the core wants and learn what
/// to tell the clock.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Armed(Option<Instant>);

impl Armed {
    /// The call's task: the core now wants `wanted`. Returns the deadline
    /// to hand to the clock when it is earlier than the one the clock holds
    /// (or the clock holds none); a later one needs no message.
    pub fn request(&mut self, wanted: Option<Instant>) -> Option<Instant> {
        match (wanted, self.0) {
            (Some(w), Some(a)) if w >= a => None,
            (Some(w), _) => {
                self.0 = Some(w);
                Some(w)
            }
            (None, _) => None,
        }
    }

    /// The clock: whether an entry popped for `deadline` is the live one
    /// (an entry superseded by an earlier request is stale).
    pub fn is_current(&self, deadline: Instant) -> bool {
        self.0 == Some(deadline)
    }

    /// The clock, after a tick: the call's next deadline (`None`: the clock
    /// forgets the call until its task requests again).
    pub fn rearm(&mut self, next: Option<Instant>) -> Option<Instant> {
        self.0 = next;
        next
    }

    pub fn get(&self) -> Option<Instant> {
        self.0
    }
}

/// One scheduled tick.
pub struct Entry {
    pub deadline: Instant,
    /// Ties broken by arrival order.
    seq: u64,
    pub call: Weak<dyn Paced>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.deadline, self.seq) == (other.deadline, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.deadline, self.seq).cmp(&(other.deadline, other.seq))
    }
}

/// The lateness thresholds [`Lateness`] counts ticks over, in ms.
pub const LATE_OVER_MS: [u64; 5] = [2, 5, 10, 20, 40];

/// Durations counted against the thresholds of [`LATE_OVER_MS`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OverCounts {
    /// Durations counted.
    pub n: u64,
    /// Durations longer than each threshold of [`LATE_OVER_MS`].
    pub over: [u64; LATE_OVER_MS.len()],
    /// The longest.
    pub max: Duration,
}

impl OverCounts {
    pub fn record(&mut self, d: Duration) {
        self.n += 1;
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        for (count, bound) in self.over.iter_mut().zip(LATE_OVER_MS) {
            if us > bound * 1000 {
                *count += 1;
            }
        }
        self.max = self.max.max(d);
    }
}

/// How late the clock ticked calls, and why. Sans-IO: a worker keeps one
/// and publishes it ([`publish_lateness`]).
///
/// - `ticks`: `now` at each live tick (one that returned a next deadline)
///   against the deadline the call asked for (a frame's send slot, most of
///   the time), with the `now` that [`Schedule::run_due`] uses, which it
///   re-reads every 64 calls: a tick may be up to that many calls' work
///   later than recorded.
/// - `wakeups`: how much later than it asked for the worker's thread woke
///   from a timed sleep (the OS ran it late: other threads or processes
///   on its core, or the VM's host).
/// - `rounds`: how long each round that found a deadline due took, from
///   waking to going back to sleep (the calls' work, a call's lock held by its task, the thread
///   preempted in the middle).
/// - `preempted_rounds`: the rounds (of `rounds`) during which the OS took
///   the CPU from the worker although it had work (an involuntary context
///   switch): a long one of these is the OS's doing, not the calls'.
///
/// A tick is late by at most the quantum plus its wake-up's lateness plus
/// the round's work before it; the counts say which of these it was.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Lateness {
    pub ticks: OverCounts,
    pub wakeups: OverCounts,
    pub rounds: OverCounts,
    pub preempted_rounds: OverCounts,
}

impl Lateness {
    /// What was recorded since the last call (and starts again at zero).
    pub fn take(&mut self) -> Lateness {
        std::mem::take(self)
    }
}

/// The latest tick, wake-up and longest round of any worker since the
/// process started, in ns.
static TICK_MAX_NS: AtomicU64 = AtomicU64::new(0);
static WAKEUP_MAX_NS: AtomicU64 = AtomicU64::new(0);
static ROUND_MAX_NS: AtomicU64 = AtomicU64::new(0);

/// Ticks that found their call's lock held by the call's task, and those
/// that waited more than 1 ms for it, since the last report; the longest
/// wait since start (ns).
static LOCK_WAITS: AtomicU64 = AtomicU64::new(0);
static LOCK_WAITS_OVER_1MS: AtomicU64 = AtomicU64::new(0);
static LOCK_WAIT_MAX_NS: AtomicU64 = AtomicU64::new(0);

/// A tick waited `d` for its call's lock (see [`Paced::tick`]).
pub fn note_lock_wait(d: Duration) {
    LOCK_WAITS.fetch_add(1, AtomicOrdering::Relaxed);
    if d > Duration::from_millis(1) {
        LOCK_WAITS_OVER_1MS.fetch_add(1, AtomicOrdering::Relaxed);
    }
    let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    LOCK_WAIT_MAX_NS.fetch_max(ns, AtomicOrdering::Relaxed);
}

fn publish_counts(c: &OverCounts, total: &'static str, over: &'static str) {
    metrics::counter!(total).increment(c.n);
    for (count, bound) in c.over.iter().zip(LATE_OVER_MS) {
        if *count > 0 {
            metrics::counter!(over, "over" => format!("{bound}ms")).increment(*count);
        }
    }
}

fn publish_max(c: &OverCounts, max: &AtomicU64, gauge: &'static str) {
    let ns = u64::try_from(c.max.as_nanos()).unwrap_or(u64::MAX);
    let max = max.fetch_max(ns, AtomicOrdering::Relaxed).max(ns);
    metrics::gauge!(gauge).set(max as f64 / 1e9);
}

/// Adds a worker's lateness since its last report to the process's
/// metrics: `ivr_media_clock_ticks_total`,
/// `ivr_media_clock_late_ticks_total{over="2ms"|…|"40ms"}`,
/// `ivr_media_clock_wakeups_total`, `ivr_media_clock_late_wakeups_total{over}`,
/// `ivr_media_clock_rounds_total`, `ivr_media_clock_long_rounds_total{over}`,
/// `ivr_media_clock_preempted_rounds_total`,
/// `ivr_media_clock_long_preempted_rounds_total{over}`,
/// the lock waits of all workers ([`note_lock_wait`]:
/// `ivr_media_clock_lock_waits_total`,
/// `ivr_media_clock_long_lock_waits_total{over="1ms"}`) and the gauges
/// `ivr_media_clock_late_max_seconds`,
/// `ivr_media_clock_wakeup_late_max_seconds`,
/// `ivr_media_clock_round_max_seconds` and
/// `ivr_media_clock_lock_wait_max_seconds` (since start).
pub fn publish_lateness(l: &Lateness) {
    if l.ticks.n == 0 && l.wakeups.n == 0 && l.rounds.n == 0 {
        return;
    }
    publish_counts(
        &l.ticks,
        "ivr_media_clock_ticks_total",
        "ivr_media_clock_late_ticks_total",
    );
    publish_counts(
        &l.wakeups,
        "ivr_media_clock_wakeups_total",
        "ivr_media_clock_late_wakeups_total",
    );
    publish_counts(
        &l.rounds,
        "ivr_media_clock_rounds_total",
        "ivr_media_clock_long_rounds_total",
    );
    publish_counts(
        &l.preempted_rounds,
        "ivr_media_clock_preempted_rounds_total",
        "ivr_media_clock_long_preempted_rounds_total",
    );
    publish_max(&l.ticks, &TICK_MAX_NS, "ivr_media_clock_late_max_seconds");
    publish_max(
        &l.wakeups,
        &WAKEUP_MAX_NS,
        "ivr_media_clock_wakeup_late_max_seconds",
    );
    publish_max(
        &l.rounds,
        &ROUND_MAX_NS,
        "ivr_media_clock_round_max_seconds",
    );
    metrics::counter!("ivr_media_clock_lock_waits_total")
        .increment(LOCK_WAITS.swap(0, AtomicOrdering::Relaxed));
    metrics::counter!("ivr_media_clock_long_lock_waits_total", "over" => "1ms")
        .increment(LOCK_WAITS_OVER_1MS.swap(0, AtomicOrdering::Relaxed));
    metrics::gauge!("ivr_media_clock_lock_wait_max_seconds")
        .set(LOCK_WAIT_MAX_NS.load(AtomicOrdering::Relaxed) as f64 / 1e9);
}

/// A worker's deadlines, sans-IO: the thread loop is `push` what arrived,
/// `run_due(now)`, sleep until `next_wake`.
#[derive(Default)]
pub struct Schedule {
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
    /// Re-arms made during one `run_due`, pushed after it (so a core that
    /// returns a past deadline is ticked again next round, not in a loop).
    later: Vec<Entry>,
    /// How late live ticks were since the worker last took it.
    pub lateness: Lateness,
}

impl Schedule {
    pub fn push(&mut self, deadline: Instant, call: Weak<dyn Paced>) {
        self.seq = self.seq.wrapping_add(1);
        self.heap.push(Reverse(Entry {
            deadline,
            seq: self.seq,
            call,
        }));
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// The earliest deadline held.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(e)| e.deadline)
    }

    /// Ticks every call whose deadline is at or before `now` (in deadline
    /// order) and re-arms those that return a next deadline. `now` is
    /// re-read through `clock` every 64 calls so a long round does not tick
    /// late calls with a stale time. Returns how many entries were popped.
    pub fn run_due(
        &mut self,
        mut now: Instant,
        clock: &mut dyn FnMut() -> Instant,
        buf: &mut [u8],
    ) -> usize {
        let mut popped = 0;
        while self.heap.peek().is_some_and(|Reverse(e)| e.deadline <= now) {
            let Some(Reverse(e)) = self.heap.pop() else {
                break;
            };
            popped += 1;
            if let Some(call) = e.call.upgrade()
                && let Some(next) = call.tick(e.deadline, now, buf)
            {
                self.lateness
                    .ticks
                    .record(now.saturating_duration_since(e.deadline));
                self.later.push(Entry {
                    deadline: next,
                    seq: 0,
                    call: e.call,
                });
            }
            if popped % 64 == 0 {
                now = now.max(clock());
            }
        }
        let mut later = std::mem::take(&mut self.later);
        for e in later.drain(..) {
            self.push(e.deadline, e.call);
        }
        self.later = later;
        popped
    }

    /// When the worker should wake next: the earliest deadline, but not
    /// before `round_started + quantum` (deadlines that fall due meanwhile
    /// wait for that round, so one wake-up serves many calls).
    pub fn next_wake(&self, round_started: Instant, quantum: Duration) -> Option<Instant> {
        let earliest = round_started.checked_add(quantum).unwrap_or(round_started);
        self.next_deadline().map(|d| d.max(earliest))
    }
}

/// What a worker shares with the tasks that arm calls on it.
#[derive(Default)]
struct Inbox {
    items: Vec<(Instant, Weak<dyn Paced>)>,
    /// The worker is parked (or about to park) until `until` (`None`:
    /// until unparked).
    sleeping: bool,
    until: Option<Instant>,
}

struct Worker {
    inbox: Arc<Mutex<Inbox>>,
    thread: Thread,
}

/// The pacing threads. One per process in the service ([`global`]); tests
/// may start their own.
pub struct MediaClock {
    workers: Box<[Worker]>,
    next: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl MediaClock {
    /// Starts `workers` threads (at least one) waking at most once per
    /// `quantum`. The threads live as long as the process.
    pub fn start(workers: usize, quantum: Duration) -> MediaClock {
        let workers = (0..workers.max(1))
            .map(|i| {
                let inbox = Arc::new(Mutex::new(Inbox::default()));
                let shared = inbox.clone();
                let handle = std::thread::Builder::new()
                    .name(format!("media-clock-{i}"))
                    .spawn(move || run_worker(&shared, quantum))
                    .expect("spawning a media clock thread");
                Worker {
                    inbox,
                    thread: handle.thread().clone(),
                }
            })
            .collect();
        MediaClock {
            workers,
            next: AtomicUsize::new(0),
        }
    }

    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// The worker a new call goes to (round robin).
    pub fn assign(&self) -> usize {
        self.next.fetch_add(1, AtomicOrdering::Relaxed) % self.workers.len()
    }

    /// Has worker `worker` tick `call` at `deadline` (the caller has
    /// recorded it with [`Armed::request`]). Wakes the worker only when it
    /// sleeps past `deadline`.
    pub fn arm(&self, worker: usize, deadline: Instant, call: Weak<dyn Paced>) {
        let w = &self.workers[worker % self.workers.len()];
        let mut inbox = lock(&w.inbox);
        inbox.items.push((deadline, call));
        let wake = inbox.sleeping && inbox.until.is_none_or(|u| deadline < u);
        if wake {
            inbox.sleeping = false;
        }
        drop(inbox);
        if wake {
            w.thread.unpark();
        }
    }
}

fn run_worker(inbox: &Mutex<Inbox>, quantum: Duration) {
    let mut schedule = Schedule::default();
    let mut incoming = Vec::new();
    let mut buf = [0u8; TX_BUFFER];
    let mut published = Instant::now();
    // The end of the last timed sleep, when it was not cut short.
    let mut planned: Option<Instant> = None;
    loop {
        std::mem::swap(&mut incoming, &mut lock(inbox).items);
        for (deadline, call) in incoming.drain(..) {
            schedule.push(deadline, call);
        }
        let started = Instant::now();
        if let Some(p) = planned.take() {
            schedule
                .lateness
                .wakeups
                .record(started.saturating_duration_since(p));
        }
        let switches = preemptions();
        if schedule.run_due(started, &mut Instant::now, &mut buf) > 0 {
            let took = started.elapsed();
            schedule.lateness.rounds.record(took);
            if preemptions() > switches {
                schedule.lateness.preempted_rounds.record(took);
            }
        }
        if started.saturating_duration_since(published) >= PUBLISH_EVERY {
            publish_lateness(&schedule.lateness.take());
            published = started;
        }
        let wake = schedule.next_wake(started, quantum);
        {
            let mut i = lock(inbox);
            if !i.items.is_empty() {
                continue;
            }
            i.sleeping = true;
            i.until = wake;
        }
        match wake {
            Some(w) => {
                let now = Instant::now();
                if w > now {
                    std::thread::park_timeout(w - now);
                    // A wake-up before `w` (an earlier deadline was
                    // armed, or a spurious one) counts as on time.
                    planned = Some(w);
                }
            }
            None => std::thread::park(),
        }
        lock(inbox).sleeping = false;
    }
}

/// The calling thread's involuntary context switches so far (the OS took
/// the CPU from it while it could run); 0 when the OS does not say.
fn preemptions() -> u64 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `getrusage` only writes the struct it is given, which
        // lives across the call; all-zero bytes are a valid `rusage`.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) } == 0 {
            return u64::try_from(u.ru_nivcsw).unwrap_or(0);
        }
    }
    0
}

static SETTINGS: OnceLock<(usize, Duration)> = OnceLock::new();
static CLOCK: OnceLock<MediaClock> = OnceLock::new();

/// Sets the service's clock (`[rtp] clock_workers`, 0 = one per core, and
/// `clock_quantum_ms`) before its first call; later calls change nothing.
pub fn configure(workers: usize, quantum: Duration) {
    let _ = SETTINGS.set((workers, quantum));
}

/// The service's clock, started on first use.
pub fn global() -> &'static MediaClock {
    CLOCK.get_or_init(|| {
        let (workers, quantum) = SETTINGS.get().copied().unwrap_or((0, DEFAULT_QUANTUM));
        let workers = match workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        MediaClock::start(workers, quantum)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A call that wants a tick every `period` until `until`, recording the
    /// instants it was ticked at.
    struct Fake {
        armed: Mutex<Armed>,
        period: Duration,
        ticks: Mutex<Vec<Instant>>,
    }

    impl Paced for Fake {
        fn tick(&self, armed: Instant, now: Instant, _: &mut [u8]) -> Option<Instant> {
            let mut a = self.armed.lock().unwrap();
            if !a.is_current(armed) {
                return None;
            }
            self.ticks.lock().unwrap().push(now);
            a.rearm(Some(armed + self.period))
        }
    }

    fn fake(period_ms: u64) -> Arc<Fake> {
        Arc::new(Fake {
            armed: Mutex::new(Armed::default()),
            period: Duration::from_millis(period_ms),
            ticks: Mutex::new(Vec::new()),
        })
    }

    fn arm(s: &mut Schedule, f: &Arc<Fake>, at: Instant) {
        if let Some(d) = f.armed.lock().unwrap().request(Some(at)) {
            let w: Weak<dyn Paced> = Arc::downgrade(f) as Weak<dyn Paced>;
            s.push(d, w);
        }
    }

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    #[test]
    fn armed_tells_the_clock_only_of_earlier_deadlines() {
        let t0 = Instant::now();
        let mut a = Armed::default();
        assert_eq!(a.request(None), None);
        assert_eq!(a.request(Some(ms(t0, 20))), Some(ms(t0, 20)));
        assert_eq!(a.request(Some(ms(t0, 20))), None);
        assert_eq!(a.request(Some(ms(t0, 40))), None);
        assert_eq!(a.request(Some(ms(t0, 5))), Some(ms(t0, 5)));
        assert!(a.is_current(ms(t0, 5)));
        assert!(!a.is_current(ms(t0, 20)), "the 20 ms entry is stale now");
        assert_eq!(a.rearm(None), None);
        assert_eq!(a.request(Some(ms(t0, 60))), Some(ms(t0, 60)));
    }

    #[test]
    fn due_calls_tick_in_deadline_order_and_rearm() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        let (a, b) = (fake(20), fake(20));
        arm(&mut s, &a, ms(t0, 20));
        arm(&mut s, &b, ms(t0, 10));
        let mut buf = [0u8; 8];
        // nothing due before 10 ms
        assert_eq!(s.run_due(ms(t0, 9), &mut || ms(t0, 9), &mut buf), 0);
        assert_eq!(s.next_deadline(), Some(ms(t0, 10)));
        // at 21 ms both are due: b (10) then a (20), both ticked with now
        assert_eq!(s.run_due(ms(t0, 21), &mut || ms(t0, 21), &mut buf), 2);
        assert_eq!(*a.ticks.lock().unwrap(), [ms(t0, 21)]);
        assert_eq!(*b.ticks.lock().unwrap(), [ms(t0, 21)]);
        // re-armed on their own grids (20 ms after the deadline, not after now)
        assert_eq!(s.len(), 2);
        assert_eq!(s.next_deadline(), Some(ms(t0, 30)));
        assert_eq!(s.run_due(ms(t0, 30), &mut || ms(t0, 30), &mut buf), 1);
        assert_eq!(s.next_deadline(), Some(ms(t0, 40)));
    }

    #[test]
    fn an_earlier_request_supersedes_and_the_stale_entry_is_skipped() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        let a = fake(20);
        arm(&mut s, &a, ms(t0, 20));
        arm(&mut s, &a, ms(t0, 3)); // a talkspurt: earlier
        arm(&mut s, &a, ms(t0, 30)); // later: no new entry
        assert_eq!(s.len(), 2);
        let mut buf = [0u8; 8];
        assert_eq!(s.run_due(ms(t0, 3), &mut || ms(t0, 3), &mut buf), 1);
        // re-armed at 23; the entry for 20 is stale and ticks nothing
        assert_eq!(s.run_due(ms(t0, 20), &mut || ms(t0, 20), &mut buf), 1);
        assert_eq!(a.ticks.lock().unwrap().len(), 1);
        assert_eq!(s.run_due(ms(t0, 23), &mut || ms(t0, 23), &mut buf), 1);
        assert_eq!(*a.ticks.lock().unwrap(), [ms(t0, 3), ms(t0, 23)]);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn lateness_counts_live_ticks_against_their_deadlines() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        let (a, b, c) = (fake(20), fake(20), fake(20));
        arm(&mut s, &a, ms(t0, 0)); // ticked 7 ms late
        arm(&mut s, &b, ms(t0, 4)); // 3 ms late
        arm(&mut s, &c, ms(t0, 20));
        arm(&mut s, &c, ms(t0, 6)); // supersedes 20: 1 ms late
        let mut buf = [0u8; 8];
        assert_eq!(s.run_due(ms(t0, 7), &mut || ms(t0, 7), &mut buf), 3);
        let l = s.lateness.take().ticks;
        assert_eq!(l.n, 3);
        // over 2, 5, 10, 20, 40 ms
        assert_eq!(l.over, [2, 1, 0, 0, 0]);
        assert_eq!(l.max, Duration::from_millis(7));
        assert_eq!(s.lateness, Lateness::default(), "take starts again");
        // c's stale entry for 20 ms ticks nothing and is not counted; at
        // 20 ms a (due 20) is on time and b (24), c (26) are not due
        assert_eq!(s.run_due(ms(t0, 20), &mut || ms(t0, 20), &mut buf), 2);
        let l = s.lateness.take().ticks;
        assert_eq!((l.n, l.over, l.max), (1, [0; 5], Duration::ZERO));
    }

    #[test]
    fn lateness_bounds_are_exclusive() {
        let mut l = OverCounts::default();
        for late_ms in [2, 5, 10, 20, 40, 41] {
            l.record(Duration::from_millis(late_ms));
        }
        l.record(Duration::from_micros(2_001));
        assert_eq!(l.n, 7);
        assert_eq!(l.over, [6, 4, 3, 2, 1]);
        assert_eq!(l.max, Duration::from_millis(41));
    }

    #[test]
    fn a_finished_call_is_dropped_from_the_schedule() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        let a = fake(20);
        arm(&mut s, &a, ms(t0, 20));
        drop(a); // the task ended: only the weak entry is left
        let mut buf = [0u8; 8];
        assert_eq!(s.run_due(ms(t0, 20), &mut || ms(t0, 20), &mut buf), 1);
        assert!(s.is_empty());
    }

    #[test]
    fn a_past_deadline_waits_for_the_next_round() {
        struct Stuck;
        impl Paced for Stuck {
            fn tick(&self, armed: Instant, _: Instant, _: &mut [u8]) -> Option<Instant> {
                Some(armed) // a buggy core: due again at once
            }
        }
        let t0 = Instant::now();
        let mut s = Schedule::default();
        let c: Arc<dyn Paced> = Arc::new(Stuck);
        s.push(t0, Arc::downgrade(&c));
        let mut buf = [0u8; 8];
        assert_eq!(s.run_due(ms(t0, 1), &mut || ms(t0, 1), &mut buf), 1);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn wake_ups_are_at_least_a_quantum_apart() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        let q = Duration::from_millis(2);
        assert_eq!(s.next_wake(t0, q), None);
        let (a, b) = (fake(20), fake(20));
        arm(&mut s, &a, ms(t0, 1));
        arm(&mut s, &b, ms(t0, 15));
        assert_eq!(s.next_wake(t0, q), Some(ms(t0, 2)));
        let mut buf = [0u8; 8];
        s.run_due(ms(t0, 2), &mut || ms(t0, 2), &mut buf);
        assert_eq!(s.next_wake(ms(t0, 2), q), Some(ms(t0, 15)));
    }

    #[test]
    fn a_long_round_rereads_the_clock() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        let calls: Vec<_> = (0..130).map(|_| fake(20)).collect();
        for c in &calls {
            arm(&mut s, c, t0);
        }
        let mut reads = 0u64;
        let mut clock = || {
            reads += 1;
            ms(t0, reads)
        };
        let mut buf = [0u8; 8];
        assert_eq!(s.run_due(t0, &mut clock, &mut buf), 130);
        assert_eq!(reads, 2);
        assert_eq!(*calls[0].ticks.lock().unwrap(), [t0]);
        assert_eq!(*calls[129].ticks.lock().unwrap(), [ms(t0, 2)]);
    }

    #[test]
    fn worker_threads_tick_armed_calls() {
        // The real threads: a call armed in the past is ticked; the test
        // waits for the ticks by count (no time limit).
        let clock = MediaClock::start(2, Duration::from_millis(1));
        let (tx, rx) = std::sync::mpsc::channel::<usize>();
        struct Count(usize, Mutex<u32>, Mutex<std::sync::mpsc::Sender<usize>>);
        impl Paced for Count {
            fn tick(&self, armed: Instant, _: Instant, _: &mut [u8]) -> Option<Instant> {
                let mut n = self.1.lock().unwrap();
                *n += 1;
                let _ = self.2.lock().unwrap().send(self.0);
                (*n < 5).then(|| armed + Duration::from_millis(1))
            }
        }
        let calls: Vec<Arc<dyn Paced>> = (0..4)
            .map(|i| Arc::new(Count(i, Mutex::new(0), Mutex::new(tx.clone()))) as Arc<dyn Paced>)
            .collect();
        for c in &calls {
            clock.arm(clock.assign(), Instant::now(), Arc::downgrade(c));
        }
        let mut per = [0u32; 4];
        for _ in 0..20 {
            per[rx.recv().unwrap()] += 1;
        }
        assert_eq!(per, [5; 4]);
    }
}
