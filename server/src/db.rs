//! One SQL dialect over two engines: SQLite (embedded, the default) and PostgreSQL (selected by
//! a `postgres://` URL). Statements are written once with `$1..$n` parameters and portable
//! types; the per-engine texts are the schema's auto-increment column and, on the ledger's hot
//! path, PostgreSQL's one-statement forms (`unnest` of array parameters, a `DELETE .. RETURNING`
//! feeding an `INSERT`), which save it round trips SQLite does not pay.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A column or parameter value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// BIGINT / INTEGER.
    Int(i64),
    /// TEXT.
    Text(String),
    /// NULL.
    Null,
    /// A `text[]` parameter (PostgreSQL only): a statement over any number of rows has one
    /// text (`unnest($1::text[], ..)`), so it is prepared once and sent in one message.
    Texts(Vec<String>),
    /// A `bigint[]` parameter (PostgreSQL only), as [`Value::Texts`].
    Ints(Vec<i64>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// A SQL statement under construction: text and its numbered parameters.
#[derive(Debug, Default)]
pub struct Sql {
    /// The text.
    pub text: String,
    /// Its parameters, `$1`...
    pub params: Vec<Value>,
}

impl Sql {
    /// Appends `clause`, each `?` in it a new parameter taken in order from `values`.
    pub fn push(&mut self, clause: &str, values: impl IntoIterator<Item = Value>) -> &mut Self {
        let mut values = values.into_iter();
        for (i, part) in clause.split('?').enumerate() {
            if i > 0 {
                self.params.push(values.next().unwrap_or(Value::Null));
                self.text.push_str(&format!("${}", self.params.len()));
            }
            self.text.push_str(part);
        }
        self
    }

    /// `col IN ($k, ...)` over `values` (never empty: the caller handles no match).
    pub fn push_in(&mut self, col: &str, values: &[String]) -> &mut Self {
        let marks = vec!["?"; values.len()].join(", ");
        self.push(
            &format!("{col} IN ({marks})"),
            values.iter().map(|v| Value::from(v.clone())),
        )
    }
}

impl Value {
    /// As an integer (NULL and text read as `None`).
    pub fn int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
    /// As text.
    pub fn text(&self) -> Option<&str> {
        match self {
            Value::Text(t) => Some(t),
            _ => None,
        }
    }
}

/// A database failure.
#[derive(Debug, thiserror::Error)]
#[error("database: {0}")]
pub struct DbError(pub String);

/// A row.
pub type Row = Vec<Value>;

/// What a statement runner can do; one per engine.
pub trait Conn {
    /// Runs a statement, returns affected rows.
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError>;
    /// Runs a query.
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError>;
    /// Runs several statements without parameters.
    fn batch(&mut self, sql: &str) -> Result<(), DbError>;
    /// The engine. SQLite's transactions run one at a time on one writer; PostgreSQL's run
    /// side by side.
    fn kind(&self) -> Kind;
    /// Runs a write as the transaction's last statement, when its count is not needed:
    /// PostgreSQL sends it with `COMMIT`, one round trip for both, and its error fails the
    /// commit (a statement run after it sends it first). SQLite runs it now.
    fn execute_last(&mut self, sql: &str, params: &[Value]) -> Result<(), DbError> {
        self.execute(sql, params).map(|_| ())
    }
    /// Runs statements in order; returns each one's affected rows, or the first error.
    /// PostgreSQL sends them all before reading an answer (one round trip: use it for writes
    /// that do not depend on each other's results); SQLite runs them one by one.
    fn execute_all(&mut self, statements: &[(String, Vec<Value>)]) -> Result<Vec<u64>, DbError> {
        statements
            .iter()
            .map(|(sql, params)| self.execute(sql, params))
            .collect()
    }
}

struct Sqlite(rusqlite::Connection);

/// Prepared statements SQLite keeps (each a few KiB).
const STATEMENT_CACHE: usize = 512;

/// The placeholders of a multi-row `VALUES` list: `rows` rows of `width` parameters each,
/// numbered from `$1` in row order (`($1, $2), ($3, $4)` for two rows of two).
pub fn values_list(rows: usize, width: usize) -> String {
    (0..rows)
        .map(|r| {
            let marks: Vec<String> = (1..=width).map(|i| format!("${}", r * width + i)).collect();
            format!("({})", marks.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Row counts a multi-row statement is cut into ([`shaped_chunks`]).
const CHUNK_SHAPES: [usize; 5] = [256, 64, 16, 4, 1];

/// `items` cut into chunks of 256, 64, 16, 4 and 1 (largest first): a multi-row statement
/// over them then has one of five texts whatever the count, so each engine prepares it once
/// and keeps it (a text per count made SQLite parse a new statement of up to a thousand
/// placeholders every time, and pushed the sync's own statements out of its cache).
pub fn shaped_chunks<T>(items: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        let size = CHUNK_SHAPES.iter().copied().find(|s| *s <= rest.len())?;
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        Some(chunk)
    })
}

/// `$1` -> `?1`: SQLite reads `$1` as a *named* parameter whose index depends on the order of
/// first appearance; `?N` is explicit.
fn sqlite_params(sql: &str) -> String {
    sql.replace('$', "?")
}

/// Bound by reference: a record's text goes to SQLite without a copy of its own.
impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Int(i) => ValueRef::Integer(*i),
            Value::Text(t) => ValueRef::Text(t.as_bytes()),
            Value::Null => ValueRef::Null,
            Value::Texts(_) | Value::Ints(_) => {
                return Err(rusqlite::Error::ToSqlConversionFailure(
                    "array parameters are PostgreSQL's only".into(),
                ));
            }
        }))
    }
}

