//! The SQL each tool sends, replayed side by side against the gateway and
//! a real PostgreSQL 15 whose database holds a table of the engine's
//! `trades` shape, and the answers compared.
//!
//! integration/side-by-side/<tool>.sql holds one tool's statements, taken
//! from its source (see each block's `-- source:`):
//!
//! ```text
//! -- name: what the tool is doing
//! -- compare: all | shape | rows-with TEXT
//! -- differs: why we answer otherwise (a known difference)
//! SELECT ...;
//! ```
//!
//! `all` compares column names, column types (as a driver's Describe sees
//! them), SQLSTATE and rows; `shape` only names and types (the rows list
//! PostgreSQL's built-in objects, of which we have fewer); `rows-with` the
//! rows containing TEXT. Rows are compared as sets, oids of `trades` as a
//! placeholder. A block starting with `\` is a psql command, compared on
//! psql's output. The test fails when a statement without `differs`
//! answers otherwise than PostgreSQL, and when one with `differs` answers
//! the same (the note is then stale). It prints, per tool, how many
//! statements answer as PostgreSQL does.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use tokio_postgres::{Client, SimpleQueryMessage};
use velo_integration::{connect_as, psql_command, run_sql, Gateway, Postgres};

const TABLE: &str = "CREATE TABLE trades (symbol text NOT NULL, price numeric(18,2) NOT NULL, \
                     volume bigint NOT NULL, ts timestamp NOT NULL)";

/// How long one statement may take on either side.
const STATEMENT_DEADLINE: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Statement {
    name: String,
    compare: String,
    differs: Option<String>,
    sql: String,
}

/// The tool's name (its `-- tool:` line) and its statements.
fn read_file(path: &PathBuf) -> (String, Vec<Statement>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut tool = String::new();
    let mut statements: Vec<Statement> = Vec::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("-- tool: ") {
            tool = t.to_string();
        } else if let Some(name) = line.strip_prefix("-- name: ") {
            statements.push(Statement {
                name: name.to_string(),
                compare: "all".into(),
                differs: None,
                sql: String::new(),
            });
        } else if let Some(s) = statements.last_mut() {
            if let Some(c) = line.strip_prefix("-- compare: ") {
                s.compare = c.trim().to_string();
            } else if let Some(d) = line.strip_prefix("-- differs: ") {
                s.differs = Some(d.to_string());
            } else if !line.starts_with("-- source: ") {
                s.sql.push_str(line);
                s.sql.push('\n');
            }
        }
    }
    for s in &mut statements {
        s.sql = s.sql.trim().to_string();
    }
    (tool, statements)
}

/// What one side answered, normalized for comparison.
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    Error(String),
    Rows {
        columns: Vec<(String, String)>,
        rows: Vec<Vec<Option<String>>>,
    },
    Psql(String),
}

struct Side {
    client: Client,
    host: String,
    port: u16,
    /// Oids of `trades` (the relation and, on PostgreSQL, its row types).
    oids: Vec<String>,
}

impl Side {
    async fn connect(host: &str, port: u16) -> Self {
        let (client, _socket) = connect_as(host, port, "velo").await;
        let mut side = Self {
            client,
            host: host.to_string(),
            port,
            oids: Vec::new(),
        };
        side.oids = match side
            .simple("SELECT oid::text FROM pg_catalog.pg_class WHERE relname = 'trades'")
            .await
        {
            Answer::Rows { rows, .. } => rows.into_iter().flatten().flatten().collect(),
            other => panic!("oid of trades: {other:?}"),
        };
        if let Answer::Rows { rows, .. } = side
            .simple(
                "SELECT oid::text FROM pg_catalog.pg_type WHERE typname IN ('trades', '_trades')",
            )
            .await
        {
            side.oids.extend(rows.into_iter().flatten().flatten());
        }
        side
    }

    fn normalize(&self, value: Option<&str>) -> Option<String> {
        value.map(|v| {
            let mut v = v.to_string();
            for oid in &self.oids {
                v = v.replace(oid.as_str(), "<trades>");
            }
            v
        })
    }

