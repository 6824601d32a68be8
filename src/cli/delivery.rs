//! `patron send` and `patron serve`.

use clap::Args;
use tokio::sync::watch;

use crate::campaign::Catalog;
use crate::config::Loaded;
use crate::delivery::{self, Options, Sender, Transport};
use crate::{db, http};

#[derive(Debug, Args)]
pub struct SendArgs {
    /// Keep going until nothing is left to send: wait for retries that are
    /// due later, and for messages a stopped sender had claimed.
    #[arg(long)]
    pub until_empty: bool,
}

/// Sends what is due in the outbox; Ctrl-C stops after the messages in flight.
pub async fn send(loaded: &Loaded, args: &SendArgs) -> anyhow::Result<()> {
    let settings = &loaded.settings;
    db::open(settings).await?;
    let conn = db::connect_for_delivery(settings).await?;
    let (campaigns, report) = Catalog::load(&settings.campaigns_dir);
    for diagnostic in &report.diagnostics {
        tracing::warn!("{diagnostic}");
    }
    let transport = Transport::from_settings(loaded)?;
    let signer = delivery::signer(loaded.secrets.unsubscribe_secret.as_ref());
    let sender = Sender::new(conn, transport, campaigns, signer, Options::from_settings(loaded));
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("stopping: finishing the messages in flight");
            let _ = stop_tx.send(true);
        }
    });
    let report = sender.drain(args.until_empty, stop).await?;
    tracing::info!(sent = report.sent, retrying = report.retrying, failed = report.failed, "send finished");
    println!(
        "{} sent, {} to retry later, {} failed, {} suppressed",
        report.sent, report.retrying, report.failed, report.suppressed
    );
    Ok(())
}

/// Runs the HTTP server (unsubscribe links) until Ctrl-C.
pub async fn serve(loaded: &Loaded) -> anyhow::Result<()> {
    let settings = &loaded.settings;
    let signer = delivery::signer(loaded.secrets.unsubscribe_secret.as_ref()).ok_or_else(|| {
        anyhow::anyhow!(
            "the unsubscribe server needs the key that signed the links: set PATRON__UNSUBSCRIBE__SECRET \
             or unsubscribe.secret_file"
        )
    })?;
    let conn = db::open(settings).await?;
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    http::serve(&settings.http, http::router(conn, signer), shutdown).await
}
