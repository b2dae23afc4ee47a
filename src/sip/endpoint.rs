//! The user-agent server core: RFC 3261 §8.2 (UAS), §9.2 (CANCEL), §12
//! (dialogs), §13.3 (answering INVITE, 2xx retransmission), §14 (re-INVITE,
//! 491 glare), §15 (BYE) on top of the §17 transactions, plus RFC 3581
//! response routing, RFC 6026 Accepted state and admission control.
//!
//! Sans-IO (quinn/str0m style): [`Endpoint::handle_input`] takes one
//! complete message with its transport and source, `handle_timeout(now)`
//! runs timers, and the runtime drains [`Endpoint::poll_transmit`],
//! [`Endpoint::poll_event`] and sleeps until [`Endpoint::poll_timeout`]. The
//! endpoint never reads the clock and never panics on input; calls that end
//! for any reason produce exactly one [`SipEvent::CallEnded`].
//!
//! Agent transfer additions: outbound INVITEs with application headers and
//! Max-Forwards (RFC 3261 §8.1.1.6), REFER in a confirmed dialog with the
//! NOTIFYs of its implicit subscription (RFC 3515, see [`super::transfer`])
//! and, when configured, REGISTER handed to the application (RFC 3261 §10.3,
//! see [`super::registrar`]).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::admission::{Admission, Cidr};
use super::dialog::Dialog;
use super::dtmf_info::{InfoDtmfError, parse_info_dtmf};
use super::message::{
    NameAddr, ResponseSpec, Via, build_response, parse_cseq, udp_response_dest, uri_user,
};
use super::registrar::{RegisterId, RegisterReply, parse_register};
use super::timers::TimerConfig;
use super::transaction::invite_client::AckTemplate;
use super::transaction::{
    InviteClient, InviteServer, InviteServerState, NonInviteClient, NonInviteServer, TxOutput,
};
use super::transfer::{self, SipError};
use super::validate::{self, ALLOW, Request};
use super::wire::{self, Message, Parsed, WireLimits};

/// A TCP connection, numbered by the runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// How a message arrived / must leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp(ConnId),
}

impl Transport {
    fn reliable(self) -> bool {
        matches!(self, Transport::Tcp(_))
    }
}

/// Bytes to put on the wire. For `Tcp(conn)` the runtime writes them on
/// that connection (`dest` is its peer address).
#[derive(Clone, PartialEq, Eq)]
pub struct Transmit {
    pub transport: Transport,
    pub dest: SocketAddr,
    pub bytes: Vec<u8>,
}

impl fmt::Debug for Transmit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transmit")
            .field("transport", &self.transport)
            .field("dest", &self.dest)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// One call (one INVITE dialog) as the application sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallHandle(pub u64);

const MAX_T1: Duration = Duration::from_secs(10);
const MAX_T2: Duration = Duration::from_secs(60);
const MAX_T4: Duration = Duration::from_secs(60);

/// Endpoint settings. `Default` gives RFC timer values and open admission.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// For Via/Contact of what we send.
    pub local_addr: SocketAddr,
    /// Sent as Server (responses) and User-Agent (requests).
    pub user_agent: String,
    /// CIDRs allowed to place calls; empty = everyone.
    pub allow_from: Vec<String>,
    /// Concurrent calls before new INVITEs get 503.
    pub max_calls: usize,
    /// New calls admitted per second (0 = no limit).
    pub max_calls_per_second: u32,
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
    pub limits: WireLimits,
    /// Serve REGISTER (agent phones) through [`SipEvent::Register`]; when
    /// false REGISTER gets 405.
    pub registrar: bool,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            local_addr: SocketAddr::from(([127, 0, 0, 1], 5060)),
            user_agent: "ivr12333".to_owned(),
            allow_from: Vec::new(),
            max_calls: 2000,
            max_calls_per_second: 100,
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            limits: WireLimits::default(),
            registrar: false,
        }
    }
}

impl EndpointConfig {
    /// Checks the settings; the error names the offending setting.
    pub fn validate(&self) -> Result<(), String> {
        for c in &self.allow_from {
            Cidr::parse(c)?;
        }
        if self.t1.is_zero()
            || self.t2 < self.t1
            || self.t4.is_zero()
            || self.t1 > MAX_T1
            || self.t2 > MAX_T2
            || self.t4 > MAX_T4
        {
            return Err("timers: need 0 < T1 <= 10 s, T1 <= T2 <= 60 s, 0 < T4 <= 60 s".to_owned());
        }
        if self.user_agent.contains(['\r', '\n']) {
            return Err("user_agent must be one line".to_owned());
        }
        if self.limits.max_message_bytes < 512
            || self.limits.max_headers < 8
            || self.limits.max_line_len < 128
        {
            return Err("limits too small for any SIP message".to_owned());
        }
        Ok(())
    }
}

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The caller sent BYE.
    RemoteBye,
    /// We hung up (BYE answered or timed out).
    LocalBye,
    /// The caller cancelled before we answered (CANCEL → 487).
    Cancelled,
    /// We (or the application) rejected the INVITE with this status.
    Rejected(u16),
    /// Our 2xx was never ACKed within 64·T1: BYE sent.
    AckTimeout,
    /// The TCP connection of the call closed when we needed to send.
    TransportError,
}

/// What the application learns.
#[derive(Clone, PartialEq, Eq)]
pub enum SipEvent {
    IncomingCall {
        call: CallHandle,
        call_id: String,
        from_user: String,
        to_user: String,
        remote: SocketAddr,
        transport: Transport,
        /// None = late offer (the SDP offer will come in our 200, answer in ACK).
        offer: Option<Vec<u8>>,
        /// The caller's Max-Forwards (70 when absent). A B2BUA leg sends one
        /// less and answers 483 when that would reach 0.
        max_forwards: u8,
    },
    /// ACK received (sdp = answer carried in the ACK for a late offer).
    CallConfirmed {
        call: CallHandle,
        sdp: Option<Vec<u8>>,
    },
    ReInvite {
        call: CallHandle,
        offer: Option<Vec<u8>>,
    },
    /// The ACK for our 2xx to a re-INVITE arrived (sdp = the answer when the
    /// re-INVITE carried no offer and our 200 did).
    ReInviteAck {
        call: CallHandle,
        sdp: Option<Vec<u8>>,
    },
    /// A key from an INFO request. The digit is personal data: Debug hides it.
    Dtmf {
        call: CallHandle,
        digit: char,
        duration_ms: Option<u32>,
    },
    /// Outbound call: a provisional response above 100 (180, 183 + early SDP).
    Progress {
        call: CallHandle,
        status: u16,
        sdp: Option<Vec<u8>>,
    },
    /// Outbound call answered (2xx; the ACK has been sent). `sdp` = answer.
    Answered {
        call: CallHandle,
        sdp: Option<Vec<u8>>,
    },
    /// Exactly once per call, on every exit path.
    CallEnded { call: CallHandle, reason: EndReason },
    /// Our REFER got a 2xx (normally 202): NOTIFYs follow.
    ReferAccepted { call: CallHandle },
    /// Our REFER got a final error, or 408 (Timer F) / 503 (connection
    /// lost). No NOTIFY is accepted for it afterwards.
    ReferFailed { call: CallHandle, status: u16 },
    /// A NOTIFY of our REFER's subscription (already answered 200):
    /// `status` from its `message/sipfrag` status line, `terminated` when
    /// `Subscription-State: terminated` (the last one).
    ReferNotify {
        call: CallHandle,
        status: u16,
        terminated: bool,
    },
    /// A REGISTER (only with `EndpointConfig::registrar`). Answer with
    /// [`Endpoint::respond_register`] within 5 s (else 500 is sent).
    /// Debug hides `authorization`.
    Register {
        reg: RegisterId,
        /// The user part of the To (address-of-record) URI.
        user: String,
        /// First Contact URI; `*` for "remove all bindings"; None = query.
        contact: Option<String>,
        /// Contact `expires` param, else Expires header, else 3600; 0 = remove.
        expires: u32,
        /// The raw Authorization header value, for the digest check.
        authorization: Option<String>,
        /// The Request-URI as text (the digest `uri` to compare).
        method_uri: String,
        src: SocketAddr,
        transport: Transport,
    },
}

