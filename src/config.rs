//! Service configuration: a TOML file whose every key can also be set by an
//! environment variable, then command-line flags on top.
//!
//! Environment variables are named `IVR12333_<SECTION>__<KEY>` (double
//! underscore between path parts, case-insensitive), e.g.
//! `IVR12333_SIP__LISTEN=127.0.0.1:5080` or `IVR12333_LEDGER__PIN_PEPPER=...`.
//! Their values are parsed as TOML values when they parse (numbers, booleans,
//! arrays), otherwise taken as strings.
//!
//! Errors name the file and line (or the variable) and never echo secret
//! values.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Everything `serve` needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub sip: SipSection,
    pub rtp: RtpSection,
    pub ledger: LedgerSection,
    pub flow: FlowSection,
    pub agent_hours: AgentHoursSection,
    pub log: LogSection,
    pub admin: AdminSection,
    /// Seconds calls in progress may take to finish after SIGTERM/ctrl-c.
    pub shutdown_grace_secs: u64,
    /// Agent queues (`[[queue]]`, see `docs/queue.md`). None: every transfer
    /// fails at once (the flow apologises).
    pub queue: Vec<crate::queue::config::QueueTable>,
    /// Agents (`[[agent]]`).
    pub agent: Vec<crate::queue::config::AgentTable>,
    /// Guessing resistance for agents' digest logins (`[agent_auth]`).
    pub agent_auth: AgentAuthSection,
    /// The CDR/audit writer and its local spool (`docs/records.md`).
    #[serde(default)]
    pub records: RecordsSection,
    /// Prompt loudness matching (`[prompts]`, see `docs/prompts.md`).
    pub prompts: PromptsSection,
    /// Callback (预约回拨) offers while a caller waits (`[callback]`).
    pub callback: CallbackSection,
    /// The operators' console (`[console]`, see `docs/console.md`).
    pub console: ConsoleSection,
    /// Who may sign in to the console (`[[console_user]]`).
    pub console_user: Vec<ConsoleUserTable>,
    /// Several nodes sharing one PostgreSQL database (`[cluster]`, see
    /// `docs/cluster.md`).
    pub cluster: ClusterSection,
}

/// `[cluster]`: with a PostgreSQL ledger the agent queue, agent state and
/// registrations are shared by every node using the same database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSection {
    /// This node's name, unique among the nodes sharing the database
    /// (default: the advertised SIP address and port, e.g. `10.0.0.5:5060`).
    pub node: Option<String>,
    /// How long a node stays alive without renewing its lease: a node that
    /// dies is noticed this long after its last renewal (renewed every
    /// third of it).
    pub lease_ms: u64,
    /// Share the agent queue through PostgreSQL (ignored with SQLite).
    pub shared_queue: bool,
}

impl Default for ClusterSection {
    fn default() -> Self {
        ClusterSection {
            node: None,
            lease_ms: 3_000,
            shared_queue: true,
        }
    }
}

impl ClusterSection {
    /// The lease, refusing values that would flap (under 300 ms) or hide a
    /// dead node for over ten minutes.
    pub fn lease(&self) -> Result<std::time::Duration, String> {
        match self.lease_ms {
            300..=600_000 => Ok(std::time::Duration::from_millis(self.lease_ms)),
            n => Err(format!(
                "cluster.lease_ms must be between 300 and 600000, not {n}"
            )),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sip: SipSection::default(),
            rtp: RtpSection::default(),
            ledger: LedgerSection::default(),
            flow: FlowSection::default(),
            agent_hours: AgentHoursSection::default(),
            log: LogSection::default(),
            admin: AdminSection::default(),
            cluster: ClusterSection::default(),
            shutdown_grace_secs: 30,
            queue: Vec::new(),
            agent: Vec::new(),
            agent_auth: AgentAuthSection::default(),
            records: RecordsSection::default(),
            prompts: PromptsSection::default(),
            callback: CallbackSection::default(),
            console: ConsoleSection::default(),
            console_user: Vec::new(),
        }
    }
}

