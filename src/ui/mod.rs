//! The read-only dashboard under `/ui/` (`[ui] enabled`): what the daemon
//! does now, the campaigns and their runs, the model, the customer base and
//! one customer, in the browser. Every figure comes from the module that
//! computes it for the CLI and the report files (`report`, `status`,
//! `model::report`, `privacy::dossier`); the pages only lay them out, with
//! the report charts inline as SVG.
//!
//! No script at all: the pages are HTML and SVG, and the headers forbid
//! script, framing and caching. Email addresses are masked unless
//! `ui.show_personal_data`; the mask runs over the whole page, so that no
//! section can forget it.

mod access;
mod cache;
mod campaigns;
mod customer;
mod customers;
mod model;
mod overview;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use sea_orm::DatabaseConnection;

pub use access::Access;

use crate::campaign::Catalog;
use crate::campaign::spec::Diagnostic;
use crate::config::Settings;
use crate::model::report::escape;

/// What the pages read of the daemon at each request: a reload may change it.
pub struct Sources {
    pub settings: Settings,
    pub catalog: Catalog,
    /// The errors of the campaign folder's files at the last (re)load.
    pub file_errors: Vec<Diagnostic>,
}

pub type View = Arc<dyn Fn() -> Sources + Send + Sync>;

#[derive(Clone)]
struct Ui {
    db: DatabaseConnection,
    view: View,
    access: Arc<Access>,
    customers: Arc<cache::Cached>,
    /// What is kept of each campaign, by campaign name.
    campaigns: Arc<std::sync::Mutex<HashMap<String, Arc<campaigns::Kept>>>>,
}

/// The dashboard's routes, behind `access`.
pub fn router(db: DatabaseConnection, view: View, access: Access) -> Router {
    let ui = Ui { db, view, access: Arc::new(access), customers: Arc::default(), campaigns: Arc::default() };
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(overview::page))
        .route("/ui/campaigns", get(campaigns::list))
        .route("/ui/campaigns/{name}", get(campaigns::page))
        .route("/ui/model", get(model::page))
        .route("/ui/customers", get(customers::page))
        .route("/ui/customers/lookup", get(customer::page))
        .layer(middleware::from_fn_with_state(ui.clone(), guard))
        .with_state(ui)
}

/// Refuses a request without a credential (when one is needed), and puts
/// the security headers on every answer.
async fn guard(State(ui): State<Ui>, request: Request, next: Next) -> Response {
    let mut response = if ui.access.allows(request.headers()) {
        next.run(request).await
    } else {
        let mut refused =
            (StatusCode::UNAUTHORIZED, "a credential from ui.credentials_file is needed\n").into_response();
        refused.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"patron\""));
        refused
    };
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

const SECURITY_HEADERS: [(header::HeaderName, &str); 5] = [
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; form-action 'self'; \
         frame-ancestors 'none'",
    ),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::CACHE_CONTROL, "no-store"),
];

/// A page's title and content, to be laid out.
struct Page {
    title: String,
    body: String,
}

/// Why a page could not be shown.
#[derive(Debug, thiserror::Error)]
enum PageError {
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl From<sea_orm::DbErr> for PageError {
    fn from(error: sea_orm::DbErr) -> Self {
        PageError::Failed(error.into())
    }
}

impl From<std::io::Error> for PageError {
    fn from(error: std::io::Error) -> Self {
        PageError::Failed(error.into())
    }
}

impl Ui {
    fn sources(&self) -> Sources {
        (self.view)()
    }

    /// What is kept of campaign `name`; what was kept of campaigns no longer
    /// in `catalog` is let go.
    fn kept_campaign(&self, name: &str, catalog: &Catalog) -> Arc<campaigns::Kept> {
        let mut kept = self.campaigns.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        kept.retain(|campaign, _| catalog.get(campaign).is_some());
        kept.entry(name.to_owned()).or_default().clone()
    }

