//! Gateway configuration: one model, read from an optional TOML file with
//! these keys, each overridable by a `VELO_GATEWAY_<KEY>` environment
//! variable or a `--<key>` flag (see `main.rs`), validated before start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::pg::server_info::TIMEOUT_SETTINGS;
use crate::pg::units::{parse_duration, TimeUnit};

/// Everything the gateway is told at start (see the module doc).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Addresses to accept PostgreSQL clients on.
    pub listen: Vec<String>,
    /// Address of the admin HTTP server (/metrics, /healthz, /readyz).
    pub admin_listen: String,
    /// Engine nodes (`host:port`); with no nodes and no `engine_dns` the
    /// gateway runs the embedded demo engine.
    pub engines: Vec<String>,
    /// `host:port` whose DNS records are the engine nodes (e.g. a
    /// Kubernetes headless Service), re-resolved periodically.
    pub engine_dns: Option<String>,
    pub engine_dns_refresh_secs: u64,
    /// Users file with SCRAM verifiers / MD5 hashes; enables password auth.
    pub users_file: Option<PathBuf>,
    /// `trust` or `password`; default: password when a users file is given.
    pub auth: Option<String>,
    /// Users who see every user's running queries (`SHOW JOBS`); others
    /// see their own only.
    pub admin_users: Vec<String>,
    /// Client connections at once, counted from accept (before login).
    pub max_connections: usize,
    /// Connections one user may hold at once (0: no limit of its own).
    pub max_connections_per_user: usize,
    /// Engine queries (running statements, open portals and cursors) one
    /// user may hold at once across its sessions (0: no limit of its own).
    pub max_queries_per_user: usize,
    /// Engine queries one session may hold open at once.
    pub max_queries_per_session: usize,
    /// The largest protocol message after login, in bytes; a larger one
    /// is skipped and answered 54000.
    pub max_message_size: usize,
    /// Time to finish login (PostgreSQL's authentication_timeout; a bare
    /// number is seconds).
    pub authentication_timeout: String,
    /// Session defaults, as PostgreSQL spells them (a bare number is
    /// milliseconds; "0" is off). Sessions may SET them.
    pub statement_timeout: String,
    pub idle_in_transaction_session_timeout: String,
    pub idle_session_timeout: String,
    pub max_queries_per_node: usize,
    /// An engine node that sends nothing (no row, no heartbeat; nodes send
    /// one every second) for this long is taken as failed: its queries
    /// end with 58030 and it gets no new ones until a health check passes.
    pub engine_heartbeat_timeout: String,
    /// How often each engine node's health is checked; a node out of
    /// rotation (a failed stream, a missed heartbeat) returns at the first
    /// check it passes.
    pub engine_health_interval: String,
    pub queue_limit: usize,
    pub queue_timeout_ms: u64,
    /// On SIGTERM: stop accepting, report not ready, and wait this long for
    /// sessions to end before exiting.
    pub drain_timeout_secs: u64,
    /// `text` (human-readable) or `json` (one object per line).
    pub log_format: String,
    /// Connection attempts per second from one client address (IPv6: one
    /// /64); more are refused with 53300. 0: no limit.
    pub connection_rate_per_address: u32,
    /// Failed logins from one address within `auth_lockout` after which
    /// the address is refused (28000) for `auth_lockout`. 0: no limit.
    pub auth_failures_per_address: u32,
    /// The same per user, from any address. 0 (the default): no limit,
    /// since anyone could lock a user out.
    pub auth_failures_per_user: u32,
    pub auth_lockout: String,
    /// PEM certificate chain and private key; both enable TLS (SSLRequest
    /// answered 'S', direct TLS starts accepted).
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// `disabled` (no TLS even with a certificate), `allowed` (the
    /// default), or `required` (plain connections are refused after their
    /// startup packet, 28000).
    pub tls: String,
    /// CA (PEM) that client certificates are verified against; clients may
    /// then present one (rules with `method = "cert"` require it).
    pub tls_client_ca_file: Option<PathBuf>,
    /// Who may log in how (see `auth::rules`), first match wins; none: one
    /// rule for everyone from `auth`.
    pub rules: Vec<Rule>,
    /// A file holding the bearer token /metrics requires (trailing
    /// whitespace ignored); none: /metrics is open to whoever reaches
    /// `admin_listen`.
    pub metrics_token_file: Option<PathBuf>,
    /// Engine nodes serve TLS: verify their certificates against this CA
    /// (PEM), as `engine_tls_server_name` (default: each node's host).
    pub engine_tls_ca_file: Option<PathBuf>,
    pub engine_tls_server_name: Option<String>,
    /// A file holding the token engine nodes require (their --token-file).
    pub engine_token_file: Option<PathBuf>,
    /// Audit log destination: a file (appended to, created 0600) or
    /// "stdout"; none by default. Apart from the operational log.
    pub audit_log: Option<String>,
    /// Audit lines per statement: "none", "summary" (who, route, node,
    /// duration, rows, SQLSTATE) or "text" (the summary and the SQL text;
    /// parameter values never).
    pub audit_statements: String,
    /// Events per second of the embedded demo generator.
    pub demo_rate: u32,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: vec!["127.0.0.1:5433".into()],
            admin_listen: "127.0.0.1:9433".into(),
            engines: Vec::new(),
            engine_dns: None,
            engine_dns_refresh_secs: 10,
            users_file: None,
            auth: None,
            admin_users: Vec::new(),
            max_connections: 1000,
            max_connections_per_user: 0,
            max_queries_per_user: 0,
            max_queries_per_session: 64,
            max_message_size: 8 << 20,
            authentication_timeout: "60s".into(),
            engine_heartbeat_timeout: "5s".into(),
            engine_health_interval: "2s".into(),
            statement_timeout: "0".into(),
            idle_in_transaction_session_timeout: "0".into(),
            idle_session_timeout: "0".into(),
            max_queries_per_node: 5_000,
            queue_limit: 256,
            queue_timeout_ms: 10_000,
            drain_timeout_secs: 30,
            log_format: "text".into(),
            connection_rate_per_address: 0,
            auth_failures_per_address: 10,
            auth_failures_per_user: 0,
            auth_lockout: "60s".into(),
            tls_cert_file: None,
            tls_key_file: None,
            tls: "allowed".into(),
            tls_client_ca_file: None,
            rules: Vec::new(),
            metrics_token_file: None,
            engine_tls_ca_file: None,
            engine_tls_server_name: None,
            engine_token_file: None,
            audit_log: None,
            audit_statements: "none".into(),
            demo_rate: 1000,
        }
    }
}

