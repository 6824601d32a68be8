//! `patron run --demo`: a first run that shows everything at once. On an
//! empty database it generates a few thousand synthetic customers whose
//! history ends today, imports them, trains a model and scores everyone,
//! then plans one run of every enabled campaign, so that mail appears in
//! `delivery.file_dir` within the first minute. Without an unsubscribe
//! secret it makes one in `data_dir`, kept for the next runs.

use std::path::Path;

use anyhow::Context;
use chrono::{Duration, Timelike, Utc};
use rand::RngCore;
use sea_orm::{DatabaseConnection, EntityTrait, PaginatorTrait};
use secrecy::SecretString;

use crate::campaign::Catalog;
use crate::campaign::plan::{self, Outcome, Rules};
use crate::config::{Loaded, Settings};
use crate::db::entities::customer;
use crate::import::{self, Kind};
use crate::model::train::TrainRequest;
use crate::{generate, model, scoring};

/// Synthetic customers for the demo: enough buyers for a model, quick to score.
const DEMO_CUSTOMERS: u64 = 5000;

/// Makes sure the demo has a secret and, on an empty database, its data and
/// model; true when the data was made now (a first run).
pub async fn prepare(db: &DatabaseConnection, loaded: &mut Loaded) -> anyhow::Result<bool> {
    if loaded.secrets.unsubscribe_secret.is_none() {
        let path = loaded.settings.data_dir.join("unsubscribe-secret");
        loaded.secrets.unsubscribe_secret = Some(demo_secret(&path)?);
        tracing::info!(file = %path.display(), "demo: unsubscribe links are signed with a key kept in this file");
    }
    if customer::Entity::find().count(db).await? > 0 {
        tracing::info!("demo: the database already has customers; using them");
        return Ok(false);
    }
    let settings = &loaded.settings;
    let folder = settings.data_dir.join("demo-data");
    let today = Utc::now().date_naive();
    let spec = generate::Spec {
        customers: DEMO_CUSTOMERS,
        seed: 1,
        start: today - Duration::days(730),
        end: today - Duration::days(1),
    };
    generate::generate(&spec, &folder).context("generating the demo data")?;
    for (kind, file) in
        [(Kind::Customers, "customers.csv"), (Kind::Orders, "orders.csv"), (Kind::Interactions, "interactions.csv")]
    {
        let options = import::Options {
            skip_invalid: false,
            rejects_path: None,
            batch_size: settings.import.batch_size,
            max_reported_errors: settings.import.max_reported_errors,
            address_key: None,
        };
        let report = import::import(db, kind, &folder.join(file), &options).await?;
        crate::feed::state::record_load(db, "import", kind.table(), report.rows, Utc::now()).await?;
        tracing::info!(rows = report.rows, file, "demo: synthetic data imported");
    }
    let now = Utc::now();
    let request = TrainRequest { as_of: now, horizon_days: 91, algorithm: model::Algorithm::Logistic };
    let trained = model::workflow::train_and_promote(db, &settings.models_dir, &request, false, now).await?;
    tracing::info!(model = %trained.model.name, auc = trained.new_auc, "demo: model trained");
    let scored =
        scoring::score(db, &settings.models_dir, scoring::valuation(&settings.lifetime_value), now, None, now).await?;
    tracing::info!(customers = scored.customers, "demo: customers scored");
    // As of a month ago and then now, as the nightly recompute would have:
    // members who crossed a threshold since then are upgraded today.
    let rules = crate::loyalty::engine::Rules::from(&settings.loyalty);
    crate::loyalty::recompute(db, &rules, now - Duration::days(30)).await?;
    let loyalty = crate::loyalty::recompute(db, &rules, now).await?;
    tracing::info!(members = loyalty.members, upgrades = loyalty.upgrades, "demo: loyalty programme computed");
    Ok(true)
}

/// Plans one run of every enabled campaign now (the scheduler then keeps
/// to their schedules).
pub async fn plan_every_campaign(
    db: &DatabaseConnection,
    catalog: &Catalog,
    settings: &Settings,
) -> anyhow::Result<()> {
    let rules = Rules::from(settings);
    let now = Utc::now().with_nanosecond(0).expect("0 is a valid nanosecond");
    for campaign in catalog.campaigns().filter(|c| c.enabled) {
        if let Outcome::Planned { plan, .. } = plan::plan_run(db, campaign, &rules, now).await? {
            tracing::info!(campaign = %campaign.name, messages = plan.messages(), control = plan.control(), "demo: run planned");
        }
    }
    Ok(())
}

/// Tells the newcomer where to look.
pub fn explain(settings: &Settings) {
    tracing::info!(
        mail = %settings.delivery.file_dir.display(),
        unsubscribe = %settings.http.public_url,
        "demo: messages are written as .eml files into the mail folder; `patron status` counts them; \
         Ctrl-C stops"
    );
}

/// The demo's signing key: read from `path`, or made and saved there (mode 0600).
fn demo_secret(path: &Path) -> anyhow::Result<SecretString> {
    if let Ok(text) = std::fs::read_to_string(path) {
        return Ok(SecretString::from(text.trim().to_owned()));
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let key: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    std::io::Write::write_all(&mut file, key.as_bytes())?;
    Ok(SecretString::from(key))
}
