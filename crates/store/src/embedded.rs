//! A private PostgreSQL cluster under the data directory, started from the installed server
//! binaries when no `DATABASE_URL` is given.
//!
//! It listens on a Unix socket inside `<data>/pg/run` only (no TCP), trusts local connections
//! (the socket directory is 0700), and runs as an unprivileged user when we are root, because
//! `initdb` and `postgres` refuse to run as root.

use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

use crate::StoreError;

const SUPERUSER: &str = "countersign";
pub const DATABASE: &str = "countersign";

#[derive(Debug)]
pub struct EmbeddedPg {
    bin_dir: PathBuf,
    cluster_dir: PathBuf,
    socket_dir: PathBuf,
    port: u16,
    run_as: Option<Account>,
    /// Whether this process started the server (and so stops it on shutdown).
    started_here: bool,
}

#[derive(Debug, Clone, Copy)]
struct Account {
    uid: u32,
    gid: u32,
}

fn err(msg: impl Into<String>) -> StoreError {
    StoreError::Embedded(msg.into())
}

/// Finds the PostgreSQL server binaries: `COUNTERSIGN_PG_BIN`, then `pg_config --bindir`, then the
/// newest `/usr/lib/postgresql/<major>/bin`.
pub fn find_binaries() -> Result<PathBuf, StoreError> {
    let has_server =
        |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file() && d.join("postgres").is_file();
    if let Some(dir) = std::env::var_os("COUNTERSIGN_PG_BIN") {
        let dir = PathBuf::from(dir);
        return if has_server(&dir) {
            Ok(dir)
        } else {
            Err(err(format!("COUNTERSIGN_PG_BIN={} has no initdb/pg_ctl/postgres", dir.display())))
        };
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_server(&dir) {
            return Ok(dir);
        }
    }
    let mut candidates: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has_server(&bin).then_some((major, bin))
        })
        .collect();
    candidates.sort();
    candidates.pop().map(|(_, p)| p).ok_or_else(|| {
        err("no PostgreSQL server binaries found (looked at COUNTERSIGN_PG_BIN, pg_config --bindir, \
             /usr/lib/postgresql/*/bin). Install them (Debian/Ubuntu: `apt-get install postgresql`) \
             or set DATABASE_URL to an existing server")
    })
}

/// The effective uid of this process, read from /proc (no libc calls needed).
fn current_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

fn lookup_account(name: &str) -> Option<Account> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[0] == name).then(|| Some(Account { uid: f[2].parse().ok()?, gid: f[3].parse().ok()? }))?
    })
}

/// When root: `COUNTERSIGN_PG_USER`, else `postgres`, else `nobody`.
fn unprivileged_account() -> Result<Option<Account>, StoreError> {
    if current_uid() != Some(0) {
        return Ok(None);
    }
    let wanted = std::env::var("COUNTERSIGN_PG_USER").ok();
    let names: Vec<&str> = match wanted.as_deref() {
        Some(n) => vec![n],
        None => vec!["postgres", "nobody"],
    };
    for n in &names {
        if let Some(a) = lookup_account(n).filter(|a| a.uid != 0) {
            return Ok(Some(a));
        }
    }
    Err(err(format!(
        "running as root, and no unprivileged account to run PostgreSQL as (tried {}); \
         create one or set COUNTERSIGN_PG_USER",
        names.join(", ")
    )))
}

impl EmbeddedPg {
    /// Initialises (first time) and starts the cluster under `data_dir/pg`, or reuses a running one.
    pub async fn start(data_dir: &Path) -> Result<Self, StoreError> {
        let bin_dir = find_binaries()?;
        let run_as = unprivileged_account()?;
        std::fs::create_dir_all(data_dir).map_err(|e| err(format!("cannot create {}: {e}", data_dir.display())))?;
        let data_dir =
            data_dir.canonicalize().map_err(|e| err(format!("cannot resolve {}: {e}", data_dir.display())))?;
        let root = data_dir.join("pg");
        let cluster_dir = root.join("cluster");
        let socket_dir = root.join("run");
        for d in [&root, &socket_dir] {
            std::fs::create_dir_all(d).map_err(|e| err(format!("cannot create {}: {e}", d.display())))?;
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| err(format!("cannot restrict {}: {e}", d.display())))?;
            if let Some(a) = run_as {
                chown(d, Some(a.uid), Some(a.gid)).map_err(|e| err(format!("cannot chown {}: {e}", d.display())))?;
            }
        }
        let mut pg = Self { bin_dir, cluster_dir, socket_dir, port: 0, run_as, started_here: false };
        if !pg.cluster_dir.join("PG_VERSION").is_file() {
            pg.init()?;
        }
        pg.port = pg.read_port()?;
        let owner_file = root.join(OWNER_FILE);
        if pg.is_running() {
            // Running already: another live countersign process owns it (a server while this is
            // a CLI command, say), or it was left behind by one that died (`kill -9`). The first
            // stays that process's to stop; the second is adopted, so it is not left running for
            // ever once this process exits.
            match Owner::read(&owner_file) {
                Some(owner) if owner.is_alive() => tracing::info!(
                    dir = %pg.cluster_dir.display(),
                    owner = owner.pid,
                    "reusing embedded PostgreSQL started by a running process; it stays running when this one exits"
                ),
                previous => {
                    pg.started_here = true;
                    Owner::me().write(&owner_file)?;
                    tracing::info!(
                        dir = %pg.cluster_dir.display(),
                        previous_owner = previous.map(|o| o.pid),
                        "adopted embedded PostgreSQL left running by a process that is gone; this process stops it on shutdown"
                    );
                }
            }
        } else {
            // A stale pid file from a crash would make pg_ctl refuse; postgres itself handles it.
            let log = root.join("postgres.log");
            let out = pg
                .run("pg_ctl", &["start", "-w", "-t", "60", "-D", path_str(&pg.cluster_dir)?, "-l", path_str(&log)?])?;
            if !out.status.success() {
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
                return Err(err(format!(
                    "pg_ctl start failed: {}{}\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr),
                    tail.join("\n")
                )));
            }
            pg.started_here = true;
            Owner::me().write(&owner_file)?;
            tracing::info!(dir = %pg.cluster_dir.display(), port = pg.port, "started embedded PostgreSQL");
        }
        pg.ensure_database().await?;
        Ok(pg)
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<Output, StoreError> {
        let mut cmd = Command::new(self.bin_dir.join(tool));
        cmd.args(args).current_dir(&self.socket_dir).env_remove("PGDATA").env("LC_ALL", "C.UTF-8");
        if let Some(a) = self.run_as {
            cmd.uid(a.uid).gid(a.gid);
        }
        cmd.output().map_err(|e| err(format!("cannot run {tool}: {e}")))
    }