impl GatewayConfig {
    pub fn load(path: &std::path::Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("parsing {}: {e}", path.display()))
    }

    /// The effective configuration as TOML (`--print-config`).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("config serializes")
    }

    /// Checks everything that can be checked before binding sockets, with
    /// messages that name the setting.
    pub fn validate(&self) -> anyhow::Result<()> {
        use anyhow::{bail, ensure};
        ensure!(!self.listen.is_empty(), "listen: at least one address");
        for a in self.listen.iter().chain([&self.admin_listen]) {
            ensure!(
                a.parse::<SocketAddr>().is_ok()
                    || a.rsplit_once(':')
                        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()),
                "{a:?} is not a host:port address"
            );
        }
        if let Some(dns) = &self.engine_dns {
            ensure!(
                self.engines.is_empty(),
                "engines and engine_dns are alternatives: set one"
            );
            ensure!(
                dns.rsplit_once(':')
                    .is_some_and(|(_, p)| p.parse::<u16>().is_ok()),
                "engine_dns: {dns:?} must be host:port"
            );
            ensure!(
                self.engine_dns_refresh_secs > 0,
                "engine_dns_refresh_secs must be > 0"
            );
        }
        match self.auth.as_deref() {
            None | Some("trust") | Some("password") => {}
            Some(other) => bail!("auth: {other:?} is not one of trust, password"),
        }
        if self.auth.as_deref() == Some("password") {
            ensure!(
                self.users_file.is_some(),
                "auth = \"password\" needs users_file"
            );
        }
        match self.log_format.as_str() {
            "text" | "json" => {}
            other => bail!("log_format: {other:?} is not one of text, json"),
        }
        ensure!(
            self.tls_cert_file.is_some() == self.tls_key_file.is_some(),
            "tls_cert_file and tls_key_file go together"
        );
        match self.tls.as_str() {
            "disabled" | "allowed" => {}
            "required" => ensure!(
                self.tls_cert_file.is_some(),
                "tls = \"required\" needs tls_cert_file and tls_key_file"
            ),
            other => bail!("tls: {other:?} is not one of disabled, allowed, required"),
        }
        ensure!(
            !self.rules.iter().any(|r| r.method == Method::Cert)
                || self.tls_client_ca_file.is_some(),
            "rules with method = \"cert\" need tls_client_ca_file"
        );
        ensure!(
            self.tls_client_ca_file.is_none() || self.tls_cert_file.is_some(),
            "tls_client_ca_file needs tls_cert_file and tls_key_file"
        );
        for file in [
            &self.users_file,
            &self.tls_cert_file,
            &self.tls_key_file,
            &self.tls_client_ca_file,
            &self.metrics_token_file,
            &self.engine_tls_ca_file,
            &self.engine_token_file,
        ]
        .into_iter()
        .flatten()
        {
            ensure!(file.is_file(), "{} does not exist", file.display());
        }
        ensure!(
            crate::audit::StatementDetail::parse(&self.audit_statements).is_some(),
            "audit_statements: {:?} is not one of none, summary, text",
            self.audit_statements
        );
        ensure!(
            self.audit_statements == "none" || self.audit_log.is_some(),
            "audit_statements needs audit_log"
        );
        ensure!(
            self.engine_tls_server_name.is_none() || self.engine_tls_ca_file.is_some(),
            "engine_tls_server_name needs engine_tls_ca_file"
        );
        ensure!(self.max_connections > 0, "max_connections must be > 0");
        ensure!(
            self.max_queries_per_session > 0,
            "max_queries_per_session must be > 0"
        );
        ensure!(
            self.max_message_size >= 1024,
            "max_message_size must be at least 1024 bytes"
        );
        ensure!(
            self.authentication_timeout().is_some_and(|d| !d.is_zero()),
            "authentication_timeout: {:?} is not a positive duration (e.g. 60s)",
            self.authentication_timeout
        );
        ensure!(
            self.auth_lockout().is_some_and(|d| !d.is_zero()),
            "auth_lockout: {:?} is not a positive duration (e.g. 60s)",
            self.auth_lockout
        );
        ensure!(
            self.engine_heartbeat_timeout()
                .is_some_and(|d| !d.is_zero()),
            "engine_heartbeat_timeout: {:?} is not a positive duration (e.g. 5s)",
            self.engine_heartbeat_timeout
        );
        ensure!(
            self.engine_health_interval().is_some_and(|d| !d.is_zero()),
            "engine_health_interval: {:?} is not a positive duration (e.g. 2s)",
            self.engine_health_interval
        );
        for (name, value) in self.session_defaults() {
            ensure!(
                parse_duration(value, TimeUnit::Milliseconds).is_some(),
                "{name}: {value:?} is not a duration (e.g. 5s, 250ms, 0)"
            );
        }
        ensure!(
            self.max_queries_per_node > 0,
            "max_queries_per_node must be > 0"
        );
        Ok(())
    }

    /// Password authentication: asked for, or implied by a users file.
    pub fn requires_password(&self) -> bool {
        match self.auth.as_deref() {
            Some("trust") => false,
            Some(_) => true,
            None => self.users_file.is_some(),
        }
    }

    pub fn authentication_timeout(&self) -> Option<Duration> {
        parse_duration(&self.authentication_timeout, TimeUnit::Seconds)
    }

    /// The /metrics bearer token, read from `metrics_token_file`.
    pub fn metrics_token(&self) -> anyhow::Result<Option<String>> {
        read_token(&self.metrics_token_file, "metrics_token_file")
    }

    /// The engine token, read from `engine_token_file`.
    pub fn engine_token(&self) -> anyhow::Result<Option<String>> {
        read_token(&self.engine_token_file, "engine_token_file")
    }

    pub fn auth_lockout(&self) -> Option<Duration> {
        parse_duration(&self.auth_lockout, TimeUnit::Seconds)
    }

    pub fn engine_heartbeat_timeout(&self) -> Option<Duration> {
        parse_duration(&self.engine_heartbeat_timeout, TimeUnit::Seconds)
    }

    pub fn engine_health_interval(&self) -> Option<Duration> {
        parse_duration(&self.engine_health_interval, TimeUnit::Seconds)
    }

    /// Session settings every session starts from (RESET returns to them).
    pub fn session_defaults(&self) -> [(&'static str, &str); 3] {
        let [statement, idle_in_transaction, idle_session] = TIMEOUT_SETTINGS;
        [
            (statement, &self.statement_timeout),
            (
                idle_in_transaction,
                &self.idle_in_transaction_session_timeout,
            ),
            (idle_session, &self.idle_session_timeout),
        ]
    }

    /// No engine nodes configured: run the embedded demo engine.
    pub fn embedded_engine(&self) -> bool {
        self.engines.is_empty() && self.engine_dns.is_none()
    }
}

