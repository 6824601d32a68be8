//! A feed's query as the source runs it: each `:since` outside quotes and
//! comments becomes the engine's placeholder, to which the watermark is
//! bound, or (for PostgreSQL's `COPY`, which takes no parameters) the
//! watermark as a constant that `copy_out` writes from its time.

/// The SQL of the source: how it numbers parameters and quotes text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `$1`, every occurrence the same parameter.
    Postgres,
    /// `?`, one parameter per occurrence; a backslash escapes a quote.
    MySql,
    /// `?`, one parameter per occurrence.
    Sqlite,
}

/// The query with its placeholders, and how many values to bind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub sql: String,
    pub binds: usize,
}

/// Replaces each `:since` in `query`, leaving quoted text, quoted names and
/// comments alone; an error when none is left to replace.
pub fn prepare(query: &str, dialect: Dialect) -> Result<Prepared, String> {
    let placeholder = match dialect {
        Dialect::Postgres => "$1",
        Dialect::MySql | Dialect::Sqlite => "?",
    };
    let (sql, occurrences) = substitute(query, dialect, placeholder)?;
    let binds = match dialect {
        Dialect::Postgres => 1,
        Dialect::MySql | Dialect::Sqlite => occurrences,
    };
    Ok(Prepared { sql, binds })
}

/// `query` with each `:since` (as [`prepare`] finds them) replaced by the
/// SQL expression `expression`, for a statement that takes no parameters.
pub fn replace_since(query: &str, dialect: Dialect, expression: &str) -> Result<String, String> {
    substitute(query, dialect, expression).map(|(sql, _)| sql)
}

/// `query` with each `:since` replaced by `replacement`, and how many there were.
fn substitute(query: &str, dialect: Dialect, replacement: &str) -> Result<(String, usize), String> {
    let mut sql = String::with_capacity(query.len());
    let mut occurrences = 0;
    let mut rest = query;
    while let Some(c) = rest.chars().next() {
        let skipped = match c {
            '\'' | '"' | '`' => quoted(rest, c, dialect == Dialect::MySql),
            '-' if rest.starts_with("--") => rest.find('\n').unwrap_or(rest.len()),
            '/' if rest.starts_with("/*") => rest[2..].find("*/").map_or(rest.len(), |end| end + 4),
            ':' if is_since(query, rest) => {
                occurrences += 1;
                sql.push_str(replacement);
                rest = &rest[":since".len()..];
                continue;
            }
            _ => c.len_utf8(),
        };
        sql.push_str(&rest[..skipped]);
        rest = &rest[skipped..];
    }
    if occurrences == 0 {
        return Err("the query has no :since outside quotes and comments; select the rows changed since the \
                    last run with `... where updated_at > :since`"
            .into());
    }
    Ok((sql, occurrences))
}

/// The length of the quoted text at the start of `rest`, up to its closing
/// quote (a doubled quote, or with `backslash_escapes` one after a
/// backslash, stays inside).
fn quoted(rest: &str, quote: char, backslash_escapes: bool) -> usize {
    let mut chars = rest.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        if c == '\\' && backslash_escapes {
            chars.next();
        } else if c == quote {
            if rest[i + 1..].starts_with(quote) {
                chars.next();
            } else {
                return i + 1;
            }
        }
    }
    rest.len()
}

/// Whether `rest` (a suffix of `query`) starts with the parameter `:since`:
/// not part of a `::` cast or a longer name.
fn is_since(query: &str, rest: &str) -> bool {
    let before = &query[..query.len() - rest.len()];
    let after = rest.get(":since".len()..).unwrap_or("");
    rest.starts_with(":since")
        && !before.ends_with(':')
        && !after.starts_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbered(query: &str) -> String {
        prepare(query, Dialect::Postgres).unwrap().sql
    }

    #[test]
    fn each_since_becomes_the_engines_placeholder() {
        let query = "select * from orders where updated_at > :since or created_at > :since";
        assert_eq!(numbered(query), "select * from orders where updated_at > $1 or created_at > $1");
        assert_eq!(prepare(query, Dialect::Postgres).unwrap().binds, 1);
        let positional = prepare(query, Dialect::MySql).unwrap();
        assert_eq!(positional.sql, "select * from orders where updated_at > ? or created_at > ?");
        assert_eq!(positional.binds, 2);
    }

    #[test]
    fn quoted_text_names_and_comments_are_left_alone() {
        assert_eq!(numbered("select ':since', \"a:since\" -- :since\nwhere t > :since"), {
            "select ':since', \"a:since\" -- :since\nwhere t > $1"
        });
        assert_eq!(numbered("select 'it''s :since' /* :since */ where t>:since"), {
            "select 'it''s :since' /* :since */ where t>$1"
        });
        let mysql = prepare("select `:since`, 'a\\':since' where t > :since", Dialect::MySql).unwrap();
        assert_eq!(mysql.sql, "select `:since`, 'a\\':since' where t > ?");
        // Without backslash escapes (PostgreSQL's standard strings) the quote closes the text.
        assert_eq!(numbered("select 'C:\\' where t > :since"), "select 'C:\\' where t > $1");
    }

    #[test]
    fn casts_and_longer_names_are_not_the_parameter() {
        assert_eq!(numbered("select x::since_type, :sinced where t > :since::timestamptz"), {
            "select x::since_type, :sinced where t > $1::timestamptz"
        });
    }

    #[test]
    fn since_can_become_an_expression() {
        let query = "select * from t where a > :since -- :since\n and b > ':since'";
        let replaced = replace_since(query, Dialect::Postgres, "now()").unwrap();
        assert_eq!(replaced, "select * from t where a > now() -- :since\n and b > ':since'");
    }

    #[test]
    fn a_query_without_since_outside_quotes_is_refused() {
        let error = prepare("select * from orders where note = ':since'", Dialect::Sqlite).unwrap_err();
        assert!(error.contains("no :since outside quotes"), "{error}");
    }
}
