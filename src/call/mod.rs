//! One call: glues the SDP session, the RTP media session, the flow
//! interpreter and the agent side (B2BUA legs, REFER, queue membership)
//! together. Sans-IO like its parts: the runtime feeds it SIP signals, RTP
//! packets, ledger replies, queue actions, resolved contacts and timeouts
//! with `now`, and drains packets to send ([`Call::poll_transmit`]) and
//! [`CallEvent`]s (SIP commands, ledger requests, queue inputs, legs to
//! place or drop, records to write) with [`Call::poll_event`]. See
//! `docs/call.md`.
//!
//! While the caller waits for an agent the call plays hold audio and the
//! queue's position announcements itself (the flow waits in its transfer
//! state), takes `*` as "leave the queue", rings the agents the queue names
//! ([`agent`]), and once an agent answers and the queue connects them it
//! relays RTP between the two legs through a [`Bridge`]. The runtime only
//! owns the sockets and the SIP driver.
//!
//! Nothing here logs a digit, an ID number, a PIN or a balance: digits go
//! from the media session straight into the interpreter, and the ledger
//! request carries the redacting `IdNumber`/`Pin` types.

pub mod agent;
mod guard;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::domain::{AuthOutcome, CallRecord, IdNumber, Insurance, Pin, mask_caller};
use crate::flow::dialplan::Dialplan;
use crate::flow::interpreter::{
    FlowAction, FlowConfig, FlowEvent, Interpreter, LedgerUnavailable, PlayItem,
};
use crate::ledger::AuditAction;
use crate::media::bridge::{Bridge, LegMedia, Side};
use crate::media::g711::Codec;
use crate::media::prompts::PromptLibrary;
use crate::media::sdp::{LocalMedia, Negotiated, SdpSession};
use crate::media::session::{MediaConfig, MediaEvent, MediaSession, PlayItem as MediaItem};
use crate::queue::AgentId;
use crate::sip::StatusCode;
use crate::sip::admission::Cidr;
use crate::sip::{CallHandle, OutboundCall};

pub use agent::{AgentSide, ContactTarget, LegId, agent_headers, parse_contact};
pub use guard::{MediaGuard, UNCONFIRMED_BYTES, UNCONFIRMED_PACKETS};

/// What the SIP layer tells a call: its own dialog, and the agent legs and
/// REFER it started. Every variant changes the call's state or produces a
/// command; none is ignored.
#[derive(Debug, Clone)]
pub enum CallSignal {
    /// ACK received; for a late offer it carries the SDP answer.
    Confirmed(Option<Vec<u8>>),
    /// A re-INVITE (hold/resume) with its offer.
    ReInvite(Option<Vec<u8>>),
    /// The ACK to our 200 for a re-INVITE; carries the answer when the
    /// re-INVITE had no offer and we made one.
    ReInviteAck(Option<Vec<u8>>),
    /// A digit from SIP INFO.
    InfoDigit(char),
    /// The dialog is over (BYE, CANCEL, timeout, shutdown); the string is
    /// the end reason (`caller_hangup`, `cancelled`, `no_ack`, `shutdown`…).
    Ended(&'static str),
    /// The SIP driver placed the INVITE of [`CallEvent::PlaceLeg`].
    LegPlaced { leg: LegId, handle: CallHandle },
    /// An agent leg this call placed got a provisional response.
    AgentProgress { leg: CallHandle, status: u16 },
    /// An agent leg this call placed was answered (2xx, ACK sent).
    AgentAnswered {
        leg: CallHandle,
        sdp: Option<Vec<u8>>,
    },
    /// An agent leg this call placed ended (rejected, cancelled, BYE).
    AgentEnded {
        leg: CallHandle,
        reason: &'static str,
    },
    /// The agent's phone sent a re-INVITE on its leg.
    AgentReInvite {
        leg: CallHandle,
        offer: Option<Vec<u8>>,
    },
    /// Our REFER of this call was accepted (202).
    ReferAccepted,
    /// Our REFER was refused or could not be sent (`status` 0 for a local
    /// error).
    ReferFailed { status: u16 },
    /// Progress of the transfer (RFC 3515 NOTIFY sipfrag status).
    ReferNotify { status: u16, terminated: bool },
}

/// The socket a packet came in on or goes out on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Socket {
    /// The caller leg's RTP socket.
    Caller,
    /// An agent leg's RTP socket (opened after [`CallEvent::OpenLeg`]).
    Leg(LegId),
}

