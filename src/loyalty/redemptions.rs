//! `patron import redemptions FILE`: points spent, as ledger entries. The
//! file is checked whole first: an unknown customer, a bad value or a
//! redemption above the balance refuses the file, and nothing is written.
//! A redemption already imported (same `redemption_id`) is skipped.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use chrono::Utc;
use sea_orm::sea_query::{OnConflict, Query};
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, TransactionTrait};

use crate::db::entities::{customer, loyalty_ledger};
use crate::import::fields;

/// A refused file: every problem, with its line.
#[derive(Debug, thiserror::Error)]
#[error("{file}: nothing was imported:\n{}", problems.join("\n"))]
pub struct Refused {
    pub file: String,
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub rows: usize,
    pub new: usize,
    pub already_imported: usize,
}

struct Row {
    line: u64,
    redemption_id: String,
    customer: String,
    points: i64,
    at: chrono::DateTime<Utc>,
    reason: Option<String>,
}

/// Reads, checks and imports the file in one transaction.
pub async fn import(db: &DatabaseConnection, path: &Path) -> anyhow::Result<Imported> {
    let file = path.display().to_string();
    let refuse = |problems: Vec<String>| Refused { file: file.clone(), problems };
    let (rows, mut problems) = read(path)?;
    let external_ids: Vec<String> = rows.iter().map(|r| r.customer.clone()).collect();
    let customers: HashMap<String, i64> = customer::Entity::find()
        .filter(customer::Column::ExternalId.is_in(external_ids))
        .all(db)
        .await?
        .into_iter()
        .map(|c| (c.external_id, c.id))
        .collect();
    let keys: Vec<String> = rows.iter().map(|r| format!("redemption:{}", r.redemption_id)).collect();
    let known: HashSet<String> = loyalty_ledger::Entity::find()
        .filter(loyalty_ledger::Column::SourceKey.is_in(keys))
        .all(db)
        .await?
        .into_iter()
        .map(|e| e.source_key)
        .collect();
    let ids: Vec<i64> = customers.values().copied().collect();
    let mut balances = super::balances(db, &ids).await?;
    let mut new = Vec::new();
    for row in &rows {
        let Some(customer_id) = customers.get(&row.customer) else {
            problems.push(format!("line {}: customer_id `{}` is not a known customer", row.line, row.customer));
            continue;
        };
        let key = format!("redemption:{}", row.redemption_id);
        if known.contains(&key) {
            continue;
        }
        let balance = balances.entry(*customer_id).or_insert(0);
        if row.points > *balance {
            problems.push(format!(
                "line {}: redemption `{}` of {} points is above customer `{}`'s balance of {} points",
                row.line, row.redemption_id, row.points, row.customer, balance
            ));
            continue;
        }
        *balance -= row.points;
        new.push((*customer_id, key, row));
    }
    if !problems.is_empty() {
        return Err(refuse(problems).into());
    }
    let txn = db.begin().await?;
    for (customer_id, key, row) in &new {
        let insert = Query::insert()
            .into_table("loyalty_ledger")
            .columns(["customer_id", "entry_kind", "points", "source_key", "reason", "occurred_at", "created_at"])
            .values_panic([
                (*customer_id).into(),
                "redeem".into(),
                (-row.points).into(),
                key.clone().into(),
                row.reason.clone().into(),
                row.at.into(),
                Utc::now().into(),
            ])
            .on_conflict(OnConflict::column("source_key").do_nothing().to_owned())
            .to_owned();
        txn.execute(&insert).await?;
        super::add_to_balance(&txn, *customer_id, -row.points).await?;
    }
    txn.commit().await?;
    Ok(Imported { rows: rows.len(), new: new.len(), already_imported: rows.len() - new.len() })
}

/// The rows that parse, and a problem for each one that does not.
fn read(path: &Path) -> anyhow::Result<(Vec<Row>, Vec<String>)> {
    let mut reader = csv::Reader::from_path(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let headers = reader.headers()?.clone();
    let column = |name: &str| headers.iter().position(|h| h.trim() == name);
    let (Some(id), Some(customer), Some(points), Some(at)) =
        (column("redemption_id"), column("customer_id"), column("points"), column("redeemed_at"))
    else {
        let problem = "the header must have redemption_id,customer_id,points,redeemed_at[,reason]".to_owned();
        return Err(Refused { file: path.display().to_string(), problems: vec![problem] }.into());
    };
    let reason = column("reason");
    let (mut rows, mut problems) = (Vec::new(), Vec::new());
    for (index, record) in reader.records().enumerate() {
        let line = index as u64 + 2;
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                problems.push(format!("line {line}: {error}"));
                continue;
            }
        };
        let cell = |i: usize| record.get(i).unwrap_or_default().trim();
        let parsed_points = cell(points).parse::<i64>().ok().filter(|p| *p > 0);
        let parsed_at = fields::timestamp(cell(at));
        match (parsed_points, parsed_at) {
            (Some(points), Ok(at)) if !cell(id).is_empty() && !cell(customer).is_empty() => rows.push(Row {
                line,
                redemption_id: cell(id).to_owned(),
                customer: cell(customer).to_owned(),
                points,
                at,
                reason: reason.map(|i| cell(i).to_owned()).filter(|r| !r.is_empty()),
            }),
            (None, _) => problems.push(format!("line {line}: points `{}` is not a whole number above 0", cell(points))),
            (_, Err(problem)) => problems.push(format!("line {line}: redeemed_at: {problem}")),
            _ => problems.push(format!("line {line}: redemption_id and customer_id must not be empty")),
        }
    }
    Ok((rows, problems))
}

impl crate::failure::Failure for Refused {
    /// The file is refused whole.
    fn fault(&self) -> crate::failure::Fault {
        crate::failure::Fault::Input
    }
}
