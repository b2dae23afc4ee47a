//! A private PostgreSQL 15 cluster for the outage tests: `initdb` into a
//! temp dir, `pg_ctl` on a free loopback port, run as the `postgres` user
//! (the tests run as root). The tests stop and start *this* server, never
//! the shared one on 5432. Dropping it stops it (immediate mode).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// The newest installed server's binaries (15 on Debian 12).
fn bin() -> String {
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    versions.sort_unstable();
    let v = versions.last().copied().unwrap_or(15);
    format!("/usr/lib/postgresql/{v}/bin")
}

pub struct PrivatePg {
    dir: tempfile::TempDir,
    pub port: u16,
    running: bool,
}

fn as_postgres(args: &[&str]) -> std::process::Output {
    let is_root = unsafe { libc::geteuid() } == 0;
    let mut cmd = if is_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]);
        c.args(args);
        c
    } else {
        let mut c = Command::new(args[0]);
        c.args(&args[1..]);
        c
    };
    cmd.output().expect("run a PostgreSQL tool")
}

fn free_tcp_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl PrivatePg {
    /// initdb + start.
    pub fn start() -> PrivatePg {
        let dir = tempfile::Builder::new()
            .prefix("ivr-pg-")
            .tempdir()
            .expect("tempdir");
        let status = Command::new("chown")
            .arg("postgres:postgres")
            .arg(dir.path())
            .status()
            .expect("chown");
        assert!(status.success(), "chown the PostgreSQL temp dir");
        let data = dir.path().join("data");
        let out = as_postgres(&[
            &format!("{}/initdb", bin()),
            "-D",
            data.to_str().unwrap(),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut pg = PrivatePg {
            dir,
            port: free_tcp_port(),
            running: false,
        };
        pg.up();
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server (waits until it accepts connections).
    pub fn up(&mut self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("pg.log");
        let out = as_postgres(&[
            &format!("{}/pg_ctl", bin()),
            "-D",
            self.data().to_str().unwrap(),
            "-o",
            &opts,
            "-l",
            log.to_str().unwrap(),
            "-w",
            "-t",
            "60",
            "start",
        ]);
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        self.running = true;
    }

    /// Stops the server (fast mode: connections are cut).
    pub fn down(&mut self) {
        let out = as_postgres(&[
            &format!("{}/pg_ctl", bin()),
            "-D",
            self.data().to_str().unwrap(),
            "-m",
            "fast",
            "-w",
            "-t",
            "60",
            "stop",
        ]);
        assert!(
            out.status.success(),
            "pg_ctl stop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.running = false;
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        if self.running {
            let _ = as_postgres(&[
                &format!("{}/pg_ctl", bin()),
                "-D",
                self.data().to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "-t",
                "30",
                "stop",
            ]);
        }
    }
}