/// One datagram to send: `len` bytes of the caller's buffer, to `dest`, on
/// `socket`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    pub len: usize,
    pub dest: SocketAddr,
    pub socket: Socket,
}

/// What a call asks of the outside world. Drain with [`Call::poll_event`]
/// after every input.
#[derive(Debug)]
pub enum CallEvent {
    /// Send BYE (or whatever ends the dialog in its state).
    Hangup,
    /// Answer a re-INVITE: SDP, or a SIP status to reject it.
    ReinviteAnswer(Result<Vec<u8>, u16>),
    /// Answer a re-INVITE the agent's phone sent on leg `handle`.
    LegReinviteAnswer {
        handle: CallHandle,
        answer: Result<Vec<u8>, u16>,
    },
    /// Check ID + PIN against the ledger; reply with [`Call::handle_auth`].
    Authenticate { id: IdNumber, pin: Pin },
    /// Record an audited balance query (no values) and answer with
    /// [`Call::handle_audit`] once the row is durable: the balance is read
    /// only then (`docs/records.md`).
    AuditQuery { id: IdNumber, insurance: Insurance },
    /// Store a callback booking (the flow's `Callback`, with the verified
    /// ID); nothing is dialled.
    Callback {
        queue: String,
        number: String,
        id: Option<IdNumber>,
    },
    /// Append an audit row (no values: who, what, outcome).
    Audit {
        id: Option<IdNumber>,
        action: AuditAction,
        outcome: &'static str,
    },
    /// Put the caller in `queue` (when `only_if_agent_free`, only if an
    /// agent of it is free right now); reply with
    /// [`Call::handle_queue_joined`].
    JoinQueue {
        queue: String,
        only_if_agent_free: bool,
    },
    /// Take the caller out of its queue (`*`, hang-up while waiting).
    LeaveQueue,
    /// Queue input: `agent` answered for this caller.
    QueueAgentAnswered(AgentId),
    /// Queue input: `agent` did not take this caller (refused, unreachable).
    QueueAgentFailed(AgentId),
    /// Queue input: the call with `agent` is over (wrap-up starts).
    QueueCallEnded(AgentId),
    /// Resolve `host:port` (a contact's host name) and reply with
    /// [`Call::handle_contact_resolved`].
    ResolveContact { leg: LegId, hostport: String },
    /// Open an RTP socket for agent leg `leg` and reply with
    /// [`Call::handle_leg_media`].
    OpenLeg { leg: LegId },
    /// Have the SIP driver send this INVITE for `leg`; the handle comes back
    /// as [`CallSignal::LegPlaced`], its events as `CallSignal::Agent*`.
    PlaceLeg { leg: LegId, call: OutboundCall },
    /// Close `leg`'s RTP socket (when `Some`) and hang the SIP leg `handle`
    /// up (when `Some`: CANCEL or BYE) and stop routing its events.
    DropLeg {
        leg: Option<LegId>,
        handle: Option<CallHandle>,
    },
    /// Blind-transfer the caller with REFER to this configured target.
    SendRefer { target: String },
    /// The call is over: store this record. No more events follow.
    WriteCdr(Box<CallRecord>),
}

/// Network facts and limits of the caller leg (see [`MediaGuard`]).
#[derive(Debug, Clone)]
pub struct CallNet {
    /// The IP the INVITE came from; RTP goes only there or to `trusted`.
    /// `None` (unit tests) means no restriction.
    pub signal_ip: Option<IpAddr>,
    /// Networks RTP may also go to (`[rtp] trusted_media_networks`).
    pub trusted: Arc<[Cidr]>,
    /// A call with neither ACK nor any RTP from the caller after this long
    /// ends with `no_ack`.
    pub no_ack_timeout: Duration,
}

impl Default for CallNet {
    fn default() -> Self {
        CallNet {
            signal_ip: None,
            trusted: Arc::from(Vec::new()),
            no_ack_timeout: Duration::from_secs(8),
        }
    }
}

/// What the call needs to ring agents and transfer.
#[derive(Debug, Clone, Default)]
pub struct AgentSetup {
    /// Queues in REFER mode → their configured target (never from SIP).
    pub refer_targets: Arc<HashMap<String, String>>,
    /// Max-Forwards of the caller's INVITE (the agent leg gets one less).
    pub max_forwards: u8,
    /// Seed of the call's own random numbers (leg SDP ids, bridge SSRCs).
    pub seed: u64,
}

