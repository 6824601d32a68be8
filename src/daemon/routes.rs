//! The daemon's HTTP routes: health, readiness and metrics, beside the
//! unsubscribe routes, which read the key and the topics a reload may change,
//! and the dashboard.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::Daemon;
use crate::http::{self, Subscriptions};

/// Health, readiness, metrics and (with a secret) unsubscribe.
pub fn router(daemon: Arc<Daemon>) -> Router {
    let routes = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(daemon.clone());
    let db = daemon.db.clone();
    let topics_of = daemon.clone();
    let subscriptions: Subscriptions = Arc::new(move || topics_of.loaded().settings.subscriptions);
    routes.merge(http::unsubscribe_routes(db, Arc::new(move || super::signer(&daemon)), subscriptions))
}

/// Started, not begun to stop, its sender running, and the database reachable.
async fn readyz(State(daemon): State<Arc<Daemon>>) -> Response {
    let reachable = daemon.db.ping().await.is_ok();
    let ready = daemon.ready.load(Ordering::SeqCst) && daemon.sender_up.load(Ordering::SeqCst);
    if ready && reachable {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn metrics(State(daemon): State<Arc<Daemon>>) -> Response {
    match daemon.metrics.render(&daemon.db, &daemon.loaded().settings.feeds).await {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response(),
        Err(error) => {
            tracing::error!("metrics: {error:#}");
            (StatusCode::SERVICE_UNAVAILABLE, "metrics unavailable\n").into_response()
        }
    }
}

/// The dashboard (`[ui] enabled`), reading the daemon's current settings and campaigns.
pub fn dashboard(daemon: Arc<Daemon>, access: crate::ui::Access) -> Router {
    let db = daemon.db.clone();
    let view: crate::ui::View = Arc::new(move || crate::ui::Sources {
        settings: daemon.loaded().settings,
        catalog: daemon.catalog(),
        file_errors: daemon.campaign_errors.read().expect("not poisoned").clone(),
    });
    crate::ui::router(db, view, access)
}
