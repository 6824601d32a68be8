//! `/ui/model`: the active model's report (`model report`: validation
//! metrics, gains, ROC and calibration charts), every model trained, and
//! when each was made active and how.

use axum::extract::State;
use axum::response::Response;
use sea_orm::DatabaseConnection;

use super::{Page, PageError, Ui, when};
use crate::model::report::{self, escape};
use crate::model::{registry, workflow};
use crate::report::html::{Charts, table};

pub(super) async fn page(State(ui): State<Ui>) -> Response {
    let models_dir = ui.sources().settings.models_dir;
    ui.answer(model_page(&ui.db, &models_dir).await)
}

async fn model_page(db: &DatabaseConnection, models_dir: &std::path::Path) -> Result<Page, PageError> {
    let active = match registry::active(db).await? {
        Some(_) => {
            let (row, file) = workflow::lookup(db, models_dir, None).await?;
            let body = report::of_file(&file, row.active, |input| report::report_body(input, &Charts::Inline))?;
            format!("<h2>Active model: {}</h2>\n{body}", escape(&file.name))
        }
        None => "<p>No active model: train one with <code>patron train</code>.</p>\n".to_owned(),
    };
    Ok(Page { title: "Model".into(), body: active + &history(db).await? + &promotions(db).await? })
}

/// Every registered model, newest first: when it was trained and registered, and how good.
async fn history(db: &DatabaseConnection) -> Result<String, PageError> {
    let mut models = registry::list(db).await?;
    models.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    let rows: Vec<Vec<String>> = models
        .iter()
        .map(|m| {
            vec![
                escape(&m.name),
                escape(&m.algorithm),
                when(Some(m.trained_at)),
                when(Some(m.created_at)),
                m.validation_auc.map_or("-".to_owned(), |a| format!("{a:.3}")),
                if m.active { "<b>active</b>".to_owned() } else { String::new() },
            ]
        })
        .collect();
    if rows.is_empty() {
        return Ok("<h2>Models trained</h2>\n<p>None yet.</p>\n".into());
    }
    Ok(format!(
        "<h2>Models trained</h2>\n<p>Newest first. A new model replaces the active one only if its validation AUC \
         is at least as good (or with <code>patron model activate</code>).</p>\n{}",
        table(&["Model", "Algorithm", "Trained", "Registered", "Validation AUC", ""], &rows)
    ))
}

/// Every activation recorded, newest first: when, which model, and how.
async fn promotions(db: &DatabaseConnection) -> Result<String, PageError> {
    let rows: Vec<Vec<String>> = registry::activations(db)
        .await?
        .iter()
        .map(|a| vec![when(Some(a.at)), escape(&a.model), escape(&a.how)])
        .collect();
    if rows.is_empty() {
        return Ok("<h2>Promotions</h2>\n<p>No model has been made active yet.</p>\n".into());
    }
    Ok(format!(
        "<h2>Promotions</h2>\n<p>Newest first: each time a model was made active, promoted after training as at \
         least as good as the active one (or with none active), forced (<code>patron train --force</code>) or by \
         hand (<code>patron model activate</code>).</p>\n{}",
        table(&["When", "Model", "How"], &rows)
    ))
}