fn read_token(file: &Option<PathBuf>, setting: &str) -> anyhow::Result<Option<String>> {
    file.as_deref()
        .map(velo_proto::read_token_file)
        .transpose()
        .map_err(|e| anyhow::anyhow!("{setting}: {e}"))
}

// Login rules as the configuration file spells them; `auth::rules` checks
// and matches them.

/// How a matching client authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// No password; refused for clients off loopback unless the rule says
    /// `force_trust`.
    Trust,
    /// SCRAM-SHA-256, or MD5 for users the users file stores with an MD5
    /// hash (`md5` is accepted as another name, as PostgreSQL's `md5`
    /// method also runs SCRAM for SCRAM-stored users).
    #[serde(alias = "md5")]
    Password,
    /// SCRAM-SHA-256 only: MD5-stored users cannot log in.
    Scram,
    /// A client certificate verified against `tls_client_ca_file` whose
    /// common name is the user name; no password.
    Cert,
    Reject,
}

/// Whether a rule applies to TLS connections, plain ones, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsCondition {
    #[default]
    Any,
    /// Like pg_hba.conf's `hostssl`.
    Required,
    /// Like `hostnossl`.
    Forbidden,
}

/// One rule as the configuration file spells it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// User names; empty: every user.
    #[serde(default)]
    pub users: Vec<String>,
    /// Client addresses: `10.0.0.0/8`, `::1`, `192.0.2.7`; empty: every
    /// address.
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub tls: TlsCondition,
    pub method: Method,
    /// Lets `trust` apply to clients off loopback too.
    #[serde(default)]
    pub force_trust: bool,
}
