//! One connection with its prepared-statement cache, and the pool of them.
//!
//! Every statement this crate sends goes through [`Conn`], so that the
//! statement observer (a test hook) sees all of them.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};

use gp_store::StoreError;
use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, NoTls, Row, Statement};

/// Called with the text of every statement before it is sent.
pub type StatementObserver = Arc<dyn Fn(&str) + Send + Sync>;

/// Parameters as the `postgres` crate takes them.
pub(crate) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// The most distinct statements a connection keeps prepared; searches build
/// their SQL from the query's shape, so the set is bounded but not tiny.
const CACHE_LIMIT: usize = 512;

pub(crate) fn db_err(e: postgres::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

pub(crate) fn is_unique_violation(e: &postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// A connection and the statements prepared on it.
pub(crate) struct Conn {
    client: Client,
    cache: HashMap<String, Statement>,
    observer: Option<StatementObserver>,
}

/// How to open connections: the URL and the observer every one gets.
#[derive(Clone)]
pub(crate) struct Connector {
    pub config: postgres::Config,
    pub observer: Option<StatementObserver>,
}

impl Connector {
    pub fn connect(&self) -> Result<Conn, StoreError> {
        let client = self
            .config
            .connect(NoTls)
            .map_err(|e| StoreError::Backend(format!("connecting to PostgreSQL: {e}")))?;
        Ok(Conn {
            client,
            cache: HashMap::new(),
            observer: self.observer.clone(),
        })
    }
}

impl Conn {
    fn observe(&self, sql: &str) {
        if let Some(o) = &self.observer {
            o(sql);
        }
    }

    fn prepare(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        if let Some(s) = self.cache.get(sql) {
            return Ok(s.clone());
        }
        if self.cache.len() >= CACHE_LIMIT {
            self.cache.clear();
        }
        let s = self.client.prepare(sql)?;
        self.cache.insert(sql.to_owned(), s.clone());
        Ok(s)
    }

    pub fn query(&mut self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, postgres::Error> {
        self.observe(sql);
        let s = self.prepare(sql)?;
        self.client.query(&s, params)
    }

    pub fn query_opt(
        &mut self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<Row>, postgres::Error> {
        self.observe(sql);
        let s = self.prepare(sql)?;
        self.client.query_opt(&s, params)
    }

    pub fn query_one(&mut self, sql: &str, params: Params<'_>) -> Result<Row, postgres::Error> {
        self.observe(sql);
        let s = self.prepare(sql)?;
        self.client.query_one(&s, params)
    }

    pub fn execute(&mut self, sql: &str, params: Params<'_>) -> Result<u64, postgres::Error> {
        self.observe(sql);
        let s = self.prepare(sql)?;
        self.client.execute(&s, params)
    }

    /// Streams the rows of a statement without parameters to `f`, without
    /// holding them all in memory (a terminology release read back).
    pub fn for_each_row(
        &mut self,
        sql: &str,
        f: &mut dyn FnMut(&Row) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        use postgres::fallible_iterator::FallibleIterator;
        self.observe(sql);
        let s = self.prepare(sql).map_err(db_err)?;
        let mut rows = self
            .client
            .query_raw(&s, std::iter::empty::<i64>())
            .map_err(db_err)?;
        while let Some(row) = rows.next().map_err(db_err)? {
            f(&row)?;
        }
        Ok(())
    }

    /// Starts a `COPY ... FROM STDIN`.
    pub fn copy_in(&mut self, sql: &str) -> Result<postgres::CopyInWriter<'_>, postgres::Error> {
        self.observe(sql);
        self.client.copy_in(sql)
    }

    /// Statements without parameters (transaction control, migrations).
    pub fn batch(&mut self, sql: &str) -> Result<(), postgres::Error> {
        self.observe(sql);
        self.client.batch_execute(sql)
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}

/// Reader connections, opened on demand up to a limit; callers beyond it
/// wait for one to come back.
pub(crate) struct Pool {
    connector: Connector,
    max: usize,
    state: Mutex<PoolState>,
    returned: Condvar,
}

struct PoolState {
    idle: Vec<Conn>,
    /// Connections in existence, idle or lent out.
    open: usize,
}

impl Pool {
    pub fn new(connector: Connector, max: usize) -> Self {
        Pool {
            connector,
            max: max.max(1),
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
            }),
            returned: Condvar::new(),
        }
    }

    fn poisoned() -> StoreError {
        StoreError::Backend("the connection pool's lock was poisoned".into())
    }

    /// Lends a connection, opening one if the pool is below its limit.
    pub fn get(&self) -> Result<Conn, StoreError> {
        let mut st = self.state.lock().map_err(|_| Self::poisoned())?;
        loop {
            if let Some(c) = st.idle.pop() {
                return Ok(c);
            }
            if st.open < self.max {
                st.open += 1;
                drop(st);
                return self.connector.connect().inspect_err(|_| {
                    if let Ok(mut st) = self.state.lock() {
                        st.open -= 1;
                    }
                });
            }
            st = self.returned.wait(st).map_err(|_| Self::poisoned())?;
        }
    }

    /// Takes in a connection opened elsewhere, as if the pool had opened it.
    pub fn adopt(&self, conn: Conn) {
        if let Ok(mut st) = self.state.lock() {
            st.open += 1;
        }
        self.put(conn);
    }

    /// Takes a connection back; a broken one is dropped and its place freed.
    pub fn put(&self, conn: Conn) {
        if let Ok(mut st) = self.state.lock() {
            if conn.is_closed() {
                st.open -= 1;
            } else {
                st.idle.push(conn);
            }
        }
        self.returned.notify_one();
    }

    /// Runs `f` on a lent connection.
    pub fn with<R>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let mut conn = self.get()?;
        let out = f(&mut conn);
        self.put(conn);
        out
    }

    /// Removes the idle connections, for the caller to close where
    /// blocking is allowed.
    pub fn drain(&self) -> Vec<Conn> {
        match self.state.lock() {
            Ok(mut st) => {
                let idle = std::mem::take(&mut st.idle);
                st.open -= idle.len();
                idle
            }
            Err(_) => Vec::new(),
        }
    }
}
