//! The wallboard's figures and where each one comes from:
//!
//! | figure | source |
//! |---|---|
//! | calls now, in self-service | `ivr_calls_active` gauge minus waiting and talking callers |
//! | waiting / talking, per queue waits, answered, abandoned | the queue snapshot (`/queues`, `/agents`) |
//! | answered within 20 s | waiting callers followed snapshot to snapshot ([`WaitTracker`]) |
//! | agent state and time in state | the queue snapshot, timed by [`StateClock`] |
//! | calls per minute | increments of `ivr_calls_total` |
//! | end reasons | increments of `ivr_calls_ended_total{reason}` |
//! | DTMF by source | increments of `ivr_dtmf_digits_total{source}` |
//! | funnel | CDRs as they are written (`call_records`, new ids) |
//! | failed PINs / lockouts per hour | `authenticate` audit rows (`rejected`, `lockout`) |
//!
//! The metrics and snapshot figures are this node's; the CDR and audit
//! figures come from the shared database, but the rings that hold them are
//! in this process and start empty at boot (back-filled from the last hour
//! and day of records).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::json;

use super::ring::{CounterDiff, Ring, StateClock, WaitEnd, WaitTracker, funnel_steps};
use crate::ledger::{Ledger, cdr_query};
use crate::queue::AgentState;
use crate::queue::admin::QueueControl;

/// Service level threshold.
pub const SERVICE_LEVEL_SECS: u64 = 20;

/// One sample of a Prometheus text exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// Parses Prometheus text (the subset `/metrics` writes: `name{k="v",...}
/// value`); comment and malformed lines are skipped.
pub fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (head, value) = match line.rsplit_once(' ') {
            Some(x) => x,
            None => continue,
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match head.split_once('{') {
            Some((n, rest)) => {
                let body = rest.trim_end_matches('}');
                let mut labels = Vec::new();
                for kv in body.split("\",") {
                    if let Some((k, v)) = kv.split_once("=\"") {
                        labels.push((k.trim().to_owned(), v.trim_end_matches('"').to_owned()));
                    }
                }
                (n.to_owned(), labels)
            }
            None => (head.to_owned(), Vec::new()),
        };
        out.push(Sample {
            name,
            labels,
            value,
        });
    }
    out
}

#[derive(Debug, Default, Clone, Serialize)]
struct QueueFigures {
    answered_sampled: u64,
    within_sl: u64,
}

/// Everything the wallboard remembers between samples.
pub struct Board {
    minutes: Ring,
    hours: Ring,
    diff: CounterDiff,
    clock: StateClock,
    waits: WaitTracker,
    sl: BTreeMap<String, QueueFigures>,
    last_cdr: Option<i64>,
    last_audit: Option<i64>,
    active_calls: u64,
}

impl Default for Board {
    fn default() -> Self {
        Board {
            minutes: Ring::last_hour(),
            hours: Ring::last_day(),
            diff: CounterDiff::default(),
            clock: StateClock::default(),
            waits: WaitTracker::default(),
            sl: BTreeMap::new(),
            last_cdr: None,
            last_audit: None,
            active_calls: 0,
        }
    }
}