/// Everything a new call needs.
pub struct CallParams {
    pub call_id: String,
    pub caller: String,
    pub local_ip: IpAddr,
    pub rtp_port: u16,
    pub offer: Option<Vec<u8>>,
    pub plan: Arc<Dialplan>,
    pub flow: Arc<FlowConfig>,
    pub prompts: Arc<PromptLibrary>,
    pub inactivity_timeout: Duration,
    /// Random values for SSRC, first sequence number and timestamp, SDP session id.
    pub seeds: [u32; 4],
    pub now: Instant,
    /// Wall-clock Unix milliseconds at `now` (for the CDR and agent hours).
    pub wall_ms: i64,
    pub net: CallNet,
    pub agents: AgentSetup,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// 200 sent, waiting for the ACK.
    Answered,
    /// Talking: the flow runs.
    Running,
    /// Finished; nothing more happens.
    Done,
}

/// One call's cores.
pub struct Call {
    phase: Phase,
    sdp: SdpSession,
    media: Option<MediaSession>,
    flow: Interpreter,
    prompts: Arc<PromptLibrary>,
    outputs: VecDeque<CallEvent>,
    media_cfg: MediaConfig,
    /// The verified caller, for audit rows of later queries.
    verified: Option<IdNumber>,
    /// The last ID the flow asked to authenticate.
    pending_id: Option<IdNumber>,
    record: CallRecord,
    start: Instant,
    start_wall_ms: i64,
    /// What the caller leg negotiated (for the bridge).
    caller_media: Option<Negotiated>,
    /// Waiting in an agent queue (hold audio, announcements, `*`).
    queued: bool,
    /// Hold audio currently playing under this token.
    hold_token: Option<u64>,
    /// The position announcement playing under this token.
    announce_token: Option<u64>,
    /// Tokens of the call's own playback (hold, announcements), kept apart
    /// from the flow's (which count up from 1).
    next_own_token: u64,
    /// Talking to an agent: RTP is relayed, the media session is quiet.
    bridge: Option<Bridge>,
    /// Prompts the call itself played (announcements), for the CDR.
    queue_prompts: Vec<String>,
    /// Agent legs, REFER and queue bookkeeping.
    agent: AgentSide,
    /// What may be sent where (amplification guard, no-ACK window).
    guard: MediaGuard,
    /// A relayed packet waiting for [`Call::poll_transmit`].
    relayed: Option<Transmit>,
    relay_buf: Box<[u8; 1500]>,
    local_ip: IpAddr,
}

/// First token of the call's own playbacks.
const OWN_TOKENS: u64 = 1 << 62;

