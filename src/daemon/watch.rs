//! Hot reload: a change to any file under `campaigns/` (a campaign or a
//! template) asks for a reload, after a short pause so that an editor's
//! save (write, rename, chmod) counts once.

use std::path::Path;
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Quiet time after the last change before reloading.
const SETTLE: Duration = Duration::from_millis(300);

/// Watches `folder`; the watcher stops when the returned value is dropped.
/// `None` (with a warning) if the folder cannot be watched: SIGHUP still works.
pub fn campaigns(folder: &Path, reload: mpsc::Sender<()>) -> Option<RecommendedWatcher> {
    let (changed_tx, mut changed_rx) = mpsc::unbounded_channel();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            let _ = changed_tx.send(());
        }
    });
    let mut watcher = match watcher {
        Ok(watcher) => watcher,
        Err(error) => {
            tracing::warn!(%error, "cannot watch the campaigns folder; reload with SIGHUP");
            return None;
        }
    };
    if let Err(error) = watcher.watch(folder, RecursiveMode::Recursive) {
        tracing::warn!(%error, folder = %folder.display(), "cannot watch the campaigns folder; reload with SIGHUP");
        return None;
    }
    tokio::spawn(async move {
        while changed_rx.recv().await.is_some() {
            // Let the burst of events from one save settle.
            while tokio::time::timeout(SETTLE, changed_rx.recv()).await.is_ok_and(|e| e.is_some()) {}
            if reload.send(()).await.is_err() {
                return;
            }
        }
    });
    Some(watcher)
}
