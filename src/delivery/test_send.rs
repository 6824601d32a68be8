//! `campaign test`: one campaign message, rendered for a real customer as the
//! sender would render it, sent to an address the marketer names through the
//! configured transport, so that it can be seen in a real inbox before the
//! audience sees it. Its subject starts with `[TEST]`; nothing is written to
//! the database, so the outbox, the reports and the frequency cap never see it.
//!
//! The unsubscribe link in it is a placeholder: a working one would take the
//! sample customer off the list when the tester clicks it.

use anyhow::Context;
use chrono::Utc;
use lettre::Address;
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection};

use super::compose::{self, Envelope};
use super::transport::{Outcome, Session, Transport};
use crate::campaign::Campaign;
use crate::campaign::plan::{self, Rules};
use crate::config::Loaded;
use crate::message::context;

/// What the test message's unsubscribe link points to.
pub const PLACEHOLDER_LINK: &str = "https://unsubscribe-link-made-when-sent.invalid/";
/// Put before the subject.
pub const SUBJECT_PREFIX: &str = "[TEST] ";

/// Who to render the message for, and how.
pub struct TestSend<'a> {
    pub to: &'a str,
    /// An external customer id; None: the first customer the campaign would reach now.
    pub customer: Option<&'a str>,
    /// None: the customer's own variant when one is planned for them, else the campaign's message.
    pub variant: Option<&'a str>,
}

/// A request that cannot be carried out as given (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum TestSendError {
    #[error("--to `{0}` is not an email address")]
    BadAddress(String),
    #[error("campaign `{campaign}` has no variant `{variant}` (its variants: [{names}])")]
    UnknownVariant { campaign: String, variant: String, names: String },
    #[error("no customer with id `{0}`")]
    UnknownCustomer(String),
    #[error("campaign `{0}` would reach nobody now: name a customer with --customer")]
    NobodyToRender(String),
}

impl crate::failure::Failure for TestSendError {
    fn fault(&self) -> crate::failure::Fault {
        crate::failure::Fault::Input
    }
}

/// What was sent.
#[derive(Debug)]
pub struct Sent {
    pub customer: String,
    pub variant: Option<String>,
    pub subject: String,
    /// The server's reply, or where the file went.
    pub reply: String,
}

pub async fn send(
    db: &DatabaseConnection,
    loaded: &Loaded,
    campaign: &Campaign,
    rules: &Rules,
    request: &TestSend<'_>,
) -> anyhow::Result<Sent> {
    let to: Address = request.to.parse().map_err(|_| TestSendError::BadAddress(request.to.to_owned()))?;
    if let Some(variant) = request.variant
        && !campaign.variants.iter().any(|v| v.name == variant)
    {
        let names: Vec<&str> = campaign.variants.iter().map(|v| v.name.as_str()).collect();
        let (campaign, variant, names) = (campaign.name.clone(), variant.to_owned(), names.join(", "));
        return Err(TestSendError::UnknownVariant { campaign, variant, names }.into());
    }
    let (customer_id, external_id, planned_variant) = match request.customer {
        Some(external) => (customer_by_external_id(db, external).await?, external.to_owned(), None),
        None => sample_customer(db, campaign, rules).await?,
    };
    let variant = request.variant.map(str::to_owned).or(planned_variant);
    let model_id = crate::model::registry::active(db).await?.map(|m| m.id);
    let variables =
        context::for_customer(db, customer_id, campaign.info(), variant.as_deref(), model_id, PLACEHOLDER_LINK)
            .await?
            .with_context(|| format!("customer `{external_id}` has no data to render with"))?;
    let message = campaign.message_for(variant.as_deref());
    let templates = message.templates().map_err(|e| anyhow::anyhow!("{} template problem(s)", e.len()))?;
    let mut rendered = compose::render(&templates, &variables).map_err(anyhow::Error::msg)?;
    rendered.subject = format!("{SUBJECT_PREFIX}{}", rendered.subject);
    let subject = rendered.subject.clone();
    let message_id =
        format!("<test.{}.patron@{}>", Utc::now().timestamp_micros(), loaded.settings.delivery.message_id_domain);
    let to_text = to.to_string();
    let envelope = Envelope {
        from: &message.from,
        reply_to: message.reply_to.as_deref(),
        to_name: None,
        to_email: &to_text,
        message_id: &message_id,
        unsubscribe: None,
        return_path: None,
    };
    let mut mail = compose::compose(&envelope, rendered).map_err(anyhow::Error::msg)?;
    if let Some(dkim) = &loaded.secrets.dkim {
        dkim.sign(&mut mail);
    }
    let transport = Transport::from_settings(loaded)?;
    let name = format!("test-{}-{}", campaign.name, Utc::now().timestamp_micros());
    match transport.send(&mut Session::default(), mail, &name).await {
        Outcome::Accepted(reply) => Ok(Sent { customer: external_id, variant, subject, reply }),
        other => anyhow::bail!("the test message was not accepted: {other:?}"),
    }
}

async fn customer_by_external_id(db: &DatabaseConnection, external: &str) -> anyhow::Result<i64> {
    let select =
        Query::select().column("id").from("customers").and_where(Expr::col("external_id").eq(external)).to_owned();
    let row = db.query_one(&select).await?.ok_or_else(|| TestSendError::UnknownCustomer(external.to_owned()))?;
    Ok(row.try_get_by_index(0)?)
}

/// The first customer the campaign would reach now, with their variant.
async fn sample_customer(
    db: &DatabaseConnection,
    campaign: &Campaign,
    rules: &Rules,
) -> anyhow::Result<(i64, String, Option<String>)> {
    let plan = plan::evaluate(db, campaign, rules, Utc::now()).await?;
    let chosen = plan.chosen.first().ok_or_else(|| TestSendError::NobodyToRender(campaign.name.clone()))?;
    let select = Query::select()
        .column("external_id")
        .from("customers")
        .and_where(Expr::col("id").eq(chosen.customer_id))
        .to_owned();
    let row = db.query_one(&select).await?.context("the sample customer disappeared")?;
    Ok((chosen.customer_id, row.try_get_by_index(0)?, chosen.variant.clone()))
}
