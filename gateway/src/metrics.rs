//! Every metric the gateway exports, in one registry. Labels are bounded:
//! routes, outcomes, SQLSTATE classes, reasons and configured engine nodes —
//! never query text, users or client addresses.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Where a statement was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// By the gateway itself (SET, SHOW, SELECT 1, transactions…).
    Local,
    /// By the gateway's catalog (pg_catalog / information_schema).
    Catalog,
    /// By an engine node.
    Engine,
}

impl Route {
    pub fn label(self) -> &'static str {
        match self {
            Route::Local => "local",
            Route::Catalog => "catalog",
            Route::Engine => "engine",
        }
    }
}

/// The gateway's Prometheus series, created once (`METRICS`) with their
/// bounded label sets pre-created.
pub struct Metrics {
    registry: Registry,
    pub client_connections: IntGaugeVec,
    pub connections_accepted: IntCounter,
    pub connections_rejected: IntCounterVec,
    pub audit_write_errors: IntCounter,
    pub auth_lockouts: IntCounter,
    pub reloads: IntCounterVec,
    pub throttle_untracked: IntCounter,
    pub auth_attempts: IntCounterVec,
    pub queries: IntCounterVec,
    pub query_duration: HistogramVec,
    pub query_first_row: HistogramVec,
    pub rows_sent: IntCounter,
    pub bytes_sent: IntCounter,
    pub streaming_queries: IntGauge,
    pub cancel_requests: IntCounterVec,
    pub engine_node_up: IntGaugeVec,
    pub engine_inflight: IntGaugeVec,
    pub admission_wait: Histogram,
    /// An engine batch's way from its node (its send time) to this gateway.
    pub batch_transit: Histogram,
    /// An engine batch's time in this gateway: received to its rows
    /// encoded for the client.
    pub batch_in_gateway: Histogram,
    pub admission_rejections: IntCounterVec,
    pub catalog_refreshes: IntCounter,
}

/// For the live path's microsecond steps.
const FINE_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 1.0,
];

const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0, 300.0,
];

