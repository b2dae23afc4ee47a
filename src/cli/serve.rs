//! `ivr12333 serve`: answer calls.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{Config, LogFormat};

/// Arguments of `ivr12333 serve`. Flags override the configuration file and
/// `IVR12333_*` environment variables.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// SIP address, UDP and TCP [default: 0.0.0.0:5060].
    #[arg(long, value_name = "ADDR")]
    pub sip_listen: Option<SocketAddr>,
    /// RTP port range LO-HI [default: 20000-29999].
    #[arg(long, value_name = "LO-HI")]
    pub rtp_ports: Option<String>,
    /// Ledger database URL (sqlite://PATH or postgres://...) [default: sqlite://var/ivr12333.db].
    #[arg(long, value_name = "URL")]
    pub db: Option<String>,
    /// Dialplan file [default: dialplans/12333.toml].
    #[arg(long, value_name = "FILE")]
    pub dialplan: Option<PathBuf>,
    /// Prompt directory [default: prompts].
    #[arg(long, value_name = "DIR")]
    pub prompts: Option<PathBuf>,
    /// Admin HTTP address (/healthz, /metrics); "" disables [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<String>,
    /// Log format.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormatArg>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

/// Builds the effective configuration: file, then environment, then flags.
pub fn effective_config(args: &Args) -> Result<Config, String> {
    let mut cfg =
        Config::load(args.config.as_deref(), std::env::vars()).map_err(|e| e.to_string())?;
    if let Some(a) = args.sip_listen {
        cfg.sip.listen = a;
    }
    if let Some(p) = &args.rtp_ports {
        cfg.rtp.ports = p.clone();
    }
    if let Some(d) = &args.db {
        cfg.ledger.db = d.clone();
    }
    if let Some(d) = &args.dialplan {
        cfg.flow.dialplan = d.clone();
    }
    if let Some(p) = &args.prompts {
        cfg.flow.prompts = p.clone();
    }
    if let Some(a) = &args.admin_listen {
        cfg.admin.listen = a.clone();
    }
    if let Some(f) = args.log_format {
        cfg.log.format = match f {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        };
    }
    cfg.validate().map_err(|e| e.to_string())?;
    Ok(cfg)
}

/// Installs the tracing subscriber (text or JSON) with the configured filter.
pub fn init_logging(cfg: &Config) {
    // The level comes from `log.level` (or IVR12333_LOG__LEVEL).
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match cfg.log.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

pub fn run(args: Args) -> ExitCode {
    let cfg = match effective_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ivr12333 serve: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&cfg);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ivr12333")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ivr12333 serve: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(crate::runtime::serve(
        cfg,
        crate::runtime::shutdown_signal(),
    )) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("ivr12333 serve: {e:#}");
            ExitCode::FAILURE
        }
    }
}