impl Conn for Sqlite {
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        let mut st = self
            .0
            .prepare_cached(&sqlite_params(sql))
            .map_err(|e| DbError(e.to_string()))?;
        let n = st
            .execute(rusqlite::params_from_iter(params))
            .map_err(|e| DbError(e.to_string()))?;
        Ok(n as u64)
    }
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        let mut st = self
            .0
            .prepare_cached(&sqlite_params(sql))
            .map_err(|e| DbError(e.to_string()))?;
        let cols = st.column_count();
        let rows = st
            .query_map(rusqlite::params_from_iter(params), |r| {
                (0..cols)
                    .map(|i| {
                        Ok(match r.get_ref(i)? {
                            rusqlite::types::ValueRef::Integer(v) => Value::Int(v),
                            rusqlite::types::ValueRef::Text(t) => {
                                Value::Text(String::from_utf8_lossy(t).into_owned())
                            }
                            _ => Value::Null,
                        })
                    })
                    .collect::<rusqlite::Result<Row>>()
            })
            .map_err(|e| DbError(e.to_string()))?;
        rows.collect::<Result<_, _>>()
            .map_err(|e| DbError(e.to_string()))
    }
    fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        self.0
            .execute_batch(sql)
            .map_err(|e| DbError(e.to_string()))
    }
    fn kind(&self) -> Kind {
        Kind::Sqlite
    }
}

/// A PostgreSQL connection with its prepared statements, on tokio-postgres driven by a runtime
/// of its own (the calls come from tokio's blocking pool; the synchronous `postgres` client is
/// the same construction, without the two savings below). Two round trips saved per transaction: statements are
/// prepared once per connection (`query(&str, ..)` would parse and describe each time), and
/// `BEGIN` is sent in one write with the transaction's first statement (pipelined).
struct Postgres {
    rt: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
    statements: std::collections::HashMap<String, tokio_postgres::Statement>,
    /// A transaction was begun and `BEGIN` not yet sent: it goes with the next statement.
    begin_pending: bool,
    /// [`Conn::execute_last`]'s write, not yet sent: it goes with `COMMIT` (or is run before
    /// any later statement; a rollback drops it).
    last: Option<(tokio_postgres::Statement, Vec<Value>)>,
}

impl Postgres {
    fn connect(url: &str) -> Result<Self, DbError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| DbError(format!("runtime for PostgreSQL: {e}")))?;
        let (client, connection) = rt
            .block_on(tokio_postgres::connect(url, tokio_postgres::NoTls))
            .map_err(|e| DbError(format!("cannot connect to PostgreSQL: {e}")))?;
        // Runs whenever this runtime is driven, i.e. during every call below.
        rt.spawn(async move {
            if let Err(e) = connection.await {
                log::error!("PostgreSQL connection: {e}");
            }
        });
        Ok(Self {
            rt,
            client,
            statements: std::collections::HashMap::new(),
            begin_pending: false,
            last: None,
        })
    }

    fn statement(&mut self, sql: &str) -> Result<tokio_postgres::Statement, DbError> {
        if let Some(st) = self.statements.get(sql) {
            return Ok(st.clone());
        }
        let st = self
            .rt
            .block_on(self.client.prepare(sql))
            .map_err(|e| DbError(e.to_string()))?;
        // Bounded: the server's statements are a fixed set (a few hundred at most).
        if self.statements.len() >= 1024 {
            self.statements.clear();
        }
        self.statements.insert(sql.to_owned(), st.clone());
        Ok(st)
    }

    /// Sends a held [`Conn::execute_last`] write now, a statement having come after it.
    fn flush_last(&mut self) -> Result<(), DbError> {
        let Some((st, params)) = self.last.take() else {
            return Ok(());
        };
        self.run(&st, &params).map(|_| ())
    }

    /// Executes a prepared statement (with `BEGIN` when pending); its affected rows.
    fn run(&mut self, st: &tokio_postgres::Statement, params: &[Value]) -> Result<u64, DbError> {
        let refs = pg_params(params);
        let begin = std::mem::take(&mut self.begin_pending);
        block(
            &self.rt,
            &self.client,
            begin,
            self.client.execute(st, &refs),
        )
    }

    /// `COMMIT`, with the held last write before it in the same round trip; the first error
    /// in order (after a failed write PostgreSQL answers `COMMIT` by rolling back).
    fn commit(&mut self) -> Result<(), DbError> {
        let begin = std::mem::take(&mut self.begin_pending);
        let Some((st, params)) = self.last.take() else {
            if begin {
                // Nothing ran: there is no transaction to end.
                return Ok(());
            }
            return block(
                &self.rt,
                &self.client,
                false,
                self.client.batch_execute("COMMIT"),
            );
        };
        let refs = pg_params(&params);
        let client = &self.client;
        block(&self.rt, client, begin, async {
            let (write, commit) =
                tokio::join!(client.execute(&st, &refs), client.batch_execute("COMMIT"));
            write?;
            commit
        })
    }
}

