//! The messages the runtime's tasks exchange, in a module of their own so
//! that the SIP driver and the call task do not import each other: the SIP
//! driver starts calls through a [`CallSpawner`] it is handed.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::call::{AgentSetup, CallNet, CallParams, CallSignal, LegId};
use crate::flow::dialplan::Dialplan;
use crate::flow::interpreter::{FlowConfig, LedgerUnavailable};
use crate::ledger::Ledger;
use crate::media::prompts::PromptLibrary;
use crate::sip::admission::Cidr;
use crate::sip::{CallHandle, OutboundCall};

use super::ports::PortPool;
use super::queue_task::QueueRuntime;

/// What a call task asks of the SIP layer.
#[derive(Debug)]
pub enum SipCommand {
    Answer(CallHandle, Vec<u8>),
    Reject(CallHandle, u16),
    Hangup(CallHandle),
    ReinviteAnswer(CallHandle, Result<Vec<u8>, u16>),
    /// The call task is gone (it ended, or it failed).
    Gone(CallHandle),
    /// Place an outbound call (an agent leg). The handle comes back to
    /// `owner` as [`CallSignal::LegPlaced`] for `leg`, its events as
    /// `CallSignal::Agent*`.
    Invite {
        call: OutboundCall,
        owner: mpsc::UnboundedSender<CallSignal>,
        leg: LegId,
    },
    /// Hang up an agent leg (CANCEL before the answer, BYE after) and stop
    /// routing its events.
    DropLeg(CallHandle),
    /// Blind-transfer the caller with REFER to a configured target.
    Refer(CallHandle, String),
}

/// A new call as the SIP layer saw it.
pub struct CallInfo {
    pub handle: CallHandle,
    pub call_id: String,
    pub caller: String,
    pub remote: SocketAddr,
    pub offer: Option<Vec<u8>>,
    /// Max-Forwards of the caller's INVITE (the agent leg gets one less).
    pub max_forwards: u8,
}

/// Everything a call task is started with.
pub struct NewCall {
    pub info: CallInfo,
    /// Commands to the SIP driver.
    pub sip: mpsc::UnboundedSender<SipCommand>,
    /// The sending side of `signals` (agent legs route their events here).
    pub self_tx: mpsc::UnboundedSender<CallSignal>,
    pub signals: mpsc::UnboundedReceiver<CallSignal>,
}

/// Starts a call task; the SIP driver is handed one.
pub type CallSpawner = Arc<dyn Fn(NewCall) + Send + Sync>;

/// What every call shares.
pub struct Services {
    pub prompts: Arc<PromptLibrary>,
    pub plan: RwLock<Arc<Dialplan>>,
    pub flow: Arc<FlowConfig>,
    pub ledger: Ledger,
    /// The CDR/audit writer (batched, spooled when the database is down).
    pub records: crate::records::Records,
    pub ports: PortPool,
    /// Address RTP sockets bind to.
    pub bind_ip: IpAddr,
    /// Address written into our SDP.
    pub media_ip: IpAddr,
    pub inactivity_timeout: Duration,
    /// The agent queues; `None` when none is configured (transfers fail).
    pub queues: Option<Arc<QueueRuntime>>,
    /// Where RTP may go and how long an unconfirmed call may live.
    pub media_policy: MediaPolicy,
}

/// `[rtp] trusted_media_networks` and `no_ack_timeout_secs`.
#[derive(Debug, Clone)]
pub struct MediaPolicy {
    /// Where else than the signalling source RTP may go.
    pub trusted: Arc<[Cidr]>,
    pub no_ack_timeout: Duration,
}

impl Default for MediaPolicy {
    fn default() -> Self {
        let net = CallNet::default();
        MediaPolicy {
            trusted: net.trusted,
            no_ack_timeout: net.no_ack_timeout,
        }
    }
}

impl Services {
    /// What a new call starts with (takes the offer out of `info`).
    pub fn call_params(&self, info: &mut CallInfo, rtp_port: u16) -> CallParams {
        let plan = self.plan.read().unwrap_or_else(|p| p.into_inner()).clone();
        let refer_targets = self.queues.as_ref().map(|q| q.refer_targets());
        CallParams {
            call_id: info.call_id.clone(),
            caller: info.caller.clone(),
            local_ip: self.media_ip,
            rtp_port,
            offer: info.offer.take(),
            plan,
            flow: self.flow.clone(),
            prompts: self.prompts.clone(),
            inactivity_timeout: self.inactivity_timeout,
            seeds: rand::random(),
            now: Instant::now(),
            wall_ms: wall_ms(),
            net: CallNet {
                signal_ip: Some(info.remote.ip()),
                trusted: self.media_policy.trusted.clone(),
                no_ack_timeout: self.media_policy.no_ack_timeout,
            },
            agents: AgentSetup {
                refer_targets: Arc::new(refer_targets.unwrap_or_default()),
                max_forwards: info.max_forwards,
                seed: rand::random(),
            },
        }
    }
}

/// Wall-clock Unix milliseconds (for the CDR and agent hours).
pub fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// What wakes a call task (`call_task`); `jobs` answer with it too.
pub enum CallInput {
    /// `len` bytes from `src` on a socket (in that socket's buffer); a
    /// receive error (ICMP noise) reads as an empty datagram.
    Rtp(crate::call::Socket, usize, SocketAddr),
    Signal(CallSignal),
    Queue(crate::queue::QueueAction),
    /// The ledger's answer to `Authenticate` (from a job).
    Auth(Result<crate::domain::AuthOutcome, LedgerUnavailable>),
    /// The audit row of a readout is durable (or could not be stored).
    Audit(Result<(), LedgerUnavailable>),
    /// A contact's resolved address (from a job).
    Contact(LegId, Option<SocketAddr>),
}