impl fmt::Debug for SipEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SipEvent::IncomingCall {
                call,
                call_id,
                remote,
                transport,
                offer,
                max_forwards,
                ..
            } => f
                .debug_struct("IncomingCall")
                .field("call", call)
                .field("call_id", call_id)
                .field("remote", remote)
                .field("transport", transport)
                .field("offer_len", &offer.as_ref().map(Vec::len))
                .field("max_forwards", max_forwards)
                .finish_non_exhaustive(),
            SipEvent::CallConfirmed { call, sdp } => f
                .debug_struct("CallConfirmed")
                .field("call", call)
                .field("sdp_len", &sdp.as_ref().map(Vec::len))
                .finish(),
            SipEvent::ReInvite { call, offer } => f
                .debug_struct("ReInvite")
                .field("call", call)
                .field("offer_len", &offer.as_ref().map(Vec::len))
                .finish(),
            SipEvent::ReInviteAck { call, sdp } => f
                .debug_struct("ReInviteAck")
                .field("call", call)
                .field("sdp_len", &sdp.as_ref().map(Vec::len))
                .finish(),
            SipEvent::Dtmf {
                call, duration_ms, ..
            } => f
                .debug_struct("Dtmf")
                .field("call", call)
                .field("digit", &"<redacted>")
                .field("duration_ms", duration_ms)
                .finish(),
            SipEvent::Progress { call, status, sdp } => f
                .debug_struct("Progress")
                .field("call", call)
                .field("status", status)
                .field("sdp_len", &sdp.as_ref().map(Vec::len))
                .finish(),
            SipEvent::Answered { call, sdp } => f
                .debug_struct("Answered")
                .field("call", call)
                .field("sdp_len", &sdp.as_ref().map(Vec::len))
                .finish(),
            SipEvent::CallEnded { call, reason } => f
                .debug_struct("CallEnded")
                .field("call", call)
                .field("reason", reason)
                .finish(),
            SipEvent::ReferAccepted { call } => {
                f.debug_struct("ReferAccepted").field("call", call).finish()
            }
            SipEvent::ReferFailed { call, status } => f
                .debug_struct("ReferFailed")
                .field("call", call)
                .field("status", status)
                .finish(),
            SipEvent::ReferNotify {
                call,
                status,
                terminated,
            } => f
                .debug_struct("ReferNotify")
                .field("call", call)
                .field("status", status)
                .field("terminated", terminated)
                .finish(),
            SipEvent::Register {
                reg,
                user,
                contact,
                expires,
                authorization,
                src,
                transport,
                ..
            } => f
                .debug_struct("Register")
                .field("reg", reg)
                .field("user", user)
                .field("contact", contact)
                .field("expires", expires)
                .field(
                    "authorization",
                    &authorization.as_ref().map(|_| "<redacted>"),
                )
                .field("src", src)
                .field("transport", transport)
                .finish_non_exhaustive(),
        }
    }
}

enum ServerKind {
    Invite(InviteServer),
    NonInvite(NonInviteServer),
}

struct ServerTx {
    kind: ServerKind,
    transport: Transport,
    dest: SocketAddr,
    merge_key: Option<String>,
}

impl ServerTx {
    fn is_terminated(&self) -> bool {
        match &self.kind {
            ServerKind::Invite(t) => t.is_terminated(),
            ServerKind::NonInvite(t) => t.is_terminated(),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match &self.kind {
            ServerKind::Invite(t) => t.poll_timeout(),
            ServerKind::NonInvite(t) => t.poll_timeout(),
        }
    }
}

enum ClientKind {
    NonInvite(NonInviteClient),
    Invite(InviteClient),
}

impl ClientKind {
    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            ClientKind::NonInvite(t) => t.poll_timeout(),
            ClientKind::Invite(t) => t.poll_timeout(),
        }
    }

    fn handle_timeout(&mut self, now: Instant, out: &mut Vec<TxOutput>) {
        match self {
            ClientKind::NonInvite(t) => t.handle_timeout(now, out),
            ClientKind::Invite(t) => t.handle_timeout(now, out),
        }
    }

    fn is_terminated(&self) -> bool {
        match self {
            ClientKind::NonInvite(t) => t.is_terminated(),
            ClientKind::Invite(t) => t.is_terminated(),
        }
    }

    fn terminate(&mut self) {
        match self {
            ClientKind::NonInvite(t) => t.terminate(),
            ClientKind::Invite(t) => t.terminate(),
        }
    }
}

/// What a client transaction is for (how its outcome affects its call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Bye,
    Cancel,
    Invite,
    Refer,
}

struct ClientTx {
    kind: ClientKind,
    purpose: Purpose,
    transport: Transport,
    dest: SocketAddr,
    /// The call waiting for this transaction's outcome, if any.
    call: Option<CallHandle>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallState {
    /// INVITE received, no final response yet.
    Early,
    /// 2xx sent, waiting for the ACK.
    WaitAck,
    Confirmed,
    /// Our BYE is in flight.
    Terminating,
}

/// §13.3.1.4: the UAS core retransmits its 2xx until the ACK, over every
/// transport, T1 doubling to T2, giving up after 64·T1.
struct OkRetransmit {
    bytes: Vec<u8>,
    transport: Transport,
    dest: SocketAddr,
    cseq: u32,
    next: Instant,
    interval: Duration,
    give_up: Instant,
}

/// A re-INVITE received in a confirmed dialog.
struct PendingReInvite {
    tx_key: String,
    request: Message,
    src: SocketAddr,
    answered: bool,
}

struct Call {
    state: CallState,
    dialog: Dialog,
    transport: Transport,
    /// Where the INVITE came from (fallback destination for requests).
    remote: SocketAddr,
    conn_closed: bool,
    invite_tx: String,
    invite: Message,
    invite_src: SocketAddr,
    ok_retx: Option<OkRetransmit>,
    reinvite: Option<PendingReInvite>,
    /// The app hung up before the ACK: BYE goes out once it arrives.
    hangup_after_ack: bool,
    /// Set for calls we placed (UAC); `invite`/`invite_tx` then describe
    /// our own INVITE.
    uac: Option<UacState>,
    /// Our REFER's transaction is still waiting for its final response.
    refer_pending: bool,
    /// Our REFER's implicit subscription is alive: its NOTIFYs are
    /// accepted (from sending the REFER until a terminated NOTIFY or a
    /// REFER failure; RFC 3515 §2.4.4 lets a NOTIFY overtake the 202).
    refer_subscribed: bool,
}

/// A REGISTER held in its server transaction until the application answers
/// (or [`REGISTER_TIMEOUT`] passes).
struct PendingRegister {
    tx_key: String,
    request: Message,
    src: SocketAddr,
    deadline: Instant,
}

/// How long a REGISTER waits for [`Endpoint::respond_register`] before 500.
pub const REGISTER_TIMEOUT: Duration = Duration::from_secs(5);
/// REGISTERs waiting for the application at once; more get 503 (a flood
/// must not grow memory without bound).
const MAX_PENDING_REGISTERS: usize = 1024;

/// An outbound call's INVITE client side (RFC 3261 §13.2, §9.1).
struct UacState {
    dest: SocketAddr,
    invite_cseq: u32,
    /// Our CANCEL, ready to go (same branch/CSeq as the INVITE).
    cancel: Vec<u8>,
    got_provisional: bool,
    cancel_requested: bool,
    cancel_sent: bool,
    /// The ACK for the 2xx, resent for each 2xx retransmission.
    ack: Option<Vec<u8>>,
}

/// A call to place (agent transfer). No DNS here: `dest` is where the
/// runtime resolved the target to; `transport` is UDP or a TCP connection
/// the runtime opened to it. `Default` gives a placeholder (dest
/// 127.0.0.1:5060, UDP, Max-Forwards 70) to fill with `..Default::default()`.
#[derive(Debug, Clone)]
pub struct OutboundCall {
    /// Request-URI, e.g. `sip:agent01@10.0.0.5:5060`.
    pub request_uri: String,
    pub dest: SocketAddr,
    pub transport: Transport,
    /// Our user part in From, e.g. `12333`.
    pub from_user: String,
    /// The SDP offer (None: the 2xx carries the offer; answer in ACK is
    /// not supported for outbound calls, so pass an offer).
    pub sdp: Option<Vec<u8>>,
    /// Extra headers written verbatim after the standard ones. Names must
    /// be tokens and not ones the endpoint writes (Via, From, To, Call-ID,
    /// CSeq, Max-Forwards, Contact, Content-*, Route); values must not
    /// contain CR, LF or NUL. Otherwise the call is refused
    /// ([`Endpoint::try_invite`] returns the [`SipError`]).
    pub headers: Vec<(String, String)>,
    /// Max-Forwards of the INVITE (RFC 3261 §8.1.1.6; a B2BUA passes the
    /// caller's value minus one).
    pub max_forwards: u8,
}

impl Default for OutboundCall {
    fn default() -> Self {
        OutboundCall {
            request_uri: "sip:agent@127.0.0.1:5060".to_owned(),
            dest: SocketAddr::from(([127, 0, 0, 1], 5060)),
            transport: Transport::Udp,
            from_user: "12333".to_owned(),
            sdp: None,
            headers: Vec::new(),
            max_forwards: 70,
        }
    }
}

/// The SIP user agent of the IVR. See the module docs.
pub struct Endpoint {
    cfg: EndpointConfig,
    timers: TimerConfig,
    admission: Admission,
    next_handle: u64,
    calls: HashMap<CallHandle, Call>,
    dialogs: HashMap<(String, String), CallHandle>,
    server_txs: HashMap<String, ServerTx>,
    /// Which transaction owns each INVITE key's call (key → handle).
    tx_calls: HashMap<String, CallHandle>,
    merge_index: HashMap<String, String>,
    client_txs: HashMap<String, ClientTx>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<SipEvent>,
    /// The latest `now` seen, for the one entry point without it
    /// (`connection_closed`).
    last_now: Option<Instant>,
    next_register: u64,
    registers: HashMap<RegisterId, PendingRegister>,
}

fn random_token() -> String {
    format!("{:016x}", rand::random::<u64>())
}

impl Endpoint {
    pub fn new(cfg: EndpointConfig) -> Endpoint {
        // Clamped so that deadline arithmetic can never overflow, whatever
        // the configuration (`validate` reports out-of-range values).
        let t1 = cfg.t1.clamp(Duration::from_millis(1), MAX_T1);
        let timers = TimerConfig {
            t1,
            t2: cfg.t2.clamp(t1, MAX_T2),
            t4: cfg.t4.clamp(Duration::from_millis(1), MAX_T4),
        };
        let admission = Admission::new(&cfg.allow_from, cfg.max_calls, cfg.max_calls_per_second);
        Endpoint {
            cfg,
            timers,
            admission,
            next_handle: 1,
            calls: HashMap::new(),
            dialogs: HashMap::new(),
            server_txs: HashMap::new(),
            tx_calls: HashMap::new(),
            merge_index: HashMap::new(),
            client_txs: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            last_now: None,
            next_register: 1,
            registers: HashMap::new(),
        }
    }

