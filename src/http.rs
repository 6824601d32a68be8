//! patron's HTTP server: the unsubscribe links in mail lead here, and the
//! daemon adds `/healthz`, `/readyz` and `/metrics`.
//!
//! `GET /unsubscribe?token=...` shows a page with a button (link scanners
//! fetch every link in a message, so a GET must not unsubscribe);
//! `POST /unsubscribe?token=...` unsubscribes at once: that is the button,
//! and the one-click request mail clients send (RFC 8058).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use sea_orm::DatabaseConnection;
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::daemon::{self, Daemon};

use crate::delivery::unsubscribe::{self, Signer, Token, TokenError};

#[derive(Clone)]
struct AppState {
    db: DatabaseConnection,
    signer: Signer,
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// The routes, ready to serve.
pub fn router(db: DatabaseConnection, signer: Signer) -> Router {
    Router::new().route("/unsubscribe", get(confirm_page).post(unsubscribe)).with_state(AppState { db, signer })
}

/// The daemon's routes: health, readiness, metrics and (with a secret) unsubscribe.
pub fn daemon_router(daemon: Arc<Daemon>) -> Router {
    let routes = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(daemon.clone());
    match daemon::signer(&daemon) {
        Some(signer) => routes.merge(router(daemon::database(&daemon).clone(), signer)),
        None => routes,
    }
}

async fn readyz(State(daemon): State<Arc<Daemon>>) -> Response {
    let reachable = daemon::database(&daemon).ping().await.is_ok();
    if daemon::is_ready(&daemon) && reachable {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn metrics(State(daemon): State<Arc<Daemon>>) -> Response {
    match daemon::metrics(&daemon).render(daemon::database(&daemon)).await {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response(),
        Err(error) => {
            tracing::error!("metrics: {error:#}");
            (StatusCode::SERVICE_UNAVAILABLE, "metrics unavailable\n").into_response()
        }
    }
}

/// Listens on `listen` (an address and port, from `http.listen`).
pub async fn bind(listen: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(listen).await.map_err(|e| anyhow::anyhow!("cannot listen on {listen} (http.listen): {e}"))
}

/// Serves `router` until `shutdown` resolves.
pub async fn serve_on(
    listener: TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    tracing::info!(address = %listener.local_addr()?, "HTTP server listening");
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await?;
    Ok(())
}

/// Serves `router` on `listen` until `shutdown` resolves.
pub async fn serve(
    listen: &str,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_on(bind(listen).await?, router, shutdown).await
}

fn verified(state: &AppState, query: &TokenQuery) -> Result<Token, TokenError> {
    state.signer.verify(query.token.as_deref().unwrap_or_default())
}

fn refused(error: TokenError) -> Response {
    tracing::warn!(%error, "unsubscribe request refused");
    page(
        StatusCode::BAD_REQUEST,
        "This unsubscribe link is not valid",
        "<p>Please use the link from the message you received, in full.</p>",
    )
}

async fn confirm_page(State(state): State<AppState>, Query(query): Query<TokenQuery>) -> Response {
    if let Err(error) = verified(&state, &query) {
        return refused(error);
    }
    let token = html_escape(query.token.as_deref().unwrap_or_default());
    let body = format!(
        "<p>Click the button to stop receiving these emails.</p>\
         <form method=\"post\" action=\"/unsubscribe?token={token}\">\
         <button type=\"submit\">Unsubscribe</button></form>"
    );
    page(StatusCode::OK, "Unsubscribe", &body)
}

async fn unsubscribe(State(state): State<AppState>, Query(query): Query<TokenQuery>) -> Response {
    let token = match verified(&state, &query) {
        Ok(token) => token,
        Err(error) => return refused(error),
    };
    match unsubscribe::record(&state.db, &token).await {
        Ok(_) => {
            tracing::info!(customer_id = token.customer_id, campaign = %token.campaign, "unsubscribed");
            page(StatusCode::OK, "You are unsubscribed", "<p>You will not receive these emails any more.</p>")
        }
        Err(error) => {
            tracing::error!(%error, "recording an unsubscribe failed");
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Please try again",
                "<p>We could not record your request just now.</p>",
            )
        }
    }
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body><h1>{title}</h1>{body}</body></html>"
    );
    (status, Html(html)).into_response()
}

/// Escapes text for an HTML attribute (the token is base64url and a dot,
/// but the page should never trust that).
fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;").replace('>', "&gt;")
}