/// Runs `request` on a connection's runtime, preceded in the same write by `BEGIN` when one is
/// pending: both requests are queued before either answer is awaited. A failed BEGIN fails the
/// call (the statement then ran outside a transaction only on a connection already broken).
fn block<T>(
    rt: &tokio::runtime::Runtime,
    client: &tokio_postgres::Client,
    begin: bool,
    request: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, DbError> {
    rt.block_on(async {
        if begin {
            let (b, r) = tokio::join!(client.batch_execute("BEGIN"), request);
            b?;
            r
        } else {
            request.await
        }
    })
    .map_err(|e| DbError(e.to_string()))
}

/// A parameter binds as what it holds, borrowed (no copy of its text): each variant is checked
/// against the statement's parameter type as that Rust type would be, and `Null` binds to any
/// type (`Option<String>::None` only binds to text).
impl tokio_postgres::types::ToSql for Value {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut tokio_postgres::types::private::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Int(i) => i.to_sql(ty, out),
            Value::Text(t) => t.to_sql(ty, out),
            Value::Null => Ok(tokio_postgres::types::IsNull::Yes),
            Value::Texts(t) => t.to_sql(ty, out),
            Value::Ints(i) => i.to_sql(ty, out),
        }
    }
    fn accepts(_: &tokio_postgres::types::Type) -> bool {
        true
    }
    fn to_sql_checked(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut tokio_postgres::types::private::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Int(i) => i.to_sql_checked(ty, out),
            Value::Text(t) => t.to_sql_checked(ty, out),
            Value::Null => Ok(tokio_postgres::types::IsNull::Yes),
            Value::Texts(t) => t.to_sql_checked(ty, out),
            Value::Ints(i) => i.to_sql_checked(ty, out),
        }
    }
}

/// A statement's parameters as tokio-postgres takes them.
fn pg_params(params: &[Value]) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
    params
        .iter()
        .map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect()
}

/// Polls `requests` together, each first in order (tokio-postgres sends a request when its
/// future is first polled, so they go out pipelined, in order); their results in order, or the
/// first error in order (after a failure PostgreSQL fails the rest of the transaction's).
async fn in_order<F>(
    mut requests: Vec<std::pin::Pin<Box<F>>>,
) -> Result<Vec<u64>, tokio_postgres::Error>
where
    F: std::future::Future<Output = Result<u64, tokio_postgres::Error>>,
{
    let mut done: Vec<Option<Result<u64, tokio_postgres::Error>>> =
        requests.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (r, d) in requests.iter_mut().zip(done.iter_mut()) {
            if d.is_none() {
                match r.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *d = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    done.into_iter().flatten().collect()
}

impl Conn for Postgres {
    fn kind(&self) -> Kind {
        Kind::Postgres
    }
    fn execute_last(&mut self, sql: &str, params: &[Value]) -> Result<(), DbError> {
        self.flush_last()?;
        let st = self.statement(sql)?;
        self.last = Some((st, params.to_vec()));
        Ok(())
    }
    fn execute_all(&mut self, statements: &[(String, Vec<Value>)]) -> Result<Vec<u64>, DbError> {
        self.flush_last()?;
        let prepared = statements
            .iter()
            .map(|(sql, _)| self.statement(sql))
            .collect::<Result<Vec<_>, _>>()?;
        let refs: Vec<_> = statements.iter().map(|(_, p)| pg_params(p)).collect();
        let begin = std::mem::take(&mut self.begin_pending);
        let client = &self.client;
        let requests = prepared
            .iter()
            .zip(&refs)
            .map(|(st, p)| Box::pin(client.execute(st, p)))
            .collect();
        block(&self.rt, client, begin, in_order(requests))
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        self.flush_last()?;
        let st = self.statement(sql)?;
        self.run(&st, params)
    }
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        self.flush_last()?;
        let st = self.statement(sql)?;
        let refs = pg_params(params);
        let begin = std::mem::take(&mut self.begin_pending);
        let rows = block(&self.rt, &self.client, begin, self.client.query(&st, &refs))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let mut row = Vec::with_capacity(r.len());
            for (i, c) in r.columns().iter().enumerate() {
                let v = if *c.type_() == tokio_postgres::types::Type::INT8 {
                    r.try_get::<_, Option<i64>>(i)
                        .map_err(|e| DbError(e.to_string()))?
                        .map_or(Value::Null, Value::Int)
                } else if *c.type_() == tokio_postgres::types::Type::INT4 {
                    r.try_get::<_, Option<i32>>(i)
                        .map_err(|e| DbError(e.to_string()))?
                        .map_or(Value::Null, |v| Value::Int(i64::from(v)))
                } else {
                    r.try_get::<_, Option<String>>(i)
                        .map_err(|e| DbError(e.to_string()))?
                        .map_or(Value::Null, Value::Text)
                };
                row.push(v);
            }
            out.push(row);
        }
        Ok(out)
    }
    fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        if sql == "BEGIN" {
            // Sent with the first statement (a transaction without one sends it at COMMIT).
            self.last = None;
            self.begin_pending = true;
            return Ok(());
        }
        if sql == "COMMIT" {
            return self.commit();
        }
        if sql == "ROLLBACK" {
            // The held write is not sent; nothing ran: there is no transaction to end.
            self.last = None;
            if std::mem::take(&mut self.begin_pending) {
                return Ok(());
            }
        }
        self.flush_last()?;
        let begin = std::mem::take(&mut self.begin_pending);
        block(
            &self.rt,
            &self.client,
            begin,
            self.client.batch_execute(sql),
        )
    }
}

