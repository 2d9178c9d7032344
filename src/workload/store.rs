//! Where `/test-threadpool` writes its document `{Timestamp, Note}`: SQLite by default,
//! MongoDB (the original's store) with `--mongodb-uri`.

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The original's document.
#[derive(Debug, Clone)]
pub struct TestDocument {
    pub timestamp: DateTime<Utc>,
    pub note: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("mongodb: {0}")]
    Mongo(#[from] mongodb::error::Error),
    #[error("the store task failed: {0}")]
    Task(String),
    #[error("{0}")]
    Config(String),
    #[error(
        "the data file {0} was deleted or replaced since the service opened it; documents would be lost: restore the --data-dir and restart the service"
    )]
    Gone(PathBuf),
    #[error(
        "the latest insert failed and none has succeeded since: {0}; check the server's logs, the user's write permission and its disk"
    )]
    LastInsert(String),
}

/// One insert per request; implementations must be safe to share between requests.
pub trait Store: Send + Sync + 'static {
    fn insert(&self, doc: TestDocument) -> BoxFuture<'_, Result<(), StoreError>>;
    /// For logs and `/healthz`.
    fn describe(&self) -> String;
    /// Whether documents written now would be kept: cheap, called per request and by
    /// `/healthz`.
    fn check(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// For `/healthz`: asks the store itself whether it takes documents now (may do I/O; the
    /// caller bounds how long it waits).
    fn health(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move { self.check() })
    }
}

const INSERT: &str = "INSERT INTO test_data (timestamp, note) VALUES (?1, ?2)";

/// SQLite in WAL mode with a busy timeout, so several replica processes can write one file.
pub struct SqliteStore {
    path: PathBuf,
    /// (device, inode) of the file opened: a different one at `path` (or none) means the
    /// directory was deleted or the file replaced, and rows would go to an unlinked file.
    identity: (u64, u64),
    conn: Arc<Mutex<rusqlite::Connection>>,
}

fn identity(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok((m.dev(), m.ino()))
}

impl SqliteStore {
    pub const FILE_NAME: &'static str = "workload.sqlite3";

    pub fn open(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Config(format!(
                "--data-dir {}: cannot create it: {e}; pass a writable directory",
                data_dir.display()
            ))
        })?;
        let path = data_dir.join(Self::FILE_NAME);
        let conn = rusqlite::Connection::open(&path).map_err(|e| {
            StoreError::Config(format!(
                "--data-dir {}: cannot open {}: {e}; pass a writable directory",
                data_dir.display(),
                path.display()
            ))
        })?;
        conn.busy_timeout(Duration::from_secs(10))?;
        // WAL lets readers and one writer proceed together; the busy timeout queues writers
        // of other processes instead of failing with SQLITE_BUSY.
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Config(format!(
                "--data-dir {}: SQLite refused WAL mode (got {mode}); use a local filesystem",
                data_dir.display()
            )));
        }
        conn.execute_batch(
            "PRAGMA synchronous=NORMAL;
             CREATE TABLE IF NOT EXISTS test_data (
                 id INTEGER PRIMARY KEY,
                 timestamp TEXT NOT NULL,
                 note TEXT NOT NULL
             );",
        )
        .map_err(|e| {
            StoreError::Config(format!(
                "--data-dir {}: cannot write {}: {e}; pass a writable directory",
                data_dir.display(),
                path.display()
            ))
        })?;
        let identity = identity(&path).map_err(|e| {
            StoreError::Config(format!("--data-dir: cannot stat {}: {e}", path.display()))
        })?;
        Ok(SqliteStore {
            path,
            identity,
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    pub fn count(&self) -> Result<u64, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let n: i64 = conn.query_row("SELECT COUNT(*) FROM test_data", [], |r| r.get(0))?;
        Ok(n as u64)
    }
}