fn name(n: &str) -> String {
    format!("velo_gateway_{n}")
}

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new();
        let gauge_vec = |n: &str, help: &str, labels: &[&str]| {
            let m = IntGaugeVec::new(Opts::new(name(n), help), labels).expect("metric");
            registry.register(Box::new(m.clone())).expect("register");
            m
        };
        let counter_vec = |n: &str, help: &str, labels: &[&str]| {
            let m = IntCounterVec::new(Opts::new(name(n), help), labels).expect("metric");
            registry.register(Box::new(m.clone())).expect("register");
            m
        };
        let counter = |n: &str, help: &str| {
            let m = IntCounter::new(name(n), help).expect("metric");
            registry.register(Box::new(m.clone())).expect("register");
            m
        };
        let histogram_vec = |n: &str, help: &str, labels: &[&str]| {
            let opts = HistogramOpts::new(name(n), help).buckets(LATENCY_BUCKETS.to_vec());
            let m = HistogramVec::new(opts, labels).expect("metric");
            registry.register(Box::new(m.clone())).expect("register");
            m
        };
        let build_info = gauge_vec("build_info", "Build information; always 1.", &["version"]);
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let streaming_queries = IntGauge::new(
            name("streaming_queries"),
            "Engine queries currently streaming results to clients.",
        )
        .expect("metric");
        registry
            .register(Box::new(streaming_queries.clone()))
            .expect("register");
        let histogram = |n: &str, help: &str| {
            let opts = HistogramOpts::new(name(n), help).buckets(FINE_BUCKETS.to_vec());
            let m = Histogram::with_opts(opts).expect("metric");
            registry.register(Box::new(m.clone())).expect("register");
            m
        };
        let batch_transit = histogram(
            "engine_batch_transit_seconds",
            "Time from an engine node sending a batch (its clock) to the gateway receiving it.",
        );
        let batch_in_gateway = histogram(
            "batch_in_gateway_seconds",
            "Time from receiving an engine batch to its first rows encoded for the client (written at once unless more is ready).",
        );
        let admission_wait = Histogram::with_opts(
            HistogramOpts::new(
                name("admission_wait_seconds"),
                "Time a query waited for an engine node slot.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )
        .expect("metric");
        registry
            .register(Box::new(admission_wait.clone()))
            .expect("register");
        Self {
            client_connections: gauge_vec(
                "client_connections",
                "Authenticated client connections by state (active: running a statement).",
                &["state"],
            ),
            connections_accepted: counter(
                "connections_accepted_total",
                "TCP connections accepted.",
            ),
            connections_rejected: counter_vec(
                "connections_rejected_total",
                "Connections refused before a session started, by reason.",
                &["reason"],
            ),
            audit_write_errors: counter(
                "audit_write_errors_total",
                "Audit log lines that could not be written.",
            ),
            auth_lockouts: counter(
                "auth_lockouts_total",
                "Client addresses and users locked out after too many failed logins.",
            ),
            reloads: counter_vec(
                "reloads_total",
                "Reloads of the users file and TLS certificates (SIGHUP), by outcome.",
                &["outcome"],
            ),
            throttle_untracked: counter(
                "throttle_untracked_total",
                "Connections or failures not rate-limited because the limiter's tables were full.",
            ),
            auth_attempts: counter_vec(
                "auth_attempts_total",
                "Authentication attempts by method and outcome.",
                &["method", "outcome"],
            ),
            queries: counter_vec(
                "queries_total",
                "Statements by route and SQLSTATE class (00 = success).",
                &["route", "sqlstate_class"],
            ),
            query_duration: histogram_vec(
                "query_duration_seconds",
                "Statement duration from receipt to completion, by route.",
                &["route"],
            ),
            query_first_row: histogram_vec(
                "query_first_row_seconds",
                "Time from starting a statement to its first row, by route.",
                &["route"],
            ),
            rows_sent: counter(
                "rows_sent_total",
                "Rows sent to clients (DataRow and COPY data).",
            ),
            bytes_sent: counter("bytes_sent_total", "Bytes written to client sockets."),
            streaming_queries,
            cancel_requests: counter_vec(
                "cancel_requests_total",
                "CancelRequests by outcome (matched a connection's key or not).",
                &["outcome"],
            ),
            engine_node_up: gauge_vec(
                "engine_node_up",
                "1 when the engine node passes its gRPC health check.",
                &["node"],
            ),
            engine_inflight: gauge_vec(
                "engine_inflight_requests",
                "Queries running on each engine node from this gateway.",
                &["node"],
            ),
            admission_wait,
            batch_transit,
            batch_in_gateway,
            admission_rejections: counter_vec(
                "admission_rejections_total",
                "Queries refused by admission control, by reason.",
                &["reason"],
            ),
            catalog_refreshes: counter(
                "catalog_refreshes_total",
                "Reloads of the relation catalog from engine nodes.",
            ),
            registry,
        }
    }

    /// Creates every series of the bounded label sets at zero, so rates and
    /// dashboards see them before the first event.
    fn with_known_series(self) -> Self {
        for state in ["idle", "active"] {
            self.client_connections.with_label_values(&[state]);
        }
        for reason in [
            "max_connections",
            "max_connections_per_user",
            "authentication_timeout",
            "draining",
            "protocol",
            "tls",
            "connection_rate",
            "auth_lockout",
            "rules",
        ] {
            self.connections_rejected.with_label_values(&[reason]);
        }
        for outcome in ["success", "failure"] {
            self.reloads.with_label_values(&[outcome]);
        }
        for method in ["trust", "scram-sha-256", "md5", "cert"] {
            for outcome in ["success", "failure"] {
                self.auth_attempts.with_label_values(&[method, outcome]);
            }
        }
        for route in [Route::Local, Route::Catalog, Route::Engine] {
            self.queries.with_label_values(&[route.label(), "00"]);
            self.query_duration.with_label_values(&[route.label()]);
            self.query_first_row.with_label_values(&[route.label()]);
        }
        for outcome in ["matched", "unmatched"] {
            self.cancel_requests.with_label_values(&[outcome]);
        }
        for reason in ["queue_full", "timeout"] {
            self.admission_rejections.with_label_values(&[reason]);
        }
        self
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding");
        String::from_utf8(out).expect("utf-8 metrics")
    }

    pub fn query_finished(&self, route: Route, elapsed: Duration, sqlstate: Option<&str>) {
        let class = sqlstate.map_or("00", |s| s.get(..2).unwrap_or("XX"));
        self.queries
            .with_label_values(&[route.label(), class])
            .inc();
        self.query_duration
            .with_label_values(&[route.label()])
            .observe(elapsed.as_secs_f64());
    }

    pub fn forget_node(&self, node: &str) {
        let _ = self.engine_node_up.remove_label_values(&[node]);
        let _ = self.engine_inflight.remove_label_values(&[node]);
    }
}

/// The process's metrics (one registry, rendered by the admin server).
pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics::new().with_known_series());

/// Counts a client connection in `client_connections{state}` while it lives.
pub struct ConnectionState {
    active: bool,
}

impl ConnectionState {
    pub fn idle() -> Self {
        METRICS
            .client_connections
            .with_label_values(&["idle"])
            .inc();
        Self { active: false }
    }

    pub fn set_active(&mut self, active: bool) {
        if active != self.active {
            let (from, to) = if active {
                ("idle", "active")
            } else {
                ("active", "idle")
            };
            METRICS.client_connections.with_label_values(&[from]).dec();
            METRICS.client_connections.with_label_values(&[to]).inc();
            self.active = active;
        }
    }
}

impl Drop for ConnectionState {
    fn drop(&mut self) {
        let state = if self.active { "active" } else { "idle" };
        METRICS.client_connections.with_label_values(&[state]).dec();
    }
}

/// Counts a streaming engine query while it lives.
pub struct StreamingQuery;

impl StreamingQuery {
    pub fn start() -> Self {
        METRICS.streaming_queries.inc();
        Self
    }
}

impl Drop for StreamingQuery {
    fn drop(&mut self) {
        METRICS.streaming_queries.dec();
    }
}