    /// The page laid out, or the error's page.
    fn answer(&self, page: Result<Page, PageError>) -> Response {
        let show = self.sources().settings.ui.show_personal_data;
        match page {
            Ok(page) => Html(layout(&page.title, &page.body, show)).into_response(),
            Err(PageError::NotFound(what)) => {
                (StatusCode::NOT_FOUND, Html(layout("Not found", &format!("<p>{}</p>", escape(&what)), show)))
                    .into_response()
            }
            Err(PageError::Failed(error)) => {
                tracing::error!("dashboard page: {error:#}");
                let body = "<p>This page could not be made just now; the daemon's log says why.</p>";
                (StatusCode::SERVICE_UNAVAILABLE, Html(layout("Unavailable", body, show))).into_response()
            }
        }
    }
}

const STYLE: &str = "\
nav{display:flex;gap:1.2rem;align-items:center;border-bottom:1px solid #ccc;padding-bottom:.6rem;flex-wrap:wrap}
nav form{margin-left:auto}
figure svg{max-width:100%;height:auto;border:1px solid #ddd}
.bad{color:#b00020;font-weight:600}
";

/// The whole document: navigation, title, content; addresses masked unless `show_personal_data`.
fn layout(title: &str, body: &str, show_personal_data: bool) -> String {
    let title = escape(title);
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<link rel=\"icon\" href=\"data:,\">\n<title>{title} · patron</title>\n\
         <style>\n{}{STYLE}</style>\n</head>\n<body>\n<nav><a href=\"/ui/\">Overview</a> \
         <a href=\"/ui/campaigns\">Campaigns</a> <a href=\"/ui/model\">Model</a> \
         <a href=\"/ui/customers\">Customers</a>\
         <form method=\"get\" action=\"/ui/customers/lookup\"><label>Customer id \
         <input name=\"id\" required></label> <button>Look up</button></form></nav>\n\
         <h1>{title}</h1>\n{body}</body>\n</html>\n",
        crate::report::html::STYLE
    );
    if show_personal_data { html } else { mask_addresses(&html) }
}

/// Every email address in `text` as its first letter, dots and its domain: `j•••@example.com`.
fn mask_addresses(text: &str) -> String {
    // Any character but markup and spaces may be part of an address's local
    // part (internationalised addresses included), so that none slips through.
    let local = |c: char| !c.is_whitespace() && !c.is_control() && !"<>\"&;:,()[]{}=/\\@".contains(c);
    let domain = |c: char| c.is_ascii_alphanumeric() || ".-".contains(c);
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('@') {
        let before = &rest[..at];
        let start =
            before.rfind(|c: char| !local(c)).map_or(0, |i| i + before[i..].chars().next().map_or(1, char::len_utf8));
        let after = &rest[at + 1..];
        let end = after.find(|c: char| !domain(c)).unwrap_or(after.len());
        let host = after[..end].trim_end_matches('.');
        if start < at && host.contains('.') {
            out.push_str(&before[..start]);
            out.extend(before[start..].chars().next());
            out.push_str("•••@");
            out.push_str(host);
            rest = &after[host.len()..];
        } else {
            out.push_str(&rest[..=at]);
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// A time as the pages show it, or `never`.
fn when(at: Option<chrono::DateTime<chrono::Utc>>) -> String {
    at.map_or_else(|| "never".to_owned(), |t| t.format("%Y-%m-%d %H:%M UTC").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_masked_and_nothing_else_is_touched() {
        assert_eq!(
            mask_addresses("<td>jane.doe+x@example.com</td> to c1@shop.example. @media x@y"),
            "<td>j•••@example.com</td> to c•••@shop.example. @media x@y"
        );
        assert_eq!(mask_addresses("Shop &lt;shop@example.com&gt;"), "Shop &lt;s•••@example.com&gt;");
        assert_eq!(mask_addresses("<b>élodie@exemple.fr</b>"), "<b>é•••@exemple.fr</b>");
    }
}
