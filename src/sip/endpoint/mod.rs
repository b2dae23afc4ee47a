//! The SIP user agent the IVR runs: one sans-IO [`Endpoint`] on top of the
//! RFC 3261 §17 transactions, split by RFC concern:
//!
//! | file | RFC sections |
//! |---|---|
//! | `mod.rs` | the public surface: types, events, the sans-IO loop (`handle_*`, `poll_*`) |
//! | [`tx_table`] | RFC 3261 §17.1.3 / §17.2.3 transaction matching, §8.2 request dispatch, §8.2.2.2 merged requests, §18.2.2 / RFC 3581 response routing |
//! | [`uas`] | RFC 3261 §13.3 answering an INVITE, §13.3.1.4 2xx retransmission and ACK give-up, §12.1.1 UAS dialog creation, RFC 6026 Accepted |
//! | [`dialog_requests`] | RFC 3261 §12.2 requests within a dialog, §9.2 CANCEL, §14 re-INVITE and 491 glare, §15 BYE, RFC 6086 INFO (DTMF) |
//! | [`uac`] | RFC 3261 §8.1 / §13.2 outbound INVITE, §9.1 CANCEL, §12.1.2 UAC dialog creation, §13.2.2.4 ACK for 2xx |
//! | [`refer`] | RFC 3515 REFER (client side) and the NOTIFYs of its implicit subscription (parsing in [`super::transfer`]) |
//! | [`registrar`] | RFC 3261 §10.3 REGISTER held for the application (parsing in [`super::registrar`]) |
//!
//! Sans-IO (quinn/str0m style): [`Endpoint::handle_input`] takes one
//! complete message with its transport and source, `handle_timeout(now)`
//! runs timers, and the runtime drains [`Endpoint::poll_transmit`],
//! [`Endpoint::poll_event`] and sleeps until [`Endpoint::poll_timeout`]. The
//! endpoint never reads the clock and never panics on input; calls that end
//! for any reason produce exactly one [`SipEvent::CallEnded`].

mod dialog_requests;
mod refer;
mod registrar;
mod timer_queue;
mod tx_table;
mod uac;
mod uas;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::admission::{Admission, PerSourceLimits, parse_cidrs};
use super::registrar::RegisterId;
use super::timers::TimerConfig;
use super::transaction::TxOutput;
use super::wire::{self, Parsed, WireLimits};
use crate::sip::status::StatusCode;

use registrar::PendingRegister;
pub use registrar::REGISTER_TIMEOUT;
use timer_queue::{TimerKey, TimerQueue, Tracked};
use tx_table::{ClientTx, Purpose, ServerKind, ServerTx};
pub use uac::OutboundCall;
use uas::InviteSession;

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
    /// Sent as Server (responses) and User-Agent (requests); None = no
    /// such header. The default names the product without its version
    /// (a version tells an attacker which bugs to try).
    pub server_header: Option<String>,
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
    /// Per-source admission limits (default: off).
    pub per_source: PerSourceLimits,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            local_addr: SocketAddr::from(([127, 0, 0, 1], 5060)),
            server_header: Some("ivr12333".to_owned()),
            allow_from: Vec::new(),
            max_calls: 2000,
            max_calls_per_second: 100,
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            limits: WireLimits::default(),
            registrar: false,
            per_source: PerSourceLimits::default(),
        }
    }
}

