//! patron's HTTP server: the unsubscribe links in mail lead here, and the
//! daemon adds `/healthz`, `/readyz` and `/metrics` (`daemon::routes`).
//!
//! `GET /unsubscribe?token=...` shows the preference page (link scanners
//! fetch every link in a message, so a GET must change nothing): a button to
//! leave the message's topic, one to leave everything, and a checkbox per
//! topic. `POST /unsubscribe?token=...` takes those forms, and the one-click
//! request mail clients send (RFC 8058), which leaves the message's topic.
//!
//! `POST /webhooks/{provider}` takes the bounces, complaints and unsubscribes
//! mail providers report ([`crate::feedback::webhook`]).
//!
//! [`serve_on`] accepts connections itself rather than through `axum::serve`,
//! to bound what clients can hold: at most `http.max_connections` connections
//! (and at most half the open-file limit), each closed when its request
//! headers take longer than `http.header_timeout` or when it sits idle that
//! long. Further connections wait in the kernel's listen queue, unaccepted.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use sea_orm::DatabaseConnection;
use serde::Deserialize;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Semaphore;

use crate::config::{HttpSettings, SubscriptionSettings};
use crate::consent::{self, Origin, Source, page};
use crate::delivery::unsubscribe::{Signer, Token, TokenError};
use crate::feedback::webhook::{self, Refused, Webhooks};

#[derive(Clone)]
struct AppState {
    db: DatabaseConnection,
    keys: Keys,
    subscriptions: Subscriptions,
}

/// The key that checks unsubscribe links, read at each request: the daemon's
/// current one, which a reload (SIGHUP) may have changed.
pub type Keys = Arc<dyn Fn() -> Option<Signer> + Send + Sync>;

/// The subscription topics, read at each request like [`Keys`].
pub type Subscriptions = Arc<dyn Fn() -> SubscriptionSettings + Send + Sync>;

/// The address of the client that sent a request.
#[derive(Debug, Clone, Copy)]
struct ClientAddr(std::net::SocketAddr);

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// The unsubscribe routes, with one key and one set of topics for as long as they serve.
pub fn router(db: DatabaseConnection, signer: Signer, subscriptions: SubscriptionSettings) -> Router {
    unsubscribe_routes(db, Arc::new(move || Some(signer.clone())), Arc::new(move || subscriptions.clone()))
}

/// The unsubscribe routes, reading the key and the topics at each request.
pub fn unsubscribe_routes(db: DatabaseConnection, keys: Keys, subscriptions: Subscriptions) -> Router {
    Router::new().route("/unsubscribe", get(preference_page).post(unsubscribe)).with_state(AppState {
        db,
        keys,
        subscriptions,
    })
}

/// `POST /webhooks/{provider}`, for the providers configured in `[feedback]`.
pub fn webhook_router(webhooks: Arc<Webhooks>) -> Router {
    Router::new()
        .route("/webhooks/{provider}", post(receive_webhook))
        .layer(DefaultBodyLimit::max(webhook::BODY_LIMIT))
        .with_state(webhooks)
}

/// 200 once the events are recorded (or kept aside: providers retry on
/// errors), 401 for a request that is not the provider's, 400 for a body that
/// is not what it sends, 404 for a provider not configured, 503 when the
/// database fails (the provider retries).
async fn receive_webhook(
    State(webhooks): State<Arc<Webhooks>>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match webhooks.receive(&provider, &headers, &body).await {
        Ok(Ok(received)) => {
            tracing::info!(
                provider = %provider,
                recorded = received.recorded,
                repeated = received.repeated,
                aside = received.aside,
                ignored = received.ignored,
                "webhook events received"
            );
            (StatusCode::OK, "ok\n").into_response()
        }
        Ok(Err(refused)) => {
            let status = match refused {
                Refused::NotConfigured => StatusCode::NOT_FOUND,
                Refused::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
                Refused::Malformed(_) => StatusCode::BAD_REQUEST,
            };
            if status != StatusCode::NOT_FOUND {
                tracing::warn!(provider = %provider, "webhook request refused: {refused}");
            }
            (status, format!("{refused}\n")).into_response()
        }
        Err(error) => {
            tracing::error!(provider = %provider, "recording webhook events failed: {error}");
            (StatusCode::SERVICE_UNAVAILABLE, "please retry\n").into_response()
        }
    }
}

