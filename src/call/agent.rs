//! The agent side of a call: queue membership, the B2BUA legs that ring
//! agents, and blind transfer with REFER. Sans-IO: every step is a
//! [`CallEvent`] out and a `handle_*` / [`CallSignal`] in.
//!
//! A leg's life (see `docs/call.md`):
//!
//! ```text
//! QueueAction::RingAgent ─► parse contact (or the first route of the agent's Path)
//!                                          ─┬─ IP literal ───────────────┐
//!                                          └─ host: ResolveContact ─► handle_contact_resolved
//!                          OpenLeg ─► handle_leg_media (RTP port)      │
//!   both known ─► SDP offer ─► PlaceLeg ─► CallSignal::LegPlaced (handle)
//!   AgentAnswered (SDP ok) ─► QueueAgentAnswered ─► QueueAction::Connect ─► bridge
//!   AgentEnded: ringing ─► QueueAgentFailed; connected ─► QueueCallEnded + hang up caller
//! ```
//!
//! REFER: a transfer to a queue in REFER mode sends REFER to the queue's
//! configured target and arms a [`REFER_TIMEOUT`] timer; a 2xx NOTIFY ends
//! our leg (`transfer`), a refusal, a failed NOTIFY or the timer falls back
//! to the internal queue when an agent is free, else to the apology.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::{AgentSetup, Call, CallEvent, Phase};
use crate::domain::IdNumber;
use crate::ledger::AuditAction;
use crate::media::g711::Codec;
use crate::media::sdp::{LocalMedia, Negotiated, SdpSession};
use crate::queue::{AgentId, MaxWaitAction, QueueAction};
use crate::sip::message::NameAddr;
use crate::sip::{CallHandle, OutboundCall, Transport};

/// How long a REFER may take to report success before the fallback (a UA
/// that accepts the REFER but never NOTIFYs must not leave the caller in
/// silence).
pub const REFER_TIMEOUT: Duration = Duration::from_secs(32);

/// An agent leg, numbered by its call (the SIP handle comes later).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LegId(pub u64);

/// Where a contact URI points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContactTarget {
    /// An IP literal: no lookup needed.
    Addr(SocketAddr),
    /// A host name with its port (`host:port`), to resolve.
    Host(String),
}

/// One outbound INVITE to an agent, placed for this caller.
#[derive(Debug)]
struct Leg {
    id: LegId,
    agent: AgentId,
    contact: String,
    /// Pre-loaded Route set (the Path the agent registered through).
    route_set: Vec<String>,
    dest: Option<SocketAddr>,
    port: Option<u16>,
    placed: bool,
    handle: Option<CallHandle>,
    sdp: Option<SdpSession>,
    answer: Option<Negotiated>,
}

/// A pending [`CallEvent::JoinQueue`].
#[derive(Debug)]
enum Join {
    /// The flow's transfer (audited).
    Transfer { queue: String, id: Option<IdNumber> },
    /// The REFER failed: queue only if an agent is free.
    Fallback { queue: String },
}

/// What the agent side of a call is doing.
#[derive(Debug)]
pub struct AgentSide {
    setup: AgentSetup,
    legs: Vec<Leg>,
    next_leg: u64,
    /// The leg the caller talks to.
    connected: Option<LegId>,
    /// A REFER to this queue's configured target is in progress.
    referring: Option<String>,
    refer_deadline: Option<Instant>,
    join: Option<Join>,
    verified_masked: Option<String>,
    rng: u64,
}

impl AgentSide {
    pub fn new(setup: AgentSetup) -> AgentSide {
        let rng = setup.seed | 1;
        AgentSide {
            setup,
            legs: Vec::new(),
            next_leg: 1,
            connected: None,
            referring: None,
            refer_deadline: None,
            join: None,
            verified_masked: None,
            rng,
        }
    }

    /// The leg bridged to the caller.
    pub fn connected(&self) -> Option<LegId> {
        self.connected
    }