/// `[records]`: the batched CDR/audit writer and its durable spool.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordsSection {
    /// Where rows wait on local disk while the database is down or slow.
    /// Unset: `spool/` beside an SQLite database file (so the default
    /// `sqlite://var/ivr12333.db` spools into `var/spool`), else `var/spool`.
    /// One process per directory (it is locked).
    pub spool_dir: Option<PathBuf>,
    /// Rows per multi-row insert.
    pub batch_max: usize,
    /// Rows waiting in memory beyond which audit rows are refused (the
    /// caller hears "system busy"); CDRs are always taken.
    pub queue_capacity: usize,
    /// First retry delay after a failed write; doubles up to `retry_max_ms`.
    pub retry_min_ms: u64,
    pub retry_max_ms: u64,
}

impl Default for RecordsSection {
    fn default() -> Self {
        RecordsSection {
            spool_dir: None,
            batch_max: 500,
            queue_capacity: 50_000,
            retry_min_ms: 200,
            retry_max_ms: 5_000,
        }
    }
}

/// `[prompts]`: every prompt is brought to one active speech level
/// (ITU-T P.56) when the library loads.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PromptsSection {
    /// Match loudness at all (false: play the files as they are).
    pub normalise: bool,
    /// Target active speech level, dBov (−26 is the usual telephony level).
    pub target_dbov: f32,
    /// The gain never lifts a peak above this (dBFS).
    pub ceiling_dbfs: f32,
}

impl Default for PromptsSection {
    fn default() -> Self {
        PromptsSection {
            normalise: true,
            target_dbov: crate::media::prompts::DEFAULT_TARGET_DBOV,
            ceiling_dbfs: crate::media::prompts::DEFAULT_CEILING_DBFS,
        }
    }
}

impl RecordsSection {
    /// The spool directory for a ledger at `db_url`.
    pub fn spool_dir_for(&self, db_url: &str) -> PathBuf {
        if let Some(d) = &self.spool_dir {
            return d.clone();
        }
        let file = db_url
            .strip_prefix("sqlite://")
            .or_else(|| db_url.strip_prefix("sqlite:"))
            .map(|p| p.split('?').next().unwrap_or(p))
            .filter(|p| !p.is_empty() && !p.contains(":memory:"));
        match file.and_then(|f| Path::new(f).parent()) {
            Some(dir) if !dir.as_os_str().is_empty() => dir.join("spool"),
            _ => PathBuf::from("var/spool"),
        }
    }

    /// The writer's settings for a ledger at `db_url`.
    pub fn writer_config(&self, db_url: &str) -> crate::records::RecordsConfig {
        crate::records::RecordsConfig {
            spool_dir: self.spool_dir_for(db_url),
            queue_capacity: self.queue_capacity.max(1),
            policy: crate::records::PolicyConfig {
                batch_max: self.batch_max.clamp(1, 2_000),
                retry_min: std::time::Duration::from_millis(self.retry_min_ms.max(1)),
                retry_max: std::time::Duration::from_millis(
                    self.retry_max_ms.max(self.retry_min_ms.max(1)),
                ),
                ..crate::records::PolicyConfig::default()
            },
        }
    }
}

impl PromptsSection {
    pub fn loudness(&self) -> crate::media::prompts::Loudness {
        crate::media::prompts::Loudness {
            target_dbov: self.normalise.then_some(self.target_dbov),
            ceiling_dbfs: self.ceiling_dbfs,
        }
    }
}

/// `[callback]`: when a waiting caller is offered a callback instead of
/// waiting on (the dialplan's transfer state needs a `callback` target).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallbackSection {
    /// The key a waiting caller presses for a callback (empty: none).
    pub key: String,
    /// Per queue: offer a callback when the queue's estimated wait exceeds
    /// this many seconds (needs `announce_estimated_wait` on the queue).
    pub offer_after_wait_secs: std::collections::BTreeMap<String, u64>,
}