/// The open-file limit patron raises its own to, when the hard limit allows:
/// room for the default `http.max_connections` twice over.
const WANTED_OPEN_FILES: u64 = 65536;

/// The listen queue's length (the kernel caps it at net.core.somaxconn).
const LISTEN_BACKLOG: u32 = 1024;

/// How long the connections still open at shutdown may take to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What the server allows its clients (`http.max_connections`, `http.header_timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
}

impl Limits {
    pub fn of(settings: &HttpSettings) -> Self {
        Limits {
            max_connections: settings.max_connections,
            header_timeout: settings.header_timeout().to_std().unwrap_or(Duration::from_secs(10)),
        }
    }
}

/// A listening socket and the limits it is served with.
#[derive(Debug)]
pub struct Listener {
    tcp: TcpListener,
    limits: Limits,
}

/// Listens on `http.listen`, to serve with the `[http]` limits.
pub async fn bind(settings: &HttpSettings) -> anyhow::Result<Listener> {
    let listen = &settings.listen;
    let tcp = listen_on(listen).map_err(|e| anyhow::anyhow!("cannot listen on {listen} (http.listen): {e}"))?;
    Ok(Listener { tcp, limits: Limits::of(settings) })
}

/// Like `TcpListener::bind`, but with a listen queue of [`LISTEN_BACKLOG`]
/// rather than 128: the connections beyond the cap wait there.
fn listen_on(listen: &str) -> std::io::Result<TcpListener> {
    let address: std::net::SocketAddr =
        listen.parse().map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not an address and port"))?;
    let socket = if address.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves `router` until `shutdown` resolves, then lets the requests in
/// flight finish (for at most [`SHUTDOWN_GRACE`]).
pub async fn serve_on(
    listener: Listener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let Listener { tcp, limits } = listener;
    let open_files = raise_open_files();
    let cap = connection_cap(limits.max_connections, open_files);
    tracing::info!(
        address = %tcp.local_addr()?,
        max_connections = cap,
        open_files = %open_files.map_or_else(|| "unlimited".to_owned(), |n| n.to_string()),
        header_timeout = ?limits.header_timeout,
        "HTTP server listening"
    );
    if cap < limits.max_connections {
        tracing::info!(
            configured = limits.max_connections,
            max_connections = cap,
            "http.max_connections lowered to half the open-file limit; raise LimitNOFILE to allow more"
        );
    }

    let service = TowerToHyperService::new(router);
    let mut http = http1::Builder::new();
    // The header timeout runs from the moment the server waits for a request:
    // on a new connection, and again after each answer on a kept-alive one.
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    let permits = Arc::new(Semaphore::new(cap));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A permit first: beyond the cap, connections wait in the listen
        // queue, where they cost no file descriptor.
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = tcp.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(error).await;
                    continue;
                }
            },
        };
        let (stream, peer) = stream;
        let service = service.clone();
        let tagged = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ClientAddr(peer));
            hyper::service::Service::call(&service, request)
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), tagged));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!("HTTP connection closed: {error}");
            }
            drop(permit);
        });
    }
    drop(tcp);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!("HTTP requests still in flight after {SHUTDOWN_GRACE:?}; closing their connections");
    }
    Ok(())
}

/// Serves `router` on `http.listen` until `shutdown` resolves.
pub async fn serve(
    settings: &HttpSettings,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_on(bind(settings).await?, router, shutdown).await
}