    // ----- the runtime-facing surface -------------------------------------

    /// One complete message: a UDP datagram, or one message from a
    /// [`wire::StreamFramer`].
    pub fn handle_input(
        &mut self,
        now: Instant,
        transport: Transport,
        src: SocketAddr,
        msg: &[u8],
    ) {
        self.last_now = Some(now);
        let m = match wire::parse(msg, &self.cfg.limits) {
            Ok(Parsed::Message(m)) => m,
            Ok(Parsed::KeepAlive) => return,
            Err(e) => {
                tracing::debug!(error = %e, %src, "dropping unparseable SIP message");
                return;
            }
        };
        if m.is_request() {
            self.handle_request(now, transport, src, m);
        } else {
            self.handle_response(now, &m);
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = Some(now);
        // Server transactions: Timer G resends, H/I/J/L end them.
        let mut sends = Vec::new();
        for tx in self.server_txs.values_mut() {
            if tx.poll_timeout().is_none_or(|t| t > now) {
                continue;
            }
            let mut out = Vec::new();
            match &mut tx.kind {
                ServerKind::Invite(t) => t.handle_timeout(now, &mut out),
                ServerKind::NonInvite(t) => t.handle_timeout(now),
            }
            for o in out {
                if let TxOutput::Send(b) = o {
                    sends.push(Transmit {
                        transport: tx.transport,
                        dest: tx.dest,
                        bytes: b,
                    });
                }
            }
        }
        self.transmits.extend(sends);
        self.reap_server_txs();

        // Client transactions: Timers A/E resend, B/F give up, D/K/M end.
        let mut outcomes = Vec::new();
        for ctx in self.client_txs.values_mut() {
            if ctx.kind.poll_timeout().is_none_or(|t| t > now) {
                continue;
            }
            let mut out = Vec::new();
            ctx.kind.handle_timeout(now, &mut out);
            for o in out {
                match o {
                    TxOutput::Send(b) => self.transmits.push_back(Transmit {
                        transport: ctx.transport,
                        dest: ctx.dest,
                        bytes: b,
                    }),
                    TxOutput::TimedOut => {
                        if let Some(h) = ctx.call.take() {
                            outcomes.push((h, ctx.purpose));
                        }
                    }
                    _ => {}
                }
            }
        }
        for (h, purpose) in outcomes {
            match purpose {
                Purpose::Bye => self.end_call(now, h, EndReason::LocalBye),
                // Timer B: treated as a 408 (§8.1.3.1).
                Purpose::Invite => self.uac_failed(now, h, 408),
                // Timer F: likewise.
                Purpose::Refer => self.refer_done(h, 408),
                Purpose::Cancel => {}
            }
        }
        self.client_txs.retain(|_, c| !c.kind.is_terminated());

        // REGISTERs the application left unanswered: 500 (not leaked).
        let late: Vec<RegisterId> = self
            .registers
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            tracing::warn!(reg = id.0, "REGISTER not answered in time; 500");
            self.send_register_response(now, id, 500, Vec::new());
        }

        // 2xx retransmission and ACK give-up (§13.3.1.4).
        let due: Vec<CallHandle> = self
            .calls
            .iter()
            .filter(|(_, c)| {
                c.ok_retx
                    .as_ref()
                    .is_some_and(|r| r.next.min(r.give_up) <= now)
            })
            .map(|(h, _)| *h)
            .collect();
        for h in due {
            self.run_ok_retransmit(now, h);
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let s = self.server_txs.values().filter_map(ServerTx::poll_timeout);
        let c = self
            .client_txs
            .values()
            .filter_map(|c| c.kind.poll_timeout());
        let k = self
            .calls
            .values()
            .filter_map(|c| c.ok_retx.as_ref().map(|r| r.next.min(r.give_up)));
        let r = self.registers.values().map(|r| r.deadline);
        s.chain(c).chain(k).chain(r).min()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<SipEvent> {
        self.events.pop_front()
    }

    /// Sends 180 Ringing (optional).
    pub fn ringing(&mut self, now: Instant, call: CallHandle) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        if c.state != CallState::Early || c.uac.is_some() {
            return;
        }
        let bytes = self.call_response(c, 180, None);
        let key = c.invite_tx.clone();
        self.respond_invite_tx(now, call, &key, 180, bytes);
    }

    /// Answers with 200 OK carrying `sdp`, then retransmits it until the ACK.
    pub fn answer(&mut self, now: Instant, call: CallHandle, sdp: Vec<u8>) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        if c.state != CallState::Early || c.uac.is_some() {
            return;
        }
        let bytes = self.call_response(c, 200, Some(&sdp));
        let key = c.invite_tx.clone();
        let cseq = c.dialog.remote_cseq;
        let Some((transport, dest)) = self.server_txs.get(&key).map(|t| (t.transport, t.dest))
        else {
            return;
        };
        if !self.respond_invite_tx(now, call, &key, 200, bytes.clone()) {
            return;
        }
        if let Some(c) = self.calls.get_mut(&call) {
            c.state = CallState::WaitAck;
            c.ok_retx = Some(OkRetransmit {
                bytes,
                transport,
                dest,
                cseq,
                next: now + self.timers.t1,
                interval: self.timers.t1,
                give_up: now + self.timers.t64(),
            });
        }
    }

    /// Rejects an unanswered call with a 3xx–6xx status (others become 500).
    pub fn reject(&mut self, now: Instant, call: CallHandle, status: u16) {
        let status = if (300..=699).contains(&status) {
            status
        } else {
            500
        };
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        if c.uac.is_some() {
            self.hangup(now, call);
            return;
        }
        if c.state != CallState::Early {
            return;
        }
        let bytes = self.call_response(c, status, None);
        let key = c.invite_tx.clone();
        self.respond_invite_tx(now, call, &key, status, bytes);
        self.end_call(now, call, EndReason::Rejected(status));
    }

    /// Hangs up: 480 before the answer, BYE after (held until the ACK if the
    /// 2xx is not yet acknowledged, §15).
    pub fn hangup(&mut self, now: Instant, call: CallHandle) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if let Some(u) = c.uac.as_mut()
            && c.state == CallState::Early
        {
            // §9.1: CANCEL only after a provisional; before one, it is sent
            // when the first provisional arrives.
            u.cancel_requested = true;
            if u.got_provisional && !u.cancel_sent {
                self.send_cancel(now, call);
            }
            return;
        }
        match c.state {
            CallState::Early => self.reject(now, call, 480),
            CallState::WaitAck => c.hangup_after_ack = true,
            CallState::Confirmed => self.send_bye(now, call),
            CallState::Terminating => {}
        }
    }

