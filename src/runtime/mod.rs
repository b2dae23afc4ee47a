//! The only tokio code: sockets, timers, tasks, signals and shutdown. Every
//! decision is made by the sans-IO cores this layer drives.

pub mod admin;
mod call_core;
pub mod call_task;
pub mod clock;
pub mod driver;
pub mod jobs;
pub mod ports;
pub mod queue_store;
pub mod queue_task;
pub mod rtp_socket;
pub mod shared_queue;
pub mod sip;
pub mod types;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;

use crate::config::Config;
use crate::flow::dialplan::Dialplan;
use crate::flow::interpreter::FlowConfig;
use crate::ledger::{Ledger, LedgerConfig};
use crate::media::prompts::PromptLibrary;
use crate::sip::{Endpoint, EndpointConfig};

use call_task::Services;
use ports::PortPool;

/// Loads the dialplan at `path`, checking its prompt ids against `prompts`.
pub fn load_dialplan(path: &Path, prompts: &PromptLibrary) -> anyhow::Result<Dialplan> {
    let known: std::collections::HashSet<&str> = prompts.ids().collect();
    crate::flow::dialplan::load_file(path, &known).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The flow settings from the configuration.
pub fn flow_config(cfg: &Config) -> anyhow::Result<FlowConfig> {
    let h = &cfg.agent_hours;
    fn strs(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    let agent_hours = crate::flow::calendar::Calendar::from_config(
        &strs(&h.days),
        &h.open,
        &h.close,
        &strs(&h.holidays),
        &strs(&h.extra_workdays),
    )
    .map_err(|e| anyhow::anyhow!("agent_hours: {e}"))?;
    Ok(FlowConfig {
        pin_min_len: cfg.flow.pin_min_len,
        pin_max_len: cfg.flow.pin_max_len,
        agent_hours,
        utc_offset_secs: h.utc_offset_hours * 3600,
        say: crate::say::SayOptions {
            liang_bai: cfg.flow.liang_bai,
        },
        ..FlowConfig::default()
    })
}

/// The ledger settings from the configuration (pepper from config/env; the
/// demo pepper only for an embedded SQLite ledger).
pub fn ledger_config(cfg: &Config) -> anyhow::Result<LedgerConfig> {
    let l = &cfg.ledger;
    let mut lc = match &l.pin_pepper {
        Some(p) if !p.is_empty() => LedgerConfig::with_pepper(p.as_bytes().to_vec()),
        _ if l.db.starts_with("sqlite:") => {
            tracing::warn!(
                "no ledger.pin_pepper set: using the demo pepper (fine for the demo ledger only)"
            );
            LedgerConfig::demo()
        }
        _ => bail!(
            "ledger.pin_pepper (IVR12333_LEDGER__PIN_PEPPER) must be set for a PostgreSQL ledger"
        ),
    };
    lc.max_failures = l.max_failures;
    lc.failure_window = Duration::from_secs(l.failure_window_hours * 3600);
    lc.lock_duration = Duration::from_secs(l.lock_hours * 3600);
    lc.pin_min_len = cfg.flow.pin_min_len;
    lc.pin_max_len = cfg.flow.pin_max_len;
    lc.hash_concurrency = l.hash_concurrency.max(1);
    Ok(lc)
}

/// Runs the service until `shutdown` resolves, then drains calls.
pub async fn serve(
    cfg: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let prompts = Arc::new(
        PromptLibrary::load_with(&cfg.flow.prompts, &cfg.prompts.loudness())
            .with_context(|| format!("loading prompts from {}", cfg.flow.prompts.display()))?,
    );
    let missing = prompts.missing_speller_ids();
    if !missing.is_empty() {
        bail!(
            "prompts in {} lack the number segments {missing:?}",
            cfg.flow.prompts.display()
        );
    }
    let plan = load_dialplan(&cfg.flow.dialplan, &prompts)?;
    let mut flow = flow_config(&cfg)?;
    flow.prompt_ms = Some(Arc::new(prompts.durations_ms()));
    flow.callback_key = cfg.callback.key.chars().next();
    flow.callback_after = cfg
        .callback
        .offer_after_wait_secs
        .iter()
        .map(|(q, s)| (q.clone(), Duration::from_secs(*s)))
        .collect();
    let flow = Arc::new(flow);

    if let Some(path) = cfg.ledger.db.strip_prefix("sqlite://")
        && let Some(dir) = Path::new(path.split('?').next().unwrap_or(path)).parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let ledger = Ledger::open(&cfg.ledger.db, ledger_config(&cfg)?)
        .await
        .with_context(|| {
            format!(
                "opening the ledger {}",
                crate::config::redact_url(&cfg.ledger.db)
            )
        })?;
    if cfg.ledger.seed_demo_if_empty && ledger.is_empty().await? {
        let n = ledger.seed_demo().await?;
        tracing::info!(accounts = n, "empty ledger: seeded the demo accounts");
    }
    // CDRs and audit rows: one batched writer with a durable local spool
    // (a spool left by an earlier run is replayed first).
    let records_cfg = cfg.records.writer_config(&cfg.ledger.db);
    let records = crate::records::Records::start(ledger.clone(), records_cfg.clone())
        .with_context(|| format!("opening the spool {}", records_cfg.spool_dir.display()))?;

    let listen = cfg.sip.listen;
    let udp = UdpSocket::bind(listen)
        .await
        .with_context(|| format!("binding SIP UDP {listen}"))?;
    let tcp = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding SIP TCP {listen}"))?;
    let advertise = cfg.sip.advertise.unwrap_or(match listen.ip() {
        ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip,
    });
    if listen.ip().is_unspecified() && cfg.sip.advertise.is_none() {
        tracing::warn!(
            "listening on a wildcard address without sip.advertise: SDP and Contact say {advertise}"
        );
    }
    let (lo, hi) = cfg.rtp.port_range().map_err(anyhow::Error::msg)?;

    let queues = match cfg.queue_set().map_err(|e| anyhow::anyhow!("{e}"))? {
        Some(set) => {
            let has_agents = !cfg.agent.is_empty();
            tracing::info!(
                queues = set.queue_names().count(),
                agents = cfg.agent.len(),
                "agent queues configured"
            );
            let passwords: std::collections::HashMap<String, String> = cfg
                .agent
                .iter()
                .filter_map(|a| Some((a.id.clone(), a.password.clone()?)))
                .collect();
            let registrar = (!passwords.is_empty()).then(|| {
                let secret: [u8; 32] = rand::random();
                queue_task::Registrar::new(&secret, passwords)
                    .with_guessing_limits(cfg.agent_auth.guess_limits())
            });
            let shared = match ledger.pg_pool() {
                Some(pool) if cfg.cluster.shared_queue => {
                    let lease = cfg.cluster.lease().map_err(anyhow::Error::msg)?;
                    let node = cfg
                        .cluster
                        .node
                        .clone()
                        .unwrap_or_else(|| format!("{advertise}:{}", listen.port()));
                    let queues: Vec<crate::queue::QueueConfig> = set
                        .queue_names()
                        .filter_map(|n| set.queue_config(n).cloned())
                        .collect();
                    let agents = cfg
                        .agent
                        .iter()
                        .map(|a| (crate::queue::AgentId::new(&a.id), a.contact.clone()))
                        .collect();
                    tracing::info!(%node, lease_ms = lease.as_millis() as u64, "agent queue shared through PostgreSQL");
                    let store =
                        crate::runtime::queue_store::PgQueueStore::new(pool, node, queues.clone());
                    Some(shared_queue::SharedQueue::new(store, queues, agents, lease))
                }
                _ => None,
            };
            Some(queue_task::QueueRuntime::with_shared(
                set, has_agents, registrar, shared,
            ))
        }
        None => None,
    };
    let ep_cfg = EndpointConfig {
        local_addr: SocketAddr::new(advertise, listen.port()),
        server_header: (!cfg.sip.server_header.is_empty()).then(|| cfg.sip.server_header.clone()),
        allow_from: cfg.sip.allow_from.clone(),
        max_calls: cfg.sip.max_calls,
        max_calls_per_second: cfg.sip.max_calls_per_second,
        registrar: queues.as_ref().is_some_and(|q| q.registrar_enabled()),
        per_source: cfg.sip.per_source_limits(),
        ..EndpointConfig::default()
    };
    ep_cfg.validate().map_err(|e| anyhow::anyhow!("sip.{e}"))?;
    if let Some(w) = cfg.rtp_capacity_warning() {
        tracing::warn!("{w}");
    }
    let limits = ep_cfg.limits;
    let endpoint = Endpoint::new(ep_cfg);

    let services = Arc::new(Services {
        prompts: prompts.clone(),
        plan: RwLock::new(Arc::new(plan)),
        flow,
        ledger: ledger.clone(),
        records: records.clone(),
        ports: PortPool::new(lo, hi),
        bind_ip: listen.ip(),
        media_ip: advertise,
        inactivity_timeout: Duration::from_secs(cfg.rtp.inactivity_timeout_secs),
        media_policy: types::MediaPolicy {
            trusted: cfg
                .rtp
                .trusted_media_networks
                .iter()
                .map(|c| crate::sip::admission::Cidr::parse(c).map_err(anyhow::Error::msg))
                .collect::<anyhow::Result<Vec<_>>>()?
                .into(),
            no_ack_timeout: Duration::from_secs(cfg.rtp.no_ack_timeout_secs),
        },
        queues: queues.clone(),
    });

    let (stop_tx, stop_rx) = watch::channel(false);
    let queue_driver = queues.clone().map(|q| tokio::spawn(q.run(stop_rx.clone())));
    let shared_queue = queues
        .as_ref()
        .and_then(|q| Some((q.clone(), q.shared_queue()?.clone())))
        .map(|(q, s)| (s.clone(), tokio::spawn(s.run(move |a| q.route(a)))));
    let admin = if cfg.admin.listen.is_empty() {
        None
    } else {
        let addr: SocketAddr = cfg
            .admin
            .listen
            .parse()
            .with_context(|| format!("admin.listen `{}`", cfg.admin.listen))?;
        let console = crate::console::Settings::from_config(&cfg)
            .map_err(|e| anyhow::anyhow!("console: {e}"))?;
        Some(tokio::spawn(admin::serve(
            addr,
            services.clone(),
            stop_rx.clone(),
            console,
        )))
    };
    let reload = tokio::spawn(reload_on_sighup(
        cfg.flow.dialplan.clone(),
        services.clone(),
    ));

    tracing::info!(
        sip = %listen, rtp = %cfg.rtp.ports, ledger = %crate::config::redact_url(&cfg.ledger.db),
        prompts = prompts.ids().count(), "ivr12333 serving"
    );
    clock::configure(
        cfg.rtp.clock_workers,
        Duration::from_millis(cfg.rtp.clock_quantum_ms),
    );
    let call_services = services.clone();
    let spawn_call: types::CallSpawner = Arc::new(move |n| {
        tokio::spawn(call_task::run(n, call_services.clone()));
    });
    let driver = tokio::spawn(sip::run(
        endpoint,
        udp,
        tcp,
        queues.clone(),
        spawn_call,
        sip::DriverSettings {
            limits,
            max_tcp_per_ip: cfg.sip.max_tcp_per_ip,
            tcp_idle: Duration::from_secs(cfg.sip.tcp_idle_secs),
            grace: Duration::from_secs(cfg.shutdown_grace_secs),
        },
        stop_rx,
    ));
    shutdown.await;
    let _ = stop_tx.send(true);
    driver.await.context("SIP driver task")?;
    reload.abort();
    if let Some(q) = queue_driver {
        q.abort();
    }
    // The calls are over: this node's places in the shared queue go now
    // rather than when its lease runs out.
    if let Some((s, task)) = shared_queue {
        task.abort();
        s.release().await;
    }
    // Let the last CDR/audit rows land (in the database, else the spool).
    records
        .shutdown(Duration::from_secs(cfg.shutdown_grace_secs.clamp(2, 30)))
        .await;
    ledger.close().await;
    // The admin listener answers "draining" until here (load balancers and
    // operators see the drain), then goes with the process.
    if let Some(a) = admin {
        a.abort();
    }
    tracing::info!("stopped");
    Ok(())
}

#[cfg(unix)]
async fn reload_on_sighup(path: std::path::PathBuf, services: Arc<Services>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        match load_dialplan(&path, &services.prompts) {
            Ok(plan) => {
                *services.plan.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(plan);
                tracing::info!(dialplan = %path.display(), "dialplan reloaded for new calls");
            }
            Err(e) => {
                tracing::error!(dialplan = %path.display(), error = %e, "dialplan reload rejected; keeping the old one")
            }
        }
    }
}

#[cfg(not(unix))]
async fn reload_on_sighup(_: std::path::PathBuf, _: Arc<Services>) {}

/// Resolves on SIGTERM or ctrl-c.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutdown requested");
}
