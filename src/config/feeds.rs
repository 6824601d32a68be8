//! `[[feeds]]`: where patron pulls its data from on a schedule (see
//! `crate::feed`). A feed is a drop folder of CSV exports or a query per
//! table on the shop's database.

use std::path::PathBuf;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::Typed;
use crate::schedule::Schedule;

/// One feed; see `config/patron.toml` for each key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedSettings {
    pub name: String,
    pub kind: FeedKind,
    /// UTC cron, as the daemon's schedules; empty: only by `patron feed run`.
    #[serde(default = "no_schedule")]
    pub schedule: Typed<Option<Schedule>>,
    /// `folder`: the drop folder.
    #[serde(default)]
    pub path: PathBuf,
    #[serde(default)]
    pub patterns: FeedPatterns,
    /// `folder`: a file unchanged this long is taken as complete.
    #[serde(default = "default_settle")]
    pub settle: Typed<chrono::Duration>,
    /// `sql`: the source database, without its password.
    #[serde(default)]
    pub url: String,
    /// `sql`: a file holding the source's password (else `PATRON_FEED_<NAME>_PASSWORD`).
    #[serde(default)]
    pub password_file: PathBuf,
    #[serde(default)]
    pub queries: FeedQueries,
    /// `sql`: rows fetched from the source at a time.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeedKind {
    Folder,
    Sql,
}

impl FeedKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FeedKind::Folder => "folder",
            FeedKind::Sql => "sql",
        }
    }
}

/// The file names a folder feed takes for each table (globs).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedPatterns {
    pub customers: String,
    pub orders: String,
    pub interactions: String,
    pub redemptions: String,
}

impl Default for FeedPatterns {
    fn default() -> Self {
        FeedPatterns {
            customers: "customers*.csv".into(),
            orders: "orders*.csv".into(),
            interactions: "interactions*.csv".into(),
            redemptions: "redemptions*.csv".into(),
        }
    }
}

/// The query of each table a sql feed fills; a table without one is not fed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedQueries {
    pub customers: Option<String>,
    pub orders: Option<String>,
    pub interactions: Option<String>,
}

impl FeedQueries {
    /// The queries in the order their rows must land: customers before
    /// the orders and interactions that refer to them.
    pub fn in_dependency_order(&self) -> Vec<(&'static str, &str)> {
        [("customers", &self.customers), ("orders", &self.orders), ("interactions", &self.interactions)]
            .into_iter()
            .filter_map(|(table, query)| query.as_deref().map(|q| (table, q)))
            .collect()
    }
}

fn no_schedule() -> Typed<Option<Schedule>> {
    Typed::new("")
}

fn default_settle() -> Typed<chrono::Duration> {
    Typed::new("10s")
}

fn default_batch_size() -> usize {
    5000
}

impl FeedSettings {
    pub fn schedule(&self) -> Option<&Schedule> {
        self.schedule.get().as_ref()
    }

    pub fn settle(&self) -> chrono::Duration {
        *self.settle.get()
    }

    /// The environment variable that may hold a sql feed's password.
    pub fn password_variable(&self) -> String {
        let name: String =
            self.name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
        format!("PATRON_FEED_{name}_PASSWORD")
    }

    /// The source's password: from `password_file`, else from the environment.
    pub fn password(&self) -> Result<Option<SecretString>, String> {
        if !self.password_file.as_os_str().is_empty() {
            let text = std::fs::read_to_string(&self.password_file)
                .map_err(|e| format!("cannot read {}: {e}", self.password_file.display()))?;
            let trimmed = text.trim_end_matches(['\r', '\n']);
            if trimmed.is_empty() {
                return Err(format!("{} is empty", self.password_file.display()));
            }
            return Ok(Some(SecretString::from(trimmed.to_owned())));
        }
        Ok(std::env::var(self.password_variable()).ok().filter(|v| !v.is_empty()).map(SecretString::from))
    }