    /// The application's answer to a [`SipEvent::ReInvite`]: `Ok(sdp)` sends
    /// 200 with it, `Err(status)` rejects the re-INVITE (e.g. 488).
    pub fn answer_reinvite(
        &mut self,
        now: Instant,
        call: CallHandle,
        answer: Result<Vec<u8>, u16>,
    ) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let Some(re) = c.reinvite.as_mut() else {
            return;
        };
        if re.answered {
            return;
        }
        re.answered = true;
        let (code, body) = match &answer {
            Ok(sdp) => (200, Some(sdp.as_slice())),
            Err(code) if (300..=699).contains(code) => (*code, None),
            Err(_) => (500, None),
        };
        let key = re.tx_key.clone();
        let cseq = parse_cseq(re.request.header("CSeq").unwrap_or_default()).map_or(0, |c| c.0);
        let Some((transport, dest)) = self.server_txs.get(&key).map(|t| (t.transport, t.dest))
        else {
            return;
        };
        let bytes = Self::dialog_response(
            &self.cfg,
            &c.dialog,
            c.transport,
            &re.request,
            re.src,
            code,
            body,
        );
        if code >= 300 {
            c.reinvite = None;
        }
        if !self.respond_invite_tx(now, call, &key, code, bytes.clone()) {
            return;
        }
        if code == 200
            && let Some(c) = self.calls.get_mut(&call)
        {
            c.ok_retx = Some(OkRetransmit {
                bytes,
                transport,
                dest,
                cseq,
                next: now + self.timers.t1,
                interval: self.timers.t1,
                give_up: now + self.timers.t64(),
            });
        }
    }

    /// Places an outbound call (e.g. to an agent). Events follow:
    /// `Progress`, then `Answered` (the ACK is sent by the endpoint) or
    /// `CallEnded(Rejected(status))` (408 when nobody answered within
    /// 64·T1). `hangup` before the answer sends CANCEL.
    ///
    /// Parameters that fail the checks of [`Endpoint::try_invite`] (header
    /// injection, bad URI) end the call at once with
    /// `CallEnded(Rejected(400))`; nothing is sent.
    pub fn invite(&mut self, now: Instant, out: OutboundCall) -> CallHandle {
        match self.try_invite(now, out) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "outbound INVITE refused");
                let handle = CallHandle(self.next_handle);
                self.next_handle = self.next_handle.wrapping_add(1);
                self.events.push_back(SipEvent::CallEnded {
                    call: handle,
                    reason: EndReason::Rejected(400),
                });
                handle
            }
        }
    }

    /// [`Endpoint::invite`] that reports invalid parameters as an error
    /// instead of an ended call: extra header names must be tokens and not
    /// written by the endpoint, values without CR/LF/NUL, `request_uri` a
    /// URI without spaces or brackets, `from_user` free of `@<>;:` and
    /// whitespace.
    pub fn try_invite(&mut self, now: Instant, out: OutboundCall) -> Result<CallHandle, SipError> {
        transfer::check_extra_headers(&out.headers)?;
        transfer::check_uri(&out.request_uri)?;
        if out.from_user.is_empty()
            || !out
                .from_user
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"@<>;:?\"".contains(&b))
        {
            return Err(SipError::InvalidUri);
        }
        let handle = CallHandle(self.next_handle);
        self.next_handle = self.next_handle.wrapping_add(1);
        let local_tag = random_token();
        let call_id = format!("{}@ivr12333", random_token());
        let branch = format!("z9hG4bK{}", random_token());
        let proto = if out.transport.reliable() {
            "TCP"
        } else {
            "UDP"
        };
        let via = format!(
            "SIP/2.0/{proto} {};branch={branch};rport",
            self.cfg.local_addr
        );
        let host = self.cfg.local_addr;
        let from = format!("<sip:{}@{host}>;tag={local_tag}", out.from_user);
        let to = format!("<{}>", out.request_uri);
        let cseq = 1u32;
        let contact = match out.transport {
            Transport::Udp => format!("<sip:{}@{host}>", out.from_user),
            Transport::Tcp(_) => format!("<sip:{}@{host};transport=tcp>", out.from_user),
        };
        let mut head = format!(
            "INVITE {} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: {}\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\nContact: {contact}\r\nAllow: {ALLOW}\r\nUser-Agent: {}\r\n",
            out.request_uri, out.max_forwards, self.cfg.user_agent
        );
        // Checked above: token names, single-line values.
        for (name, value) in &out.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        let body = out.sdp.clone().unwrap_or_default();
        if out.sdp.is_some() {
            head.push_str("Content-Type: application/sdp\r\n");
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&body);
        let cancel = format!(
            "CANCEL {} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} CANCEL\r\nUser-Agent: {}\r\nContent-Length: 0\r\n\r\n",
            out.request_uri, self.cfg.user_agent
        )
        .into_bytes();
        let ack = AckTemplate {
            request_uri: out.request_uri.clone(),
            via,
            from: from.clone(),
            call_id: call_id.clone(),
            cseq,
            routes: Vec::new(),
        };
        let parsed = match wire::parse(&bytes, &self.cfg.limits) {
            Ok(Parsed::Message(m)) => Some(m),
            _ => None,
        };
        let request = parsed.and_then(|m| validate::check(&m).ok().map(|r| (m, r)));
        let Some((invite_msg, _)) = request else {
            // The checks above should make this unreachable; a header value
            // our own parser refuses (e.g. a duplicate single-valued header
            // under a name we do not reserve) still ends up here.
            tracing::warn!("outbound INVITE could not be built from its parameters");
            return Err(SipError::InvalidHeaderName);
        };
        let dialog = Dialog {
            call_id: call_id.clone(),
            local_tag: local_tag.clone(),
            remote_tag: String::new(),
            remote_party: to,
            local_party: from,
            remote_target: out.request_uri.clone(),
            route_set: Vec::new(),
            remote_cseq: 0,
            local_cseq: cseq,
        };
        let mut txo = Vec::new();
        let tx = InviteClient::start(
            now,
            out.transport.reliable(),
            self.timers,
            bytes,
            ack,
            &mut txo,
        );
        let key = format!("{branch}\x1fINVITE");
        self.client_txs.insert(
            key.clone(),
            ClientTx {
                kind: ClientKind::Invite(tx),
                purpose: Purpose::Invite,
                transport: out.transport,
                dest: out.dest,
                call: Some(handle),
            },
        );
        self.flush(out.transport, out.dest, txo);
        self.dialogs.insert((call_id, local_tag), handle);
        self.calls.insert(
            handle,
            Call {
                state: CallState::Early,
                dialog,
                transport: out.transport,
                remote: out.dest,
                conn_closed: false,
                invite_tx: key,
                invite: invite_msg,
                invite_src: out.dest,
                ok_retx: None,
                reinvite: None,
                hangup_after_ack: false,
                uac: Some(UacState {
                    dest: out.dest,
                    invite_cseq: cseq,
                    cancel,
                    got_provisional: false,
                    cancel_requested: false,
                    cancel_sent: false,
                    ack: None,
                }),
                refer_pending: false,
                refer_subscribed: false,
            },
        );
        Ok(handle)
    }

    /// Sends REFER (RFC 3515) in the call's confirmed dialog: `Refer-To:
    /// <refer_to>` (a bare URI, e.g. `sip:agent01@10.0.0.5`), `Referred-By`
    /// our address of record. Outcome: [`SipEvent::ReferAccepted`] or
    /// [`SipEvent::ReferFailed`], then [`SipEvent::ReferNotify`]s. The call
    /// stays up: after a successful transfer the application hangs up.
    pub fn refer(
        &mut self,
        now: Instant,
        call: CallHandle,
        refer_to: &str,
    ) -> Result<(), SipError> {
        let refer_to = transfer::refer_to_value(refer_to)?;
        let Some(c) = self.calls.get_mut(&call) else {
            return Err(SipError::UnknownCall);
        };
        if c.state != CallState::Confirmed {
            return Err(SipError::NotConfirmed);
        }
        if c.refer_pending {
            return Err(SipError::ReferPending);
        }
        if c.conn_closed {
            return Err(SipError::TransportClosed);
        }
        let dest = match c.transport {
            Transport::Udp => c.dialog.request_dest(c.remote),
            Transport::Tcp(_) => c.remote,
        };
        let transport = c.transport;
        let host = self.cfg.local_addr;
        let our_uri = NameAddr::parse(&c.dialog.local_party)
            .map_or_else(|| format!("sip:ivr@{host}"), |n| n.uri);
        let contact = match transport {
            Transport::Udp => format!("<sip:ivr@{host}>"),
            Transport::Tcp(_) => format!("<sip:ivr@{host};transport=tcp>"),
        };
        let branch = format!("z9hG4bK{}", random_token());
        let proto = if transport.reliable() { "TCP" } else { "UDP" };
        let via = format!("SIP/2.0/{proto} {host};branch={branch};rport");
        let extra = [
            ("Refer-To", refer_to),
            ("Referred-By", format!("<{our_uri}>")),
            ("Contact", contact),
        ];
        let bytes = c
            .dialog
            .build_request("REFER", &via, &self.cfg.user_agent, &extra, None);
        c.refer_pending = true;
        c.refer_subscribed = true;
        let mut out = Vec::new();
        let tx = NonInviteClient::start(now, transport.reliable(), self.timers, bytes, &mut out);
        self.client_txs.insert(
            format!("{branch}\x1fREFER"),
            ClientTx {
                kind: ClientKind::NonInvite(tx),
                purpose: Purpose::Refer,
                transport,
                dest,
                call: Some(call),
            },
        );
        self.flush(transport, dest, out);
        Ok(())
    }

    /// Answers a [`SipEvent::Register`]: 200 (Contact with `;expires=` and
    /// Expires), 401 (one WWW-Authenticate per challenge) or 403. Unknown
    /// or already answered (timed out) ids are ignored. A contact or
    /// challenge with CR/LF is never written: 500 is sent instead.
    pub fn respond_register(&mut self, now: Instant, reg: RegisterId, reply: RegisterReply) {
        if !self.registers.contains_key(&reg) {
            return;
        }
        let one_line = |v: &str| !v.contains(['\r', '\n', '\0']);
        let (code, extra): (u16, Vec<(&'static str, String)>) = match reply {
            RegisterReply::Ok { contact, expires } => {
                let mut extra = Vec::new();
                match contact {
                    Some(c) if !one_line(&c) => {
                        self.send_register_response(now, reg, 500, Vec::new());
                        return;
                    }
                    Some(c) => {
                        let c = if c.trim_start().starts_with('<') || c == "*" {
                            c
                        } else {
                            format!("<{c}>")
                        };
                        if c != "*" {
                            extra.push(("Contact", format!("{c};expires={expires}")));
                        }
                    }
                    None => {}
                }
                extra.push(("Expires", expires.to_string()));
                (200, extra)
            }
            RegisterReply::Challenge {
                www_authenticate,
                stale,
            } => {
                if www_authenticate.is_empty() || !www_authenticate.iter().all(|v| one_line(v)) {
                    self.send_register_response(now, reg, 500, Vec::new());
                    return;
                }
                let extra = www_authenticate
                    .into_iter()
                    .map(|v| {
                        if stale && !v.to_ascii_lowercase().contains("stale=") {
                            ("WWW-Authenticate", format!("{v}, stale=true"))
                        } else {
                            ("WWW-Authenticate", v)
                        }
                    })
                    .collect();
                (401, extra)
            }
            RegisterReply::Forbidden => (403, Vec::new()),
        };
        self.send_register_response(now, reg, code, extra);
    }

    /// REGISTERs waiting for [`Endpoint::respond_register`].
    pub fn pending_registers(&self) -> usize {
        self.registers.len()
    }

    /// New INVITEs get 503 + Retry-After while false; calls in progress go on.
    pub fn set_accepting(&mut self, accepting: bool) {
        self.admission.set_accepting(accepting);
    }

    /// A TCP connection closed: its transactions are dropped; calls on it
    /// end with `TransportError` when they next need to send.
    pub fn connection_closed(&mut self, conn: ConnId) {
        let t = Transport::Tcp(conn);
        for tx in self.server_txs.values_mut().filter(|x| x.transport == t) {
            match &mut tx.kind {
                ServerKind::Invite(x) => {
                    // An INVITE still Proceeding belongs to a live call whose
                    // next send reports the error; others just end.
                    if x.state() != InviteServerState::Proceeding {
                        x.terminate();
                    }
                }
                ServerKind::NonInvite(x) => x.terminate(),
            }
        }
        self.reap_server_txs();
        let mut bye_waiters = Vec::new();
        let mut invite_waiters = Vec::new();
        let mut refer_waiters = Vec::new();
        for ctx in self.client_txs.values_mut().filter(|c| c.transport == t) {
            ctx.kind.terminate();
            match ctx.purpose {
                Purpose::Bye => bye_waiters.extend(ctx.call.take()),
                Purpose::Invite => invite_waiters.extend(ctx.call.take()),
                Purpose::Refer => refer_waiters.extend(ctx.call.take()),
                Purpose::Cancel => {}
            }
        }
        // §8.1.3.1: a transport failure counts as 503.
        for h in refer_waiters {
            self.refer_done(h, 503);
        }
        // REGISTERs held on this connection can no longer be answered.
        let gone: Vec<RegisterId> = self
            .registers
            .iter()
            .filter(|(_, r)| !self.server_txs.contains_key(&r.tx_key))
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.registers.remove(&id);
        }
        self.client_txs.retain(|_, c| !c.kind.is_terminated());
        for c in self.calls.values_mut().filter(|c| c.transport == t) {
            c.conn_closed = true;
        }
        if let Some(now) = self.last_now {
            for h in bye_waiters {
                self.end_call(now, h, EndReason::LocalBye);
            }
            // An outbound call still ringing has lost its only path; an
            // answered one ends when it next needs to send, like the rest.
            for h in invite_waiters {
                if self
                    .calls
                    .get(&h)
                    .is_some_and(|c| c.state == CallState::Early)
                {
                    self.end_call(now, h, EndReason::TransportError);
                }
            }
        }
    }

    pub fn active_calls(&self) -> usize {
        self.calls.len()
    }

    pub fn transaction_count(&self) -> usize {
        self.server_txs.len() + self.client_txs.len()
    }
}