/// A failed `accept`: a connection the client gave up on is skipped; anything
/// else (out of descriptors) is logged and waited out for a second, as hyper 0.14 did.
async fn accept_failed(error: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(error.kind(), ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused)
    {
        return;
    }
    tracing::error!("HTTP server: accepting a connection failed: {error}");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Raises the soft open-file limit to the hard one (at most
/// [`WANTED_OPEN_FILES`]) and returns the soft limit in effect, `None` for
/// unlimited. Under the systemd unit the limit is already set (`LimitNOFILE`)
/// and the call is not made; its system-call filter would refuse it.
fn raise_open_files() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let current = limit.current?;
    let wanted = limit.maximum.map_or(WANTED_OPEN_FILES, |hard| hard.min(WANTED_OPEN_FILES));
    if current >= wanted {
        return Some(current);
    }
    match setrlimit(Resource::Nofile, Rlimit { current: Some(wanted), maximum: limit.maximum }) {
        Ok(()) => {
            tracing::debug!(from = current, to = wanted, "raised the open-file limit");
            Some(wanted)
        }
        Err(error) => {
            tracing::warn!("cannot raise the open-file limit from {current} to {wanted}: {error}");
            Some(current)
        }
    }
}

/// The connection cap in effect: `configured`, but at most half the open
/// files (the rest is for the database, logs and mail), and at least 1.
fn connection_cap(configured: usize, open_files: Option<u64>) -> usize {
    let by_files = open_files.map_or(usize::MAX, |files| usize::try_from(files / 2).unwrap_or(usize::MAX));
    configured.min(by_files).clamp(1, Semaphore::MAX_PERMITS)
}

fn verified(state: &AppState, query: &TokenQuery) -> Result<Token, TokenError> {
    let signer = (state.keys)().ok_or(TokenError::NoKey)?;
    signer.verify(query.token.as_deref().unwrap_or_default())
}

fn refused(error: TokenError) -> Response {
    tracing::warn!(%error, "unsubscribe request refused");
    page(
        StatusCode::BAD_REQUEST,
        "This unsubscribe link is not valid",
        "<p>Please use the link from the message you received, in full.</p>",
    )
}

/// The preference page; it changes nothing.
async fn preference_page(State(state): State<AppState>, Query(query): Query<TokenQuery>) -> Response {
    let token = match verified(&state, &query) {
        Ok(token) => token,
        Err(error) => return refused(error),
    };
    let subscriptions = (state.subscriptions)();
    // Relative to the page itself, so that the forms work behind a proxy that serves it under a path prefix.
    let action = format!("?token={}", page::escape(query.token.as_deref().unwrap_or_default()));
    let shown = async {
        let Some(standing) = consent::standing(&state.db, token.customer_id).await? else { return Ok(None) };
        let words = page::words(customer_locale(&state.db, token.customer_id).await?.as_deref());
        let topic = token.topic.as_deref().filter(|t| subscriptions.topics.iter().any(|known| known == t));
        Ok::<_, sea_orm::DbErr>(Some(page::preferences(words, &subscriptions, &standing, topic, &action)))
    };
    match shown.await {
        Ok(Some(html)) => (StatusCode::OK, Html(html)).into_response(),
        // An erased customer: nothing is sent to them any more.
        Ok(None) => (StatusCode::OK, Html(page::unsubscribed(page::words(None), &subscriptions, None))).into_response(),
        Err(error) => unavailable(error),
    }
}

/// What a POST to the link asks for.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    /// RFC 8058's `List-Unsubscribe=One-Click`, or the page's "from this" button.
    LeaveTopic {
        one_click: bool,
    },
    LeaveAll,
    /// The checkboxes: the topics wanted.
    Save(Vec<String>),
}

impl Request {
    /// From the form body; an empty body (the button of pages before topics) leaves the topic.
    fn parse(body: &[u8]) -> Request {
        let fields: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
        let value = |key: &str| fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        match value("action") {
            Some("all") => Request::LeaveAll,
            Some("save") => {
                Request::Save(fields.iter().filter(|(k, _)| k == "topic").map(|(_, v)| v.clone()).collect())
            }
            _ => Request::LeaveTopic { one_click: value("List-Unsubscribe") == Some("One-Click") },
        }
    }
}

async fn unsubscribe(
    State(state): State<AppState>,
    Query(query): Query<TokenQuery>,
    client: Option<axum::Extension<ClientAddr>>,
    body: Bytes,
) -> Response {
    let token = match verified(&state, &query) {
        Ok(token) => token,
        Err(error) => return refused(error),
    };
    let subscriptions = (state.subscriptions)();
    let request = Request::parse(&body);
    let client = client.filter(|_| subscriptions.record_ip).map(|axum::Extension(ClientAddr(addr))| addr.ip());
    match record(&state.db, &token, &request, &subscriptions, client).await {
        Ok(html) => {
            tracing::info!(customer_id = token.customer_id, campaign = %token.campaign, ?request, "consent changed");
            (StatusCode::OK, Html(html)).into_response()
        }
        Err(error) => unavailable(error),
    }
}