    /// How many agent legs are alive (ringing, answered or connected).
    pub fn legs(&self) -> usize {
        self.legs.len()
    }

    /// The REFER timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.refer_deadline
    }

    pub(super) fn refer_expired(&self, now: Instant) -> bool {
        self.refer_deadline.is_some_and(|d| now >= d)
    }

    fn random(&mut self) -> u32 {
        // splitmix64: enough for SSRCs and SDP session ids.
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) as u32
    }

    fn by_handle(&self, h: CallHandle) -> Option<usize> {
        self.legs.iter().position(|l| l.handle == Some(h))
    }

    fn by_id(&self, id: LegId) -> Option<usize> {
        self.legs.iter().position(|l| l.id == id)
    }
}

impl Call {
    /// The flow asked for a human: REFER to a configured target, or join
    /// the internal queue.
    pub(super) fn transfer(&mut self, now: Instant, queue: String) {
        let id = self.verified.clone();
        if let Some(m) = &id {
            self.agent.verified_masked = Some(m.masked());
        }
        if let Some(target) = self.agent.setup.refer_targets.get(&queue).cloned() {
            // REFER mode: the target comes from configuration only.
            tracing::info!(call_id = %self.record.call_id, %queue, "transferring the caller with REFER");
            self.agent.referring = Some(queue.clone());
            self.agent.refer_deadline = Some(now + REFER_TIMEOUT);
            self.outputs.push_back(CallEvent::SendRefer { target });
            self.outputs.push_back(CallEvent::Audit {
                id,
                action: AuditAction::Transfer { queue },
                outcome: "refer",
            });
            return;
        }
        self.agent.join = Some(Join::Transfer {
            queue: queue.clone(),
            id,
        });
        self.outputs.push_back(CallEvent::JoinQueue {
            queue,
            only_if_agent_free: false,
        });
    }

    /// The queue's answer to [`CallEvent::JoinQueue`]: the 1-based position,
    /// or why the caller could not join (unknown queue, none configured, no
    /// agent free for a fallback).
    pub fn handle_queue_joined(&mut self, now: Instant, result: Result<usize, String>) {
        let Some(join) = self.agent.join.take() else {
            if result.is_ok() {
                self.outputs.push_back(CallEvent::LeaveQueue);
            }
            return;
        };
        let call_id = self.record.call_id.clone();
        match (join, result) {
            (Join::Transfer { queue, id }, Ok(position)) => {
                tracing::info!(%call_id, %queue, position, "caller joined the agent queue");
                self.queue_joined(now);
                self.audit_transfer(id, queue, "queued");
                if !self.queued {
                    // Joined, but the caller no longer waits for it.
                    self.outputs.push_back(CallEvent::LeaveQueue);
                }
            }
            (Join::Transfer { queue, id }, Err(e)) => {
                tracing::info!(%call_id, %queue, error = %e, "transfer failed");
                self.handle_transfer_failed(now);
                self.audit_transfer(id, queue, "no_agent_queue");
            }
            (Join::Fallback { queue }, Ok(_)) => {
                tracing::info!(%call_id, %queue, "REFER fallback: caller joined the agent queue");
                self.queue_joined(now);
                if !self.queued {
                    self.outputs.push_back(CallEvent::LeaveQueue);
                }
            }
            (Join::Fallback { queue }, Err(_)) => {
                tracing::info!(%call_id, %queue, "REFER fallback: no agent free, apologising");
                self.handle_transfer_failed(now);
            }
        }
    }

    fn audit_transfer(&mut self, id: Option<IdNumber>, queue: String, outcome: &'static str) {
        self.outputs.push_back(CallEvent::Audit {
            id,
            action: AuditAction::Transfer { queue },
            outcome,
        });
    }

    /// What the queue says about this caller.
    pub fn handle_queue(&mut self, now: Instant, action: QueueAction) {
        self.handle_queue_routed(now, action, Vec::new());
    }

