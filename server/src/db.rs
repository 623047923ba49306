//! One SQL dialect over two engines: SQLite (embedded, the default) and PostgreSQL (selected by
//! a `postgres://` URL). Statements are written once with `$1..$n` parameters and portable
//! types; the only per-engine text is the schema's auto-increment column.

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
}

struct Sqlite(rusqlite::Connection);

/// `$1` -> `?1`: SQLite reads `$1` as a *named* parameter whose index depends on the order of
/// first appearance; `?N` is explicit.
fn sqlite_params(sql: &str) -> String {
    sql.replace('$', "?")
}

fn to_sqlite(v: &Value) -> rusqlite::types::Value {
    match v {
        Value::Int(i) => rusqlite::types::Value::Integer(*i),
        Value::Text(t) => rusqlite::types::Value::Text(t.clone()),
        Value::Null => rusqlite::types::Value::Null,
    }
}

impl Conn for Sqlite {
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        let mut st = self
            .0
            .prepare_cached(&sqlite_params(sql))
            .map_err(|e| DbError(e.to_string()))?;
        let n = st
            .execute(rusqlite::params_from_iter(params.iter().map(to_sqlite)))
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
            .query_map(
                rusqlite::params_from_iter(params.iter().map(to_sqlite)),
                |r| {
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
                },
            )
            .map_err(|e| DbError(e.to_string()))?;
        rows.collect::<Result<_, _>>()
            .map_err(|e| DbError(e.to_string()))
    }
    fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        self.0
            .execute_batch(sql)
            .map_err(|e| DbError(e.to_string()))
    }
}

/// A PostgreSQL connection with its prepared statements: `Client::query(&str, ..)` would
/// parse and describe the statement again on every call, one more round trip each time.
struct Postgres {
    client: postgres::Client,
    statements: std::collections::HashMap<String, postgres::Statement>,
}

impl Postgres {
    fn statement(&mut self, sql: &str) -> Result<postgres::Statement, DbError> {
        if let Some(st) = self.statements.get(sql) {
            return Ok(st.clone());
        }
        let st = self
            .client
            .prepare(sql)
            .map_err(|e| DbError(e.to_string()))?;
        // Bounded: the server's statements are a fixed set (a few hundred at most).
        if self.statements.len() >= 1024 {
            self.statements.clear();
        }
        self.statements.insert(sql.to_owned(), st.clone());
        Ok(st)
    }
}

/// NULL for a parameter of any column type (`Option<String>::None` only binds to text).
#[derive(Debug)]
struct PgNull;

impl postgres::types::ToSql for PgNull {
    fn to_sql(
        &self,
        _: &postgres::types::Type,
        _: &mut postgres::types::private::BytesMut,
    ) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        Ok(postgres::types::IsNull::Yes)
    }
    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }
    postgres::types::to_sql_checked!();
}

fn pg_params(params: &[Value]) -> Vec<Box<dyn postgres::types::ToSql + Sync>> {
    params
        .iter()
        .map(|v| -> Box<dyn postgres::types::ToSql + Sync> {
            match v {
                Value::Int(i) => Box::new(*i),
                Value::Text(t) => Box::new(t.clone()),
                Value::Null => Box::new(PgNull),
            }
        })
        .collect()
}

impl Conn for Postgres {
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        let st = self.statement(sql)?;
        let p = pg_params(params);
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = p.iter().map(|b| &**b).collect();
        self.client
            .execute(&st, &refs)
            .map_err(|e| DbError(e.to_string()))
    }
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        let st = self.statement(sql)?;
        let p = pg_params(params);
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = p.iter().map(|b| &**b).collect();
        let rows = self
            .client
            .query(&st, &refs)
            .map_err(|e| DbError(e.to_string()))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let mut row = Vec::with_capacity(r.len());
            for (i, c) in r.columns().iter().enumerate() {
                let v = if *c.type_() == postgres::types::Type::INT8 {
                    r.try_get::<_, Option<i64>>(i)
                        .map_err(|e| DbError(e.to_string()))?
                        .map_or(Value::Null, Value::Int)
                } else if *c.type_() == postgres::types::Type::INT4 {
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
        self.client
            .batch_execute(sql)
            .map_err(|e| DbError(e.to_string()))
    }
}

/// The engine behind a URL.
pub struct Db {
    conns: Vec<Mutex<Box<dyn Conn + Send>>>,
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

impl Db {
    /// Opens `url`: `postgres://...` or `postgresql://...` for PostgreSQL (a pool of `pool`
    /// connections), `sqlite:PATH` or a plain path for SQLite (one connection; SQLite takes
    /// one writer at a time anyway).
    pub fn open(url: &str, pool: usize) -> Result<Db, DbError> {
        let (kind, conns): (Kind, Vec<Box<dyn Conn + Send>>) =
            if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                let mut v: Vec<Box<dyn Conn + Send>> = Vec::new();
                for _ in 0..pool.max(1) {
                    let c = postgres::Client::connect(url, postgres::NoTls)
                        .map_err(|e| DbError(format!("cannot connect to PostgreSQL: {e}")))?;
                    v.push(Box::new(Postgres {
                        client: c,
                        statements: std::collections::HashMap::new(),
                    }));
                }
                (Kind::Postgres, v)
            } else {
                let path = url.strip_prefix("sqlite:").unwrap_or(url);
                let c = rusqlite::Connection::open(path)
                    .map_err(|e| DbError(format!("cannot open {path}: {e}")))?;
                c.pragma_update(None, "journal_mode", "WAL")
                    .map_err(|e| DbError(e.to_string()))?;
                c.pragma_update(None, "synchronous", "FULL")
                    .map_err(|e| DbError(e.to_string()))?;
                c.busy_timeout(std::time::Duration::from_secs(10))
                    .map_err(|e| DbError(e.to_string()))?;
                (Kind::Sqlite, vec![Box::new(Sqlite(c))])
            };
        Ok(Db {
            conns: conns.into_iter().map(Mutex::new).collect(),
            next: AtomicUsize::new(0),
            kind,
        })
    }

    /// The engine.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Runs `f` in one transaction on one connection; rolls back on error.
    pub fn tx<T>(
        &self,
        f: impl FnOnce(&mut dyn Conn) -> Result<T, crate::ApiError>,
    ) -> Result<T, crate::ApiError> {
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
        c.batch(if self.kind == Kind::Sqlite {
            "BEGIN IMMEDIATE"
        } else {
            "BEGIN"
        })?;
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
