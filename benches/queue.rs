//! Queue operations at 10,000 waiting callers: join + leave from the
//! middle, a full announcement cycle, position look-ups, and the
//! ring → answer → hang-up cycle of 50 agents with the queue kept full.
//!
//! Run: `cargo bench --bench queue` (short: `cargo bench --bench queue --
//! --quick`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ivr12333::queue::{AgentConfig, AgentId, CallerId, QueueAction, QueueConfig, QueueSet};

const WAITING: u64 = 10_000;

fn build(agents: usize) -> QueueSet {
    let names: Vec<String> = (0..agents).map(|i| format!("agent{i}")).collect();
    let mut q = QueueConfig::new("main", names.iter().map(AgentId::new).collect());
    // Long enough that nobody times out during the benchmark.
    q.max_wait = Duration::from_secs(100 * 24 * 3600);
    q.wrap_up = Duration::ZERO;
    let agents = names
        .iter()
        .map(|n| {
            let mut a = AgentConfig::new(n.clone());
            a.contact = Some(format!("sip:{n}@127.0.0.1"));
            a
        })
        .collect();
    QueueSet::new(vec![q], agents).unwrap()
}

fn drain(q: &mut QueueSet) -> usize {
    let mut n = 0;
    while let Some(a) = q.poll_event() {
        black_box(&a);
        n += 1;
    }
    n
}

fn join_leave(c: &mut Criterion) {
    let t0 = Instant::now();
    let mut q = build(1);
    for i in 0..WAITING {
        q.join(t0, "main", CallerId(i)).unwrap();
    }
    let mut next = WAITING;
    let mut g = c.benchmark_group("queue_10k");
    g.throughput(Throughput::Elements(2));
    g.bench_function("join_and_leave_from_middle", |b| {
        b.iter(|| {
            q.join(t0, "main", CallerId(next)).unwrap();
            // The caller joined 5,000 joins ago sits in the middle.
            q.leave(t0, CallerId(next - WAITING / 2));
            next += 1;
            drain(&mut q);
        })
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("position_lookup", |b| {
        let mut k = 0u64;
        b.iter(|| {
            k = (k + 7919) % WAITING;
            black_box(q.position(CallerId(next - 1 - k)))
        })
    });
    g.finish();
}

fn announcement_cycle(c: &mut Criterion) {
    let t0 = Instant::now();
    let mut q = build(1);
    // Joins spread over one 30 s period, so announcements are staggered
    // as in real traffic.
    for i in 0..WAITING {
        q.join(t0 + Duration::from_millis(i * 3), "main", CallerId(i))
            .unwrap();
    }
    let mut now = t0 + Duration::from_secs(40);
    q.handle_timeout(now);
    drain(&mut q);
    let mut g = c.benchmark_group("queue_10k");
    g.throughput(Throughput::Elements(WAITING));
    g.bench_function("announcement_cycle_30s", |b| {
        b.iter(|| {
            now += Duration::from_secs(30);
            q.handle_timeout(now);
            let n = drain(&mut q);
            assert_eq!(n as u64, WAITING);
        })
    });
    g.finish();
}

fn serve_with_agents(c: &mut Criterion) {
    let t0 = Instant::now();
    let mut q = build(50);
    for i in 0..WAITING {
        q.join(t0, "main", CallerId(i)).unwrap();
    }
    for i in 0..50 {
        q.agent_login(t0, &AgentId::new(format!("agent{i}")), None)
            .unwrap();
    }
    let mut ringing: Vec<(CallerId, AgentId)> = Vec::new();
    let collect = |q: &mut QueueSet, ringing: &mut Vec<(CallerId, AgentId)>| {
        while let Some(a) = q.poll_event() {
            if let QueueAction::RingAgent { caller, agent, .. } = a {
                ringing.push((caller, agent));
            }
        }
    };
    collect(&mut q, &mut ringing);
    let mut next = WAITING;
    let mut g = c.benchmark_group("queue_10k");
    // One element = one caller connected, its call ended, one new caller.
    g.throughput(Throughput::Elements(1));
    g.bench_function("answer_hangup_join_50_agents", |b| {
        b.iter(|| {
            let (caller, agent) = ringing.remove(0);
            q.agent_answered(t0, &agent, caller);
            q.call_ended(t0, &agent);
            q.join(t0, "main", CallerId(next)).unwrap();
            next += 1;
            collect(&mut q, &mut ringing);
        })
    });
    g.finish();
}

criterion_group!(benches, join_leave, announcement_cycle, serve_with_agents);
criterion_main!(benches);