impl Default for CallbackSection {
    fn default() -> Self {
        CallbackSection {
            key: "1".to_owned(),
            offer_after_wait_secs: std::collections::BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipSection {
    /// Address for SIP over UDP and TCP.
    pub listen: SocketAddr,
    /// Address written into Via/Contact/SDP when `listen` is a wildcard.
    pub advertise: Option<std::net::IpAddr>,
    /// Source networks allowed to place calls (CIDR); empty = everyone.
    pub allow_from: Vec<String>,
    pub max_calls: usize,
    pub max_calls_per_second: u32,
    /// TCP connections allowed from one IP address.
    pub max_tcp_per_ip: usize,
    /// Close TCP connections idle this long (seconds).
    pub tcp_idle_secs: u64,
    /// Concurrent calls from one source address (0 = no limit).
    pub per_source_max_calls: usize,
    /// New calls per second from one source address (0 = no limit).
    pub per_source_calls_per_second: u32,
    /// New calls one source may place at once (token bucket size; 0 = the
    /// per-second figure).
    pub per_source_burst: u32,
    /// INVITEs from one source admitted but not yet ACKed (0 = no limit).
    pub per_source_max_unacked: usize,
    /// Sources (CIDR) exempt from the per-source limits: trunks and SBCs
    /// that carry many callers. They still count toward the global caps.
    pub trusted_sources: Vec<String>,
    /// Refused INVITEs are logged as one summary line per source and
    /// interval of this many seconds.
    pub refusal_log_secs: u64,
    /// Server / User-Agent header value; empty = no such header. The
    /// default carries no version (add one here if a peer needs it).
    #[serde(default = "default_server_header")]
    pub server_header: String,
}

fn default_server_header() -> String {
    "ivr12333".to_owned()
}

impl Default for SipSection {
    fn default() -> Self {
        SipSection {
            listen: "0.0.0.0:5060".parse().expect("static"),
            advertise: None,
            allow_from: Vec::new(),
            max_calls: 5000,
            max_calls_per_second: 1000,
            max_tcp_per_ip: 64,
            tcp_idle_secs: 900,
            per_source_max_calls: 200,
            per_source_calls_per_second: 50,
            per_source_burst: 100,
            per_source_max_unacked: 50,
            trusted_sources: Vec::new(),
            refusal_log_secs: 10,
            server_header: default_server_header(),
        }
    }
}

impl SipSection {
    /// The per-source admission limits of this section.
    pub fn per_source_limits(&self) -> crate::sip::admission::PerSourceLimits {
        crate::sip::admission::PerSourceLimits {
            max_calls: self.per_source_max_calls,
            calls_per_second: self.per_source_calls_per_second,
            burst: self.per_source_burst,
            max_unacked: self.per_source_max_unacked,
            trusted_sources: self.trusted_sources.clone(),
            log_interval: std::time::Duration::from_secs(self.refusal_log_secs.max(1)),
        }
    }
}

/// Guessing resistance for agents that log in with SIP digest (see
/// `docs/operations.md`): failures counted per agent and per source address.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentAuthSection {
    /// Wrong answers for one agent within `window_secs` that lock it.
    pub max_failures: u32,
    /// Wrong answers from one source address within `window_secs` that
    /// block that address (it then cannot add to any agent's count).
    pub source_max_failures: u32,
    pub window_secs: u64,
    /// First lock; each further lock without a good login in between
    /// doubles it, up to `max_lock_secs`.
    pub lock_secs: u64,
    pub max_lock_secs: u64,
    /// Failures are summarised in the log once per this many seconds.
    pub log_interval_secs: u64,
}

impl Default for AgentAuthSection {
    fn default() -> Self {
        AgentAuthSection {
            max_failures: 5,
            source_max_failures: 20,
            window_secs: 300,
            lock_secs: 900,
            max_lock_secs: 86_400,
            log_interval_secs: 60,
        }
    }
}

impl AgentAuthSection {
    /// The digest guessing limits of this section.
    pub fn guess_limits(&self) -> crate::queue::digest::GuessLimits {
        crate::queue::digest::GuessLimits {
            max_failures: self.max_failures,
            source_max_failures: self.source_max_failures,
            window_secs: self.window_secs,
            lock_secs: self.lock_secs,
            max_lock_secs: self.max_lock_secs,
            log_interval_secs: self.log_interval_secs,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RtpSection {
    /// `LO-HI`, inclusive.
    pub ports: String,
    pub inactivity_timeout_secs: u64,
    /// Networks (CIDR or bare IP) RTP may be sent to besides the IP the
    /// INVITE came from (an SBC or media gateway in front of the phones).
    /// Empty: only the signalling source.
    pub trusted_media_networks: Vec<String>,
    /// A call with neither ACK nor RTP from the caller after this long ends
    /// (`no_ack`); the SIP layer's 64·T1 stays the outer bound.
    pub no_ack_timeout_secs: u64,
    /// Pacing threads of the media clock (`docs/runtime.md`); 0: one per
    /// core.
    pub clock_workers: usize,
    /// How often at most a pacing thread wakes, in milliseconds (1–10).
    pub clock_quantum_ms: u64,
}

impl Default for RtpSection {
    fn default() -> Self {
        RtpSection {
            ports: "20000-29999".into(),
            inactivity_timeout_secs: 30,
            trusted_media_networks: Vec::new(),
            no_ack_timeout_secs: 8,
            clock_workers: 0,
            clock_quantum_ms: 2,
        }
    }
}

impl RtpSection {
    pub fn port_range(&self) -> Result<(u16, u16), String> {
        parse_port_range(&self.ports)
    }
}

/// Parses `LO-HI` (inclusive, LO ≤ HI, at least two ports).
pub fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (lo, hi) = s
        .split_once('-')
        .ok_or_else(|| format!("port range `{s}`: expected LO-HI"))?;
    let lo: u16 = lo
        .trim()
        .parse()
        .map_err(|_| format!("port range `{s}`: bad low port"))?;
    let hi: u16 = hi
        .trim()
        .parse()
        .map_err(|_| format!("port range `{s}`: bad high port"))?;
    if lo == 0 || lo >= hi {
        return Err(format!("port range `{s}`: need 0 < LO < HI"));
    }
    Ok((lo, hi))
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerSection {
    /// `sqlite://path`, `sqlite::memory:` or `postgres://...`.
    pub db: String,
    /// Server-side secret mixed into PIN hashes; not stored in the database.
    pub pin_pepper: Option<String>,
    /// Seed the demo accounts when the ledger is empty (embedded default).
    pub seed_demo_if_empty: bool,
    pub max_failures: u32,
    pub failure_window_hours: u64,
    pub lock_hours: u64,
    pub hash_concurrency: usize,
}

impl std::fmt::Debug for LedgerSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerSection")
            .field("db", &redact_url(&self.db))
            .field("pin_pepper", &self.pin_pepper.as_ref().map(|_| "<set>"))
            .field("seed_demo_if_empty", &self.seed_demo_if_empty)
            .field("max_failures", &self.max_failures)
            .finish_non_exhaustive()
    }
}

/// Hides a password in a database URL.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl Default for LedgerSection {
    fn default() -> Self {
        LedgerSection {
            db: "sqlite://var/ivr12333.db".into(),
            pin_pepper: None,
            seed_demo_if_empty: true,
            max_failures: 5,
            failure_window_hours: 24,
            lock_hours: 24,
            hash_concurrency: 1,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowSection {
    pub dialplan: PathBuf,
    pub prompts: PathBuf,
    pub pin_min_len: usize,
    pub pin_max_len: usize,
    /// Read a leading 2 before 百 as 两百.
    pub liang_bai: bool,
}

impl Default for FlowSection {
    fn default() -> Self {
        FlowSection {
            dialplan: "dialplans/12333.toml".into(),
            prompts: "prompts".into(),
            pin_min_len: 6,
            pin_max_len: 8,
            liang_bai: false,
        }
    }
}

/// When human agents take calls (local time, UTC+8 by default).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentHoursSection {
    pub utc_offset_hours: i32,
    /// Working weekdays: `mon` … `sun`.
    pub days: Vec<String>,
    /// `HH:MM`.
    pub open: String,
    pub close: String,
    /// `YYYY-MM-DD` dates closed although on a working weekday.
    pub holidays: Vec<String>,
    /// `YYYY-MM-DD` dates open although on a weekend (调休).
    pub extra_workdays: Vec<String>,
}

impl Default for AgentHoursSection {
    fn default() -> Self {
        AgentHoursSection {
            utc_offset_hours: 8,
            days: ["mon", "tue", "wed", "thu", "fri"]
                .map(String::from)
                .to_vec(),
            open: "09:00".into(),
            close: "17:00".into(),
            holidays: Vec::new(),
            extra_workdays: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    pub format: LogFormat,
    /// A tracing `EnvFilter` directive, e.g. `info` or `ivr12333=debug`.
    pub level: String,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSection {
    /// HTTP address for `/healthz` and `/metrics`; empty string disables it.
    pub listen: String,
}

impl Default for AdminSection {
    fn default() -> Self {
        AdminSection {
            listen: "127.0.0.1:8080".into(),
        }
    }
}

/// `[console]`: the operators' console on the admin listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleSection {
    /// Mark the session cookie `Secure` (set when a TLS proxy fronts the
    /// admin listener).
    pub secure_cookie: bool,
    /// A session ends after this many minutes without a request.
    pub session_idle_minutes: u64,
    /// API tokens for `Authorization: Bearer` (`[[console.token]]`).
    pub token: Vec<ConsoleTokenTable>,
}

impl Default for ConsoleSection {
    fn default() -> Self {
        ConsoleSection {
            secure_cookie: false,
            session_idle_minutes: 480,
            token: Vec::new(),
        }
    }
}

/// `[[console.token]]`: `sha256` is the hex SHA-256 of the token (made by
/// `ivr12333 console new-token`); the token itself is never stored.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleTokenTable {
    pub name: String,
    pub sha256: String,
    /// `supervisor` (default) or `agent` (then `agent` names which one).
    #[serde(default = "default_console_role")]
    pub role: String,
    #[serde(default)]
    pub agent: Option<String>,
}

impl std::fmt::Debug for ConsoleTokenTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleTokenTable")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// `[[console_user]]`: a supervisor or an agent who signs in to the console
/// with an argon2id `password_hash` (made by `ivr12333 console
/// hash-password`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleUserTable {
    pub name: String,
    pub password_hash: String,
    /// `supervisor` or `agent` (default).
    #[serde(default = "default_agent_role")]
    pub role: String,
    /// For agents: the `[[agent]]` id this user may control.
    #[serde(default)]
    pub agent: Option<String>,
}

impl std::fmt::Debug for ConsoleUserTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleUserTable")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("agent", &self.agent)
            .finish_non_exhaustive()
    }
}

fn default_console_role() -> String {
    "supervisor".into()
}

fn default_agent_role() -> String {
    "agent".into()
}

/// A configuration error that names where the bad value came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

const ENV_PREFIX: &str = "IVR12333_";

impl Config {
    /// Loads `path` (if any), then applies `IVR12333_*` variables from `env`.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| ConfigError::File {
                    path: p.display().to_string(),
                    message: e.to_string(),
                })?;
                let t: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::File {
                    path: p.display().to_string(),
                    message: describe_toml_error(&text, &e),
                })?;
                t
            }
            None => toml::Table::new(),
        };
        let mut vars: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        vars.sort();
        let mut applied = Vec::new();
        for (var, value) in vars {
            let key = var[ENV_PREFIX.len()..].to_ascii_lowercase();
            let parts: Vec<&str> = key.split("__").collect();
            if parts.iter().any(|p| p.is_empty()) {
                return Err(ConfigError::Env {
                    var,
                    message: "empty key part".into(),
                });
            }
            let parsed = parse_env_value(&value);
            set_path(&mut table, &parts, parsed).map_err(|message| ConfigError::Env {
                var: var.clone(),
                message,
            })?;
            applied.push(var);
        }
        let mut source = path.map(|p| p.display().to_string()).unwrap_or_default();
        if !applied.is_empty() {
            let vars = format!("environment {}", applied.join(", "));
            source = if source.is_empty() {
                vars
            } else {
                format!("{source} (with {vars})")
            };
        }
        let cfg: Config =
            Config::deserialize(toml::Value::Table(table)).map_err(|e| ConfigError::File {
                path: source,
                message: e.message().to_owned(),
            })?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.rtp.port_range().map_err(ConfigError::Invalid)?;
        for c in &self.rtp.trusted_media_networks {
            crate::sip::admission::Cidr::parse(c)
                .map_err(|e| ConfigError::Invalid(format!("rtp.trusted_media_networks: {e}")))?;
        }
        if self.rtp.no_ack_timeout_secs == 0 {
            return Err(ConfigError::Invalid(
                "rtp.no_ack_timeout_secs must be at least 1".into(),
            ));
        }
        if !(1..=10).contains(&self.rtp.clock_quantum_ms) {
            return Err(ConfigError::Invalid(
                "rtp.clock_quantum_ms must be within 1..=10".into(),
            ));
        }
        if !(6..=8).contains(&self.flow.pin_min_len)
            || !(6..=8).contains(&self.flow.pin_max_len)
            || self.flow.pin_min_len > self.flow.pin_max_len
        {
            return Err(ConfigError::Invalid(
                "flow.pin_min_len/pin_max_len must be within 6..=8, min ≤ max".into(),
            ));
        }
        if self.ledger.max_failures == 0 {
            return Err(ConfigError::Invalid(
                "ledger.max_failures must be at least 1".into(),
            ));
        }
        self.queue_set()?;
        if self.sip.max_calls == 0 {
            return Err(ConfigError::Invalid(
                "sip.max_calls must be at least 1".into(),
            ));
        }
        crate::sip::admission::parse_cidrs("sip.trusted_sources", &self.sip.trusted_sources)
            .map_err(ConfigError::Invalid)?;
        let a = &self.agent_auth;
        if a.max_failures == 0 || a.source_max_failures == 0 || a.window_secs == 0 {
            return Err(ConfigError::Invalid(
                "agent_auth: max_failures, source_max_failures and window_secs must be at least 1"
                    .into(),
            ));
        }
        Ok(())
    }
}