impl Call {
    /// Negotiates the offer (or makes one, for a late offer) and returns the
    /// call and the SDP for the 200 OK, or the SIP status to reject with.
    pub fn new(p: CallParams) -> Result<(Call, Vec<u8>), u16> {
        let guard = MediaGuard::new(&p.net, p.now);
        let agent = AgentSide::new(p.agents);
        let local = LocalMedia {
            addr: p.local_ip,
            port: p.rtp_port,
            codecs: vec![Codec::Pcmu, Codec::Pcma],
        };
        let mut sdp = SdpSession::new(local, u64::from(p.seeds[3]));
        let media_cfg = MediaConfig {
            codec: Codec::Pcmu,
            telephone_event_pt: None,
            remote: None,
            ssrc: p.seeds[0],
            initial_seq: p.seeds[1] as u16,
            initial_timestamp: p.seeds[2],
            inactivity_timeout: p.inactivity_timeout,
        };
        let mut caller_media = None;
        let (media, body) = match &p.offer {
            Some(offer) => match sdp.answer(offer) {
                Ok((n, body)) => {
                    let m = start_media(&media_cfg, &n, p.now);
                    caller_media = Some(n);
                    (Some(m), body)
                }
                Err(e) => return Err(StatusCode::from(&e).as_u16()),
            },
            None => (None, sdp.offer()),
        };
        let mut flow = Interpreter::new(p.plan, p.flow, p.now, p.wall_ms.div_euclid(1000));
        flow.set_caller_number(&p.caller);
        let record = CallRecord {
            call_id: p.call_id,
            caller_masked: mask_caller(&p.caller),
            started_at_ms: p.wall_ms,
            answered_at_ms: Some(p.wall_ms),
            ..CallRecord::default()
        };
        let call = Call {
            phase: Phase::Answered,
            sdp,
            media,
            flow,
            prompts: p.prompts,
            outputs: VecDeque::new(),
            media_cfg,
            verified: None,
            pending_id: None,
            record,
            start: p.now,
            start_wall_ms: p.wall_ms,
            caller_media,
            queued: false,
            hold_token: None,
            announce_token: None,
            next_own_token: OWN_TOKENS,
            bridge: None,
            queue_prompts: Vec::new(),
            agent,
            guard,
            relayed: None,
            relay_buf: Box::new([0u8; 1500]),
            local_ip: p.local_ip,
        };
        Ok((call, body))
    }

    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    pub fn handle_signal(&mut self, now: Instant, signal: CallSignal) {
        if self.phase == Phase::Done {
            return;
        }
        match signal {
            CallSignal::Confirmed(answer) => {
                if self.phase != Phase::Answered {
                    return;
                }
                if self.media.is_none() {
                    // Late offer: the ACK carries the answer to our offer.
                    match answer.as_deref().map(|a| self.sdp.accept_answer(a)) {
                        Some(Ok(n)) => {
                            self.media = Some(start_media(&self.media_cfg, &n, now));
                            self.caller_media = Some(n);
                        }
                        _ => {
                            tracing::warn!(call_id = %self.record.call_id, "late offer: no usable SDP answer in ACK");
                            self.finish(now, "bad_sdp");
                            self.outputs.push_back(CallEvent::Hangup);
                            return;
                        }
                    }
                }
                self.phase = Phase::Running;
                self.guard.confirmed();
                self.flow.start(now);
                self.pump(now);
            }
            CallSignal::ReInvite(offer) => {
                let reply = match offer {
                    Some(o) => match self.sdp.answer(&o) {
                        Ok((n, body)) => {
                            if let Some(m) = self.media.as_mut() {
                                m.update(&n);
                            }
                            if let Some(b) = self.bridge.as_mut() {
                                b.update_caller(LegMedia::from(&n));
                            }
                            self.guard.sdp_changed();
                            self.caller_media = Some(n);
                            Ok(body)
                        }
                        Err(e) => Err(StatusCode::from(&e).as_u16()),
                    },
                    // A re-INVITE without SDP asks for our offer; we answer
                    // with our current session description.
                    None => Ok(self.sdp.offer()),
                };
                self.outputs.push_back(CallEvent::ReinviteAnswer(reply));
            }
            CallSignal::ReInviteAck(Some(answer)) => match self.sdp.accept_answer(&answer) {
                Ok(n) => {
                    if let Some(m) = self.media.as_mut() {
                        m.update(&n);
                    }
                }
                Err(_) => {
                    tracing::info!(call_id = %self.record.call_id, "unusable SDP answer in re-INVITE ACK; media unchanged")
                }
            },
            CallSignal::ReInviteAck(None) => {}
            CallSignal::InfoDigit(d) => {
                if let Some(m) = self.media.as_mut() {
                    m.handle_info_digit(now, d);
                }
                self.pump(now);
            }
            CallSignal::Ended(reason) => {
                self.flow.handle_event(now, FlowEvent::Hangup);
                self.finish(now, reason);
            }
            CallSignal::LegPlaced { leg, handle } => self.leg_placed(leg, handle),
            CallSignal::AgentProgress { leg, status } => self.agent_progress(leg, status),
            CallSignal::AgentAnswered { leg, sdp } => self.agent_answered(now, leg, sdp),
            CallSignal::AgentEnded { leg, reason } => self.agent_ended(now, leg, reason),
            CallSignal::AgentReInvite { leg, offer } => self.agent_reinvite(leg, offer),
            CallSignal::ReferAccepted => self.refer_accepted(),
            CallSignal::ReferFailed { status } => self.refer_failed(now, status),
            CallSignal::ReferNotify { status, terminated } => {
                self.refer_notify(now, status, terminated)
            }
        }
    }