    /// [`Call::handle_queue`] where a `RingAgent` is placed through
    /// `route_set` (the agent's stored Path, RFC 3327 §5.3): the INVITE
    /// carries it as Route headers and goes to its first entry. Empty: to
    /// the contact directly.
    pub fn handle_queue_routed(
        &mut self,
        now: Instant,
        action: QueueAction,
        route_set: Vec<String>,
    ) {
        let call_id = self.record.call_id.clone();
        match action {
            QueueAction::Announce {
                position,
                estimated_wait,
                ..
            } => {
                if let Some(w) = estimated_wait {
                    // Over the queue's callback threshold: offer a callback.
                    self.queue_estimate(now, w);
                    if !self.queued {
                        return;
                    }
                }
                // A queue position is not personal data.
                tracing::info!(%call_id, position, "queue position announced");
                self.queue_announce(now, position);
            }
            QueueAction::RingAgent { agent, contact, .. } => {
                if !self.queued || self.phase != Phase::Running {
                    self.outputs.push_back(CallEvent::QueueAgentFailed(agent));
                    return;
                }
                self.ring(agent, contact, route_set);
            }
            QueueAction::CancelRing { agent, .. } => {
                let connected = self.agent.connected;
                if let Some(i) = self
                    .agent
                    .legs
                    .iter()
                    .position(|l| l.agent == agent && Some(l.id) != connected)
                {
                    let leg = self.agent.legs.remove(i);
                    self.outputs.push_back(CallEvent::DropLeg {
                        leg: Some(leg.id),
                        handle: leg.handle,
                    });
                }
            }
            QueueAction::Connect { agent, .. } => self.connect(now, agent),
            QueueAction::MaxWait { action, .. } => {
                self.drop_all_legs();
                self.queue_max_wait(now, action == MaxWaitAction::ReturnToMenu);
            }
            // The acknowledgement of LeaveQueue: nothing left to do.
            QueueAction::Left { .. } => {}
        }
    }

    fn connect(&mut self, now: Instant, agent: AgentId) {
        let found = self
            .agent
            .legs
            .iter()
            .position(|l| l.agent == agent && l.answer.is_some());
        let Some(i) = found else {
            // The queue connected a leg we no longer have: the caller is out
            // of the queue, so apologise rather than hold forever.
            self.outputs.push_back(CallEvent::QueueCallEnded(agent));
            self.drop_all_legs();
            self.queue_max_wait(now, false);
            return;
        };
        let negotiated = self.agent.legs[i].answer.clone();
        let seeds = std::array::from_fn(|_| self.agent.random());
        let ok = negotiated.is_some_and(|n| self.connect_agent(now, &n, seeds));
        if ok {
            tracing::info!(call_id = %self.record.call_id, %agent, "caller bridged to agent");
            self.agent.connected = Some(self.agent.legs[i].id);
        } else {
            self.outputs.push_back(CallEvent::QueueCallEnded(agent));
            let leg = self.agent.legs.remove(i);
            self.outputs.push_back(CallEvent::DropLeg {
                leg: Some(leg.id),
                handle: leg.handle,
            });
            self.queue_max_wait(now, false);
        }
    }

    fn ring(&mut self, agent: AgentId, contact: String, route_set: Vec<String>) {
        // With a route set the INVITE goes to its first hop (§8.1.2).
        let first_hop = match route_set.first() {
            Some(r) => NameAddr::parse(r).map(|n| n.uri).unwrap_or_default(),
            None => contact.clone(),
        };
        let target = match parse_contact(&first_hop) {
            Ok(t) => t,
            Err(why) => {
                tracing::warn!(call_id = %self.record.call_id, %agent, why, "cannot ring agent");
                self.outputs.push_back(CallEvent::QueueAgentFailed(agent));
                return;
            }
        };
        let id = LegId(self.agent.next_leg);
        self.agent.next_leg += 1;
        let (dest, resolve) = match target {
            ContactTarget::Addr(a) => (Some(a), None),
            ContactTarget::Host(h) => (None, Some(h)),
        };
        self.agent.legs.push(Leg {
            id,
            agent,
            contact,
            route_set,
            dest,
            port: None,
            placed: false,
            handle: None,
            sdp: None,
            answer: None,
        });
        if let Some(hostport) = resolve {
            self.outputs
                .push_back(CallEvent::ResolveContact { leg: id, hostport });
        }
        self.outputs.push_back(CallEvent::OpenLeg { leg: id });
    }