impl Config {
    /// A start-up warning when the RTP port range cannot hold `max_calls`
    /// calls: each call takes one even port, and a call bridged to an agent
    /// takes a second one for the agent leg. Beyond the pool, new INVITEs
    /// get 503 (the service still starts: a small range is a legitimate
    /// way to run a small node, but it must not cap calls silently).
    pub fn rtp_capacity_warning(&self) -> Option<String> {
        let (lo, hi) = self.rtp.port_range().ok()?;
        let ports = (lo..=hi).filter(|p| p % 2 == 0).count();
        let per_call = if self.queue.is_empty() { 1 } else { 2 };
        let needed = self.sip.max_calls.saturating_mul(per_call);
        (ports < needed).then(|| {
            let bridged = if per_call == 2 {
                format!(" ({} if every call is bridged to an agent)", ports / 2)
            } else {
                String::new()
            };
            format!(
                "rtp.ports {lo}-{hi} holds {ports} RTP ports but sip.max_calls = {} needs {needed}: \
                 at most {ports} calls at once{bridged}, beyond that INVITEs get 503; \
                 widen rtp.ports or lower sip.max_calls",
                self.sip.max_calls,
            )
        })
    }

    /// The agent queues built from `[[queue]]`/`[[agent]]`; `None` when no
    /// queue is configured. Errors name the queue or agent and the field
    /// (never a password).
    pub fn queue_set(&self) -> Result<Option<crate::queue::QueueSet>, ConfigError> {
        if self.queue.is_empty() && self.agent.is_empty() {
            return Ok(None);
        }
        let file = crate::queue::config::QueuesFile {
            queue: self.queue.clone(),
            agent: self.agent.clone(),
        };
        file.build()
            .map(Some)
            .map_err(|e| ConfigError::Invalid(format!("agent queues: {e}")))
    }
}