    fn init(&self) -> Result<(), StoreError> {
        tracing::info!(dir = %self.cluster_dir.display(), "initialising embedded PostgreSQL cluster");
        let out = self.run(
            "initdb",
            &[
                "-D",
                path_str(&self.cluster_dir)?,
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-instructions",
            ],
        )?;
        if !out.status.success() {
            return Err(err(format!(
                "initdb failed (is every directory above {} reachable by the server's user?): {}",
                self.cluster_dir.display(),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let port = free_port()?;
        let conf = format!(
            "\n# countersign embedded settings\nlisten_addresses = ''\nunix_socket_directories = '{}'\nport = {port}\n",
            self.socket_dir.display().to_string().replace('\'', "''")
        );
        let conf_path = self.cluster_dir.join("postgresql.conf");
        let mut existing =
            std::fs::read_to_string(&conf_path).map_err(|e| err(format!("read postgresql.conf: {e}")))?;
        existing.push_str(&conf);
        std::fs::write(&conf_path, existing).map_err(|e| err(format!("write postgresql.conf: {e}")))?;
        Ok(())
    }

    fn read_port(&self) -> Result<u16, StoreError> {
        let conf = std::fs::read_to_string(self.cluster_dir.join("postgresql.conf"))
            .map_err(|e| err(format!("read postgresql.conf: {e}")))?;
        conf.lines()
            .rev()
            .find_map(|l| l.trim().strip_prefix("port = ").and_then(|p| p.trim().parse().ok()))
            .ok_or_else(|| err("postgresql.conf has no port setting from countersign"))
    }

    fn is_running(&self) -> bool {
        path_str(&self.cluster_dir)
            .ok()
            .and_then(|d| self.run("pg_ctl", &["status", "-D", d]).ok())
            .is_some_and(|o| o.status.success())
    }

    /// Superuser connection options (Unix socket).
    #[must_use]
    pub fn connect_options(&self) -> PgConnectOptions {
        PgConnectOptions::new().socket(&self.socket_dir).port(self.port).username(SUPERUSER).database(DATABASE)
    }

    async fn ensure_database(&self) -> Result<(), StoreError> {
        let mut conn = self.connect_options().database("postgres").connect().await?;
        let exists: bool = sqlx::query_scalar("select exists(select 1 from pg_database where datname = $1)")
            .bind(DATABASE)
            .fetch_one(&mut conn)
            .await?;
        if !exists {
            sqlx::raw_sql("create database countersign").execute(&mut conn).await?;
        }
        conn.close().await?;
        Ok(())
    }

    /// Stops the server if this process started it (fast shutdown: open sessions are ended).
    pub fn stop(&self) -> Result<(), StoreError> {
        if !self.started_here {
            return Ok(());
        }
        let out = self.run("pg_ctl", &["stop", "-w", "-m", "fast", "-D", path_str(&self.cluster_dir)?])?;
        if out.status.success() {
            tracing::info!("stopped embedded PostgreSQL");
            Ok(())
        } else {
            Err(err(format!("pg_ctl stop failed: {}", String::from_utf8_lossy(&out.stderr))))
        }
    }

    #[must_use]
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    #[must_use]
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// The file (under `<data>/pg`) naming the process that owns the running cluster.
const OWNER_FILE: &str = "owner";

/// A process, named by its pid and its start time (so a recycled pid is not mistaken for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Owner {
    pid: u32,
    started: u64,
}

impl Owner {
    fn me() -> Self {
        let pid = std::process::id();
        Self { pid, started: start_time(pid).unwrap_or(0) }
    }

    fn read(path: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(path).ok()?;
        let (pid, started) = text.trim().split_once(' ')?;
        Some(Self { pid: pid.parse().ok()?, started: started.parse().ok()? })
    }

    fn write(self, path: &Path) -> Result<(), StoreError> {
        std::fs::write(path, format!("{} {}\n", self.pid, self.started))
            .map_err(|e| err(format!("cannot write {}: {e}", path.display())))
    }

    /// The same process is still running.
    fn is_alive(self) -> bool {
        start_time(self.pid).is_some_and(|s| s == self.started)
    }
}

/// A process's start time (clock ticks after boot, field 22 of `/proc/<pid>/stat`).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after its end.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

fn path_str(p: &Path) -> Result<&str, StoreError> {
    p.to_str().ok_or_else(|| err(format!("path is not UTF-8: {}", p.display())))
}

fn free_port() -> Result<u16, StoreError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| err(format!("no free port: {e}")))?;
    Ok(l.local_addr().map_err(|e| err(e.to_string()))?.port())
}