    async fn simple(&self, sql: &str) -> Answer {
        let result = tokio::time::timeout(STATEMENT_DEADLINE, self.client.simple_query(sql))
            .await
            .unwrap_or_else(|_| panic!("no answer within {STATEMENT_DEADLINE:?} to {sql}"));
        match result {
            Err(e) => Answer::Error(e.code().map_or_else(|| e.to_string(), |c| c.code().into())),
            Ok(messages) => {
                let mut rows = Vec::new();
                let mut columns = Vec::new();
                for m in messages {
                    match m {
                        SimpleQueryMessage::RowDescription(d) => {
                            columns = d
                                .iter()
                                .map(|c| (c.name().to_string(), String::new()))
                                .collect();
                        }
                        SimpleQueryMessage::Row(r) => {
                            rows.push((0..r.len()).map(|i| self.normalize(r.get(i))).collect())
                        }
                        _ => {}
                    }
                }
                rows.sort();
                Answer::Rows { columns, rows }
            }
        }
    }

    /// The statement's result columns as a driver's Describe sees them.
    async fn describe(&self, sql: &str) -> Result<Vec<(String, String)>, String> {
        let prepared = tokio::time::timeout(STATEMENT_DEADLINE, self.client.prepare(sql))
            .await
            .unwrap_or_else(|_| panic!("no Describe within {STATEMENT_DEADLINE:?} of {sql}"));
        match prepared {
            Ok(s) => Ok(s
                .columns()
                .iter()
                .map(|c| (c.name().to_string(), c.type_().name().to_string()))
                .collect()),
            Err(e) => Err(e.code().map_or_else(|| e.to_string(), |c| c.code().into())),
        }
    }

    async fn answer(&self, statement: &Statement) -> Answer {
        if statement.sql.starts_with('\\') {
            return self.psql(&statement.sql);
        }
        match self.simple(&statement.sql).await {
            Answer::Rows { rows, columns } if !columns.is_empty() => {
                match self.describe(&statement.sql).await {
                    Ok(described) => Answer::Rows {
                        columns: described,
                        rows,
                    },
                    Err(code) => Answer::Error(format!("Describe failed: {code}")),
                }
            }
            other => other,
        }
    }

    fn psql(&self, command: &str) -> Answer {
        let out = psql_command(&self.host, self.port, "velo", "velostream")
            // Unaligned: column widths would depend on rows not compared.
            .args(["-X", "-A", "-c", command])
            .output()
            .expect("psql");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        Answer::Psql(self.normalize(Some(&text)).unwrap())
    }
}

/// The part of an answer `compare` looks at.
fn compared(answer: &Answer, compare: &str) -> Answer {
    let keep = |text: &str| match compare.strip_prefix("rows-with ") {
        Some(part) => text.contains(part),
        None => compare != "shape",
    };
    match answer {
        Answer::Error(_) => answer.clone(),
        Answer::Rows { columns, rows } => Answer::Rows {
            columns: columns.clone(),
            rows: rows
                .iter()
                .filter(|r| keep(&r.iter().flatten().cloned().collect::<Vec<_>>().join("|")))
                .cloned()
                .collect(),
        },
        // psql's unaligned output: the column header line always, the
        // other lines as the mode says.
        Answer::Psql(text) => {
            let header = text.lines().find(|l| l.contains('|')).map(str::to_string);
            Answer::Psql(
                text.lines()
                    .filter(|l| Some(l.to_string()) == header || keep(l))
                    .collect::<Vec<_>>()
                    .join("\n"),
            )
        }
    }
}

