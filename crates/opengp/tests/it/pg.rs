//! PostgreSQL for the tests: one throwaway cluster per test binary run
//! (`initdb` and `pg_ctl` on a free loopback port in a temporary
//! directory), or the server `DATABASE_URL` names; and a fresh database
//! for every test, so that tests stay hermetic.
//!
//! The cluster is started on first use and stopped when the test binary
//! exits, by a small watchdog process that waits for it to go. PostgreSQL
//! refuses to run as root, so as root the cluster runs as the `postgres`
//! user (or `nobody`). The binaries come from `OPENGP_PG_BIN`, else the
//! newest `/usr/lib/postgresql/*/bin`, else `PATH`; `cargo xtask test`
//! installs them when they are missing.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};

/// Where to create databases: a server and an administrative URL on it.
struct Cluster {
    /// `postgres://user@host:port/` without a database name.
    admin: String,
    /// Appended to the URL after the database name (`?sslmode=...`).
    query: String,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();

fn cluster() -> &'static Cluster {
    match CLUSTER.get_or_init(|| match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => Ok(from_url(&url)),
        _ => start(),
    }) {
        Ok(c) => c,
        Err(e) => panic!("no PostgreSQL for the tests: {e}"),
    }
}

/// Splits `postgres://user@host/db?x=y` into the part before the database
/// name and the query.
fn from_url(url: &str) -> Cluster {
    let (head, query) = match url.find('?') {
        Some(i) => (&url[..i], url[i..].to_owned()),
        None => (url, String::new()),
    };
    let scheme_end = head.find("://").map_or(0, |i| i + 3);
    let admin = match head[scheme_end..].find('/') {
        Some(i) => head[..scheme_end + i + 1].to_owned(),
        None => format!("{head}/"),
    };
    Cluster { admin, query }
}

fn bin_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("OPENGP_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    if let Some(newest) = versions.pop() {
        return Ok(newest);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|dir| dir.join("initdb").exists() && dir.join("pg_ctl").exists())
        .ok_or_else(|| {
            "initdb and pg_ctl were not found; run `cargo xtask test` (it installs the Debian \
             package postgresql), set OPENGP_PG_BIN, or set DATABASE_URL"
                .to_owned()
        })
}

/// The command prefix that runs a PostgreSQL program as a user it accepts.
fn run_as() -> Vec<String> {
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !root {
        return Vec::new();
    }
    let has_postgres = Command::new("id")
        .args(["-u", "postgres"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let user = if has_postgres { "postgres" } else { "nobody" };
    ["runuser", "-u", user, "--"]
        .map(str::to_owned)
        .into_iter()
        .collect()
}

fn command(prefix: &[String], program: &Path) -> Command {
    match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(program);
            c
        }
        None => Command::new(program),
    }
}

fn check(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn start() -> Result<Cluster, String> {
    let bin = bin_dir()?;
    let prefix = run_as();
    let dir = std::env::temp_dir().join(format!(
        "opengp-pg-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    // The cluster's user must be able to write here.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
        .map_err(|e| format!("opening up {}: {e}", dir.display()))?;
    let data = dir.join("data");
    check(
        command(&prefix, &bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C"])
            .arg("--no-sync"),
        "initdb",
    )?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("finding a free port: {e}"))?
        .port();
    // fsync is off: these clusters hold throwaway test data, and crash
    // safety is PostgreSQL's own to test.
    let options = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=400",
        dir.display()
    );
    check(
        command(&prefix, &bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("log"))
            .args(["-w", "-t", "60", "-o", &options, "start"]),
        "pg_ctl start",
    )?;
    watch(&prefix, &bin, &dir, &data);
    Ok(Cluster {
        admin: format!("postgres://postgres@127.0.0.1:{port}/"),
        query: String::new(),
    })
}

/// Stops the cluster and removes its directory once this process is gone.
fn watch(prefix: &[String], bin: &Path, dir: &Path, data: &Path) {
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {run} '{pg_ctl}' -D '{data}' -m immediate stop; rm -rf '{dir}'",
        pid = std::process::id(),
        run = prefix.join(" "),
        pg_ctl = bin.join("pg_ctl").display(),
        data = data.display(),
        dir = dir.display(),
    );
    let spawned = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    if let Err(e) = spawned {
        panic!("starting the cluster's watchdog: {e}");
    }
}

/// Runs blocking PostgreSQL client work on a plain thread: the client
/// cannot run on an async executor's thread.
fn off_runtime<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|s| {
        s.spawn(f)
            .join()
            .unwrap_or_else(|_| panic!("PostgreSQL admin work panicked"))
    })
}