impl Store for SqliteStore {
    fn insert(&self, doc: TestDocument) -> BoxFuture<'_, Result<(), StoreError>> {
        let conn = self.conn.clone();
        Box::pin(async move {
            // SQLite blocks: run it on tokio's blocking threads, never on the pool model.
            tokio::task::spawn_blocking(move || {
                let conn = conn.lock().unwrap_or_else(|e| e.into_inner());
                conn.prepare_cached(INSERT)?
                    .execute((doc.timestamp.to_rfc3339(), doc.note))?;
                Ok(())
            })
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
        })
    }

    fn describe(&self) -> String {
        format!("sqlite {}", self.path.display())
    }

    fn check(&self) -> Result<(), StoreError> {
        match identity(&self.path) {
            Ok(id) if id == self.identity => Ok(()),
            _ => Err(StoreError::Gone(self.path.clone())),
        }
    }

    /// The file is the one opened and its table can be read with the columns inserts write (a
    /// dropped or altered table fails here), without writing a row.
    fn health(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        let conn = self.conn.clone();
        Box::pin(async move {
            self.check()?;
            tokio::task::spawn_blocking(move || {
                let conn = conn.lock().unwrap_or_else(|e| e.into_inner());
                // Stepping (not just preparing) reads the schema as it is now, also when
                // another process changed it.
                let mut probe =
                    conn.prepare_cached("SELECT timestamp, note FROM test_data LIMIT 0")?;
                probe.query([])?.next()?;
                Ok(())
            })
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
        })
    }
}

/// The original's MongoDB store: database `ThreadPoolTestDb`, collection `TestData`.
pub struct MongoStore {
    collection: mongodb::Collection<mongodb::bson::Document>,
    hosts: String,
    /// The error of the latest insert, cleared by the next success: a `ping` answers without
    /// write permission, so it alone would call a store healthy that refuses every insert.
    last_insert: Mutex<Option<String>>,
}

impl MongoStore {
    pub const DATABASE: &'static str = "ThreadPoolTestDb";
    pub const COLLECTION: &'static str = "TestData";

