//! Tools reading the catalog through a real gateway: psql's backslash
//! commands and tab completion, pgjdbc's DatabaseMetaData, SQLAlchemy,
//! pandas, pgcli, asyncpg, dbt, and the catalog SQL Grafana, DBeaver and
//! Metabase send (replayed from integration/replay/).

use std::path::{Path, PathBuf};
use std::process::Command;

use velo_integration::{
    run_client, run_java_client, run_script, Gateway, SQLALCHEMY_2_1_VENV, TOOLS_VENV,
};

fn integration_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// psql's aligned output for one command, as a user sees it (psql writes
/// some messages, like "Did not find any relations.", to stderr).
fn psql(gw: &Gateway, args: &[&str]) -> String {
    let out = gw.psql("velo").args(args).output().expect("psql");
    assert!(
        out.status.success(),
        "psql {args:?} failed: {}",
        text(&out.stderr)
    );
    text(&out.stdout) + &text(&out.stderr)
}

fn assert_lines(output: &str, expected: &[&str]) {
    for line in expected {
        assert!(
            output.lines().any(|l| l.trim_end() == line.trim_end()),
            "missing line {line:?} in:\n{output}"
        );
    }
}

#[test]
fn psql_backslash_commands_describe_the_engine_relations() {
    let gw = Gateway::start(&[]);
    let list = psql(&gw, &["-c", r"\l"]);
    assert_lines(&list, &[" velostream | velo  | UTF8     | en_US.UTF-8 | en_US.UTF-8 |            |                 | "]);
    assert_lines(&psql(&gw, &["-c", r"\dn"]), &[" public | velo", "(1 row)"]);
    let relations = [
        " Schema |  Name  | Type  | Owner ",
        " public | trades | table | velo",
        "(1 row)",
    ];
    assert_lines(&psql(&gw, &["-c", r"\dt"]), &relations);
    assert_lines(&psql(&gw, &["-c", r"\d"]), &relations);
    assert_lines(
        &psql(&gw, &["-c", r"\d trades"]),
        &[
            "                         Table \"public.trades\"",
            " Column |            Type             | Collation | Nullable | Default ",
            " symbol | text                        |           | not null | ",
            " price  | numeric(18,2)               |           | not null | ",
            " volume | bigint                      |           | not null | ",
            " ts     | timestamp without time zone |           | not null | ",
        ],
    );
    assert_lines(
        &psql(&gw, &["-c", r"\d+ trades"]),
        &[" price  | numeric(18,2)               |           | not null |         | main     |             |              | "],
    );
    assert_lines(&psql(&gw, &["-c", r"\du"]), &[" velo      |            | "]);
    // The built-in schema's description, as PostgreSQL has it.
    assert_lines(
        &psql(&gw, &["-c", r"\dn+"]),
        &[" public | velo  |                   | standard public schema"],
    );
    assert_lines(
        &psql(&gw, &["-c", r"\dt+"]),
        &[" public | trades | table | velo  | permanent   |               | 0 bytes | "],
    );
    assert!(psql(&gw, &["-c", r"\l+"]).contains("| 0 bytes | pg_default |"));
    assert_lines(
        &psql(&gw, &["-c", r"\dx"]),
        &[" plpgsql | 1.0     | pg_catalog | PL/pgSQL procedural language"],
    );
    // As on a fresh PostgreSQL database: no user functions or types.
    assert_lines(&psql(&gw, &["-c", r"\df"]), &["(0 rows)"]);
    assert_lines(&psql(&gw, &["-c", r"\dT"]), &["(0 rows)"]);
    assert!(psql(&gw, &["-c", r"\conninfo"]).contains(&format!(
        "You are connected to database \"velostream\" as user \"velo\" on host \"{}\" at port \"{}\".",
        gw.host, gw.port
    )));
    // DDL through the gateway shows up at once.
    assert!(psql(&gw, &["-c", r"\dv"]).contains("Did not find any relations."));
    psql(
        &gw,
        &[
            "-c",
            "CREATE VIEW aapl AS SELECT price, ts FROM trades WHERE symbol = 'AAPL'",
        ],
    );
    assert_lines(
        &psql(&gw, &["-c", r"\dv"]),
        &[" public | aapl | view | velo"],
    );
    assert_lines(
        &psql(&gw, &["-c", r"\d aapl"]),
        &[" price  | numeric(18,2)               |           |          | "],
    );
    let out = run_script(
        gw.psql("velo"),
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public';\n\
         SELECT viewname FROM pg_views WHERE schemaname = 'public';\n\
         DROP TABLE IF EXISTS no_such_table;\n\
         DROP TABLE aapl;\n",
    );
    assert_eq!(text(&out.stdout), "trades\naapl\n");
    assert!(
        text(&out.stderr).contains("\"aapl\" is a view: use DROP VIEW"),
        "{}",
        text(&out.stderr)
    );
    psql(&gw, &["-c", "DROP VIEW aapl"]);
    assert!(psql(&gw, &["-c", r"\dv"]).contains("Did not find any relations."));
}