fn admin(sql: &str) {
    let c = cluster();
    let url = format!("{}postgres{}", c.admin, c.query);
    off_runtime(|| {
        let mut client = postgres::Client::connect(&url, postgres::NoTls)
            .unwrap_or_else(|e| panic!("connecting to the test cluster: {e}"));
        client
            .batch_execute(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    });
}

/// A database of its own for one test, dropped by [`TestDatabase::drop_now`].
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    /// Statements seen on resource tables that do not name the practice.
    pub violations: Arc<Mutex<Vec<String>>>,
    /// How many statements the store sent, to show the check saw them.
    pub seen: Arc<Mutex<usize>>,
}

impl TestDatabase {
    pub fn create() -> TestDatabase {
        let name = format!("opengp_test_{:016x}", rand::random::<u64>());
        admin(&format!("CREATE DATABASE {name}"));
        let c = cluster();
        TestDatabase {
            url: format!("{}{name}{}", c.admin, c.query),
            name,
            violations: Arc::default(),
            seen: Arc::default(),
        }
    }

    /// Options for a backend on this database, with the statement check.
    pub fn options(&self) -> gp_store_postgres::PgOptions {
        let (violations, seen) = (self.violations.clone(), self.seen.clone());
        gp_store_postgres::PgOptions {
            on_statement: Some(Arc::new(move |sql: &str| {
                if let Ok(mut n) = seen.lock() {
                    *n += 1;
                }
                if let Err(why) = names_practice(sql)
                    && let Ok(mut v) = violations.lock()
                {
                    v.push(format!("{why}: {sql}"));
                }
            })),
            ..Default::default()
        }
    }

    /// Opens the PostgreSQL backend on this database (off the executor).
    pub fn backend(&self) -> Arc<gp_store_postgres::PgBackend> {
        let (url, options) = (self.url.clone(), self.options());
        off_runtime(move || {
            gp_store_postgres::PgBackend::connect(&url, options)
                .unwrap_or_else(|e| panic!("opening the PostgreSQL store: {e}"))
        })
    }

    /// Asserts that every statement named the practice, then drops the
    /// database.
    pub fn finish(&self) {
        let violations = self
            .violations
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default();
        assert!(
            violations.is_empty(),
            "statements without the practice: {violations:#?}"
        );
        let seen = self.seen.lock().map(|n| *n).unwrap_or_default();
        assert!(seen > 0, "the statement check saw no statements");
        self.discard();
    }