    /// The answer to [`CallEvent::ResolveContact`].
    pub fn handle_contact_resolved(&mut self, now: Instant, leg: LegId, addr: Option<SocketAddr>) {
        let Some(i) = self.agent.by_id(leg) else {
            return;
        };
        match addr {
            Some(a) => {
                self.agent.legs[i].dest = Some(a);
                self.try_place(now, i);
            }
            None => self.fail_leg(i, "contact host did not resolve"),
        }
    }

    /// The answer to [`CallEvent::OpenLeg`]: the leg's local RTP port, or
    /// `None` when no port was free.
    pub fn handle_leg_media(&mut self, now: Instant, leg: LegId, port: Option<u16>) {
        let Some(i) = self.agent.by_id(leg) else {
            return;
        };
        match port {
            Some(p) => {
                self.agent.legs[i].port = Some(p);
                self.try_place(now, i);
            }
            None => self.fail_leg(i, "no RTP port free"),
        }
    }

    fn fail_leg(&mut self, i: usize, why: &'static str) {
        let leg = self.agent.legs.remove(i);
        tracing::warn!(call_id = %self.record.call_id, agent = %leg.agent, why, "cannot ring agent");
        self.outputs.push_back(CallEvent::DropLeg {
            leg: Some(leg.id),
            handle: leg.handle,
        });
        self.outputs
            .push_back(CallEvent::QueueAgentFailed(leg.agent));
    }

    fn try_place(&mut self, _now: Instant, i: usize) {
        let sdp_id = u64::from(self.agent.random());
        let max_forwards = self.agent.setup.max_forwards.saturating_sub(1);
        let headers = agent_headers(self.agent.verified_masked.as_deref());
        let local_ip: IpAddr = self.local_ip;
        let leg = &mut self.agent.legs[i];
        let (Some(dest), Some(port), false) = (leg.dest, leg.port, leg.placed) else {
            return;
        };
        let local = LocalMedia {
            addr: local_ip,
            port,
            codecs: vec![Codec::Pcmu, Codec::Pcma],
        };
        let mut sdp = SdpSession::new(local, sdp_id);
        let offer = sdp.offer();
        leg.sdp = Some(sdp);
        leg.placed = true;
        tracing::info!(call_id = %self.record.call_id, agent = %leg.agent, "ringing agent");
        let call = OutboundCall {
            request_uri: leg.contact.clone(),
            dest,
            transport: Transport::Udp,
            from_user: "12333".to_owned(),
            sdp: Some(offer),
            headers,
            max_forwards,
            route_set: leg.route_set.clone(),
        };
        self.outputs
            .push_back(CallEvent::PlaceLeg { leg: leg.id, call });
    }

    pub(super) fn leg_placed(&mut self, leg: LegId, handle: CallHandle) {
        match self.agent.by_id(leg) {
            Some(i) => self.agent.legs[i].handle = Some(handle),
            // Dropped while the INVITE was on its way: hang it up.
            None => self.outputs.push_back(CallEvent::DropLeg {
                leg: None,
                handle: Some(handle),
            }),
        }
    }

    pub(super) fn agent_progress(&mut self, leg: CallHandle, status: u16) {
        if let Some(i) = self.agent.by_handle(leg) {
            tracing::debug!(call_id = %self.record.call_id, agent = %self.agent.legs[i].agent, status, "agent leg progress");
        }
    }