pub fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Board {
    /// Folds a `/metrics` text in (counters become increments at `now`).
    pub fn metrics(&mut self, now: u64, text: &str) {
        for s in parse_metrics(text) {
            let label = |k: &str| {
                s.labels
                    .iter()
                    .find(|(n, _)| n == k)
                    .map(|(_, v)| v.as_str())
                    .unwrap_or("")
            };
            let v = if s.value.is_finite() && s.value > 0.0 {
                s.value as u64
            } else {
                0
            };
            match s.name.as_str() {
                "ivr_calls_total" => {
                    let d = self.diff.delta("calls", v);
                    self.minutes.add(now, now, "offered", d);
                }
                "ivr_calls_ended_total" => {
                    let key = format!("end:{}", label("reason"));
                    let d = self.diff.delta(&key, v);
                    self.minutes.add(now, now, &key, d);
                }
                "ivr_dtmf_digits_total" => {
                    let key = format!("dtmf:{}", label("source"));
                    let d = self.diff.delta(&key, v);
                    self.minutes.add(now, now, &key, d);
                }
                "ivr_calls_active" => self.active_calls = v,
                _ => {}
            }
        }
        self.diff.prime();
    }

    /// Counts finished calls into the funnel.
    pub fn finished(&mut self, now: u64, calls: &[cdr_query::FinishedCall]) {
        for c in calls {
            let at = (c.ended_at_ms.max(0) / 1000) as u64;
            for step in funnel_steps(c.answered, &c.states, &c.end_reason) {
                self.minutes
                    .add(now, at.min(now), &format!("funnel:{step}"), 1);
            }
            self.last_cdr = Some(self.last_cdr.unwrap_or(0).max(c.id));
        }
    }

    /// Counts authentication outcomes into the hourly security ring.
    pub fn auth(&mut self, now: u64, events: &[cdr_query::AuthEvent]) {
        for e in events {
            let at = ((e.at_ms.max(0) / 1000) as u64).min(now);
            match e.outcome.as_str() {
                "rejected" => self.hours.add(now, at, "pin_failed", 1),
                "lockout" => {
                    // The failure that locks is a failed PIN too.
                    self.hours.add(now, at, "pin_failed", 1);
                    self.hours.add(now, at, "lockout", 1);
                }
                _ => {}
            }
            self.last_audit = Some(self.last_audit.unwrap_or(0).max(e.seq));
        }
    }

    /// The wallboard as JSON, from the queue snapshot at `now`.
    pub fn render(&mut self, now: u64, queues: Option<&dyn QueueControl>) -> serde_json::Value {
        let snap = queues.map(|q| q.snapshot());
        let mut waiting_total = 0u64;
        let mut talking_total = 0u64;
        let mut agents = Vec::new();
        let mut queue_rows = Vec::new();
        if let Some(s) = &snap {
            let waiting: Vec<(u64, String, u64)> = s
                .queues
                .iter()
                .flat_map(|q| {
                    q.waiting
                        .iter()
                        .map(|w| (w.caller.0, q.name.clone(), w.waited_secs))
                })
                .collect();
            let talking: Vec<u64> = s
                .agents
                .iter()
                .filter(|a| matches!(a.state, AgentState::OnCall | AgentState::Ringing))
                .filter_map(|a| a.caller.map(|c| c.0))
                .collect();
            for end in self.waits.observe(&waiting, &talking) {
                if let WaitEnd::Answered { queue, waited_secs } = end {
                    let f = self.sl.entry(queue).or_default();
                    f.answered_sampled += 1;
                    if waited_secs <= SERVICE_LEVEL_SECS {
                        f.within_sl += 1;
                    }
                }
            }
            waiting_total = waiting.len() as u64;
            talking_total = s
                .agents
                .iter()
                .filter(|a| a.state == AgentState::OnCall)
                .count() as u64;
            for a in &s.agents {
                let state = serde_json::to_value(a.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                let secs = self.clock.observe(&a.id.0, &state, now);
                let secs = match a.state {
                    AgentState::OnCall => a.on_call_secs.unwrap_or(secs),
                    AgentState::Available => a.idle_secs.unwrap_or(secs),
                    _ => secs,
                };
                agents.push(json!({
                    "id": a.id.0, "state": state, "secs_in_state": secs,
                    "calls_taken": a.calls_taken, "queues": a.queues,
                }));
            }
            for q in &s.queues {
                let f = self.sl.get(&q.name).cloned().unwrap_or_default();
                let sl = (f.answered_sampled > 0)
                    .then(|| f.within_sl as f64 / f.answered_sampled as f64);
                queue_rows.push(json!({
                    "name": q.name, "waiting": q.waiting_count,
                    "longest_wait_secs": q.longest_wait_secs,
                    "answered": q.answered, "abandoned": q.abandoned,
                    "available_agents": q.available_agents,
                    "service_level": sl, "answered_sampled": f.answered_sampled,
                    "answered_within_sl": f.within_sl,
                }));
            }
        }
        let self_service = self
            .active_calls
            .saturating_sub(waiting_total + talking_total);
        let minutes = self.minutes.buckets(now);
        let per_minute: Vec<serde_json::Value> = minutes
            .iter()
            .map(|b| json!({"at": b.at, "offered": b.counts.get("offered").copied().unwrap_or(0)}))
            .collect();
        let totals = self.minutes.totals(now);
        let pick = |prefix: &str| -> BTreeMap<String, u64> {
            totals
                .iter()
                .filter_map(|(k, v)| k.strip_prefix(prefix).map(|s| (s.to_owned(), *v)))
                .collect()
        };
        let mut funnel = BTreeMap::new();
        for step in [
            "answered",
            "menu",
            "id_entered",
            "verified",
            "balance_heard",
            "asked_agent",
            "gave_up",
        ] {
            funnel.insert(
                step.to_owned(),
                totals.get(&format!("funnel:{step}")).copied().unwrap_or(0),
            );
        }
        let mut dtmf = pick("dtmf:");
        for s in ["rfc4733", "info", "inband"] {
            dtmf.entry(s.to_owned()).or_insert(0);
        }
        let security: Vec<serde_json::Value> = self
            .hours
            .buckets(now)
            .iter()
            .map(|b| {
                json!({"at": b.at,
                    "pin_failed": b.counts.get("pin_failed").copied().unwrap_or(0),
                    "lockout": b.counts.get("lockout").copied().unwrap_or(0)})
            })
            .collect();
        json!({
            "at": now,
            "calls": {
                "active": self.active_calls, "self_service": self_service,
                "waiting": waiting_total, "talking": talking_total,
                "offered_last_hour": totals.get("offered").copied().unwrap_or(0),
            },
            "queues": queue_rows,
            "agents": agents,
            "per_minute": per_minute,
            "funnel": funnel,
            "end_reasons": pick("end:"),
            "dtmf": dtmf,
            "security": security,
            "service_level_secs": SERVICE_LEVEL_SECS,
        })
    }
}

/// Polls the database feeds once (new CDRs, new authentication rows).
pub async fn poll_db(board: &Mutex<Board>, ledger: &Ledger) {
    let now = unix_secs();
    let now_ms = (now as i64) * 1000;
    let (last_cdr, last_audit) = {
        let b = board.lock().unwrap_or_else(|e| e.into_inner());
        (b.last_cdr, b.last_audit)
    };
    // At boot: back-fill from the last hour (CDRs) and day (audit), then
    // follow new ids. An empty table starts from id 0.
    let calls = cdr_query::finished_since(ledger, last_cdr, now_ms - 3_600_000, 2000).await;
    match calls {
        Ok(c) => {
            let first = {
                let mut b = board.lock().unwrap_or_else(|e| e.into_inner());
                b.finished(now, &c);
                b.last_cdr.is_none()
            };
            if first && let Ok(id) = cdr_query::last_record_id(ledger).await {
                let mut b = board.lock().unwrap_or_else(|e| e.into_inner());
                b.last_cdr = Some(b.last_cdr.unwrap_or(0).max(id));
            }
        }
        Err(e) => tracing::debug!(error = %e, "console: CDR feed unavailable"),
    }
    match cdr_query::auth_events_since(ledger, last_audit, now_ms - 86_400_000, 5000).await {
        Ok(ev) => {
            let first = {
                let mut b = board.lock().unwrap_or_else(|e| e.into_inner());
                b.auth(now, &ev);
                b.last_audit.is_none()
            };
            if first && let Ok(seq) = cdr_query::last_audit_seq(ledger).await {
                let mut b = board.lock().unwrap_or_else(|e| e.into_inner());
                b.last_audit = Some(b.last_audit.unwrap_or(0).max(seq));
            }
        }
        Err(e) => tracing::debug!(error = %e, "console: audit feed unavailable"),
    }
}

/// What the sampler needs.
pub struct Sources {
    pub ledger: Ledger,
    pub queues: Option<Arc<dyn QueueControl>>,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

/// One sample: metrics, snapshot, and (every `db_every`-th tick) the
/// database feeds; returns the wallboard JSON.
pub async fn sample(board: &Mutex<Board>, src: &Sources, poll_db_now: bool) -> String {
    if poll_db_now {
        poll_db(board, &src.ledger).await;
    }
    let now = unix_secs();
    let text = src.metrics.as_ref().map(|h| h.render());
    let mut b = board.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(t) = text {
        b.metrics(now, &t);
    }
    let v = b.render(now, src.queues.as_deref());
    drop(b);
    v.to_string()
}

/// Samples every second (the database every other second) and publishes
/// the wallboard JSON until `stop` is set.
pub async fn run(
    board: Arc<Mutex<Board>>,
    src: Sources,
    out: tokio::sync::watch::Sender<Arc<String>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let json = sample(&board, &src, n.is_multiple_of(2)).await;
        n += 1;
        out.send_replace(Arc::new(json));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_text() {
        let t = "# HELP x y\n# TYPE ivr_calls_total counter\nivr_calls_total 7\n\
                 ivr_calls_ended_total{reason=\"goodbye\"} 3\n\
                 ivr_dtmf_digits_total{source=\"rfc4733\",node=\"a\"} 12\nbroken\n";
        let s = parse_metrics(t);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].name, "ivr_calls_total");
        assert_eq!(s[1].labels, vec![("reason".into(), "goodbye".into())]);
        assert_eq!(s[2].labels[1], ("node".into(), "a".into()));
        assert_eq!(s[2].value, 12.0);
    }

    #[test]
    fn board_turns_counters_into_per_minute_figures() {
        let mut b = Board::default();
        let now = 1_800_000_000;
        b.metrics(now, "ivr_calls_total 5\nivr_calls_active 2\n");
        b.metrics(
            now + 1,
            "ivr_calls_total 8\nivr_calls_ended_total{reason=\"goodbye\"} 1\n\
                            ivr_dtmf_digits_total{source=\"info\"} 4\n",
        );
        b.metrics(
            now + 2,
            "ivr_calls_ended_total{reason=\"goodbye\"} 3\n\
                            ivr_dtmf_digits_total{source=\"info\"} 6\n",
        );
        b.auth(
            now,
            &[
                cdr_query::AuthEvent {
                    seq: 1,
                    at_ms: (now as i64) * 1000,
                    outcome: "rejected".into(),
                },
                cdr_query::AuthEvent {
                    seq: 2,
                    at_ms: (now as i64) * 1000,
                    outcome: "lockout".into(),
                },
                cdr_query::AuthEvent {
                    seq: 3,
                    at_ms: (now as i64) * 1000,
                    outcome: "verified".into(),
                },
            ],
        );
        let v = b.render(now + 2, None);
        assert_eq!(v["calls"]["offered_last_hour"], 3);
        assert_eq!(v["calls"]["active"], 2);
        // Series first seen after the baseline count from zero.
        assert_eq!(v["end_reasons"]["goodbye"], 3);
        assert_eq!(v["dtmf"]["info"], 6);
        assert_eq!(v["dtmf"]["inband"], 0);
        let sec = v["security"].as_array().unwrap();
        assert_eq!(sec.len(), 24);
        assert_eq!(sec[23]["pin_failed"], 2);
        assert_eq!(sec[23]["lockout"], 1);
        assert_eq!(v["per_minute"].as_array().unwrap().len(), 60);
    }
}