    /// Parses the URI now (a bad URI fails at start); connects lazily on first insert.
    pub async fn connect(uri: &str) -> Result<MongoStore, StoreError> {
        let mut options = mongodb::options::ClientOptions::parse(uri)
            .await
            .map_err(|e| {
                StoreError::Config(format!(
                    "--mongodb-uri: {e}; expected e.g. mongodb://user:pass@host:27017"
                ))
            })?;
        // Fail one request quickly (503) rather than hang it for the default 30 s.
        if options.server_selection_timeout.is_none() {
            options.server_selection_timeout = Some(Duration::from_secs(5));
        }
        let hosts = options
            .hosts
            .iter()
            .map(|h| h.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let client = mongodb::Client::with_options(options)?;
        let collection = client.database(Self::DATABASE).collection(Self::COLLECTION);
        Ok(MongoStore {
            collection,
            hosts,
            last_insert: Mutex::new(None),
        })
    }

    pub async fn count(&self) -> Result<u64, StoreError> {
        Ok(self
            .collection
            .count_documents(mongodb::bson::doc! {})
            .await?)
    }
}

impl Store for MongoStore {
    fn insert(&self, doc: TestDocument) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let document = mongodb::bson::doc! {
                "Timestamp": mongodb::bson::DateTime::from_millis(doc.timestamp.timestamp_millis()),
                "Note": doc.note,
            };
            let result = self.collection.insert_one(document).await;
            *self.last_insert.lock().unwrap_or_else(|e| e.into_inner()) =
                result.as_ref().err().map(|e| e.to_string());
            result?;
            Ok(())
        })
    }

    /// The server answers a `ping` (the driver connects lazily: without this an unreachable
    /// server looked healthy) and the latest insert did not fail.
    fn health(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let ping = mongodb::bson::doc! { "ping": 1 };
            self.collection
                .client()
                .database(Self::DATABASE)
                .run_command(ping)
                .await?;
            let last = self.last_insert.lock().unwrap_or_else(|e| e.into_inner());
            match last.as_ref() {
                Some(e) => Err(StoreError::LastInsert(e.clone())),
                None => Ok(()),
            }
        })
    }

    fn describe(&self) -> String {
        format!(
            "mongodb {} ({}.{})",
            self.hosts,
            Self::DATABASE,
            Self::COLLECTION
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_is_shared_safely_by_two_connections() {
        let dir = tempfile::tempdir().unwrap();
        let a = SqliteStore::open(dir.path()).unwrap();
        let b = SqliteStore::open(dir.path()).unwrap();
        let mut tasks = vec![];
        let (a, b) = (Arc::new(a), Arc::new(b));
        for i in 0..100 {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            tasks.push(tokio::spawn(async move {
                store
                    .insert(TestDocument {
                        timestamp: Utc::now(),
                        note: format!("n{i}"),
                    })
                    .await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(a.count().unwrap(), 100);
        assert_eq!(b.count().unwrap(), 100);
    }

    #[test]
    fn a_deleted_or_replaced_data_file_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        store.check().unwrap();
        let file = dir.path().join(SqliteStore::FILE_NAME);
        std::fs::rename(&file, dir.path().join("moved")).unwrap();
        std::fs::write(&file, b"").unwrap();
        let err = store.check().unwrap_err().to_string();
        assert!(err.contains("deleted or replaced"), "{err}");
        std::fs::remove_dir_all(dir.path()).unwrap();
        assert!(store.check().is_err());
    }

    #[test]
    fn unwritable_data_dir_names_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain-file");
        std::fs::write(&file, b"x").unwrap();
        let err = SqliteStore::open(&file.join("sub"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("--data-dir"), "{err}");
    }

    #[tokio::test]
    async fn bad_mongodb_uri_names_the_flag() {
        let err = MongoStore::connect("postgres://nope")
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("--mongodb-uri"), "{err}");
    }

    #[tokio::test]
    async fn sqlite_health_sees_a_dropped_table() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        store.health().await.unwrap();
        let other = rusqlite::Connection::open(dir.path().join(SqliteStore::FILE_NAME)).unwrap();
        other.execute_batch("DROP TABLE test_data").unwrap();
        let err = store.health().await.unwrap_err().to_string();
        assert!(err.contains("no such table: test_data"), "{err}");
        assert_eq!(store.count().ok(), None);
    }

    #[tokio::test]
    async fn mongodb_health_pings_the_server_and_remembers_a_failed_insert() {
        let refusing = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let uri = format!(
            "mongodb://{}/?serverSelectionTimeoutMS=300",
            refusing.local_addr().unwrap()
        );
        drop(refusing);
        let store = MongoStore::connect(&uri).await.unwrap();
        let err = store.health().await.unwrap_err().to_string();
        assert!(err.starts_with("mongodb: "), "{err}");
        let doc = TestDocument {
            timestamp: Utc::now(),
            note: "x".into(),
        };
        assert!(store.insert(doc).await.is_err());
        assert!(store.last_insert.lock().unwrap().is_some());
    }

    /// Runs against a real MongoDB server given by its URI.
    #[tokio::test]
    #[ignore = "needs a MongoDB server: set STARVATION_TEST_MONGODB_URI=mongodb://HOST:27017 (no package for one here; .ci/run skips it by name)"]
    async fn mongodb_inserts_when_a_server_is_given() {
        let uri = std::env::var("STARVATION_TEST_MONGODB_URI").expect(
            "set STARVATION_TEST_MONGODB_URI to a MongoDB server (e.g. mongodb://127.0.0.1:27017)",
        );
        let store = MongoStore::connect(&uri).await.unwrap();
        let before = store.count().await.unwrap();
        store
            .insert(TestDocument {
                timestamp: Utc::now(),
                note: "test".into(),
            })
            .await
            .unwrap();
        assert_eq!(store.count().await.unwrap(), before + 1);
        store.health().await.unwrap();
    }
}
