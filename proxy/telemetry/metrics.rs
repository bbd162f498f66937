//! Prometheus metrics. Handles are looked up once, so the relay only pays an
//! atomic add per read.

use std::net::SocketAddr;

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};
use metrics_exporter_prometheus::PrometheusBuilder;

/// Starts the HTTP exporter on `addr`. Call before building [`Metrics`].
pub fn install_exporter(addr: SocketAddr) -> Result<(), String> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .map_err(|e| e.to_string())
}

pub struct Metrics {
    pub client_bytes: Counter,
    pub server_bytes: Counter,
    pub queries: Counter,
    pub connections: Counter,
    pub active: Gauge,
    pub upstream_connect: Histogram,
}

impl Metrics {
    pub fn new() -> Self {
        Metrics {
            client_bytes: counter!("ddlgate_bytes_total", "direction" => "client_to_server"),
            server_bytes: counter!("ddlgate_bytes_total", "direction" => "server_to_client"),
            queries: counter!("ddlgate_queries_total"),
            connections: counter!("ddlgate_client_connections_total"),
            active: gauge!("ddlgate_client_connections_active"),
            upstream_connect: histogram!("ddlgate_upstream_connect_seconds"),
        }
    }

    /// Counts a session that ended on an error, by kind.
    pub fn error(&self, kind: &'static str) {
        counter!("ddlgate_errors_total", "kind" => kind).increment(1);
    }

    pub fn cancel(&self, result: &'static str) {
        counter!("ddlgate_cancel_requests_total", "result" => result).increment(1);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