    pub(super) fn agent_answered(
        &mut self,
        _now: Instant,
        handle: CallHandle,
        sdp: Option<Vec<u8>>,
    ) {
        let Some(i) = self.agent.by_handle(handle) else {
            self.outputs.push_back(CallEvent::DropLeg {
                leg: None,
                handle: Some(handle),
            });
            return;
        };
        let leg = &mut self.agent.legs[i];
        let negotiated = match (sdp.as_deref(), leg.sdp.as_mut()) {
            (Some(a), Some(s)) => s.accept_answer(a).ok(),
            _ => None,
        };
        match negotiated {
            Some(n) => {
                leg.answer = Some(n);
                let agent = leg.agent.clone();
                self.outputs.push_back(CallEvent::QueueAgentAnswered(agent));
            }
            None => {
                tracing::info!(agent = %leg.agent, "agent answered without a usable SDP answer");
                let leg = self.agent.legs.remove(i);
                self.outputs.push_back(CallEvent::DropLeg {
                    leg: Some(leg.id),
                    handle: leg.handle,
                });
                self.outputs
                    .push_back(CallEvent::QueueAgentFailed(leg.agent));
            }
        }
    }

    pub(super) fn agent_ended(&mut self, now: Instant, handle: CallHandle, reason: &'static str) {
        let Some(i) = self.agent.by_handle(handle) else {
            return;
        };
        let leg = self.agent.legs.remove(i);
        // The SIP leg is over; only its socket is left to close.
        self.outputs.push_back(CallEvent::DropLeg {
            leg: Some(leg.id),
            handle: None,
        });
        let call_id = self.record.call_id.clone();
        if self.agent.connected == Some(leg.id) {
            self.agent.connected = None;
            tracing::info!(%call_id, agent = %leg.agent, reason, "agent leg ended: hanging up the caller");
            self.outputs.push_back(CallEvent::QueueCallEnded(leg.agent));
            self.agent_hung_up(now);
        } else {
            tracing::info!(%call_id, agent = %leg.agent, reason, "agent did not take the call");
            self.outputs
                .push_back(CallEvent::QueueAgentFailed(leg.agent));
        }
    }

    pub(super) fn agent_reinvite(&mut self, handle: CallHandle, _offer: Option<Vec<u8>>) {
        // The relay keeps the codecs both legs negotiated at connect time:
        // refuse a change it cannot follow (the agent's phone keeps the old
        // session, RFC 3261 §14.2).
        self.outputs.push_back(CallEvent::LegReinviteAnswer {
            handle,
            answer: Err(crate::sip::StatusCode::NOT_ACCEPTABLE_HERE.as_u16()),
        });
    }

    pub(super) fn refer_accepted(&mut self) {
        tracing::info!(call_id = %self.record.call_id, "REFER accepted");
    }

    pub(super) fn refer_failed(&mut self, now: Instant, status: u16) {
        tracing::info!(call_id = %self.record.call_id, status, "REFER refused");
        self.refer_fallback(now);
    }

    pub(super) fn refer_notify(&mut self, now: Instant, status: u16, terminated: bool) {
        if self.agent.referring.is_none() {
            return;
        }
        if crate::sip::status::is_success(status) {
            tracing::info!(call_id = %self.record.call_id, status, "REFER succeeded: caller transferred");
            self.agent.referring = None;
            self.agent.refer_deadline = None;
            self.transferred_away(now);
        } else if crate::sip::status::is_error(status) || terminated {
            tracing::info!(call_id = %self.record.call_id, status, "transfer target failed");
            self.refer_fallback(now);
        }
    }

    /// The REFER failed: the internal queue if it has a free agent, else the
    /// apology ("坐席全忙" and goodbye).
    pub(super) fn refer_fallback(&mut self, _now: Instant) {
        self.agent.refer_deadline = None;
        let Some(queue) = self.agent.referring.take() else {
            return;
        };
        self.agent.join = Some(Join::Fallback {
            queue: queue.clone(),
        });
        self.outputs.push_back(CallEvent::JoinQueue {
            queue,
            only_if_agent_free: true,
        });
    }

