//! Text-level changes to catalog SQL, made before the catalog library
//! parses it: verbatim fragments of tools' SQL, the `user` keyword, and
//! the shielding of select-list subqueries.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{Expr, Query, SelectItem, SetExpr, VisitMut, VisitorMut};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

/// Fragments of tools' catalog SQL that DataFusion cannot plan, replaced
/// before parsing by an equivalent for our catalog (where the relation
/// options they read are always empty). Matched verbatim.
const REPLACEMENTS: &[(&str, &str)] = &[
    // psql \d+: table options plus the TOAST table's, via a correlated
    // unnest. We have neither.
    (
        "c.reloptions || array(select 'toast.' || x from pg_catalog.unnest(tc.reloptions) x)",
        "CAST(NULL AS TEXT[])",
    ),
    // pgjdbc's type cache: the library keeps pg_type.typinput as the
    // function's name, so compare names.
    (
        "typinput='pg_catalog.array_in'::regproc",
        "typinput='array_in'",
    ),
    ("typinput='array_in'::regproc", "typinput='array_in'"),
    // pgjdbc getPrimaryKeys/getIndexInfo/getBestRowIdentifier: the
    // set-returning _pg_expandarray and its record fields, as the
    // equivalent unnests (same-length unnests in one projection pair up).
    (
        "(information_schema._pg_expandarray(i.indkey)).n",
        "unnest(generate_series(CAST(1 AS BIGINT), CAST(array_length(i.indkey) AS BIGINT)))",
    ),
    (
        "information_schema._pg_expandarray(i.indkey) AS KEYS",
        "unnest(i.indkey) AS KEYS",
    ),
    (
        "information_schema._pg_expandarray(i.indkey) AS keys",
        "unnest(i.indkey) AS keys",
    ),
    ("(result.KEYS).x", "result.KEYS"),
    ("(i.keys).x", "i.keys"),
];

pub fn replace_fragments(sql: &str) -> std::borrow::Cow<'_, str> {
    let mut out = std::borrow::Cow::Borrowed(sql);
    for (from, to) in REPLACEMENTS {
        if out.contains(from) {
            out = std::borrow::Cow::Owned(out.replace(from, to));
        }
    }
    if out.to_ascii_lowercase().contains("user") {
        if let Some(replaced) = user_keyword(&out) {
            out = std::borrow::Cow::Owned(replaced);
        }
    }
    out
}

/// The SQL keyword `user` is `current_user`. Done on tokens, before the
/// catalog library sees the statement: its stand-in for Grafana's
/// search-path subquery (written before it had current_setting) matches
/// `user` and would empty Grafana's table list.
fn user_keyword(sql: &str) -> Option<String> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize().ok()?;
    let is_user = |t: &Token| matches!(t, Token::Word(w) if w.quote_style.is_none() && w.keyword == Keyword::USER);
    if !tokens.iter().any(is_user) {
        return None;
    }
    Some(
        tokens
            .iter()
            .map(|t| {
                if is_user(t) {
                    "current_user".to_string()
                } else {
                    t.to_string()
                }
            })
            .collect(),
    )
}

/// `sql` with every scalar subquery of a select list in an extra pair of
/// parentheses, which the catalog library's NULL-for-correlated-subquery
/// rule does not look through; `None` when there is none.
pub fn shield_select_list_subqueries(sql: &str) -> Option<String> {
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    let [statement] = statements.as_mut_slice() else {
        return None;
    };
    let mut shield = Shield(false);
    let _ = VisitMut::visit(statement, &mut shield);
    shield.0.then(|| statement.to_string())
}

struct Shield(bool);

impl VisitorMut for Shield {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let SetExpr::Select(select) = query.body.as_mut() {
            for item in &mut select.projection {
                if let SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } = item
                {
                    if matches!(e, Expr::Subquery(_)) {
                        *e = Expr::Nested(Box::new(e.clone()));
                        self.0 = true;
                    }
                }
            }
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_list_subqueries_are_shielded() {
        assert_eq!(
            shield_select_list_subqueries("SELECT (SELECT 1 FROM b WHERE b.x = a.x) AS n FROM a")
                .as_deref(),
            Some("SELECT ((SELECT 1 FROM b WHERE b.x = a.x)) AS n FROM a")
        );
        assert_eq!(shield_select_list_subqueries("SELECT 1 FROM a"), None);
    }

    #[test]
    fn user_keyword_is_current_user() {
        assert_eq!(
            replace_fragments("SELECT user, 'user', \"user\", usename FROM pg_user"),
            "SELECT current_user, 'user', \"user\", usename FROM pg_user"
        );
    }
}