/// The engine behind a URL.
pub struct Db {
    /// PostgreSQL: a pool of connections, one transaction each.
    conns: Vec<Mutex<Box<dyn Conn + Send>>>,
    /// SQLite: the one writer connection, with group commit.
    sqlite: Option<Group>,
    next: AtomicUsize,
    kind: Kind,
}

/// Which engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// SQLite file.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// Most transactions one SQLite commit carries (bounds how long the first waits).
const MAX_GROUP: usize = 64;

/// Group commit over SQLite's single writer. SQLite commits one transaction at a time and
/// each commit is an fsync of the WAL (0.2-3 ms here), so at thousands of transactions a
/// second the fsyncs alone fill the writer. Each caller's work runs in a SAVEPOINT of one
/// shared transaction while others queue for the connection; the last in the queue (or the
/// 64th) commits, and every caller's result is released only after the COMMIT that made its
/// writes durable. A caller whose work fails is rolled back to its savepoint alone; a commit
/// that fails fails every caller in it (nothing of theirs was stored, nothing is
/// acknowledged).
///
/// The fsync is not done holding the writer: the connection runs with `synchronous=NORMAL`
/// (in WAL mode a COMMIT then writes its frames without syncing them; SQLite still syncs
/// around checkpoints), and the committing caller syncs the WAL file itself after letting
/// the next group start. fsync flushes the file, whichever descriptor asks, so the next
/// group's work overlaps this group's sync, and no caller is answered before the sync that
/// covers its frames has returned.
struct Group {
    /// Callers queued for the connection: while any are, the holder leaves the commit to them.
    queued: AtomicUsize,
    writer: Mutex<Writer>,
    /// The WAL to sync after each commit that wrote (`None`: an in-memory database).
    wal: Option<Wal>,
    /// How many writing commits are known durable (a sync returned after them).
    durable: std::sync::atomic::AtomicU64,
    /// A sync failed: nothing more is acknowledged.
    broken: std::sync::atomic::AtomicBool,
}

/// The database's write-ahead log file (`PATH-wal`), opened once and again only when it was
/// replaced (SQLite deletes it when the last connection closes; ours stays open).
struct Wal {
    path: std::path::PathBuf,
    file: Mutex<Option<(std::sync::Arc<std::fs::File>, u64)>>,
}

impl Wal {
    /// Makes every frame written to the WAL so far durable.
    fn sync(&self) -> std::io::Result<()> {
        let ino = file_id(&std::fs::metadata(&self.path)?);
        let file = {
            let mut f = self
                .file
                .lock()
                .map_err(|_| std::io::Error::other("WAL handle poisoned"))?;
            match &*f {
                Some((file, i)) if *i == ino => file.clone(),
                _ => {
                    let file = std::sync::Arc::new(std::fs::File::open(&self.path)?);
                    *f = Some((file.clone(), file_id(&file.metadata()?)));
                    file
                }
            }
        };
        file.sync_data()
    }
}

/// Which file a path names now (its inode; elsewhere than Unix a constant: the first handle
/// is kept).
fn file_id(m: &std::fs::Metadata) -> u64 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        m.ino()
    }
    #[cfg(not(unix))]
    {
        let _ = m;
        u64::MAX
    }
}

struct Writer {
    conn: Sqlite,
    /// The open transaction's outcome, shared by its callers; `None` when none is open.
    open: Option<std::sync::Arc<Outcome>>,
    jobs: usize,
    /// The connection's row-change count at the last commit: a commit that changed no row
    /// wrote no frame to sync.
    changes: u64,
    /// Commits that changed rows, so far.
    commits: u64,
}

/// Whether one group's COMMIT succeeded, once it ran.
#[derive(Default)]
struct Outcome {
    committed: Mutex<Option<bool>>,
    done: std::sync::Condvar,
}

