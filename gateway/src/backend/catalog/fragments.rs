//! Text-level changes to catalog SQL, made before the catalog library
//! parses it: verbatim fragments of tools' SQL, the `user` keyword, and
//! the shielding of select-list subqueries.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{Expr, Query, SelectItem, SetExpr, VisitMut, VisitorMut};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use super::pg15_oids::system_relation_oid;

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
    // psql \dp: policies for all roles, `polroles <> '{0}'` (an array
    // literal, typed by the column in PostgreSQL).
    ("polroles <> '{0}'", "polroles <> make_array(0)"),
];

pub fn replace_fragments(sql: &str) -> std::borrow::Cow<'_, str> {
    let mut out = std::borrow::Cow::Borrowed(sql);
    for (from, to) in REPLACEMENTS {
        if out.contains(from) {
            out = std::borrow::Cow::Owned(out.replace(from, to));
        }
    }
    let lower = out.to_ascii_lowercase();
    if ["user", "current_", "\"char\"", "regclass", "regtype"]
        .iter()
        .any(|w| lower.contains(w))
    {
        if let Some(replaced) = keywords_and_types(&out) {
            out = std::borrow::Cow::Owned(replaced);
        }
    }
    out
}

/// SQL keywords that are functions called without parentheses, as the
/// functions the catalog has, and the type `"char"` as the `char` DataFusion
/// knows (one-character text). Done on tokens, before the catalog library
/// sees the statement: its stand-in for Grafana's search-path subquery
/// (written before it had current_setting) matches `user` and would empty
/// Grafana's table list; `current_catalog` and `current_role` would parse
/// as column names; `'r'::"char"` (Npgsql) would not plan. Names cast to
/// regclass and regtype are looked up as PostgreSQL does, where the library
/// looks in the current schema only and by internal type name: an
/// unqualified system relation name is pg_catalog's (first on the search
/// path; `'pg_namespace'::regclass`, DBeaver), and a type name is resolved
/// as `to_regtype` resolves it (`'integer'::regtype`, `'public.t'::regtype`).
fn keywords_and_types(sql: &str) -> Option<String> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize().ok()?;
    let word = |i: usize, value: &str| matches!(tokens.get(i), Some(Token::Word(w)) if w.value.eq_ignore_ascii_case(value));
    // The length of a `::type` or `::pg_catalog.type` cast at `i`.
    let cast_to = |i: usize, type_name: &str| {
        if tokens.get(i) != Some(&Token::DoubleColon) {
            None
        } else if word(i + 1, type_name) {
            Some(2)
        } else if word(i + 1, "pg_catalog")
            && tokens.get(i + 2) == Some(&Token::Period)
            && word(i + 3, type_name)
        {
            Some(4)
        } else {
            None
        }
    };
    let mut out = String::with_capacity(sql.len());
    let mut changed = false;
    let mut i = 0;
    while i < tokens.len() {
        let (replacement, consumed) = match &tokens[i] {
            Token::Word(w) if w.quote_style.is_none() => match w.keyword {
                Keyword::USER => (Some("current_user".to_string()), 1),
                // Quoted: sqlparser takes the bare keywords as no-argument
                // functions that cannot be called with parentheses.
                Keyword::CURRENT_CATALOG => (Some("\"current_catalog\"()".into()), 1),
                Keyword::CURRENT_ROLE => (Some("\"current_role\"()".into()), 1),
                _ => (None, 1),
            },
            Token::Word(w)
                if w.quote_style == Some('"')
                    && w.value == "char"
                    && i > 0
                    && tokens[i - 1] == Token::DoubleColon =>
            {
                (Some("char".into()), 1)
            }
            Token::SingleQuotedString(name)
                if cast_to(i + 1, "regclass").is_some() && system_relation_oid(name).is_some() =>
            {
                (Some(format!("'pg_catalog.{name}'")), 1)
            }
            Token::SingleQuotedString(_) => match cast_to(i + 1, "regtype") {
                Some(n) => (Some(format!("to_regtype({})", tokens[i])), 1 + n),
                None => (None, 1),
            },
            _ => (None, 1),
        };
        match replacement {
            Some(r) => {
                changed = true;
                out.push_str(&r);
            }
            None => tokens[i..i + consumed]
                .iter()
                .for_each(|t| out.push_str(&t.to_string())),
        }
        i += consumed;
    }
    changed.then_some(out)
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
    fn function_keywords_are_function_calls() {
        assert_eq!(
            replace_fragments("SELECT user, 'user', \"user\", usename FROM pg_user"),
            "SELECT current_user, 'user', \"user\", usename FROM pg_user"
        );
        assert_eq!(
            replace_fragments("SELECT current_catalog, current_role, \"current_role\""),
            "SELECT \"current_catalog\"(), \"current_role\"(), \"current_role\""
        );
        assert_eq!(
            replace_fragments("SELECT 'r'::\"char\", ARRAY['v']::\"char\"[], \"char\" FROM t"),
            "SELECT 'r'::char, ARRAY['v']::char[], \"char\" FROM t"
        );
    }

    #[test]
    fn names_cast_to_regclass_and_regtype_resolve_as_in_postgresql() {
        assert_eq!(
            replace_fragments(
                "SELECT 'pg_namespace'::regclass, 'pg_class'::pg_catalog.regclass, \
                 'trades'::regclass, 'pg_class', 'public.pg_class'::regclass"
            ),
            "SELECT 'pg_catalog.pg_namespace'::regclass, 'pg_catalog.pg_class'::pg_catalog.regclass, \
             'trades'::regclass, 'pg_class', 'public.pg_class'::regclass"
        );
        assert_eq!(
            replace_fragments(
                "SELECT 'integer'::regtype, 'public.t'::pg_catalog.regtype::oid, 'x'"
            ),
            "SELECT to_regtype('integer'), to_regtype('public.t')::oid, 'x'"
        );
    }
}