/// In a few words, how `ours` differs from `theirs` (both compared).
fn difference(theirs: &Answer, ours: &Answer) -> String {
    match (theirs, ours) {
        (_, Answer::Error(code)) => format!("we fail with {code}"),
        (
            Answer::Rows {
                columns: a,
                rows: ra,
            },
            Answer::Rows {
                columns: b,
                rows: rb,
            },
        ) => {
            let names = |c: &[(String, String)]| c.iter().map(|c| c.0.clone()).collect::<Vec<_>>();
            if names(a) != names(b) {
                return format!("column names {:?}", names(b));
            }
            let mut types: Vec<String> = a
                .iter()
                .zip(b)
                .filter(|(x, y)| x.1 != y.1)
                .map(|(x, y)| format!("{} as {}", x.1, y.1))
                .collect();
            types.sort();
            types.dedup();
            match (types.is_empty(), ra == rb) {
                (false, true) => format!("types {}", types.join(", ")),
                (false, false) => format!("types {}; rows", types.join(", ")),
                _ => "rows".into(),
            }
        }
        _ => "psql output".into(),
    }
}

/// Rewrites `file`'s `differs` lines: `notes[i]` for the i-th statement.
fn write_notes(file: &PathBuf, notes: &[Option<String>]) {
    let text = std::fs::read_to_string(file).unwrap();
    let mut out = String::new();
    let mut index = None;
    for line in text.lines() {
        if line.starts_with("-- name: ") {
            index = Some(index.map_or(0, |i: usize| i + 1));
        }
        if line.starts_with("-- differs: ") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if line.starts_with("-- compare: ") {
            if let Some(Some(note)) = index.and_then(|i| notes.get(i)) {
                out.push_str(&format!("-- differs: {note}\n"));
            }
        }
    }
    std::fs::write(file, out).unwrap();
}

fn start_reference() -> Postgres {
    let pg = Postgres::start();
    let run = |user: &str, db: &str, sql: &str| {
        run_sql(psql_command("127.0.0.1", pg.port, user, db), sql)
    };
    run("postgres", "postgres", "CREATE ROLE velo LOGIN");
    run(
        "postgres",
        "postgres",
        "CREATE DATABASE velostream OWNER velo",
    );
    run("velo", "velostream", TABLE);
    pg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_statements_answer_as_postgresql_does() {
    let pg = start_reference();
    let gw = Gateway::start(&[]);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("side-by-side");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "{files:?}");
    let mut summary = BTreeMap::new();
    let mut failures = Vec::new();
    for file in &files {
        let (tool, statements) = read_file(file);
        assert!(!statements.is_empty(), "{}", file.display());
        // A session per tool and side, as the tool would have.
        let theirs = Side::connect("127.0.0.1", pg.port).await;
        let ours = Side::connect(&gw.host, gw.port).await;
        let mut matching = 0;
        let mut notes = Vec::new();
        for s in &statements {
            let reference = theirs.answer(s).await;
            if let Answer::Error(code) = &reference {
                failures.push(format!(
                    "{tool} / {}: PostgreSQL itself fails ({code})",
                    s.name
                ));
                notes.push(None);
                continue;
            }
            let answer = ours.answer(s).await;
            let same = compared(&reference, &s.compare) == compared(&answer, &s.compare);
            matching += usize::from(same);
            notes.push((!same).then(|| {
                difference(
                    &compared(&reference, &s.compare),
                    &compared(&answer, &s.compare),
                )
            }));
            match (&s.differs, same) {
                (None, false) => {
                    let (theirs, ours) = (
                        compared(&reference, &s.compare),
                        compared(&answer, &s.compare),
                    );
                    failures.push(format!(
                        "{tool} / {}: {}\n  PostgreSQL: {theirs:?}\n  gateway:    {ours:?}",
                        s.name,
                        difference(&theirs, &ours)
                    ))
                }
                (Some(why), true) => failures.push(format!(
                    "{tool} / {}: answers as PostgreSQL now; remove `differs: {why}`",
                    s.name
                )),
                _ => {}
            }
        }
        summary.insert(tool, (statements.len(), matching));
        if std::env::var_os("SIDE_BY_SIDE_NOTE").is_some() {
            write_notes(file, &notes);
        }
    }
    eprintln!("statements replayed, and how many answer as PostgreSQL 15 does:");
    for (tool, (replayed, matching)) in &summary {
        eprintln!("  {tool}: {matching} of {replayed}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