impl Outcome {
    fn set(&self, ok: bool) {
        if let Ok(mut c) = self.committed.lock() {
            *c = Some(ok);
        }
        self.done.notify_all();
    }
    fn wait(&self) -> bool {
        let Ok(mut c) = self.committed.lock() else {
            return false;
        };
        loop {
            if let Some(ok) = *c {
                return ok;
            }
            c = match self.done.wait(c) {
                Ok(c) => c,
                Err(_) => return false,
            };
        }
    }
}

impl Group {
    /// Makes the first `through` writing commits durable, syncing the WAL unless a sync that
    /// began after them already returned. A failed sync fails this and every later call: the
    /// kernel may have dropped the unsynced pages (a later sync would succeed over a hole), so
    /// the server stops acknowledging until it is restarted and SQLite recovers the WAL.
    fn sync_through(&self, through: u64) -> bool {
        if self.broken.load(Ordering::SeqCst) {
            return false;
        }
        if self.durable.load(Ordering::SeqCst) >= through {
            return true;
        }
        let synced = self.wal.as_ref().map_or(Ok(()), Wal::sync);
        match synced {
            Ok(()) => {
                self.durable.fetch_max(through, Ordering::SeqCst);
                true
            }
            Err(e) => {
                log::error!(
                    "syncing the database's WAL failed ({e}): no write is acknowledged until the server is restarted"
                );
                self.broken.store(true, Ordering::SeqCst);
                false
            }
        }
    }

    fn tx<T>(
        &self,
        f: impl FnOnce(&mut dyn Conn) -> Result<T, crate::ApiError>,
    ) -> Result<T, crate::ApiError> {
        self.queued.fetch_add(1, Ordering::SeqCst);
        let locked = self.writer.lock();
        self.queued.fetch_sub(1, Ordering::SeqCst);
        let mut w =
            locked.map_err(|_| crate::ApiError::internal("database connection poisoned"))?;
        let outcome = match &w.open {
            Some(o) => o.clone(),
            None => {
                w.conn.batch("BEGIN IMMEDIATE")?;
                let o = std::sync::Arc::new(Outcome::default());
                w.open = Some(o.clone());
                w.jobs = 0;
                o
            }
        };
        let result = match w.conn.batch("SAVEPOINT job") {
            // A panic in `f` must not leave the shared transaction (and its waiters) behind.
            Ok(()) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut w.conn)))
                .unwrap_or_else(|_| Err(crate::ApiError::internal("transaction panicked"))),
            Err(e) => Err(e.into()),
        };
        let undone = match &result {
            Ok(_) => w.conn.batch("RELEASE job"),
            Err(_) => w
                .conn
                .batch("ROLLBACK TO job")
                .and_then(|()| w.conn.batch("RELEASE job")),
        };
        w.jobs += 1;
        let committed =
            if self.queued.load(Ordering::SeqCst) == 0 || w.jobs >= MAX_GROUP || undone.is_err() {
                let ok = undone.is_ok() && w.conn.batch("COMMIT").is_ok();
                if !ok {
                    // Nothing of this group is stored; the connection is left with no
                    // transaction.
                    let _ = w.conn.batch("ROLLBACK");
                }
                w.open = None;
                if w.conn.0.total_changes() != w.changes {
                    w.changes = w.conn.0.total_changes();
                    w.commits += 1;
                }
                // What this group's answers rest on: every commit so far, its own included
                // (a group that only read may have read a commit still being synced).
                Some(ok.then_some(w.commits))
            } else {
                None
            };
        // The next group may start while this one's frames are synced.
        drop(w);
        match committed {
            Some(Some(through)) => outcome.set(self.sync_through(through)),
            Some(None) => outcome.set(false),
            None => {}
        }
        let v = result?;
        if outcome.wait() {
            Ok(v)
        } else {
            Err(crate::ApiError::internal(
                "storage failed; nothing was acknowledged",
            ))
        }
    }
}