#[test]
fn show_commands_and_catalog_statements() {
    let gw = Gateway::start(&[]);
    assert_lines(
        &psql(&gw, &["-c", "SHOW STREAMS"]),
        &["  name  |     source     | event_time |          description           "],
    );
    assert_lines(
        &psql(&gw, &["-c", "SHOW TABLES"]),
        &[" trades | stream | kafka://trades"],
    );
    assert!(psql(&gw, &["-c", "SHOW JOBS"]).contains("query_id"));
    let all = psql(&gw, &["-c", "SHOW ALL"]);
    assert_lines(
        &all,
        &["                name                 |     setting     | description "],
    );
    assert!(all.contains(" server_version "), "{all}");
    assert!(all.contains(" search_path "), "{all}");

    let out = run_script(
        gw.psql("velo"),
        "SELECT current_setting('server_version_num')::int >= 150000, current_schema(), current_user;\n\
         SELECT attname, atttypid::regtype::text, atttypmod FROM pg_attribute WHERE attrelid = 'trades'::regclass AND attnum > 0 ORDER BY attnum;\n\
         SELECT c.relname, c.relkind, c.xmin, c.tableoid FROM pg_class c WHERE c.relname = 'trades';\n\
         SELECT count(*) FROM pg_stat_activity;\n\
         SELECT table_name FROM information_schema.tables WHERE table_schema = 'public';\n\
         SELECT t.typname, t.typarray <> 0, a.typname FROM pg_type t JOIN pg_type a ON a.oid = t.typarray WHERE t.typname = 'int4';\n\
         SELECT has_table_privilege('trades', 'SELECT'), has_schema_privilege('public', 'USAGE'), pg_table_is_visible(c.oid) FROM pg_class c WHERE c.relname = 'trades';\n\
         SELECT nspname FROM pg_namespace WHERE nspname OPERATOR(pg_catalog.~) '^(pg_catalog|public|information_schema)$' COLLATE pg_catalog.default ORDER BY 1;\n\
         SELECT c.relname, (SELECT count(*) FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0) FROM pg_class c WHERE c.relname = 'trades';\n\
         SELECT to_regclass('trades') = 'trades'::regclass::oid, to_regclass('nope') IS NULL, to_regtype('integer')::oid, pg_encoding_to_char(6);\n",
    );
    assert_eq!(
        text(&out.stdout),
        "t|public|velo\n\
         symbol|text|-1\n\
         price|numeric|1179654\n\
         volume|bigint|-1\n\
         ts|timestamp without time zone|-1\n\
         trades|r|1|1259\n\
         0\n\
         trades\n\
         int4|t|_int4\n\
         t|t|t\n\
         information_schema\npg_catalog\npublic\n\
         trades|4\n\
         t|t|23|UTF8\n",
        "{}",
        text(&out.stderr)
    );

    // Result columns are named as PostgreSQL names them, from the engine
    // and from the catalog alike.
    let header = |sql: &str| {
        let out = psql(&gw, &["-A", "-c", sql]);
        out.lines().next().unwrap_or_default().to_string()
    };
    assert_eq!(
        header("SELECT count(*), max(price), 1, upper(symbol), price::text FROM trades GROUP BY symbol, price LIMIT 1"),
        "count|max|?column?|upper|price"
    );
    assert_eq!(
        header("SELECT current_setting('search_path'), pg_catalog.format_type(23, NULL), 'trades'::regclass::oid > 0, user"),
        "current_setting|format_type|?column?|user"
    );

    // A statement joining the catalog and a stream cannot run anywhere.
    let mut verbose = gw.psql("velo");
    verbose.args(["-v", "VERBOSITY=verbose"]);
    let out = run_script(
        verbose,
        "SELECT * FROM pg_class, trades;\nSELECT relname FROM pg_catalog.pg_class WHERE relname = 'trades';\n",
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("ERROR:  0A000: a statement cannot read both the catalog relation pg_class and the stream or table trades"),
        "{err}"
    );
    // ... and the session goes on.
    assert_eq!(text(&out.stdout), "trades\n");
}