fn parse_env_value(value: &str) -> toml::Value {
    // `x = <value>` parses numbers, booleans, arrays and quoted strings;
    // anything else (an address, a path) is a plain string.
    match toml::from_str::<toml::Table>(&format!("x = {value}")) {
        Ok(mut t) => t
            .remove("x")
            .unwrap_or_else(|| toml::Value::String(value.to_owned())),
        Err(_) => toml::Value::String(value.to_owned()),
    }
}

fn set_path(table: &mut toml::Table, parts: &[&str], value: toml::Value) -> Result<(), String> {
    match parts {
        [] => Err("empty key".into()),
        [last] => {
            table.insert((*last).to_owned(), value);
            Ok(())
        }
        [first, rest @ ..] => {
            let entry = table
                .entry((*first).to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(t) => set_path(t, rest, value),
                _ => Err(format!("`{first}` is not a section")),
            }
        }
    }
}

/// `line L, column C: message` from a TOML error.
fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let (line, col) = line_col(text, span.start);
            format!("line {line}, column {col}: {}", e.message())
        }
        None => e.message().to_owned(),
    }
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let col = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::load(None, env(&[])).unwrap();
        assert_eq!(c.sip.listen.port(), 5060);
        assert_eq!(c.rtp.port_range().unwrap(), (20000, 29999));
        assert_eq!(c.ledger.db, "sqlite://var/ivr12333.db");
    }

    #[test]
    fn environment_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[sip]\nlisten = \"127.0.0.1:5080\"\nmax_calls = 10\n").unwrap();
        let c = Config::load(
            Some(&p),
            env(&[
                ("IVR12333_SIP__MAX_CALLS", "20"),
                ("IVR12333_RTP__PORTS", "30000-30100"),
                ("IVR12333_SIP__ALLOW_FROM", "[\"127.0.0.0/8\"]"),
                ("IVR12333_LEDGER__PIN_PEPPER", "s3cret"),
                ("OTHER", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(c.sip.listen.port(), 5080);
        assert_eq!(c.sip.max_calls, 20);
        assert_eq!(c.rtp.port_range().unwrap(), (30000, 30100));
        assert_eq!(c.sip.allow_from, vec!["127.0.0.0/8".to_string()]);
        assert!(!format!("{:?}", c.ledger).contains("s3cret"));
    }

    #[test]
    fn errors_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.toml");
        std::fs::write(&p, "[sip]\nlisten = \"127.0.0.1:5080\"\nmax_calls = = 3\n").unwrap();
        let e = Config::load(Some(&p), env(&[])).unwrap_err().to_string();
        assert!(e.contains("bad.toml") && e.contains("line 3"), "{e}");

        std::fs::write(&p, "[sip]\nlisten = \"nonsense\"\n").unwrap();
        let e = Config::load(Some(&p), env(&[])).unwrap_err().to_string();
        assert!(e.contains("bad.toml"), "{e}");

        std::fs::write(&p, "[sip]\nbogus = 1\n").unwrap();
        let e = Config::load(Some(&p), env(&[])).unwrap_err().to_string();
        assert!(e.contains("bogus"), "{e}");

        let e = Config::load(None, env(&[("IVR12333_RTP__PORTS", "9-3")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("port range"), "{e}");
        let e = Config::load(None, env(&[("IVR12333_SIP", "1")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("IVR12333_SIP") && e.contains("SipSection"),
            "{e}"
        );
    }

    #[test]
    fn queues_and_agents_are_validated_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("q.toml");
        std::fs::write(
            &p,
            "[[agent]]\nid = \"a1\"\npassword = \"hunter2\"\n\
             [[agent]]\nid = \"a2\"\ncontact = \"sip:a2@127.0.0.1:5062\"\n\
             [[queue]]\nname = \"agents\"\nagents = [\"a1\", \"a2\"]\n",
        )
        .unwrap();
        let c = Config::load(Some(&p), env(&[])).unwrap();
        let q = c.queue_set().unwrap().unwrap();
        assert_eq!(q.queue_names().collect::<Vec<_>>(), vec!["agents"]);
        assert!(!format!("{c:?}").contains("hunter2"));

        std::fs::write(
            &p,
            "[[agent]]\nid = \"a1\"\npassword = \"hunter2\"\n\
             [[queue]]\nname = \"agents\"\nagents = [\"a9\"]\n",
        )
        .unwrap();
        let e = Config::load(Some(&p), env(&[])).unwrap_err().to_string();
        assert!(e.contains("a9") && e.contains("agents"), "{e}");
        assert!(!e.contains("hunter2"));
        // No queues at all: fine, transfers fail at once.
        assert!(
            Config::load(None, env(&[]))
                .unwrap()
                .queue_set()
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn per_source_limits_and_agent_auth_load_and_validate() {
        let c = Config::load(
            None,
            env(&[
                (
                    "IVR12333_SIP__TRUSTED_SOURCES",
                    "[\"192.0.2.0/24\", \"2001:db8::1\"]",
                ),
                ("IVR12333_SIP__PER_SOURCE_MAX_UNACKED", "2"),
                ("IVR12333_AGENT_AUTH__LOCK_SECS", "60"),
            ]),
        )
        .unwrap();
        let l = c.sip.per_source_limits();
        assert_eq!(
            (l.max_unacked, l.max_calls, l.calls_per_second),
            (2, 200, 50)
        );
        assert_eq!(l.trusted_sources.len(), 2);
        assert_eq!(c.agent_auth.guess_limits().lock_secs, 60);
        let e = Config::load(
            None,
            env(&[("IVR12333_SIP__TRUSTED_SOURCES", "[\"10.0.0.0/99\"]")]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("sip.trusted_sources"), "{e}");
        let e = Config::load(None, env(&[("IVR12333_AGENT_AUTH__MAX_FAILURES", "0")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("agent_auth"), "{e}");
    }

    #[test]
    fn warns_when_the_rtp_range_cannot_hold_max_calls() {
        let mut c = Config::default();
        assert_eq!(c.rtp_capacity_warning(), None); // 5000 even ports, 5000 calls
        c.rtp.ports = "30000-30199".into();
        let w = c.rtp_capacity_warning().unwrap();
        assert!(
            w.contains("holds 100 RTP ports") && w.contains("at most 100 calls"),
            "{w}"
        );
        c.sip.max_calls = 100;
        assert_eq!(c.rtp_capacity_warning(), None);
        // With agent queues a bridged call takes two ports.
        c.queue = Config::load(None, env(&[]))
            .ok()
            .map(|_| {
                toml::from_str::<Config>(
                    "[[agent]]\nid = \"a1\"\ncontact = \"sip:a1@127.0.0.1\"\n\
                     [[queue]]\nname = \"agents\"\nagents = [\"a1\"]\n",
                )
                .unwrap()
                .queue
            })
            .unwrap();
        let w = c.rtp_capacity_warning().unwrap();
        assert!(
            w.contains("needs 200") && w.contains("50 if every call"),
            "{w}"
        );
    }

    #[test]
    fn redacts_database_passwords() {
        assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact_url("sqlite://var/x.db"), "sqlite://var/x.db");
    }
}
