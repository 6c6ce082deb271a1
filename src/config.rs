//! Command line and environment configuration. Every setting has a flag and an environment
//! variable; bad values are refused with the setting's name. Secrets are never printed.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ipnet::IpNet;
use secrecy::SecretString;

#[derive(Parser)]
#[command(name = "countersign", version, about = "Security-first multi-tenant approvals platform")]
pub struct Cli {
    #[command(flatten)]
    pub db: DbArgs,
    /// Log output format.
    #[arg(long, env = "COUNTERSIGN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Args)]
pub struct DbArgs {
    /// Owner/administrator connection used for migrations. Without it, a private PostgreSQL
    /// cluster is started under --data-dir.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_parser = secret, global = true)]
    pub database_url: Option<SecretString>,
    /// Connection for the application role (default: DATABASE_URL with user countersign_app).
    #[arg(long, env = "COUNTERSIGN_APP_DATABASE_URL", hide_env_values = true, value_parser = secret, global = true)]
    pub app_database_url: Option<SecretString>,
    /// Password to set on the countersign_app role and to connect with.
    #[arg(long, env = "COUNTERSIGN_APP_DB_PASSWORD", hide_env_values = true, value_parser = secret, global = true)]
    pub app_db_password: Option<SecretString>,
    /// Where the embedded cluster and local state live.
    #[arg(long, env = "COUNTERSIGN_DATA_DIR", default_value = "./data", global = true)]
    pub data_dir: PathBuf,
    /// Size of the application connection pool (1-1000).
    #[arg(long, env = "COUNTERSIGN_DB_MAX_CONNECTIONS", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000), global = true)]
    pub db_max_connections: u32,
}

#[derive(Args, Clone)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "COUNTERSIGN_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Comma-separated CIDRs of reverse proxies whose X-Forwarded-For is believed.
    #[arg(long, env = "COUNTERSIGN_TRUSTED_PROXIES", value_delimiter = ',', value_parser = cidr)]
    pub trusted_proxies: Vec<IpNet>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the HTTP server.
    Serve(ServeArgs),
    /// Seed demonstration organisations, then serve.
    Demo(ServeArgs),
    /// Apply database migrations and exit.
    Migrate,
}

fn secret(s: &str) -> Result<SecretString, String> {
    if s.trim().is_empty() { Err("must not be empty".into()) } else { Ok(SecretString::from(s.to_owned())) }
}

fn cidr(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("'{s}' is not an IP address or CIDR (e.g. 10.0.0.0/8, ::1/128)"))
}

impl DbArgs {
    pub fn settings(&self) -> store::DbSettings {
        store::DbSettings {
            database_url: self.database_url.clone(),
            app_database_url: self.app_database_url.clone(),
            app_password: self.app_db_password.clone(),
            data_dir: self.data_dir.clone(),
            max_connections: self.db_max_connections,
        }
    }
}