impl EndpointConfig {
    /// Checks the settings; the error names the offending setting.
    pub fn validate(&self) -> Result<(), String> {
        parse_cidrs("allow_from", &self.allow_from)?;
        parse_cidrs("trusted_sources", &self.per_source.trusted_sources)?;
        if self.t1.is_zero()
            || self.t2 < self.t1
            || self.t4.is_zero()
            || self.t1 > MAX_T1
            || self.t2 > MAX_T2
            || self.t4 > MAX_T4
        {
            return Err("timers: need 0 < T1 <= 10 s, T1 <= T2 <= 60 s, 0 < T4 <= 60 s".to_owned());
        }
        if self
            .server_header
            .as_deref()
            .is_some_and(|s| s.contains(['\r', '\n', '\0']))
        {
            return Err("server_header must be one line".to_owned());
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
        /// RFC 3327 Path values, in order (first = the proxy nearest us):
        /// store them with the binding and use them as the pre-loaded
        /// Route set of calls to this contact. Empty without a proxy.
        path: Vec<String>,
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
                path,
                src,
                transport,
                ..
            } => f
                .debug_struct("Register")
                .field("reg", reg)
                .field("user", user)
                .field("contact", contact)
                .field("expires", expires)
                .field("path", path)
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

/// The SIP user agent of the IVR. See the module docs.
pub struct Endpoint {
    cfg: EndpointConfig,
    timers: TimerConfig,
    admission: Admission,
    next_handle: u64,
    calls: Tracked<CallHandle, InviteSession>,
    dialogs: HashMap<(String, String), CallHandle>,
    server_txs: Tracked<String, ServerTx>,
    /// Which transaction owns each INVITE key's call (key → handle).
    tx_calls: HashMap<String, CallHandle>,
    merge_index: HashMap<String, String>,
    client_txs: Tracked<String, ClientTx>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<SipEvent>,
    /// The latest `now` seen, for the one entry point without it
    /// (`connection_closed`).
    last_now: Option<Instant>,
    next_register: u64,
    registers: Tracked<RegisterId, PendingRegister>,
    /// Every deadline above, in one heap (see [`timer_queue`]).
    timer_queue: TimerQueue,
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
        let admission = Admission::new(&cfg.allow_from, cfg.max_calls, cfg.max_calls_per_second)
            .with_per_source(cfg.per_source.clone());
        Endpoint {
            cfg,
            timers,
            admission,
            next_handle: 1,
            calls: Tracked::new(),
            dialogs: HashMap::new(),
            server_txs: Tracked::new(),
            tx_calls: HashMap::new(),
            merge_index: HashMap::new(),
            client_txs: Tracked::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            last_now: None,
            next_register: 1,
            registers: Tracked::new(),
            timer_queue: TimerQueue::default(),
        }
    }

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
        self.sync_timers();
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = Some(now);
        self.admission.handle_timeout(now);
        self.sync_timers();
        // Only what the heap says is due; grouped in the order the table
        // scan used to run them (servers, clients, REGISTERs, 2xx).
        let mut servers = Vec::new();
        let mut clients = Vec::new();
        let mut registers = Vec::new();
        let mut oks = Vec::new();
        for key in self.timer_queue.pop_due(now) {
            match key {
                TimerKey::Server(k) => servers.push(k),
                TimerKey::Client(k) => clients.push(k),
                TimerKey::Register(id) => registers.push(id),
                TimerKey::Call(h) => oks.push(h),
            }
        }
        // Server transactions: Timer G resends, H/I/J/L end them.
        for key in servers {
            let Some(tx) = self.server_txs.get_mut(&key) else {
                continue;
            };
            if tx.poll_timeout().is_none_or(|t| t > now) {
                continue;
            }
            let mut out = Vec::new();
            match &mut tx.kind {
                ServerKind::Invite(t) => t.handle_timeout(now, &mut out),
                ServerKind::NonInvite(t) => t.handle_timeout(now),
            }
            let (transport, dest) = (tx.transport, tx.dest);
            self.flush(transport, dest, out);
        }
        self.reap_server_txs();

        // Client transactions: Timers A/E resend, B/F give up, D/K/M end.
        let mut outcomes = Vec::new();
        for key in clients {
            let Some(ctx) = self.client_txs.get_mut(&key) else {
                continue;
            };
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
                Purpose::Invite => self.uac_failed(now, h, StatusCode::REQUEST_TIMEOUT.as_u16()),
                // Timer F: likewise.
                Purpose::Refer => self.refer_done(h, StatusCode::REQUEST_TIMEOUT.as_u16()),
                Purpose::Cancel => {}
            }
        }
        self.reap_client_txs();

        // REGISTERs the application left unanswered: 500 (not leaked).
        for id in registers {
            if self.registers.get(&id).is_some_and(|r| r.deadline <= now) {
                tracing::warn!(reg = id.0, "REGISTER not answered in time; 500");
                self.send_register_response(
                    now,
                    id,
                    StatusCode::SERVER_INTERNAL_ERROR.as_u16(),
                    Vec::new(),
                );
            }
        }