    /// Drops the database without the statement check, for a test whose
    /// statements came from other processes (the command line).
    pub fn discard(&self) {
        admin(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

/// The tables holding a practice's data. A statement on them must bind the
/// practice: every mention of one is matched by a `practice = $1` (or
/// `= ANY($1)`) filter, or, for an insert, a `(practice, ...)` column list
/// fed by `$1` (or by the rows of a `COPY`). Schema changes (DDL) are not data statements.
const PRACTICE_TABLES: &[&str] = &[
    "resource_version",
    "resource_current",
    "practice_counter",
    "index_state",
];

pub fn names_practice(sql: &str) -> Result<(), String> {
    let s = sql.to_lowercase();
    if s.contains("create table") || s.contains("create index") || s.contains("alter table") {
        return Ok(());
    }
    let mentions: usize = PRACTICE_TABLES
        .iter()
        .chain(gp_tables(&s).iter())
        .map(|t| count_word(&s, t))
        .sum();
    if mentions == 0 {
        return Ok(());
    }
    let filters = s.matches("practice = $1").count() + s.matches("practice = any($1)").count();
    // A `COPY ... FROM STDIN` names no value: its rows carry the practice
    // in their first column, written from the practice the store is scoped to.
    let copy =
        s.trim_start().starts_with("copy ") && s.contains("(practice,") && s.contains("from stdin");
    let insert = copy
        || s.trim_start().starts_with("insert")
            && s.contains("(practice,")
            && (s.contains("select $1,") || s.contains("values ($1,"));
    if filters >= mentions || (insert && filters + 1 >= mentions) {
        Ok(())
    } else {
        Err(format!(
            "{mentions} practice table mention(s), {filters} practice filter(s)"
        ))
    }
}

/// Search index tables (`idx_*`), named as they appear.
fn gp_tables(s: &str) -> Vec<&'static str> {
    const IDX: &[&str] = &[
        "idx_string",
        "idx_token",
        "idx_date",
        "idx_number",
        "idx_quantity",
        "idx_reference",
        "idx_uri",
        "idx_text",
    ];
    IDX.iter().copied().filter(|t| s.contains(t)).collect()
}

/// Occurrences of `word` not inside a longer identifier.
fn count_word(s: &str, word: &str) -> usize {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    s.match_indices(word)
        .filter(|(i, _)| {
            let before = s[..*i].chars().next_back();
            let after = s[i + word.len()..].chars().next();
            !before.is_some_and(ident) && !after.is_some_and(ident)
        })
        .count()
}

/// The check itself, on statements it must pass and fail.
#[test]
fn the_practice_check_tells_scoped_statements_apart() {
    let ok = [
        "SELECT count(*) FROM resource_current c WHERE c.practice = $1 AND c.type = $2",
        "SELECT c.id FROM resource_current c JOIN resource_version v ON v.practice = $1 AND v.id = c.id WHERE c.practice = $1",
        "INSERT INTO resource_version (practice, type) SELECT $1, t.type FROM unnest($2::text[]) AS t(type)",
        "SELECT practice, seq FROM practice_counter WHERE practice = ANY($1) FOR UPDATE",
        "SELECT key, ods, name FROM practice WHERE ods = $1",
        "COPY idx_token (practice, type, id) FROM STDIN (FORMAT binary)",
        "BEGIN",
    ];
    for sql in ok {
        assert_eq!(names_practice(sql), Ok(()), "{sql}");
    }
    let bad = [
        "SELECT count(*) FROM resource_current",
        "SELECT c.id FROM resource_current c JOIN resource_version v ON v.id = c.id WHERE c.practice = $1",
        "INSERT INTO resource_version (practice, type) VALUES ($2, $1)",
        "UPDATE practice_counter SET seq = 0",
        "COPY idx_token (type, id) FROM STDIN (FORMAT binary)",
        "DELETE FROM idx_token WHERE type = $1",
    ];
    for sql in bad {
        assert!(names_practice(sql).is_err(), "{sql}");
    }
}

/// A PostgreSQL database written by an OpenGP from before full-text search
/// (schema 10; `idx_text` is migration 11) gains the words of its current
/// versions when opened, and only theirs: not a deleted resource's, not an
/// old version's (as SQLite's `upgrading_indexes_the_words...` test). Its
/// practice's index rows are then of an unknown extraction version, for
/// the server to reindex at start.
#[test]
fn upgrading_indexes_the_words_of_resources_stored_before() {
    let db = TestDatabase::create();
    gp_store_postgres::PgBackend::migrate_to(&db.url, 10).unwrap_or_else(|e| panic!("{e}"));
    let condition = |words: &str| {
        serde_json::json!({
            "resourceType": "Condition", "id": "c1",
            "text": {"status": "generated", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{words}</div>")},
            "subject": {"reference": "Patient/p1"}
        })
        .to_string()
        .into_bytes()
    };
    let mut client = postgres::Client::connect(&db.url, postgres::NoTls)
        .unwrap_or_else(|e| panic!("connecting: {e}"));
    client
        .batch_execute(
            "INSERT INTO practice (key, ods, name, created_at, created_by) VALUES (1, 'A81001', 'Old', 0, 'system');
             INSERT INTO practice_counter (practice, seq, stamped) VALUES (1, 4, 4);",
        )
        .unwrap_or_else(|e| panic!("{e}"));
    for (id, version, seq, deleted, body) in [
        ("c1", 1i64, 1i64, false, condition("Hay fever")),
        ("c1", 2, 2, false, condition("Asthma, well controlled")),
        ("c2", 1, 3, false, condition("Gout")),
        ("c2", 2, 4, true, Vec::new()),
    ] {
        client
            .execute(
                "INSERT INTO resource_version (practice, type, id, version, seq, last_updated, deleted, author, body)
                 VALUES (1, 'Condition', $1, $2, $3, $3, $4, 'u', $5)",
                &[&id, &version, &seq, &deleted, &body],
            )
            .unwrap_or_else(|e| panic!("{e}"));
    }
    client
        .batch_execute(
            "INSERT INTO resource_current (practice, type, id, version, seq, last_updated, deleted)
             VALUES (1, 'Condition', 'c1', 2, 2, 2, false), (1, 'Condition', 'c2', 2, 4, 4, true);",
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let backend = gp_store_postgres::PgBackend::connect(&db.url, db.options())
        .unwrap_or_else(|e| panic!("opening the old database: {e}"));
    drop(backend);
    let mut matching = |words: &str| -> Vec<(String, String)> {
        client
            .query(
                "SELECT id, param FROM idx_text WHERE practice = 1
                 AND to_tsvector('simple', body) @@ to_tsquery('simple', $1) ORDER BY id, param",
                &[&words],
            )
            .unwrap_or_else(|e| panic!("{e}"))
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    };
    let c1 = |param: &str| ("c1".to_owned(), param.to_owned());
    assert_eq!(matching("asthm:*"), vec![c1("_content"), c1("_text")]);
    assert_eq!(matching("controlled:*"), vec![c1("_content"), c1("_text")]);
    assert!(matching("hay:*").is_empty(), "an old version's words");
    assert!(matching("gout:*").is_empty(), "a deleted resource's words");
    let state: (i32, Option<i32>) = client
        .query_one(
            "SELECT version, resume_version FROM index_state WHERE practice = 1",
            &[],
        )
        .map(|r| (r.get(0), r.get(1)))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(state, (0, None), "rows of an unknown extraction version");
    drop(client);
    db.finish();
}

/// Resource bodies compressed with a dictionary the store trains on its
/// own versions (`gp_store_sql::body`), as SQLite's test in
/// crates/store-sqlite/tests/bodies.rs: the dictionary arrives without
/// anyone asking once the store has grown, later versions are zstd frames
/// naming it, everything reads back byte for byte (the audit chain over
/// those bytes included), and a second server on the same database, which
/// opened it before the dictionary existed, reads the frames too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_compressed_once_the_store_has_trained_a_dictionary() {
    use gp_fhir::{Id, OdsCode, Resource, ResourceType};
    use gp_store::audit::Event;
    use gp_store::{Actor, Ctx, Store};
    const MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

    let db = TestDatabase::create();
    let store = Store::new(db.backend());
    let other = Store::new(db.backend());
    let ods = OdsCode::parse("A81001").unwrap_or_else(|| panic!("ods"));
    let practice = store
        .ensure_practice(&ods, "Bodies", &Actor::system())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ctx = Ctx::new(practice, Actor::new("operator"));
    let ty = ResourceType::parse("Patient").unwrap_or_else(|| panic!("type"));
    let patient = |i: u64| {
        Resource::from_value(serde_json::json!({
            "resourceType": "Patient",
            "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": format!("{}", 9_000_000_000 + i)}],
            "name": [{"family": format!("Family{i}"), "given": ["Alex"]}]
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    };
    let url = db.url.clone();
    let heads = move || {
        let url = url.clone();
        off_runtime(move || {
            let mut c = postgres::Client::connect(&url, postgres::NoTls)
                .unwrap_or_else(|e| panic!("connecting: {e}"));
            let rows: Vec<Vec<u8>> = c
                .query(
                    "SELECT substr(body, 1, 4) FROM resource_version WHERE practice = (SELECT key FROM practice WHERE ods = 'A81001') ORDER BY seq",
                    &[],
                )
                .unwrap_or_else(|e| panic!("{e}"))
                .iter()
                .map(|r| r.get(0))
                .collect();
            let dicts: i64 = c
                .query_one("SELECT count(*) FROM body_dict", &[])
                .map(|r| r.get(0))
                .unwrap_or_else(|e| panic!("{e}"));
            (rows, dicts)
        })
    };

    let mut written = vec![
        store
            .create(&ctx, patient(0), None)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut n = 0;
    while heads().1 == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no dictionary was trained"
        );
        for _ in 0..1_000 {
            n += 1;
            store.audit(&ctx, Event::rest("read").target(ty, &format!("p{n}")));
        }
        store
            .audit_barrier(&ctx)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(n >= 5_000, "trained after {n} versions");
    let before = heads().0.len();
    for i in 1..=20 {
        written.push(
            store
                .create(&ctx, patient(i), None)
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        );
    }
    let (rows, _) = heads();
    assert_eq!(rows.first().and_then(|r| r.first()), Some(&b'{'));
    assert!(
        rows.len() >= before + 40,
        "20 creates and their AuditEvents"
    );
    assert!(
        rows[before..].iter().all(|h| h.as_slice() == MAGIC),
        "versions written after the dictionary are zstd frames"
    );
    for s in [&store, &other] {
        for w in &written {
            let id = Id::parse(&w.version.id).unwrap_or_else(|e| panic!("{e}"));
            let got = s.read(&ctx, ty, id).await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(got.body, w.version.body);
        }
        let report = s.verify_audit(&ctx).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(report.broken.is_none(), "{report:?}");
        assert!(report.records >= 5_000, "{report:?}");
    }
    off_runtime(|| {
        store.close();
        other.close();
    });
    db.finish();
}