    /// One datagram received on `socket` from `src`.
    pub fn handle_rtp(&mut self, now: Instant, socket: Socket, src: SocketAddr, packet: &[u8]) {
        if self.bridge.is_some() {
            let side = match socket {
                Socket::Caller => Side::Caller,
                Socket::Leg(l) if self.agent.connected() == Some(l) => Side::Agent,
                Socket::Leg(_) => return,
            };
            if self.phase != Phase::Running {
                return;
            }
            let out = self
                .bridge
                .as_mut()
                .and_then(|b| b.relay(now, side, src, packet, &mut self.relay_buf[..]));
            self.relayed = out.and_then(|(len, dest)| {
                let socket = match side {
                    Side::Caller => Socket::Leg(self.agent.connected()?),
                    Side::Agent => Socket::Caller,
                };
                if socket == Socket::Caller && !self.guard.may_send(dest, len, &self.record.call_id)
                {
                    return None;
                }
                Some(Transmit { len, dest, socket })
            });
            return;
        }
        if socket != Socket::Caller {
            // Early media from a ringing agent is not played to the caller.
            return;
        }
        if let Some(m) = self.media.as_mut() {
            m.handle_rtp(now, src, packet);
            let heard = m.stats().packets_received > 0;
            self.guard.caller_rtp(heard, m.latched(), m.sdp_remote());
            if self.phase == Phase::Running {
                self.pump(now);
            }
        }
    }

    /// The ledger's answer to [`CallEvent::Authenticate`].
    pub fn handle_auth(&mut self, now: Instant, result: Result<AuthOutcome, LedgerUnavailable>) {
        if self.phase != Phase::Running {
            return;
        }
        if let Ok(AuthOutcome::Verified(_)) = &result {
            self.verified = self.pending_id.take();
        }
        self.flow.handle_event(now, FlowEvent::Auth(result));
        self.pump(now);
    }

    /// The answer to [`CallEvent::AuditQuery`]: `Ok` once the row is durable
    /// (the balance is read), `Err` if it could not be stored ("system busy").
    pub fn handle_audit(&mut self, now: Instant, result: Result<(), LedgerUnavailable>) {
        if self.phase != Phase::Running {
            return;
        }
        self.flow.handle_audit(now, result);
        self.pump(now);
    }