        // 2xx retransmission and ACK give-up (§13.3.1.4).
        for h in oks {
            if self
                .calls
                .get(&h)
                .and_then(InviteSession::deadline)
                .is_some_and(|t| t <= now)
            {
                self.run_ok_retransmit(now, h);
            }
        }
        self.sync_timers();
    }

    /// The earliest deadline: a peek at the heap (plus the few entries
    /// touched since the last entry point, when an application call such
    /// as `answer` came in between).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let s = self
            .server_txs
            .touched()
            .iter()
            .filter_map(|k| self.server_txs.get(k).and_then(ServerTx::poll_timeout));
        let c = self
            .client_txs
            .touched()
            .iter()
            .filter_map(|k| self.client_txs.get(k).and_then(|c| c.kind.poll_timeout()));
        let k = self
            .calls
            .touched()
            .iter()
            .filter_map(|h| self.calls.get(h).and_then(InviteSession::deadline));
        let r = self
            .registers
            .touched()
            .iter()
            .filter_map(|id| self.registers.get(id).map(|r| r.deadline));
        s.chain(c)
            .chain(k)
            .chain(r)
            .chain(self.timer_queue.peek())
            .chain(self.admission.poll_timeout())
            .min()
    }

    /// Pushes the current deadline of everything touched since the last
    /// call onto the heap; drops finished transactions; rebuilds the heap
    /// when stale entries dominate.
    fn sync_timers(&mut self) {
        self.reap_server_txs();
        self.reap_client_txs();
        for k in self.server_txs.take_touched() {
            if let Some(t) = self.server_txs.get(&k).and_then(ServerTx::poll_timeout) {
                self.timer_queue.push(t, TimerKey::Server(k));
            }
        }
        for k in self.client_txs.take_touched() {
            if let Some(t) = self.client_txs.get(&k).and_then(|c| c.kind.poll_timeout()) {
                self.timer_queue.push(t, TimerKey::Client(k));
            }
        }
        for h in self.calls.take_touched() {
            if let Some(t) = self.calls.get(&h).and_then(InviteSession::deadline) {
                self.timer_queue.push(t, TimerKey::Call(h));
            }
        }
        for id in self.registers.take_touched() {
            if let Some(r) = self.registers.get(&id) {
                self.timer_queue.push(r.deadline, TimerKey::Register(id));
            }
        }
        let live =
            self.server_txs.len() + self.client_txs.len() + self.calls.len() + self.registers.len();
        if self.timer_queue.len() > 4 * live + 1024 {
            self.rebuild_timer_queue();
        }
    }

    fn rebuild_timer_queue(&mut self) {
        let mut entries = Vec::with_capacity(self.timer_queue.len());
        for (k, tx) in self.server_txs.iter() {
            entries.extend(tx.poll_timeout().map(|t| (t, TimerKey::Server(k.clone()))));
        }
        for (k, c) in self.client_txs.iter() {
            entries.extend(
                c.kind
                    .poll_timeout()
                    .map(|t| (t, TimerKey::Client(k.clone()))),
            );
        }
        for (h, c) in self.calls.iter() {
            entries.extend(c.deadline().map(|t| (t, TimerKey::Call(*h))));
        }
        for (id, r) in self.registers.iter() {
            entries.push((r.deadline, TimerKey::Register(*id)));
        }
        self.timer_queue.rebuild(entries);
    }

    /// Entries in the timer heap, stale ones included (for tests and
    /// benchmarks of the timer design).
    pub fn timer_entries(&self) -> usize {
        self.timer_queue.len()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<SipEvent> {
        self.events.pop_front()
    }

    /// New INVITEs get 503 + Retry-After while false; calls in progress go on.
    pub fn set_accepting(&mut self, accepting: bool) {
        self.admission.set_accepting(accepting);
    }

    /// REGISTERs waiting for [`Endpoint::respond_register`].
    pub fn pending_registers(&self) -> usize {
        self.registers.len()
    }

    pub fn active_calls(&self) -> usize {
        self.calls.len()
    }

    pub fn transaction_count(&self) -> usize {
        self.server_txs.len() + self.client_txs.len()
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
