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
            shutdown_grace_secs: 30,
            queue: Vec::new(),
            agent: Vec::new(),
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
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RtpSection {
    /// `LO-HI`, inclusive.
    pub ports: String,
    pub inactivity_timeout_secs: u64,
}

impl Default for RtpSection {
    fn default() -> Self {
        RtpSection {
            ports: "20000-29999".into(),
            inactivity_timeout_secs: 30,
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
        Ok(())
    }
}

impl Config {
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
    fn redacts_database_passwords() {
        assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact_url("sqlite://var/x.db"), "sqlite://var/x.db");
    }
}