    /// A transfer could not be made (no agent, queue closed).
    pub fn handle_transfer_failed(&mut self, now: Instant) {
        if self.phase != Phase::Running {
            return;
        }
        self.flow.handle_event(now, FlowEvent::TransferFailed);
        self.pump(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.phase == Phase::Answered && self.guard.no_ack_expired(now) {
            tracing::info!(call_id = %self.record.call_id, "neither ACK nor RTP from the caller: hanging up");
            self.outputs.push_back(CallEvent::Hangup);
            self.finish(now, "no_ack");
            return;
        }
        if self.phase != Phase::Running {
            return;
        }
        if self.agent.refer_expired(now) {
            tracing::info!(call_id = %self.record.call_id, "no REFER outcome in time");
            self.refer_fallback(now);
        }
        if let Some(b) = &self.bridge {
            if b.is_inactive(now) {
                tracing::info!(call_id = %self.record.call_id, "no RTP on the bridged call: hanging up");
                self.outputs.push_back(CallEvent::Hangup);
                self.finish(now, "rtp_timeout");
            }
            return;
        }
        self.flow.handle_timeout(now);
        self.pump(now);
    }

    /// When to call [`Call::handle_timeout`] / [`Call::poll_transmit`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Done {
            return None;
        }
        let refer = self.agent.poll_timeout();
        if let Some(b) = &self.bridge {
            return earliest(b.poll_timeout(), refer);
        }
        let media = self.media.as_ref().and_then(|m| m.poll_timeout());
        let flow = if self.phase == Phase::Running {
            self.flow.poll_timeout()
        } else {
            None
        };
        let no_ack = (self.phase == Phase::Answered)
            .then(|| self.guard.no_ack_deadline())
            .flatten();
        earliest(earliest(media, flow), earliest(refer, no_ack))
    }

    /// The next datagram due (a relayed packet, or the media session's
    /// next frame), written into `buf` (at least 1500 bytes).
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        if let Some(t) = self.relayed.take() {
            buf[..t.len].copy_from_slice(&self.relay_buf[..t.len]);
            return Some(t);
        }
        if self.phase == Phase::Done || self.bridge.is_some() {
            return None;
        }
        loop {
            let out = self.media.as_mut()?.poll_transmit(now, buf);
            let Some((len, dest)) = out else {
                if self.phase == Phase::Running {
                    // Playback may have finished while sending: let the flow react.
                    self.pump(now);
                }
                return None;
            };
            // The frame is made (the send clock advances) even when the
            // guard keeps it: a withheld frame is dropped, not delayed.
            if self.guard.may_send(dest, len, &self.record.call_id) {
                return Some(Transmit {
                    len,
                    dest,
                    socket: Socket::Caller,
                });
            }
        }
    }

    /// Whether [`Call::poll_event`] has a command waiting (the media clock
    /// leaves commands to the call's task).
    pub fn has_events(&self) -> bool {
        !self.outputs.is_empty()
    }

    /// The next command for the outside world.
    pub fn poll_event(&mut self) -> Option<CallEvent> {
        self.outputs.pop_front()
    }

    /// Moves media events into the flow and flow actions into media/outputs
    /// until both are quiet.
    fn pump(&mut self, now: Instant) {
        for _ in 0..1000 {
            let mut progressed = false;
            {
                while let Some(ev) = self.media.as_mut().and_then(|m| m.poll_event()) {
                    progressed = true;
                    match ev {
                        MediaEvent::Digit { digit, .. } if self.queued => {
                            // Waiting for an agent: only `*` and the
                            // callback key mean something.
                            if Some(digit) == self.flow.config().callback_key
                                && self.flow.can_offer_callback()
                            {
                                self.leave_queue_for_callback(now);
                            } else if digit == '*' {
                                self.queued = false;
                                self.stop_own_audio();
                                self.outputs.push_back(CallEvent::LeaveQueue);
                                self.drop_all_legs();
                                self.flow.handle_event(
                                    now,
                                    FlowEvent::TransferCancelled { apology: false },
                                );
                            }
                        }
                        MediaEvent::Digit { digit, .. } => {
                            self.flow.handle_event(now, FlowEvent::Digit(digit))
                        }
                        MediaEvent::PlaybackDone { token, interrupted } if token >= OWN_TOKENS => {
                            if !interrupted
                                && self.queued
                                && (self.hold_token == Some(token)
                                    || self.announce_token == Some(token))
                            {
                                // Hold audio loops; after an announcement it resumes.
                                self.announce_token = None;
                                self.play_hold();
                            }
                        }
                        MediaEvent::PlaybackDone { token, .. } => self
                            .flow
                            .handle_event(now, FlowEvent::PlaybackDone { token }),
                        MediaEvent::Inactive => {
                            tracing::info!(call_id = %self.record.call_id, "no RTP from the caller: hanging up");
                            self.flow.handle_event(now, FlowEvent::Hangup);
                            self.outputs.push_back(CallEvent::Hangup);
                            self.finish(now, "rtp_timeout");
                            return;
                        }
                    }
                }
            }
            while let Some(action) = self.flow.poll_action() {
                progressed = true;
                match action {
                    FlowAction::Play { token, items, .. } => self.play(token, &items),
                    FlowAction::StopPlayback => {
                        if let Some(m) = self.media.as_mut() {
                            m.stop_playback();
                        }
                    }
                    FlowAction::Authenticate { id, pin } => {
                        self.pending_id = Some(id.clone());
                        self.outputs.push_back(CallEvent::Authenticate { id, pin });
                    }
                    FlowAction::Audit { insurance } => {
                        if let Some(id) = self.verified.clone() {
                            self.outputs
                                .push_back(CallEvent::AuditQuery { id, insurance });
                        } else {
                            // Nobody verified: nothing may be disclosed.
                            self.flow.handle_audit(now, Err(LedgerUnavailable));
                        }
                    }
                    FlowAction::Anomaly { insurance } => {
                        // A negative personal balance: the data is wrong somewhere.
                        tracing::warn!(
                            call_id = %self.record.call_id,
                            insurance = insurance.as_str(),
                            "anomaly: negative personal-account balance read to a caller"
                        );
                        metrics::counter!("ivr_balance_anomalies_total").increment(1);
                    }
                    FlowAction::Transfer { queue } => self.transfer(now, queue),
                    FlowAction::Callback { queue, number } => {
                        self.outputs.push_back(CallEvent::Callback {
                            queue,
                            number,
                            id: self.verified.clone(),
                        })
                    }
                    FlowAction::Hangup => {
                        self.outputs.push_back(CallEvent::Hangup);
                        // The dialplan said goodbye (after a booked callback:
                        // `callback`), or the flow failed (`error`).
                        let reason = match self.flow.record().end_reason.as_str() {
                            "error" => "error",
                            "callback" => "callback",
                            _ => "ivr_hangup",
                        };
                        self.finish(now, reason);
                        return;
                    }
                }
            }
            if !progressed {
                return;
            }
        }
        tracing::error!(call_id = %self.record.call_id, "flow and media did not settle; ending the call");
        self.outputs.push_back(CallEvent::Hangup);
        self.finish(now, "error");
    }

    /// The queue took the caller (after [`CallEvent::Transfer`]): hold
    /// audio until an announcement, an agent or the end of the wait.
    pub fn queue_joined(&mut self, now: Instant) {
        if self.phase != Phase::Running || !self.flow.is_transferred() {
            return;
        }
        self.queued = true;
        self.stop_own_audio();
        self.play_hold();
        self.pump(now);
    }

    /// "您前面还有 N 位，请耐心等候" for 1-based `position`, then hold audio
    /// again. With nobody ahead it says only "请耐心等候".
    pub fn queue_announce(&mut self, now: Instant, position: usize) {
        if !self.queued || self.phase != Phase::Running {
            return;
        }
        let ahead = position.saturating_sub(1) as u64;
        let mut items: Vec<PlayItem> = Vec::with_capacity(12);
        if ahead > 0 {
            items.push(PlayItem::Prompt(Arc::from("queue_ahead")));
            for seg in crate::say::count(ahead) {
                if let crate::say::Seg::Prompt(id) = seg {
                    items.push(PlayItem::Prompt(Arc::from(id)));
                }
            }
            items.push(PlayItem::Prompt(Arc::from("c_wei")));
        }
        items.push(PlayItem::Prompt(Arc::from("queue_wait")));
        self.queue_prompts.push("queue_announce".into());
        for item in &items {
            if let PlayItem::Prompt(id) = item {
                self.queue_prompts.push(id.to_string());
            }
        }
        self.stop_own_audio();
        let token = self.own_token();
        self.announce_token = Some(token);
        self.play(token, &items);
        self.pump(now);
    }

    /// The queue's maximum wait is over: "坐席全忙" then goodbye, or back to
    /// the main menu when `to_menu`.
    pub fn queue_max_wait(&mut self, now: Instant, to_menu: bool) {
        if !self.queued || self.phase != Phase::Running {
            return;
        }
        self.queued = false;
        self.stop_own_audio();
        let ev = if to_menu {
            FlowEvent::TransferCancelled { apology: true }
        } else {
            FlowEvent::TransferFailed
        };
        self.flow.handle_event(now, ev);
        self.pump(now);
    }

    /// The queue estimates a wait of `estimated` for this caller: over the
    /// queue's callback threshold, offer a callback (the dialplan's
    /// transfer `callback` target) instead of waiting on.
    pub fn queue_estimate(&mut self, now: Instant, estimated: Duration) {
        let over = self
            .flow
            .transfer_queue()
            .and_then(|q| self.flow.config().callback_after.get(q))
            .is_some_and(|limit| estimated > *limit);
        if over && self.queued && self.phase == Phase::Running && self.flow.can_offer_callback() {
            self.leave_queue_for_callback(now);
            self.pump(now);
        }
    }

    fn leave_queue_for_callback(&mut self, now: Instant) {
        self.queued = false;
        self.stop_own_audio();
        self.outputs.push_back(CallEvent::LeaveQueue);
        self.drop_all_legs();
        self.flow.handle_event(now, FlowEvent::CallbackOffered);
    }

    /// Whether the caller waits in a queue now.
    pub fn is_queued(&self) -> bool {
        self.queued
    }

    /// Whether the call is bridged to an agent.
    pub fn is_bridged(&self) -> bool {
        self.bridge.is_some()
    }

    /// The agent answered and the queue connected them: stop the hold audio
    /// and relay RTP between the caller and `agent` from now on. `seeds`:
    /// SSRC, sequence and timestamp for each outgoing leg. Returns false
    /// (and changes nothing) when the caller is no longer waiting.
    pub fn connect_agent(&mut self, now: Instant, agent: &Negotiated, seeds: [u32; 6]) -> bool {
        if !self.queued || self.phase != Phase::Running {
            return false;
        }
        let Some(caller) = self.caller_media.as_ref().map(LegMedia::from) else {
            return false;
        };
        self.queued = false;
        self.stop_own_audio();
        let latched = self.media.as_ref().and_then(|m| m.destination());
        let timeout = self.media_cfg.inactivity_timeout;
        let mut b = Bridge::new(caller, LegMedia::from(agent), seeds, now, timeout);
        b.set_caller_latched(latched);
        self.bridge = Some(b);
        self.queue_prompts.push("agent_connected".into());
        true
    }

    /// Relays one datagram received from the caller (`Side::Caller`) or the
    /// agent; returns what to send on the other leg's socket. (The runtime
    /// uses [`Call::handle_rtp`], which calls this.)
    pub fn relay(
        &mut self,
        now: Instant,
        side: Side,
        src: SocketAddr,
        packet: &[u8],
        buf: &mut [u8],
    ) -> Option<(usize, SocketAddr)> {
        if self.phase != Phase::Running {
            return None;
        }
        self.bridge.as_mut()?.relay(now, side, src, packet, buf)
    }

    /// The bridged agent hung up: hang up the caller too.
    pub fn agent_hung_up(&mut self, now: Instant) {
        if self.phase == Phase::Done {
            return;
        }
        self.outputs.push_back(CallEvent::Hangup);
        self.finish(now, "agent_hangup");
    }

    /// The caller was transferred elsewhere (REFER succeeded): our leg ends.
    pub fn transferred_away(&mut self, now: Instant) {
        if self.phase == Phase::Done {
            return;
        }
        self.queued = false;
        self.stop_own_audio();
        self.outputs.push_back(CallEvent::Hangup);
        self.finish(now, "transfer");
    }

    fn own_token(&mut self) -> u64 {
        let t = self.next_own_token;
        self.next_own_token = self.next_own_token.wrapping_add(1).max(OWN_TOKENS);
        t
    }

    fn play_hold(&mut self) {
        let token = self.own_token();
        self.hold_token = Some(token);
        self.play(token, &[PlayItem::Prompt(Arc::from("hold_music"))]);
    }

    fn stop_own_audio(&mut self) {
        self.hold_token = None;
        self.announce_token = None;
        if let Some(m) = self.media.as_mut() {
            m.stop_playback();
        }
    }

    fn play(&mut self, token: u64, items: &[PlayItem]) {
        let Some(m) = self.media.as_mut() else { return };
        let mut clips = Vec::with_capacity(items.len());
        for item in items {
            match item {
                PlayItem::Prompt(id) => match self.prompts.get(id) {
                    Some(c) => clips.push(MediaItem::Clip(c.clone())),
                    None => {
                        // A number segment's id would say a digit of the value
                        // being read; name only phrases.
                        let number = crate::say::SPELLER_IDS.contains(&&**id);
                        let shown: &str = if number { "<number segment>" } else { id };
                        tracing::error!(prompt = shown, "prompt missing from the library; skipped")
                    }
                },
                PlayItem::Pause(ms) => clips.push(MediaItem::Silence { ms: *ms }),
            }
        }
        m.play(&clips, token);
    }

    fn finish(&mut self, now: Instant, reason: &str) {
        if self.phase == Phase::Done {
            return;
        }
        self.phase = Phase::Done;
        let elapsed = now.saturating_duration_since(self.start).as_millis() as i64;
        let mut record = std::mem::take(&mut self.record);
        record.ended_at_ms = self.start_wall_ms + elapsed;
        self.flow.record().fill(&mut record);
        // What ended the call, not what the flow last noted (the flow says
        // `caller_hangup` for any Hangup event and `transfer` once it asked
        // for one, whatever happened next).
        record.end_reason = reason.to_owned();
        record.prompts.append(&mut self.queue_prompts);
        self.teardown_agent_side();
        self.outputs
            .push_back(CallEvent::WriteCdr(Box::new(record)));
    }
}

/// A media session for a negotiated offer/answer, including its direction
/// (an initial offer may already be on hold).
fn start_media(base: &MediaConfig, n: &Negotiated, now: Instant) -> MediaSession {
    let cfg = MediaConfig {
        codec: n.codec,
        telephone_event_pt: n.telephone_event_pt,
        remote: n.remote,
        ..base.clone()
    };
    let mut session = MediaSession::new(cfg, now);
    session.update(n);
    session
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
