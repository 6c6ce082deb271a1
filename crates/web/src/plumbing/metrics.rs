//! Request metrics for `/metrics`, kept with the Prometheus project's client: per route template
//! and method, a request counter by status class and a latency histogram. Labels come only from
//! the route table and a fixed set of methods, so no request can add a series.

use std::sync::LazyLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: String,
}

type Durations = Family<RouteLabels, Histogram, fn() -> Histogram>;

struct Http {
    requests: Family<RequestLabels, Counter>,
    duration: Durations,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to ~16 s.
    Histogram::new(exponential_buckets(0.000_5, 2.0, 16))
}

static HTTP: LazyLock<Http> = LazyLock::new(|| Http {
    requests: Family::default(),
    duration: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
});

/// A method as a label: the usual ones by name, anything else as `OTHER`.
fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method as M;
    match *m {
        M::GET => "GET",
        M::POST => "POST",
        M::PUT => "PUT",
        M::PATCH => "PATCH",
        M::DELETE => "DELETE",
        M::HEAD => "HEAD",
        M::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

fn status_class(s: axum::http::StatusCode) -> &'static str {
    match s.as_u16() / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

/// Middleware (inside routing, so the route template is known): counts and times the request.
pub(crate) async fn track(req: Request, next: Next) -> Response {
    let method = method_label(req.method());
    let route = req.extensions().get::<MatchedPath>().map_or("(unmatched)", MatchedPath::as_str).to_owned();
    let started = Instant::now();
    let res = next.run(req).await;
    let status = status_class(res.status());
    HTTP.requests.get_or_create(&RequestLabels { method, route: route.clone(), status }).inc();
    HTTP.duration.get_or_create(&RouteLabels { method, route }).observe(started.elapsed().as_secs_f64());
    res
}

/// Adds the request families to `registry` (they keep counting across scrapes).
pub(crate) fn register(registry: &mut Registry) {
    registry.register(
        "countersign_http_requests",
        "HTTP requests answered, by method, route template and status class.",
        HTTP.requests.clone(),
    );
    registry.register(
        "countersign_http_request_duration_seconds",
        "Time to answer HTTP requests, by method and route template.",
        HTTP.duration.clone(),
    );
}