// ----- internals -----------------------------------------------------------

impl Endpoint {
    fn response_dest(transport: Transport, m: &Message, src: SocketAddr) -> SocketAddr {
        match transport {
            Transport::Udp => udp_response_dest(m, src),
            Transport::Tcp(_) => src,
        }
    }

    fn handle_request(&mut self, now: Instant, transport: Transport, src: SocketAddr, m: Message) {
        let is_ack = m.method() == Some("ACK");
        let dest = Self::response_dest(transport, &m, src);
        let req = match validate::check(&m) {
            Ok(r) => r,
            Err(rej) => {
                // Never answer an ACK; without a Via there is nowhere to answer.
                if !is_ack && m.header("Via").is_some() {
                    tracing::debug!(code = rej.code, %src, "rejecting malformed request");
                    let tag = random_token();
                    let bytes = build_response(
                        &m,
                        src,
                        &self.cfg.user_agent,
                        &ResponseSpec {
                            code: rej.code,
                            to_tag: Some(&tag),
                            extra: &rej.extra,
                            body: None,
                            record_route: false,
                        },
                    );
                    self.transmits.push_back(Transmit {
                        transport,
                        dest,
                        bytes,
                    });
                }
                return;
            }
        };
        if is_ack {
            self.handle_ack(now, transport, &m, &req);
            return;
        }
        let key = req.tx_key();
        // §17.2.3: a retransmission goes to its transaction, never the TU.
        if let Some(tx) = self.server_txs.get_mut(&key) {
            let mut out = Vec::new();
            match &mut tx.kind {
                ServerKind::Invite(t) => t.on_invite_retransmit(&mut out),
                ServerKind::NonInvite(t) => t.on_retransmit(&mut out),
            }
            let (t, d) = (tx.transport, tx.dest);
            self.flush(t, d, out);
            return;
        }
        // §8.2.2.2 merged requests: same From tag, Call-ID and CSeq as a
        // request still in progress, arriving on another branch.
        if req.to_tag().is_none()
            && let Some(other) = self.merge_index.get(&req.merge_key())
            && other != &key
            && self.server_txs.contains_key(other)
        {
            self.respond_new_tx(now, transport, src, &m, &req, 482, Vec::new(), None);
            return;
        }
        if let Some(rej) = validate::semantic_with(&m, &req, self.cfg.registrar) {
            self.respond_new_tx(now, transport, src, &m, &req, rej.code, rej.extra, None);
            return;
        }
        match req.method.as_str() {
            "CANCEL" => self.handle_cancel(now, transport, src, &m, &req),
            // semantic_with let it through only when we are a registrar.
            "REGISTER" => self.handle_register(now, transport, src, m, req),
            _ if req.to_tag().is_some() => self.handle_in_dialog(now, transport, src, m, req),
            "INVITE" => self.handle_new_invite(now, transport, src, m, req),
            // While draining, OPTIONS pings get 503 so that a load balancer
            // (Kamailio dispatcher probing) stops sending new calls here.
            "OPTIONS" if !self.admission.accepting() => {
                let extra = vec![("Retry-After", "60".to_owned())];
                self.respond_new_tx(now, transport, src, &m, &req, 503, extra, None);
            }
            "OPTIONS" => {
                let extra = Self::capabilities();
                self.respond_new_tx(now, transport, src, &m, &req, 200, extra, None);
            }
            // BYE, INFO, NOTIFY outside any dialog (we never SUBSCRIBE, and
            // a REFER's NOTIFY comes in its dialog).
            _ => self.respond_new_tx(now, transport, src, &m, &req, 481, Vec::new(), None),
        }
    }

    /// §10.3: a REGISTER goes to the application, held in its (silent)
    /// server transaction; retransmissions are absorbed until the answer.
    fn handle_register(
        &mut self,
        now: Instant,
        transport: Transport,
        src: SocketAddr,
        m: Message,
        req: Request,
    ) {
        if self.registers.len() >= MAX_PENDING_REGISTERS {
            let extra = vec![("Retry-After", "5".to_owned())];
            self.respond_new_tx(now, transport, src, &m, &req, 503, extra, None);
            return;
        }
        let Ok(fields) = parse_register(&m) else {
            self.respond_new_tx(now, transport, src, &m, &req, 400, Vec::new(), None);
            return;
        };
        let reg = RegisterId(self.next_register);
        self.next_register = self.next_register.wrapping_add(1);
        let dest = Self::response_dest(transport, &m, src);
        let tx = NonInviteServer::new(transport.reliable(), self.timers);
        self.insert_server_tx(&req, ServerKind::NonInvite(tx), transport, dest);
        let user = uri_user(&req.to.uri).unwrap_or_default().to_owned();
        let authorization = m.header("Authorization").map(str::to_owned);
        self.registers.insert(
            reg,
            PendingRegister {
                tx_key: req.tx_key(),
                request: m,
                src,
                deadline: now + REGISTER_TIMEOUT,
            },
        );
        self.events.push_back(SipEvent::Register {
            reg,
            user,
            contact: fields.contact,
            expires: fields.expires,
            authorization,
            method_uri: req.uri,
            src,
            transport,
        });
    }