impl Db {
    /// Opens `url`: `postgres://...` or `postgresql://...` for PostgreSQL (a pool of `pool`
    /// connections), `sqlite:PATH` or a plain path for SQLite (one connection with group
    /// commit; SQLite takes one writer at a time anyway).
    pub fn open(url: &str, pool: usize) -> Result<Db, DbError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let mut v: Vec<Mutex<Box<dyn Conn + Send>>> = Vec::new();
            for _ in 0..pool.max(1) {
                v.push(Mutex::new(Box::new(Postgres::connect(url)?)));
            }
            return Ok(Db {
                conns: v,
                sqlite: None,
                next: AtomicUsize::new(0),
                kind: Kind::Postgres,
            });
        }
        if let Some((scheme, _)) = url.split_once("://") {
            return Err(DbError(format!(
                "unsupported database URL scheme `{scheme}://`: use sqlite:PATH or postgres://USER@HOST/DB"
            )));
        }
        let path = url.strip_prefix("sqlite:").unwrap_or(url);
        // The file holds received violations and password hashes: created readable by its
        // owner only (SQLite gives its -wal and -shm files the database file's permissions).
        #[cfg(unix)]
        if path != ":memory:" && !std::path::Path::new(path).exists() {
            use std::os::unix::fs::OpenOptionsExt as _;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| DbError(format!("cannot create {path}: {e}")))?;
        }
        let c = rusqlite::Connection::open(path)
            .map_err(|e| DbError(format!("cannot open {path}: {e}")))?;
        c.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| DbError(e.to_string()))?;
        // NORMAL: COMMIT writes the WAL without syncing it; the group commit syncs it outside
        // the writer before answering anyone (see [`Group`]).
        c.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| DbError(e.to_string()))?;
        c.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| DbError(e.to_string()))?;
        // The server's statements are a fixed set of a few hundred; rusqlite keeps 16 by
        // default, fewer than one sync and the ledger's sequencer use between them, so each
        // evicted the other's and both were parsed again every time.
        c.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(Db {
            conns: Vec::new(),
            sqlite: Some(Group {
                queued: AtomicUsize::new(0),
                writer: Mutex::new(Writer {
                    conn: Sqlite(c),
                    open: None,
                    jobs: 0,
                    changes: 0,
                    commits: 0,
                }),
                wal: (path != ":memory:").then(|| Wal {
                    path: std::path::PathBuf::from(format!("{path}-wal")),
                    file: Mutex::new(None),
                }),
                durable: std::sync::atomic::AtomicU64::new(0),
                broken: std::sync::atomic::AtomicBool::new(false),
            }),
            next: AtomicUsize::new(0),
            kind: Kind::Sqlite,
        })
    }

    /// The engine.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Runs `f` in one transaction (SQLite: a savepoint of a group commit) on one connection;
    /// rolls back on error. Returns only once `f`'s writes are committed.
    pub fn tx<T>(
        &self,
        f: impl FnOnce(&mut dyn Conn) -> Result<T, crate::ApiError>,
    ) -> Result<T, crate::ApiError> {
        if let Some(g) = &self.sqlite {
            return g.tx(f);
        }
        let n = self.conns.len().max(1);
        let i = self.next.fetch_add(1, Ordering::Relaxed) % n;
        // The first idle connection from a rotating start; all busy: wait for the start one.
        let idle = (0..n).find_map(|k| self.conns.get((i + k) % n)?.try_lock().ok());
        let mut guard = match idle {
            Some(g) => g,
            None => self
                .conns
                .get(i)
                .ok_or_else(|| crate::ApiError::internal("no database connection"))?
                .lock()
                .map_err(|_| crate::ApiError::internal("database connection poisoned"))?,
        };
        let c: &mut dyn Conn = &mut **guard;
        c.batch("BEGIN")?;
        match f(c) {
            Ok(v) => {
                c.batch("COMMIT")?;
                Ok(v)
            }
            Err(e) => {
                // The transaction failed already; the rollback error (if any) adds nothing.
                let _ = c.batch("ROLLBACK");
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

    use super::*;

    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn multi_row_statements_come_in_five_shapes_whatever_the_count() {
        for n in [0usize, 1, 3, 4, 5, 63, 64, 300, 511, 512, 1000] {
            let items: Vec<usize> = (0..n).collect();
            let chunks: Vec<&[usize]> = shaped_chunks(&items).collect();
            assert_eq!(chunks.concat(), items, "{n}: every item once, in order");
            assert!(
                chunks.iter().all(|c| CHUNK_SHAPES.contains(&c.len())),
                "{n}: {:?}",
                chunks.iter().map(|c| c.len()).collect::<Vec<_>>()
            );
            assert!(
                chunks.len() <= n / 256 + 12,
                "{n}: {} statements",
                chunks.len()
            );
        }
    }

    fn sqlite() -> (tempfile::TempDir, Arc<Db>) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&format!("sqlite:{}", dir.path().join("t.db").display()), 1).unwrap();
        db.tx(|c| {
            c.batch("CREATE TABLE parent (id INTEGER PRIMARY KEY); CREATE TABLE t (v INTEGER, p INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)")?;
            Ok(())
        })
        .unwrap();
        (dir, Arc::new(db))
    }

    fn rows(db: &Db) -> Vec<i64> {
        db.tx(|c| Ok(c.query("SELECT v FROM t ORDER BY v", &[])?))
            .unwrap()
            .iter()
            .filter_map(|r| r.first().and_then(Value::int))
            .collect()
    }

    fn group(db: &Db) -> &Group {
        db.sqlite.as_ref().unwrap()
    }

    /// Runs `first` in a transaction that does not end until a second caller has queued, so
    /// both land in one group; returns both results.
    fn two_in_one_group(
        db: &Arc<Db>,
        first: fn(&mut dyn Conn) -> Result<(), crate::ApiError>,
        second: fn(&mut dyn Conn) -> Result<(), crate::ApiError>,
    ) -> (Result<(), crate::ApiError>, Result<(), crate::ApiError>) {
        let d = db.clone();
        let a = std::thread::spawn(move || {
            d.tx(|c| {
                let r = first(c);
                while group(&d).queued.load(Ordering::SeqCst) == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                r
            })
        });
        while group(db).writer.try_lock().is_ok() {
            std::thread::sleep(Duration::from_millis(1));
        }
        let b = db.tx(second);
        (a.join().unwrap(), b)
    }

    #[test]
    fn a_values_list_numbers_its_placeholders_in_row_order() {
        assert_eq!(values_list(2, 2), "($1, $2), ($3, $4)");
        assert_eq!(values_list(1, 3), "($1, $2, $3)");
        assert_eq!(values_list(0, 5), "");
    }

    #[test]
    fn concurrent_transactions_all_commit_and_answer_after_their_commit() {
        let (_d, db) = sqlite();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let db = db.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        db.tx(|c| {
                            c.execute("INSERT INTO t (v) VALUES ($1)", &[(t * 100 + i).into()])?;
                            Ok(())
                        })
                        .unwrap();
                        // Answered: the row is committed, so a fresh connection sees it.
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(rows(&db).len(), 400);
        let g = group(&db);
        let commits = g.writer.lock().unwrap().commits;
        assert!(commits >= 1);
        assert_eq!(
            g.durable.load(Ordering::SeqCst),
            commits,
            "every commit was synced"
        );
    }

    #[test]
    fn a_write_is_answered_only_after_the_wal_sync_that_covers_it() {
        let (_d, db) = sqlite();
        let g = group(&db);
        for v in 0..3 {
            db.tx(|c| Ok(c.execute("INSERT INTO t (v) VALUES ($1)", &[v.into()])?))
                .unwrap();
            let commits = g.writer.lock().unwrap().commits;
            assert_eq!(g.durable.load(Ordering::SeqCst), commits);
        }
        // A transaction that changed nothing has nothing to sync and waits for none.
        let before = g.writer.lock().unwrap().commits;
        rows(&db);
        assert_eq!(g.writer.lock().unwrap().commits, before);
    }

    #[test]
    fn a_failed_wal_sync_stops_every_later_acknowledgement() {
        let (d, db) = sqlite();
        db.tx(|c| Ok(c.execute("INSERT INTO t (v) VALUES (1)", &[])?))
            .unwrap();
        // The WAL gone from under the connection: its frames cannot be made durable.
        std::fs::remove_file(d.path().join("t.db-wal")).unwrap();
        let r = db.tx(|c| Ok(c.execute("INSERT INTO t (v) VALUES (2)", &[])?));
        assert_eq!(r.unwrap_err().status, 500);
        let r = db.tx(|c| Ok(c.execute("INSERT INTO t (v) VALUES (3)", &[])?));
        assert_eq!(r.unwrap_err().status, 500, "nothing is acknowledged after");
    }

    #[test]
    fn a_failing_transaction_is_rolled_back_alone() {
        let (_d, db) = sqlite();
        let (a, b) = two_in_one_group(
            &db,
            |c| {
                c.execute("INSERT INTO t (v) VALUES (1)", &[])?;
                Err(crate::ApiError::conflict("refused"))
            },
            |c| {
                c.execute("INSERT INTO t (v) VALUES (2)", &[])?;
                Ok(())
            },
        );
        assert_eq!(a.unwrap_err().code, "conflict");
        b.unwrap();
        assert_eq!(rows(&db), vec![2]);
    }

    #[test]
    fn a_commit_that_fails_fails_every_caller_in_it() {
        let (_d, db) = sqlite();
        // Outside any transaction (foreign keys cannot be switched inside one).
        group(&db)
            .writer
            .lock()
            .unwrap()
            .conn
            .batch("PRAGMA foreign_keys = ON")
            .unwrap();
        // The first caller's row names a parent that does not exist: the deferred check
        // fails the group's COMMIT, after both callers' work succeeded.
        let (a, b) = two_in_one_group(
            &db,
            |c| {
                c.execute("INSERT INTO t (v, p) VALUES (1, 99)", &[])?;
                Ok(())
            },
            |c| {
                c.execute("INSERT INTO t (v) VALUES (2)", &[])?;
                Ok(())
            },
        );
        assert_eq!(a.unwrap_err().status, 500);
        assert_eq!(b.unwrap_err().status, 500);
        assert!(rows(&db).is_empty(), "nothing of a failed group is stored");
        // The writer is usable afterwards.
        db.tx(|c| Ok(c.execute("INSERT INTO t (v) VALUES (3)", &[])?))
            .unwrap();
        assert_eq!(rows(&db), vec![3]);
    }

    #[test]
    fn a_panicking_transaction_does_not_wedge_the_writer() {
        let (_d, db) = sqlite();
        let r: Result<(), _> = db.tx(|c| {
            c.execute("INSERT INTO t (v) VALUES (1)", &[])?;
            panic!("bug")
        });
        assert_eq!(r.unwrap_err().status, 500);
        db.tx(|c| Ok(c.execute("INSERT INTO t (v) VALUES (2)", &[])?))
            .unwrap();
        assert_eq!(rows(&db), vec![2]);
    }

    /// PostgreSQL (with `BAOMI_TEST_PG_URL`): `BEGIN` goes with the first statement, and a
    /// transaction is still all or nothing.
    #[test]
    fn postgres_transactions_with_a_pipelined_begin_are_all_or_nothing() {
        let Ok(base) = std::env::var("BAOMI_TEST_PG_URL") else {
            return;
        };
        let name = format!("baomi_db_{}", std::process::id());
        let mut admin = postgres::Client::connect(&base, postgres::NoTls).unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let cut = base.rfind('/').unwrap();
        let db = Db::open(&format!("{}/{name}", &base[..cut]), 2).unwrap();
        db.tx(|c| Ok(c.batch("CREATE TABLE t (v BIGINT PRIMARY KEY)")?))
            .unwrap();
        let count = |db: &Db| {
            db.tx(|c| Ok(c.query("SELECT COUNT(*) FROM t", &[])?))
                .unwrap()[0][0]
                .int()
                .unwrap()
        };
        // Work then a refusal: rolled back.
        let r: Result<(), _> = db.tx(|c| {
            c.execute("INSERT INTO t (v) VALUES (1)", &[])?;
            Err(crate::ApiError::conflict("refused"))
        });
        assert_eq!(r.unwrap_err().code, "conflict");
        assert_eq!(count(&db), 0);
        // A first statement that fails: rolled back, the connection still serves.
        let r: Result<u64, _> = db.tx(|c| Ok(c.execute("INSERT INTO nowhere VALUES (1)", &[])?));
        assert!(r.is_err());
        let r: Result<(), _> = db.tx(|c| {
            c.execute("INSERT INTO t (v) VALUES (2)", &[])?;
            c.execute("INSERT INTO t (v) VALUES (2)", &[])?;
            Ok(())
        });
        assert!(r.is_err(), "the duplicate fails the transaction");
        assert_eq!(count(&db), 0, "and the first insert with it");
        for v in 3..6 {
            db.tx(|c| Ok(c.execute("INSERT INTO t (v) VALUES ($1)", &[v.into()])?))
                .unwrap();
        }
        assert_eq!(count(&db), 3);
        // A transaction with no statement sends neither BEGIN nor COMMIT.
        db.tx(|_| Ok(())).unwrap();
        assert_eq!(count(&db), 3);
        // Pipelined statements (BEGIN with them): each one's affected rows, in order.
        let insert = |v: i64| {
            (
                "INSERT INTO t (v) VALUES ($1) ON CONFLICT DO NOTHING".to_owned(),
                vec![Value::Int(v)],
            )
        };
        let n = db
            .tx(|c| Ok(c.execute_all(&[insert(6), insert(3), insert(7)])?))
            .unwrap();
        assert_eq!(n, vec![1, 0, 1]);
        assert_eq!(count(&db), 5);
        // One that fails in the middle: the call fails, and the transaction with it.
        let bad = ("INSERT INTO nowhere VALUES (1)".to_owned(), vec![]);
        let r = db.tx(|c| Ok(c.execute_all(&[insert(8), bad, insert(9)])?));
        assert!(r.is_err());
        assert_eq!(count(&db), 5, "nothing of a failed pipeline is stored");
        // A last write goes with COMMIT: stored with the transaction.
        db.tx(|c| {
            c.execute("INSERT INTO t (v) VALUES (10)", &[])?;
            Ok(c.execute_last("INSERT INTO t (v) VALUES (11)", &[])?)
        })
        .unwrap();
        assert_eq!(count(&db), 7);
        // Alone in its transaction: BEGIN, it and COMMIT in one round trip.
        db.tx(|c| Ok(c.execute_last("INSERT INTO t (v) VALUES (12)", &[])?))
            .unwrap();
        assert_eq!(count(&db), 8);
        // A last write that fails fails the commit, and the transaction's work with it.
        let r = db.tx(|c| {
            c.execute("INSERT INTO t (v) VALUES (13)", &[])?;
            Ok(c.execute_last("INSERT INTO t (v) VALUES (3)", &[])?)
        });
        assert!(r.is_err(), "the duplicate reported at commit");
        assert_eq!(count(&db), 8, "13 rolled back with it");
        // A statement after it: the held write runs first, and is seen.
        let seen = db
            .tx(|c| {
                c.execute_last("INSERT INTO t (v) VALUES (14)", &[])?;
                Ok(c.query("SELECT COUNT(*) FROM t WHERE v = 14", &[])?)
            })
            .unwrap();
        assert_eq!(seen[0][0], Value::Int(1));
        // A refused transaction never sends it.
        let r: Result<(), _> = db.tx(|c| {
            c.execute_last("INSERT INTO t (v) VALUES (15)", &[])?;
            Err(crate::ApiError::conflict("refused"))
        });
        assert!(r.is_err());
        assert_eq!(count(&db), 9, "14 stored, 15 not");
        drop(db);
        admin
            .batch_execute(&format!("DROP DATABASE {name}"))
            .unwrap();
    }
}