    /// Hangs up every agent leg (ringing or connected).
    pub(super) fn drop_all_legs(&mut self) {
        for leg in self.agent.legs.drain(..) {
            self.outputs.push_back(CallEvent::DropLeg {
                leg: Some(leg.id),
                handle: leg.handle,
            });
        }
        self.agent.connected = None;
    }

    /// The call is over: leave the queue, give a connected agent back to
    /// the queue (wrap-up), hang up every leg.
    pub(super) fn teardown_agent_side(&mut self) {
        if self.queued {
            self.queued = false;
            self.outputs.push_back(CallEvent::LeaveQueue);
        }
        if let Some(c) = self.agent.connected
            && let Some(leg) = self.agent.legs.iter().find(|l| l.id == c)
        {
            self.outputs
                .push_back(CallEvent::QueueCallEnded(leg.agent.clone()));
        }
        self.drop_all_legs();
        self.agent.referring = None;
        self.agent.refer_deadline = None;
    }

    /// The agent side's state (for tests and the runtime's socket choice).
    /// The ID the caller verified with PIN, if any (the console's screen
    /// pop shows it masked).
    pub fn verified_id(&self) -> Option<&IdNumber> {
        self.verified.as_ref()
    }

    pub fn agent_side(&self) -> &AgentSide {
        &self.agent
    }
}

/// The headers the agent's phone shows: the masked verified ID (never the
/// PIN, never the full number) and whether the caller was verified.
pub fn agent_headers(verified_masked: Option<&str>) -> Vec<(String, String)> {
    let mut h = Vec::with_capacity(2);
    if let Some(m) = verified_masked {
        h.push(("X-IVR-Verified".to_owned(), m.to_owned()));
    }
    h.push((
        "X-IVR-Account-Status".to_owned(),
        if verified_masked.is_some() {
            "verified"
        } else {
            "unverified"
        }
        .to_owned(),
    ));
    h
}

/// `sip:user@host:port;params` → an address (IP literal, default port
/// 5060) or a `host:port` to resolve. `transport=tcp` is not supported for
/// agent legs yet.
pub fn parse_contact(contact: &str) -> Result<ContactTarget, &'static str> {
    const NOT_SIP: &str = "contact is not a reachable sip: URI";
    let rest = contact
        .strip_prefix("sip:")
        .or_else(|| contact.strip_prefix("SIP:"))
        .ok_or(NOT_SIP)?;
    let rest = rest.trim_start_matches('<');
    let (hostport, params) = match rest.split_once(';') {
        Some((h, p)) => (h, p),
        None => (rest, ""),
    };
    if params.to_ascii_lowercase().contains("transport=tcp") {
        return Err(NOT_SIP);
    }
    let hostport = hostport.rsplit_once('@').map_or(hostport, |(_, h)| h);
    let hostport = hostport.trim_end_matches('>');
    if hostport.is_empty() {
        return Err(NOT_SIP);
    }
    if let Ok(a) = hostport.parse::<SocketAddr>() {
        return Ok(ContactTarget::Addr(a));
    }
    if let Ok(ip) = hostport.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Ok(ContactTarget::Addr(SocketAddr::new(ip, 5060)));
    }
    Ok(ContactTarget::Host(if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:5060")
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contacts_parse_to_addresses_or_host_names() {
        assert_eq!(
            parse_contact("sip:a@127.0.0.1:5070;transport=udp"),
            Ok(ContactTarget::Addr("127.0.0.1:5070".parse().unwrap()))
        );
        assert_eq!(
            parse_contact("sip:a@10.0.0.1"),
            Ok(ContactTarget::Addr("10.0.0.1:5060".parse().unwrap()))
        );
        assert_eq!(
            parse_contact("sip:a@phone.example"),
            Ok(ContactTarget::Host("phone.example:5060".into()))
        );
        assert!(parse_contact("sip:a@h;transport=TCP").is_err());
        assert!(parse_contact("tel:+861234").is_err());
    }
}
