//! `/metrics` (Prometheus, OpenMetrics text), `/healthz`, and the middleware that counts
//! and logs every request. Routes are labelled by their pattern (`/repos/{repo}/{tail:.*}`),
//! not their path, so the number of series stays bounded.

use std::sync::Mutex;
use std::time::Instant;

use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::Shared;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RepoLabels {
    repo: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    bytes: Family<RouteLabels, Counter>,
    uploads: Family<ResultLabels, Counter>,
    publish_seconds: Histogram,
    repo_bytes: Family<RepoLabels, Gauge>,
    repo_packages: Family<RepoLabels, Gauge>,
    farm_tasks: Family<StateLabels, Gauge>,
    farm_claimable: Gauge,
    farm_agents: Gauge,
    claim_to_start: Histogram,
    from_copies: Counter,
}

impl Metrics {
    pub fn new() -> Metrics {
        let requests = Family::<RequestLabels, Counter>::default();
        let bytes = Family::<RouteLabels, Counter>::default();
        let uploads = Family::<ResultLabels, Counter>::default();
        let publish_seconds = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        let repo_bytes = Family::<RepoLabels, Gauge>::default();
        let repo_packages = Family::<RepoLabels, Gauge>::default();
        let farm_tasks = Family::<StateLabels, Gauge>::default();
        let farm_claimable = Gauge::default();
        let farm_agents = Gauge::default();
        let claim_to_start = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let from_copies = Counter::default();
        let mut r = Registry::with_prefix("packyard");
        r.register(
            "farm_tasks",
            "Build farm tasks by state, over every build",
            farm_tasks.clone(),
        );
        r.register(
            "farm_queue_depth",
            "Build farm tasks an agent could claim now",
            farm_claimable.clone(),
        );
        r.register(
            "farm_agents",
            "Build farm agents seen asking for work in the last minute",
            farm_agents.clone(),
        );
        r.register(
            "farm_claim_to_start_seconds",
            "Time from a task's claim to its agent reporting it started",
            claim_to_start.clone(),
        );
        r.register(
            "http_requests",
            "HTTP requests by route, method and status",
            requests.clone(),
        );
        r.register(
            "http_response_bytes",
            "Response body bytes sent, by route",
            bytes.clone(),
        );
        r.register(
            "uploads",
            "Package uploads by result (added, replaced, unchanged, or the error code)",
            uploads.clone(),
        );
        r.register(
            "publish_duration_seconds",
            "Time from a complete upload to its publish being durable",
            publish_seconds.clone(),
        );
        r.register(
            "repository_bytes",
            "Bytes of package files in each repository",
            repo_bytes.clone(),
        );
        r.register(
            "repository_packages",
            "Package files in each repository",
            repo_packages.clone(),
        );
        r.register(
            "files_from_copies",
            "Repository files answered from copies kept in memory over a shared store",
            from_copies.clone(),
        );
        Metrics {
            registry: Mutex::new(r),
            requests,
            bytes,
            uploads,
            publish_seconds,
            repo_bytes,
            repo_packages,
            farm_tasks,
            farm_claimable,
            farm_agents,
            claim_to_start,
            from_copies,
        }
    }

    /// A file was answered from a copy kept over a shared store (`server::copies`).
    pub fn from_copy(&self) {
        self.from_copies.inc();
    }

    /// A task was reported started `seconds` after its claim.
    pub fn started(&self, seconds: f64) {
        self.claim_to_start.observe(seconds);
    }

    pub fn upload(&self, result: &str, seconds: Option<f64>) {
        self.uploads
            .get_or_create(&ResultLabels {
                result: result.to_string(),
            })
            .inc();
        if let Some(s) = seconds {
            self.publish_seconds.observe(s);
        }
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

pub async fn healthz(state: Shared) -> HttpResponse {
    match state.repos.store.repos() {
        Ok(_) => HttpResponse::Ok().content_type("text/plain").body("ok\n"),
        Err(e) => HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body(format!("store: {e}\n")),
    }
}

pub async fn scrape(state: Shared) -> HttpResponse {
    // Repository sizes are read from the store at scrape time: always current, and
    // nothing to keep in step on publish.
    if let Ok(list) = state.repos.list() {
        // A deleted repository's series go with it.
        state.metrics.repo_bytes.clear();
        state.metrics.repo_packages.clear();
        for r in list {
            let l = RepoLabels {
                repo: r.record.name.clone(),
            };
            state
                .metrics
                .repo_bytes
                .get_or_create(&l)
                .set(r.bytes as i64);
            state
                .metrics
                .repo_packages
                .get_or_create(&l)
                .set(r.packages as i64);
        }
    }
    // The farm's queue, read at scrape time too.
    if let Ok(counts) = state.repos.store.task_counts() {
        for (s, n) in counts {
            state
                .metrics
                .farm_tasks
                .get_or_create(&StateLabels {
                    state: s.as_str().into(),
                })
                .set(n as i64);
        }
    }
    if let Ok(n) = state.repos.store.claimable() {
        state.metrics.farm_claimable.set(n as i64);
    }
    let recent = crate::farm::now_ms() - 60_000;
    let agents = state.farm.agents();
    state
        .metrics
        .farm_agents
        .set(agents.iter().filter(|a| a.last_seen >= recent).count() as i64);
    let mut out = String::new();
    let registry = state
        .metrics
        .registry
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
        return HttpResponse::InternalServerError().finish();
    }
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(out)
}

/// Counts and logs each request.
pub async fn account(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let start = Instant::now();
    let state = req.app_data::<Shared>().cloned();
    let method = req.method().to_string();
    let path = req.path().to_string();
    let res = next.call(req).await?;
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".into());
    let status = res.status().as_u16();
    let bytes = match res.response().body().size() {
        // A HEAD answer says how long the body would be, and sends none.
        _ if method == "HEAD" => 0,
        BodySize::Sized(n) => n,
        _ => 0,
    };
    if let Some(state) = state {
        state
            .metrics
            .requests
            .get_or_create(&RequestLabels {
                route: route.clone(),
                method: method.clone(),
                status,
            })
            .inc();
        state
            .metrics
            .bytes
            .get_or_create(&RouteLabels { route })
            .inc_by(bytes);
    }
    tracing::info!(
        %method,
        %path,
        status,
        bytes,
        ms = start.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    Ok(res)
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/metrics", web::get().to(scrape));
}