/// Applies `request` in one transaction and returns the page that says so.
async fn record(
    db: &DatabaseConnection,
    token: &Token,
    request: &Request,
    subscriptions: &SubscriptionSettings,
    client: Option<std::net::IpAddr>,
) -> Result<String, sea_orm::DbErr> {
    let source = match request {
        Request::LeaveTopic { one_click: true } => Source::OneClick,
        _ => Source::PreferencePage,
    };
    let basis = match client {
        Some(ip) => format!("campaign {}, from {ip}", token.campaign),
        None => format!("campaign {}", token.campaign),
    };
    let origin = Origin::new(source, basis);
    let via = format!("campaign:{}", token.campaign);
    let words = page::words(customer_locale(db, token.customer_id).await?.as_deref());
    let topic = token.topic.as_deref().filter(|t| subscriptions.topics.iter().any(|known| known == t));
    let txn = crate::db::begin_write(db).await?;
    let Some((email, _)) = consent::customer_consent(&txn, token.customer_id).await? else {
        return Ok(page::unsubscribed(words, subscriptions, None));
    };
    let html = match (request, topic) {
        (Request::LeaveTopic { .. }, Some(topic)) => {
            consent::leave_topic(&txn, token.customer_id, topic, &origin).await?;
            page::unsubscribed(words, subscriptions, Some(topic))
        }
        (Request::LeaveTopic { .. } | Request::LeaveAll, _) => {
            consent::leave_all(&txn, &email, Some(token.customer_id), &via, &origin).await?;
            page::unsubscribed(words, subscriptions, None)
        }
        (Request::Save(wanted), _) => {
            let wanted: std::collections::BTreeSet<String> =
                wanted.iter().filter(|t| subscriptions.topics.contains(t)).cloned().collect();
            consent::set_preferences(&txn, token.customer_id, &wanted, &subscriptions.topics, &via, &origin).await?;
            if wanted.is_empty() {
                page::unsubscribed(words, subscriptions, None)
            } else {
                let wanted: Vec<&str> =
                    subscriptions.topics.iter().filter(|t| wanted.contains(*t)).map(String::as_str).collect();
                page::saved(words, subscriptions, &wanted)
            }
        }
    };
    txn.commit().await?;
    Ok(html)
}

/// The customer's `locale` attribute, if any.
async fn customer_locale(db: &DatabaseConnection, customer_id: i64) -> Result<Option<String>, sea_orm::DbErr> {
    use sea_orm::EntityTrait;
    let customer = crate::db::entities::customer::Entity::find_by_id(customer_id).one(db).await?;
    Ok(customer.and_then(|c| c.attributes.get("locale").and_then(|l| l.as_str()).map(str::to_owned)))
}

fn unavailable(error: sea_orm::DbErr) -> Response {
    tracing::error!(%error, "recording an unsubscribe failed");
    page(StatusCode::SERVICE_UNAVAILABLE, "Please try again", "<p>We could not record your request just now.</p>")
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body><h1>{title}</h1>{body}</body></html>"
    );
    (status, Html(html)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_post_body_says_what_the_person_asked_for() {
        assert_eq!(Request::parse(b"List-Unsubscribe=One-Click"), Request::LeaveTopic { one_click: true });
        assert_eq!(Request::parse(b""), Request::LeaveTopic { one_click: false });
        assert_eq!(Request::parse(b"action=topic"), Request::LeaveTopic { one_click: false });
        assert_eq!(Request::parse(b"action=all"), Request::LeaveAll);
        assert_eq!(
            Request::parse(b"topic=news&topic=off%65rs&action=save"),
            Request::Save(vec!["news".into(), "offers".into()])
        );
        assert_eq!(Request::parse(b"action=save"), Request::Save(vec![]));
    }

    #[test]
    fn the_connection_cap_leaves_half_the_open_files() {
        assert_eq!(connection_cap(4096, Some(65536)), 4096);
        assert_eq!(connection_cap(4096, Some(1024)), 512);
        assert_eq!(connection_cap(100, Some(1024)), 100);
        assert_eq!(connection_cap(4096, None), 4096);
        assert_eq!(connection_cap(4096, Some(1)), 1);
        assert_eq!(connection_cap(usize::MAX, None), Semaphore::MAX_PERMITS);
    }
}