    /// Sends the final response of a held REGISTER; its transaction then
    /// runs Timer J.
    fn send_register_response(
        &mut self,
        now: Instant,
        reg: RegisterId,
        code: u16,
        extra: Vec<(&'static str, String)>,
    ) {
        let Some(r) = self.registers.remove(&reg) else {
            return;
        };
        let tag = random_token();
        let bytes = build_response(
            &r.request,
            r.src,
            &self.cfg.user_agent,
            &ResponseSpec {
                code,
                to_tag: Some(&tag),
                extra: &extra,
                body: None,
                record_route: false,
            },
        );
        let Some(tx) = self.server_txs.get_mut(&r.tx_key) else {
            return;
        };
        let ServerKind::NonInvite(t) = &mut tx.kind else {
            return;
        };
        let mut out = Vec::new();
        t.respond(now, code, bytes, &mut out);
        let (tr, d) = (tx.transport, tx.dest);
        self.flush(tr, d, out);
    }

    /// RFC 3515 §2.4.4: a NOTIFY of our REFER's implicit subscription.
    /// 481 without one (never referred, or already terminated), 489 for
    /// another event package, 400 without a body, 415 for a body that is
    /// not `message/sipfrag`, 400 for a missing Subscription-State or a
    /// body without a SIP status line; else 200 and a ReferNotify.
    #[allow(clippy::too_many_arguments)]
    fn handle_refer_notify(
        &mut self,
        now: Instant,
        transport: Transport,
        src: SocketAddr,
        m: &Message,
        req: &Request,
        h: CallHandle,
        local_tag: &str,
    ) {
        let subscribed = self.calls.get(&h).is_some_and(|c| c.refer_subscribed);
        let verdict = if !subscribed {
            Err((481, Vec::new()))
        } else if !m.header("Event").is_some_and(transfer::is_refer_event) {
            Err((489, vec![("Allow-Events", "refer".to_owned())]))
        } else if m.body.is_empty() {
            // §2.4.5: every NOTIFY of a REFER carries a sipfrag.
            Err((400, Vec::new()))
        } else if m
            .header("Content-Type")
            .map(transfer::media_type)
            .as_deref()
            != Some("message/sipfrag")
        {
            Err((415, vec![("Accept", "message/sipfrag".to_owned())]))
        } else {
            match (
                m.header("Subscription-State"),
                transfer::sipfrag_status(&m.body),
            ) {
                (Some(state), Some(status)) => {
                    Ok((status, transfer::subscription_terminated(state)))
                }
                _ => Err((400, Vec::new())),
            }
        };
        let (code, extra) = match &verdict {
            Ok(_) => (200, Vec::new()),
            Err((code, extra)) => (*code, extra.clone()),
        };
        self.respond_new_tx(now, transport, src, m, req, code, extra, Some(local_tag));
        if let Ok((status, terminated)) = verdict {
            if terminated && let Some(c) = self.calls.get_mut(&h) {
                c.refer_subscribed = false;
            }
            self.events.push_back(SipEvent::ReferNotify {
                call: h,
                status,
                terminated,
            });
        }
    }

    /// The final outcome of our REFER's transaction.
    fn refer_done(&mut self, h: CallHandle, code: u16) {
        let Some(c) = self.calls.get_mut(&h) else {
            return;
        };
        c.refer_pending = false;
        if (200..300).contains(&code) {
            self.events.push_back(SipEvent::ReferAccepted { call: h });
        } else {
            c.refer_subscribed = false;
            self.events.push_back(SipEvent::ReferFailed {
                call: h,
                status: code,
            });
        }
    }

    fn capabilities() -> Vec<(&'static str, String)> {
        vec![
            ("Allow", ALLOW.to_owned()),
            ("Accept", validate::ACCEPT.to_owned()),
            ("Supported", validate::SUPPORTED.to_owned()),
        ]
    }

    /// Creates a server transaction for `req` and sends its final response.
    #[allow(clippy::too_many_arguments)]
    fn respond_new_tx(
        &mut self,
        now: Instant,
        transport: Transport,
        src: SocketAddr,
        m: &Message,
        req: &Request,
        code: u16,
        extra: Vec<(&'static str, String)>,
        to_tag: Option<&str>,
    ) {
        let tag = to_tag.map_or_else(random_token, str::to_owned);
        let bytes = build_response(
            m,
            src,
            &self.cfg.user_agent,
            &ResponseSpec {
                code,
                to_tag: Some(&tag),
                extra: &extra,
                body: None,
                record_route: false,
            },
        );
        let reliable = transport.reliable();
        let mut out = Vec::new();
        let kind = if req.method == "INVITE" {
            let mut t = InviteServer::new(reliable, self.timers);
            t.respond(now, code, bytes, &mut out);
            ServerKind::Invite(t)
        } else {
            let mut t = NonInviteServer::new(reliable, self.timers);
            t.respond(now, code, bytes, &mut out);
            ServerKind::NonInvite(t)
        };
        let dest = Self::response_dest(transport, m, src);
        self.insert_server_tx(req, kind, transport, dest);
        self.flush(transport, dest, out);
    }

    fn insert_server_tx(
        &mut self,
        req: &Request,
        kind: ServerKind,
        transport: Transport,
        dest: SocketAddr,
    ) {
        let key = req.tx_key();
        let merge_key = req.to_tag().is_none().then(|| req.merge_key());
        if let Some(mk) = &merge_key {
            self.merge_index.insert(mk.clone(), key.clone());
        }
        self.server_txs.insert(
            key,
            ServerTx {
                kind,
                transport,
                dest,
                merge_key,
            },
        );
    }

    fn flush(&mut self, transport: Transport, dest: SocketAddr, out: Vec<TxOutput>) {
        for o in out {
            if let TxOutput::Send(bytes) = o {
                self.transmits.push_back(Transmit {
                    transport,
                    dest,
                    bytes,
                });
            }
        }
    }

    fn reap_server_txs(&mut self) {
        let dead: Vec<String> = self
            .server_txs
            .iter()
            .filter(|(_, t)| t.is_terminated())
            .map(|(k, _)| k.clone())
            .collect();
        for k in dead {
            if let Some(tx) = self.server_txs.remove(&k)
                && let Some(mk) = tx.merge_key
                && self.merge_index.get(&mk) == Some(&k)
            {
                self.merge_index.remove(&mk);
            }
            self.tx_calls.remove(&k);
        }
    }

    fn handle_new_invite(
        &mut self,
        now: Instant,
        transport: Transport,
        src: SocketAddr,
        m: Message,
        req: Request,
    ) {
        if let Err(refusal) = self.admission.admit(now, src.ip(), self.calls.len()) {
            tracing::info!(?refusal, %src, "INVITE refused by admission control");
            let extra = refusal
                .retry_after()
                .map(|s| vec![("Retry-After", s.to_string())])
                .unwrap_or_default();
            self.respond_new_tx(now, transport, src, &m, &req, refusal.status(), extra, None);
            return;
        }
        let handle = CallHandle(self.next_handle);
        self.next_handle = self.next_handle.wrapping_add(1);
        let local_tag = random_token();
        let dialog = Dialog::new_uas(&m, &req, local_tag.clone());
        // 100 Trying at once (§17.2.1) so the caller stops retransmitting.
        let trying = build_response(
            &m,
            src,
            &self.cfg.user_agent,
            &ResponseSpec {
                code: 100,
                to_tag: None,
                extra: &[],
                body: None,
                record_route: false,
            },
        );
        let mut tx = InviteServer::new(transport.reliable(), self.timers);
        let mut out = Vec::new();
        tx.respond(now, 100, trying, &mut out);
        let dest = Self::response_dest(transport, &m, src);
        let key = req.tx_key();
        self.insert_server_tx(&req, ServerKind::Invite(tx), transport, dest);
        self.tx_calls.insert(key.clone(), handle);
        self.flush(transport, dest, out);

        let from_user = uri_user(&req.from.uri).unwrap_or_default().to_owned();
        let to_user = uri_user(&req.to.uri).unwrap_or_default().to_owned();
        let offer = (!m.body.is_empty()).then(|| m.body.clone());
        // validate::check accepted only 0..=255 digits; 70 is §8.1.1.6's
        // recommended value for a request that had none.
        let max_forwards = m
            .header("Max-Forwards")
            .and_then(|v| v.trim().parse::<u8>().ok())
            .unwrap_or(70);
        self.dialogs
            .insert((req.call_id.clone(), local_tag), handle);
        self.calls.insert(
            handle,
            Call {
                state: CallState::Early,
                dialog,
                transport,
                remote: src,
                conn_closed: false,
                invite_tx: key,
                invite: m,
                invite_src: src,
                ok_retx: None,
                reinvite: None,
                hangup_after_ack: false,
                uac: None,
                refer_pending: false,
                refer_subscribed: false,
            },
        );
        self.events.push_back(SipEvent::IncomingCall {
            call: handle,
            call_id: req.call_id,
            from_user,
            to_user,
            remote: src,
            transport,
            offer,
            max_forwards,
        });
    }

    fn handle_ack(&mut self, now: Instant, transport: Transport, m: &Message, req: &Request) {
        // ACK for a non-2xx final: same transaction as the INVITE (§17.2.1).
        if let Some(tx) = self.server_txs.get_mut(&req.tx_key())
            && let ServerKind::Invite(t) = &mut tx.kind
            && t.state() == InviteServerState::Completed
        {
            t.on_ack(now);
            self.reap_server_txs();
            return;
        }
        // ACK for a 2xx: goes to the dialog (§13.3.1.4).
        let Some(to_tag) = req.to_tag() else { return };
        let Some(&h) = self.dialogs.get(&(req.call_id.clone(), to_tag.to_owned())) else {
            return;
        };
        let Some(c) = self.calls.get_mut(&h) else {
            return;
        };
        let Some(retx) = &c.ok_retx else { return };
        if retx.cseq != req.cseq {
            return;
        }
        c.ok_retx = None;
        if let Transport::Tcp(_) = transport {
            c.transport = transport;
            c.conn_closed = false;
        }
        if c.state == CallState::WaitAck {
            c.state = CallState::Confirmed;
            let sdp = (!m.body.is_empty()).then(|| m.body.clone());
            let hang = c.hangup_after_ack;
            self.events
                .push_back(SipEvent::CallConfirmed { call: h, sdp });
            if hang {
                self.send_bye(now, h);
            }
        } else if c.reinvite.as_ref().is_some_and(|r| r.answered) {
            c.reinvite = None;
            let sdp = (!m.body.is_empty()).then(|| m.body.clone());
            self.events
                .push_back(SipEvent::ReInviteAck { call: h, sdp });
        }
    }

    fn handle_cancel(
        &mut self,
        now: Instant,
        transport: Transport,
        src: SocketAddr,
        m: &Message,
        req: &Request,
    ) {
        let invite_key = req.cancelled_invite_key();
        let proceeding = match self.server_txs.get(&invite_key).map(|t| &t.kind) {
            Some(ServerKind::Invite(t)) => t.state() == InviteServerState::Proceeding,
            _ => {
                // §9.2: no matching transaction → 481.
                self.respond_new_tx(now, transport, src, m, req, 481, Vec::new(), None);
                return;
            }
        };
        let call = self.tx_calls.get(&invite_key).copied();
        let tag = call
            .and_then(|h| self.calls.get(&h))
            .map(|c| c.dialog.local_tag.clone());
        self.respond_new_tx(now, transport, src, m, req, 200, Vec::new(), tag.as_deref());
        if !proceeding {
            return;
        }
        let Some(h) = call else { return };
        let Some(c) = self.calls.get(&h) else { return };
        if c.invite_tx == invite_key {
            // CANCEL of the initial INVITE: 487 to it, the call ends.
            let bytes = self.call_response(c, 487, None);
            self.respond_invite_tx(now, h, &invite_key, 487, bytes);
            self.end_call(now, h, EndReason::Cancelled);
        } else if let Some(re) = &c.reinvite
            && re.tx_key == invite_key
        {
            // CANCEL of a re-INVITE: 487 to it, the call goes on.
            let bytes = Self::dialog_response(
                &self.cfg,
                &c.dialog,
                c.transport,
                &re.request,
                re.src,
                487,
                None,
            );
            if let Some(c) = self.calls.get_mut(&h) {
                c.reinvite = None;
            }
            self.respond_invite_tx(now, h, &invite_key, 487, bytes);
        }
    }

    fn handle_in_dialog(
        &mut self,
        now: Instant,
        transport: Transport,
        src: SocketAddr,
        m: Message,
        req: Request,
    ) {
        let local_tag = req.to_tag().unwrap_or_default().to_owned();
        let Some(&h) = self.dialogs.get(&(req.call_id.clone(), local_tag.clone())) else {
            self.respond_new_tx(now, transport, src, &m, &req, 481, Vec::new(), None);
            return;
        };
        let Some(c) = self.calls.get_mut(&h) else {
            self.respond_new_tx(now, transport, src, &m, &req, 481, Vec::new(), None);
            return;
        };
        if !c.dialog.accept_remote_cseq(req.cseq) {
            // §12.2.2: out of order.
            self.respond_new_tx(
                now,
                transport,
                src,
                &m,
                &req,
                500,
                Vec::new(),
                Some(&local_tag),
            );
            return;
        }
        if let Transport::Tcp(_) = transport {
            // The peer reconnected: answer and send on its newest connection.
            c.transport = transport;
            c.remote = src;
            c.conn_closed = false;
        }
        let state = c.state;
        let busy = state != CallState::Confirmed || c.reinvite.is_some() || c.ok_retx.is_some();
        match req.method.as_str() {
            "BYE" => {
                self.respond_new_tx(
                    now,
                    transport,
                    src,
                    &m,
                    &req,
                    200,
                    Vec::new(),
                    Some(&local_tag),
                );
                let reason = if state == CallState::Terminating {
                    EndReason::LocalBye
                } else {
                    EndReason::RemoteBye
                };
                self.end_call(now, h, reason);
            }
            "INFO" => {
                if m.body.is_empty() {
                    self.respond_new_tx(
                        now,
                        transport,
                        src,
                        &m,
                        &req,
                        200,
                        Vec::new(),
                        Some(&local_tag),
                    );
                    return;
                }
                let ct = m.header("Content-Type").unwrap_or_default();
                match parse_info_dtmf(ct, &m.body) {
                    Ok(d) => {
                        self.respond_new_tx(
                            now,
                            transport,
                            src,
                            &m,
                            &req,
                            200,
                            Vec::new(),
                            Some(&local_tag),
                        );
                        self.events.push_back(SipEvent::Dtmf {
                            call: h,
                            digit: d.digit,
                            duration_ms: d.duration_ms,
                        });
                    }
                    Err(InfoDtmfError::UnsupportedType) => {
                        let extra = vec![(
                            "Accept",
                            "application/dtmf-relay, application/dtmf".to_owned(),
                        )];
                        self.respond_new_tx(
                            now,
                            transport,
                            src,
                            &m,
                            &req,
                            415,
                            extra,
                            Some(&local_tag),
                        );
                    }
                    Err(InfoDtmfError::Malformed) => {
                        self.respond_new_tx(
                            now,
                            transport,
                            src,
                            &m,
                            &req,
                            400,
                            Vec::new(),
                            Some(&local_tag),
                        );
                    }
                }
            }
            "OPTIONS" => {
                self.respond_new_tx(
                    now,
                    transport,
                    src,
                    &m,
                    &req,
                    200,
                    Self::capabilities(),
                    Some(&local_tag),
                );
            }
            "INVITE" => {
                if busy {
                    // §14.2 glare / a second re-INVITE while one is pending.
                    let extra = vec![("Retry-After", "1".to_owned())];
                    self.respond_new_tx(
                        now,
                        transport,
                        src,
                        &m,
                        &req,
                        491,
                        extra,
                        Some(&local_tag),
                    );
                    return;
                }
                let Some(c) = self.calls.get_mut(&h) else {
                    return;
                };
                c.dialog.refresh_target(&m);
                let trying = build_response(
                    &m,
                    src,
                    &self.cfg.user_agent,
                    &ResponseSpec {
                        code: 100,
                        to_tag: None,
                        extra: &[],
                        body: None,
                        record_route: false,
                    },
                );
                let key = req.tx_key();
                let offer = (!m.body.is_empty()).then(|| m.body.clone());
                c.reinvite = Some(PendingReInvite {
                    tx_key: key.clone(),
                    request: m.clone(),
                    src,
                    answered: false,
                });
                let mut tx = InviteServer::new(transport.reliable(), self.timers);
                let mut out = Vec::new();
                tx.respond(now, 100, trying, &mut out);
                let dest = Self::response_dest(transport, &m, src);
                self.insert_server_tx(&req, ServerKind::Invite(tx), transport, dest);
                self.tx_calls.insert(key, h);
                self.flush(transport, dest, out);
                self.events.push_back(SipEvent::ReInvite { call: h, offer });
            }
            "NOTIFY" => self.handle_refer_notify(now, transport, src, &m, &req, h, &local_tag),
            _ => {
                self.respond_new_tx(
                    now,
                    transport,
                    src,
                    &m,
                    &req,
                    501,
                    Vec::new(),
                    Some(&local_tag),
                );
            }
        }
    }

    fn handle_response(&mut self, now: Instant, m: &Message) {
        // §17.1.3: match by top Via branch and CSeq method; anything else
        // (stray, malformed, RFC 4475 bigcode/scalarlg/bcast) is dropped.
        let Some(code) = m.status() else { return };
        let Some(via) = m.header("Via").and_then(Via::parse) else {
            return;
        };
        let Some(branch) = via.branch() else { return };
        let Some((_, method)) = m.header("CSeq").and_then(parse_cseq) else {
            return;
        };
        let key = format!("{branch}\x1f{method}");
        let Some(ctx) = self.client_txs.get_mut(&key) else {
            tracing::debug!(code, "dropping a response that matches no transaction");
            return;
        };
        let mut out = Vec::new();
        match &mut ctx.kind {
            ClientKind::NonInvite(t) => t.on_response(now, code, &mut out),
            ClientKind::Invite(t) => {
                t.on_response(now, code, m.header("To").unwrap_or_default(), &mut out)
            }
        }
        let (purpose, transport, dest) = (ctx.purpose, ctx.transport, ctx.dest);
        let call = match purpose {
            // an INVITE's call keeps listening (2xx retransmissions)
            Purpose::Invite => ctx.call,
            _ => None,
        };
        let mut bye_done = None;
        let mut refer_done = None;
        let mut finals = Vec::new();
        for o in out {
            match o {
                TxOutput::Send(bytes) => self.transmits.push_back(Transmit {
                    transport,
                    dest,
                    bytes,
                }),
                TxOutput::Provisional(c) => finals.push((false, c)),
                TxOutput::Final(c) => {
                    if purpose == Purpose::Bye {
                        bye_done = ctx.call.take();
                    }
                    if purpose == Purpose::Refer {
                        refer_done = ctx.call.take().map(|h| (h, c));
                    }
                    finals.push((true, c));
                }
                TxOutput::TimedOut => {}
            }
        }
        if ctx.kind.is_terminated() {
            self.client_txs.remove(&key);
        }
        if let Some(h) = bye_done {
            self.end_call(now, h, EndReason::LocalBye);
        }
        if let Some((h, code)) = refer_done {
            self.refer_done(h, code);
        }
        if let Some(h) = call {
            for (is_final, c) in finals {
                if is_final {
                    self.uac_final(now, h, c, m);
                } else {
                    self.uac_provisional(now, h, c, m);
                }
            }
        }
    }

    /// Sends a response on the call's INVITE (or re-INVITE) transaction.
    /// False (and the call ended) if the call's connection is gone.
    fn respond_invite_tx(
        &mut self,
        now: Instant,
        call: CallHandle,
        key: &str,
        code: u16,
        bytes: Vec<u8>,
    ) -> bool {
        if self.calls.get(&call).is_some_and(|c| c.conn_closed) {
            if let Some(tx) = self.server_txs.get_mut(key)
                && let ServerKind::Invite(t) = &mut tx.kind
            {
                t.terminate();
            }
            self.reap_server_txs();
            self.end_call(now, call, EndReason::TransportError);
            return false;
        }
        let Some(tx) = self.server_txs.get_mut(key) else {
            return false;
        };
        let ServerKind::Invite(t) = &mut tx.kind else {
            return false;
        };
        let mut out = Vec::new();
        t.respond(now, code, bytes, &mut out);
        let (tr, d) = (tx.transport, tx.dest);
        self.flush(tr, d, out);
        true
    }

    fn call_response(&self, c: &Call, code: u16, body: Option<&[u8]>) -> Vec<u8> {
        Self::dialog_response(
            &self.cfg,
            &c.dialog,
            c.transport,
            &c.invite,
            c.invite_src,
            code,
            body,
        )
    }

    /// A response to a dialog's INVITE/re-INVITE: our tag, Contact and
    /// Record-Route on 1xx/2xx (§12.1.1), Allow/Supported on 2xx.
    fn dialog_response(
        cfg: &EndpointConfig,
        dialog: &Dialog,
        transport: Transport,
        req: &Message,
        src: SocketAddr,
        code: u16,
        body: Option<&[u8]>,
    ) -> Vec<u8> {
        let contact = match transport {
            Transport::Udp => format!("<sip:ivr@{}>", cfg.local_addr),
            Transport::Tcp(_) => format!("<sip:ivr@{};transport=tcp>", cfg.local_addr),
        };
        let mut extra: Vec<(&str, String)> = Vec::new();
        if (101..300).contains(&code) {
            extra.push(("Contact", contact));
        }
        if (200..300).contains(&code) {
            extra.push(("Allow", ALLOW.to_owned()));
            extra.push(("Supported", validate::SUPPORTED.to_owned()));
        }
        build_response(
            req,
            src,
            &cfg.user_agent,
            &ResponseSpec {
                code,
                to_tag: Some(&dialog.local_tag),
                extra: &extra,
                body: body.map(|b| ("application/sdp", b)),
                record_route: (101..300).contains(&code),
            },
        )
    }

    /// Sends BYE in a confirmed dialog; the call ends (LocalBye) when it is
    /// answered or times out.
    fn send_bye(&mut self, now: Instant, h: CallHandle) {
        let Some(c) = self.calls.get_mut(&h) else {
            return;
        };
        if c.conn_closed {
            self.end_call(now, h, EndReason::TransportError);
            return;
        }
        c.state = CallState::Terminating;
        c.ok_retx = None;
        let dest = match c.transport {
            Transport::Udp => c.dialog.request_dest(c.remote),
            Transport::Tcp(_) => c.remote,
        };
        let transport = c.transport;
        let branch = format!("z9hG4bK{}", random_token());
        let proto = if transport.reliable() { "TCP" } else { "UDP" };
        let via = format!(
            "SIP/2.0/{proto} {};branch={branch};rport",
            self.cfg.local_addr
        );
        let bytes = c
            .dialog
            .build_request("BYE", &via, &self.cfg.user_agent, &[], None);
        let mut out = Vec::new();
        let tx = NonInviteClient::start(now, transport.reliable(), self.timers, bytes, &mut out);
        self.client_txs.insert(
            format!("{branch}\x1fBYE"),
            ClientTx {
                kind: ClientKind::NonInvite(tx),
                purpose: Purpose::Bye,
                transport,
                dest,
                call: Some(h),
            },
        );
        self.flush(transport, dest, out);
    }

    fn run_ok_retransmit(&mut self, now: Instant, h: CallHandle) {
        let Some(c) = self.calls.get_mut(&h) else {
            return;
        };
        let Some(r) = c.ok_retx.as_mut() else { return };
        let mut sends = 0usize;
        // Bounded: each pass moves `next` forward by at least T1.
        while r.next <= now && r.next < r.give_up && sends < 1000 {
            sends += 1;
            r.interval = self.timers.backoff(r.interval);
            r.next += r.interval.max(Duration::from_millis(1));
        }
        let bytes = r.bytes.clone();
        let expired = r.give_up <= now;
        if sends > 0 && !expired {
            if c.conn_closed {
                self.end_call(now, h, EndReason::TransportError);
                return;
            }
            let (transport, dest) = (r.transport, r.dest);
            self.transmits.push_back(Transmit {
                transport,
                dest,
                bytes,
            });
        }
        if expired {
            // §13.3.1.4: no ACK in 64·T1 → BYE and the dialog ends.
            tracing::info!(call = h.0, "2xx never acknowledged; sending BYE");
            c.state = CallState::Confirmed;
            if !c.conn_closed {
                self.send_bye(now, h);
                if let Some(ctx) = self.client_txs.values_mut().find(|x| x.call == Some(h)) {
                    ctx.call = None;
                }
            }
            self.end_call(now, h, EndReason::AckTimeout);
        }
    }

    fn send_cancel(&mut self, now: Instant, h: CallHandle) {
        let Some(c) = self.calls.get_mut(&h) else {
            return;
        };
        let Some(u) = c.uac.as_mut() else { return };
        if u.cancel_sent {
            return;
        }
        if c.conn_closed {
            self.end_call(now, h, EndReason::TransportError);
            return;
        }
        u.cancel_sent = true;
        let bytes = u.cancel.clone();
        let (transport, dest) = (c.transport, u.dest);
        let key = c.invite_tx.replace("\x1fINVITE", "\x1fCANCEL");
        let mut out = Vec::new();
        let tx = NonInviteClient::start(now, transport.reliable(), self.timers, bytes, &mut out);
        self.client_txs.insert(
            key,
            ClientTx {
                kind: ClientKind::NonInvite(tx),
                purpose: Purpose::Cancel,
                transport,
                dest,
                call: None,
            },
        );
        self.flush(transport, dest, out);
    }

    fn uac_provisional(&mut self, now: Instant, h: CallHandle, code: u16, m: &Message) {
        let Some(c) = self.calls.get_mut(&h) else {
            return;
        };
        let Some(u) = c.uac.as_mut() else { return };
        if c.state != CallState::Early {
            return;
        }
        u.got_provisional = true;
        let cancel_now = u.cancel_requested && !u.cancel_sent;
        if code > 100 && !cancel_now {
            let sdp = (!m.body.is_empty()).then(|| m.body.clone());
            self.events.push_back(SipEvent::Progress {
                call: h,
                status: code,
                sdp,
            });
        }
        if cancel_now {
            self.send_cancel(now, h);
        }
    }

    fn uac_final(&mut self, now: Instant, h: CallHandle, code: u16, m: &Message) {
        if !(200..300).contains(&code) {
            self.uac_failed(now, h, code);
            return;
        }
        let Some(c) = self.calls.get_mut(&h) else {
            return;
        };
        let Some(u) = c.uac.as_mut() else { return };
        if let Some(ack) = &u.ack {
            // 2xx retransmission: the ACK again (§13.2.2.4).
            let t = Transmit {
                transport: c.transport,
                dest: c.dialog.request_dest(u.dest),
                bytes: ack.clone(),
            };
            self.transmits.push_back(t);
            return;
        }
        // §12.1.2: the dialog from the 2xx. Route set = Record-Route reversed.
        let to = m.header("To").unwrap_or_default().to_owned();
        let remote_tag = NameAddr::parse(&to)
            .and_then(|n| n.tag().map(str::to_owned))
            .unwrap_or_default();
        c.dialog.remote_tag = remote_tag;
        c.dialog.remote_party = to;
        if let Some(contact) = m.header("Contact").and_then(NameAddr::parse) {
            c.dialog.remote_target = contact.uri;
        }
        let mut routes: Vec<String> = m.header_all("Record-Route").map(str::to_owned).collect();
        routes.reverse();
        c.dialog.route_set = routes;
        let proto = if c.transport.reliable() { "TCP" } else { "UDP" };
        let via = format!(
            "SIP/2.0/{proto} {};branch=z9hG4bK{};rport",
            self.cfg.local_addr,
            random_token()
        );
        let cseq = u.invite_cseq;
        let ack =
            c.dialog
                .build_request_with_cseq("ACK", cseq, &via, &self.cfg.user_agent, &[], None);
        u.ack = Some(ack.clone());
        let hang = u.cancel_requested;
        let dest = c.dialog.request_dest(u.dest);
        c.state = CallState::Confirmed;
        if c.conn_closed {
            self.end_call(now, h, EndReason::TransportError);
            return;
        }
        self.transmits.push_back(Transmit {
            transport: c.transport,
            dest,
            bytes: ack,
        });
        let sdp = (!m.body.is_empty()).then(|| m.body.clone());
        if hang {
            // We hung up while it rang and it answered anyway: BYE at once.
            self.send_bye(now, h);
        } else {
            self.events.push_back(SipEvent::Answered { call: h, sdp });
        }
    }

    fn uac_failed(&mut self, now: Instant, h: CallHandle, code: u16) {
        let Some(c) = self.calls.get(&h) else { return };
        let Some(u) = c.uac.as_ref() else { return };
        if c.state != CallState::Early {
            return;
        }
        let reason = if u.cancel_requested {
            EndReason::Cancelled
        } else {
            EndReason::Rejected(code)
        };
        self.end_call(now, h, reason);
    }

    /// Removes the call and reports it, exactly once. An INVITE transaction
    /// of the call still waiting for a final answer gets 487 so that it can
    /// finish (and is not leaked).
    fn end_call(&mut self, now: Instant, h: CallHandle, reason: EndReason) {
        let Some(c) = self.calls.remove(&h) else {
            return;
        };
        self.dialogs
            .remove(&(c.dialog.call_id.clone(), c.dialog.local_tag.clone()));
        let mut pending: Vec<(String, Vec<u8>)> = Vec::new();
        if c.state == CallState::Early && c.uac.is_none() {
            pending.push((c.invite_tx.clone(), self.call_response(&c, 487, None)));
        }
        if let Some(re) = &c.reinvite
            && !re.answered
        {
            let b = Self::dialog_response(
                &self.cfg,
                &c.dialog,
                c.transport,
                &re.request,
                re.src,
                487,
                None,
            );
            pending.push((re.tx_key.clone(), b));
        }
        for (key, bytes) in pending {
            if let Some(tx) = self.server_txs.get_mut(&key)
                && let ServerKind::Invite(t) = &mut tx.kind
                && t.state() == InviteServerState::Proceeding
            {
                if c.conn_closed {
                    t.terminate();
                } else {
                    let mut out = Vec::new();
                    t.respond(now, 487, bytes, &mut out);
                    let (tr, d) = (tx.transport, tx.dest);
                    self.flush(tr, d, out);
                }
            }
        }
        self.reap_server_txs();
        for ctx in self.client_txs.values_mut() {
            if ctx.call == Some(h) {
                ctx.call = None;
            }
        }
        self.events
            .push_back(SipEvent::CallEnded { call: h, reason });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validation() {
        assert!(EndpointConfig::default().validate().is_ok());
        let bad = EndpointConfig {
            allow_from: vec!["10.0.0.0/99".into()],
            ..EndpointConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("allow_from"));
    }

    #[test]
    fn dtmf_event_debug_is_redacted() {
        let e = SipEvent::Dtmf {
            call: CallHandle(1),
            digit: '7',
            duration_ms: Some(160),
        };
        let s = format!("{e:?}");
        assert!(!s.contains('7'), "{s}");
    }
}