#[test]
fn psql_tab_completion() {
    let gw = Gateway::start(&[]);
    run_client(
        &gw,
        "python3",
        "python/psql_completion.py",
        "psql completion ok",
    );
}

#[test]
fn pgjdbc_database_metadata() {
    let gw = Gateway::start(&[]);
    run_java_client(&gw, "MetadataTest", "pgjdbc metadata ok");
}

#[test]
fn sqlalchemy_pandas_pgcli_asyncpg() {
    let gw = Gateway::start(&[]);
    gw.wait_for_trades(3);
    run_client(
        &gw,
        &format!("{TOOLS_VENV}/python"),
        "python/tools.py",
        "tools ok",
    );
}

/// SQLAlchemy 2.1 reflects columns with correlated subqueries under CASE
/// (defaults, identity, collation) that 2.0 does not send.
#[test]
fn sqlalchemy_2_1_reflects_the_schema() {
    let gw = Gateway::start(&[]);
    run_client(
        &gw,
        &format!("{SQLALCHEMY_2_1_VENV}/python"),
        "python/sqlalchemy_reflection.py",
        "sqlalchemy 2.1.9 ok",
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn dbt_debug_run_and_test() {
    let gw = Gateway::start(&[]);
    gw.wait_for_trades(20);
    let project = tempfile::tempdir().unwrap();
    copy_dir(&integration_dir().join("dbt"), project.path());
    let dbt = |args: &[&str], expect: &str| {
        let out = Command::new(format!("{TOOLS_VENV}/dbt"))
            .args(args)
            .args(["--profiles-dir", ".", "--no-use-colors"])
            .current_dir(project.path())
            .env("VELO_HOST", &gw.host)
            .env("VELO_PORT", gw.port.to_string())
            .env("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
            .output()
            .expect("dbt runs");
        let stdout = text(&out.stdout);
        if !(out.status.success() && stdout.contains(expect)) {
            // dbt's log has the SQL it sent.
            let log =
                std::fs::read_to_string(project.path().join("logs/dbt.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            panic!(
                "dbt {args:?}: {expect:?} missing:\n{stdout}\nlog:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    };
    dbt(&["debug"], "All checks passed!");
    // The second run replaces the views (create under a temporary name,
    // rename, drop the backup).
    dbt(&["run"], "Completed successfully");
    dbt(&["run"], "Completed successfully");
    dbt(&["test"], "PASS=5 WARN=0 ERROR=0 SKIP=0");
    // The docs catalog: dbt's catalog query (pg_is_other_temp_schema,
    // pg_class joined to pg_attribute) finds the models' columns.
    dbt(&["docs", "generate"], "Catalog written to");
    let catalog: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(project.path().join("target/catalog.json")).unwrap(),
    )
    .unwrap();
    let nodes = catalog["nodes"].as_object().expect("catalog nodes");
    let priced = nodes
        .iter()
        .find(|(id, _)| id.ends_with(".priced_trades"))
        .map(|(_, node)| node)
        .expect("priced_trades in the docs catalog");
    assert_eq!(priced["metadata"]["type"], "VIEW", "{priced}");
    for column in ["symbol", "price", "volume", "notional"] {
        assert!(
            priced["columns"].get(column).is_some(),
            "{column} missing from {priced}"
        );
    }
    assert_lines(
        &psql(&gw, &["-c", r"\dv"]),
        &[
            " public | big_trades    | view | velo",
            " public | priced_trades | view | velo",
        ],
    );
    let out = run_script(
        gw.psql("velo"),
        "SELECT count(*) > 0 FROM priced_trades WHERE notional = price * volume;",
    );
    assert_eq!(text(&out.stdout), "t\n", "{}", text(&out.stderr));
}

/// Each integration/replay/*.sql file is one tool's catalog statement, with
/// `-- expect: LINE` comments giving lines psql's unaligned output must
/// contain (`-- expect-containing: TEXT` for part of a line, `-- expect-rows:
/// N` for a row count).
#[test]
fn tools_catalog_queries_replay() {
    let gw = Gateway::start(&[]);
    gw.wait_for_trades(20);
    let mut files: Vec<PathBuf> = std::fs::read_dir(integration_dir().join("replay"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    for file in files {
        let sql = std::fs::read_to_string(&file).unwrap();
        let out = gw
            .psql("velo")
            .args(["-A", "-v", "ON_ERROR_STOP=1", "-f"])
            .arg(&file)
            .output()
            .expect("psql");
        let stdout = text(&out.stdout);
        assert!(
            out.status.success(),
            "{}: {}",
            file.display(),
            text(&out.stderr)
        );
        let mut expectations = 0;
        for line in sql.lines() {
            if let Some(expected) = line.strip_prefix("-- expect: ") {
                expectations += 1;
                assert!(
                    stdout.lines().any(|l| l == expected),
                    "{}: missing {expected:?} in\n{stdout}",
                    file.display()
                );
            } else if let Some(part) = line.strip_prefix("-- expect-containing: ") {
                expectations += 1;
                assert!(
                    stdout.lines().any(|l| l.contains(part)),
                    "{}: no line contains {part:?} in\n{stdout}",
                    file.display()
                );
            } else if let Some(rows) = line.strip_prefix("-- expect-rows: ") {
                expectations += 1;
                let footer = format!("({rows} row{})", if rows == "1" { "" } else { "s" });
                assert!(
                    stdout.lines().any(|l| l == footer),
                    "{}: expected {footer} in\n{stdout}",
                    file.display()
                );
            }
        }
        assert!(expectations > 0, "{} has no expectations", file.display());
    }
}

/// Tools cache oids across connections, which may land on another gateway
/// or on one that restarted: PostgreSQL's objects have PostgreSQL's oids,
/// the engine's the same on every gateway.
#[test]
fn oids_are_postgresqls_and_the_same_on_every_gateway() {
    let sql = "SELECT oid FROM pg_namespace WHERE nspname = 'public';\n\
               SELECT 'pg_catalog.pg_class'::regclass::oid;\n\
               SELECT oid FROM pg_class WHERE relname = 'trades';\n\
               SELECT attrelid FROM pg_attribute WHERE attname = 'volume';\n";
    let first = Gateway::start(&[]);
    let a = run_script(first.psql("velo"), sql);
    drop(first);
    let second = Gateway::start(&[]);
    let b = run_script(second.psql("velo"), sql);
    let lines: Vec<&str> = std::str::from_utf8(&a.stdout).unwrap().lines().collect();
    assert_eq!(lines[..2], ["2200", "1259"], "{}", text(&a.stderr));
    let trades: i64 = lines[2].parse().expect("an oid");
    assert!(trades >= 16384, "a user object's oid: {trades}");
    assert_eq!(lines[3], lines[2], "pg_attribute names the same relation");
    assert_eq!(text(&a.stdout), text(&b.stdout));
}

/// Everything in the catalog belongs to whoever asks (owner columns hold
/// 10, `pg_get_userbyid` answers the session user): the session user's
/// role is oid 10, so a join of an owner column with pg_roles names it,
/// and another login role has an oid of its own.
#[test]
fn the_session_users_role_owns_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    let lines = [("alice", "a-secret"), ("bob", "b-secret")]
        .map(|(user, password)| velo_integration::hash_password(user, "scram", password))
        .join("\n");
    std::fs::write(&users, lines + "\n").unwrap();
    let gw = Gateway::start(&["--users", users.to_str().unwrap()]);
    let as_user = |user: &str, password: &str, sql: &str| {
        let out = gw
            .psql(user)
            .env("PGPASSWORD", password)
            .args(["-Atc", sql])
            .output()
            .expect("psql");
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let roles = "SELECT rolname, oid = 10 FROM pg_catalog.pg_roles ORDER BY 1";
    assert_eq!(as_user("alice", "a-secret", roles), "alice|t\nbob|f\n");
    assert_eq!(as_user("bob", "b-secret", roles), "alice|f\nbob|t\n");
    let owner = "SELECT r.rolname FROM pg_catalog.pg_namespace n \
                 JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner WHERE n.nspname = 'public'";
    assert_eq!(as_user("bob", "b-secret", owner), "bob\n");
}