    /// The problems of this feed's settings, each with the key it concerns
    /// (relative to the feed, such as `path`).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if let Err(problem) = self.schedule.parsed() {
            problems.push(("schedule", problem.to_owned()));
        }
        match self.kind {
            FeedKind::Folder => self.folder_problems(&mut problems),
            FeedKind::Sql => self.sql_problems(&mut problems),
        }
        problems
    }

    fn folder_problems(&self, problems: &mut Vec<(&'static str, String)>) {
        if self.path.as_os_str().is_empty() {
            problems.push(("path", "a folder feed needs the `path` of its drop folder".into()));
        }
        match self.settle.parsed() {
            Err(problem) => problems.push(("settle", problem.to_owned())),
            Ok(settle) if *settle < chrono::Duration::zero() => {
                problems.push(("settle", "must not be negative".into()))
            }
            Ok(_) => {}
        }
        let patterns = &self.patterns;
        for (key, pattern) in [
            ("patterns.customers", &patterns.customers),
            ("patterns.orders", &patterns.orders),
            ("patterns.interactions", &patterns.interactions),
            ("patterns.redemptions", &patterns.redemptions),
        ] {
            if pattern.is_empty() || pattern.contains('/') {
                problems.push((key, format!("`{pattern}` is not a file name pattern such as `orders*.csv`")));
            } else if let Err(error) = glob::Pattern::new(pattern) {
                problems.push((key, format!("`{pattern}` is not a file name pattern: {}", error.msg)));
            }
        }
        if !self.url.is_empty() {
            problems.push(("url", "a folder feed reads `path`, not `url`".into()));
        }
    }

    fn sql_problems(&self, problems: &mut Vec<(&'static str, String)>) {
        let known = ["postgres://", "postgresql://", "mysql://", "mariadb://", "sqlite:"];
        if self.url.is_empty() {
            problems.push(("url", "a sql feed needs the `url` of its source database".into()));
        } else if !known.iter().any(|scheme| self.url.starts_with(scheme)) {
            problems.push(("url", "expected a postgres://, mysql:// (MariaDB too) or sqlite: URL".into()));
        } else if url::Url::parse(&self.url).is_ok_and(|url| url.password().is_some()) {
            problems.push((
                "url",
                format!("put the password in `password_file` or {}, not in the URL", self.password_variable()),
            ));
        }
        let queries = self.queries.in_dependency_order();
        if queries.is_empty() {
            problems
                .push(("queries", "a sql feed needs at least one of queries.customers, orders, interactions".into()));
        }
        for (table, query) in queries {
            if !query.contains(":since") {
                problems.push((
                    query_key(table),
                    "the query must select the rows changed since the last run: `... where updated_at > :since`".into(),
                ));
            }
        }
        if self.batch_size == 0 {
            problems.push(("batch_size", "must be at least 1".into()));
        }
        if !self.path.as_os_str().is_empty() {
            problems.push(("path", "a sql feed reads `url`, not `path`".into()));
        }
    }
}

fn query_key(table: &str) -> &'static str {
    match table {
        "customers" => "queries.customers",
        "orders" => "queries.orders",
        _ => "queries.interactions",
    }
}

/// Names that are usable on the command line and in metrics labels, once each.
pub fn name_problems(feeds: &[FeedSettings]) -> Vec<(usize, String)> {
    let mut problems = Vec::new();
    for (index, feed) in feeds.iter().enumerate() {
        let usable =
            !feed.name.is_empty() && feed.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !usable {
            problems.push((index, format!("`{}` is not a feed name: use letters, digits, `_` and `-`", feed.name)));
        } else if feeds[..index].iter().any(|other| other.name == feed.name) {
            problems.push((index, format!("two feeds are named `{}`", feed.name)));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(toml_text: &str) -> FeedSettings {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn a_folder_feed_needs_a_path_and_takes_the_default_patterns() {
        let drop = feed("name = \"drop\"\nkind = \"folder\"\npath = \"/srv/drop\"");
        assert!(drop.problems().is_empty(), "{:?}", drop.problems());
        assert_eq!(drop.patterns.orders, "orders*.csv");
        assert_eq!(drop.settle(), chrono::Duration::seconds(10));
        let no_path = feed("name = \"drop\"\nkind = \"folder\"");
        assert_eq!(no_path.problems()[0].0, "path");
    }

    #[test]
    fn a_folder_feeds_patterns_must_be_valid_globs() {
        let drop =
            feed("name = \"drop\"\nkind = \"folder\"\npath = \"/srv/drop\"\n[patterns]\norders = \"orders[.csv\"");
        assert_eq!(
            drop.problems(),
            [("patterns.orders", "`orders[.csv` is not a file name pattern: invalid range pattern".to_owned())]
        );
    }

    #[test]
    fn a_sql_feed_needs_since_in_each_query_and_no_password_in_its_url() {
        let shop = feed(
            "name = \"shop\"\nkind = \"sql\"\nurl = \"postgres://feed:secret@db/shop\"\n\
             [queries]\norders = \"select * from orders\"",
        );
        let keys: Vec<&str> = shop.problems().iter().map(|p| p.0).collect();
        assert_eq!(keys, ["url", "queries.orders"]);
        assert!(shop.problems()[0].1.contains("PATRON_FEED_SHOP_PASSWORD"));
    }

    #[test]
    fn queries_come_in_dependency_order() {
        let shop = feed(
            "name = \"shop\"\nkind = \"sql\"\nurl = \"mysql://feed@db/shop\"\n[queries]\n\
             orders = \"o :since\"\ncustomers = \"c :since\"",
        );
        let tables: Vec<&str> = shop.queries.in_dependency_order().iter().map(|q| q.0).collect();
        assert_eq!(tables, ["customers", "orders"]);
        assert!(shop.problems().is_empty());
    }

    #[test]
    fn names_must_be_usable_and_unique() {
        let a = feed("name = \"shop\"\nkind = \"folder\"\npath = \"/a\"");
        let b = feed("name = \"shop\"\nkind = \"folder\"\npath = \"/b\"");
        let c = feed("name = \"my shop\"\nkind = \"folder\"\npath = \"/c\"");
        let problems = name_problems(&[a, b, c]);
        assert_eq!(problems.len(), 2);
        assert_eq!(problems[0].0, 1);
        assert!(problems[1].1.contains("`my shop`"));
    }
}
