//! The cluster's PostgreSQL: the connection (re-opened when it drops), the schema (created or
//! migrated at start, under an advisory lock so that nodes starting together do not race), and
//! every statement the cluster runs. A node is alive while its last heartbeat (on the
//! database's clock, so node clocks do not matter) is less than 6 s old. Placement, heartbeat and release are SQL functions, so
//! each is one statement and therefore one transaction: the capacity check, the reservation
//! and the epoch compare-and-set commit together or not at all.

use std::sync::Arc;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row, Statement};

/// The schema version this build writes; a database with a newer one is refused.
pub const SCHEMA_VERSION: i32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("the cluster database is unreachable: {0}")]
    Unreachable(String),
    #[error("the cluster database: {0}")]
    Query(String),
    #[error("no node has room for this experiment")]
    NoCapacity,
    #[error("the cluster database's schema is version {found}, newer than this exphub's ({SCHEMA_VERSION})")]
    SchemaTooNew { found: i32 },
}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        if e.is_closed() {
            return DbError::Unreachable(e.to_string());
        }
        match e.as_db_error() {
            Some(d) if d.message() == "NO_CAPACITY" => DbError::NoCapacity,
            Some(d) => DbError::Query(d.message().to_owned()),
            None => DbError::Unreachable(e.to_string()),
        }
    }
}

const SCHEMA: &str = r#"
BEGIN;
SELECT pg_advisory_xact_lock(774201);
CREATE TABLE IF NOT EXISTS exphub_schema (version int NOT NULL);
CREATE UNLOGGED TABLE IF NOT EXISTS nodes (
  node_id      text PRIMARY KEY,
  internal_url text NOT NULL,
  version      text NOT NULL,
  state        text NOT NULL DEFAULT 'serving',
  started_at   timestamptz NOT NULL DEFAULT now(),
  last_seen    timestamptz NOT NULL DEFAULT now(),
  capacity     real NOT NULL,
  load         real NOT NULL DEFAULT 0,
  experiments  int  NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS placements (
  session_id text PRIMARY KEY,
  node_id    text NOT NULL,
  epoch      bigint NOT NULL,
  cost       real NOT NULL,
  placed_at  timestamptz NOT NULL DEFAULT now(),
  state      text NOT NULL DEFAULT 'waiting');
CREATE INDEX IF NOT EXISTS placements_live_by_node ON placements (node_id) WHERE state <> 'ended';
CREATE UNLOGGED TABLE IF NOT EXISTS connections (
  connection_id text PRIMARY KEY,
  node_id       text NOT NULL,
  expires_at    timestamptz NOT NULL);

-- Where an experiment runs: the live placement if its node is alive, else a serving node with
-- room, capacity - max(reserved load, measured cpu) (the preferred one if it has room, else the
-- less loaded of two drawn at random), with the cost reserved on it and the epoch one past the
-- previous placement's.
CREATE OR REPLACE FUNCTION exphub_place(p_sid text, p_cost real, p_prefer text,
                                        OUT o_node text, OUT o_epoch bigint) LANGUAGE plpgsql AS $$
DECLARE cur record; pick text; tries int := 0;
BEGIN
  SELECT p.node_id, p.epoch, p.state,
         coalesce(n.last_seen > now() - make_interval(secs => 6), false) AS alive
    INTO cur FROM placements p LEFT JOIN nodes n USING (node_id) WHERE p.session_id = p_sid;
  IF cur.node_id IS NOT NULL AND cur.state <> 'ended' AND cur.alive THEN
    o_node := cur.node_id; o_epoch := cur.epoch; RETURN;
  END IF;
  LOOP
    tries := tries + 1;
    pick := NULL;
    SELECT node_id INTO pick FROM nodes WHERE node_id = p_prefer AND state = 'serving'
       AND last_seen > now() - make_interval(secs => 6) AND capacity - greatest(load, cpu) >= p_cost;
    IF pick IS NULL THEN
      SELECT two.node_id INTO pick FROM (
        SELECT node_id, greatest(load, cpu) AS used FROM nodes WHERE state = 'serving'
           AND last_seen > now() - make_interval(secs => 6) AND capacity - greatest(load, cpu) >= p_cost
         ORDER BY random() LIMIT 2) two ORDER BY two.used LIMIT 1;
    END IF;
    IF pick IS NULL THEN RAISE EXCEPTION 'NO_CAPACITY'; END IF;
    -- The reservation re-checks the room under the node row's lock: concurrent placements
    -- never take a node past its capacity.
    UPDATE nodes SET load = load + p_cost, experiments = experiments + 1
     WHERE node_id = pick AND state = 'serving' AND capacity - greatest(load, cpu) >= p_cost;
    EXIT WHEN FOUND;
    IF tries >= 5 THEN RAISE EXCEPTION 'NO_CAPACITY'; END IF;
  END LOOP;
  IF cur.node_id IS NULL THEN
    INSERT INTO placements (session_id, node_id, epoch, cost) VALUES (p_sid, pick, 1, p_cost)
      ON CONFLICT (session_id) DO NOTHING RETURNING node_id, epoch INTO o_node, o_epoch;
  ELSE
    UPDATE placements SET node_id = pick, epoch = epoch + 1, cost = p_cost, placed_at = now(), state = 'waiting'
     WHERE session_id = p_sid AND epoch = cur.epoch RETURNING node_id, epoch INTO o_node, o_epoch;
  END IF;
  IF o_node IS NULL THEN
    -- Lost the race: give the reservation back and answer with the winner's placement.
    UPDATE nodes SET load = load - p_cost, experiments = experiments - 1 WHERE node_id = pick;
    SELECT node_id, epoch INTO o_node, o_epoch FROM placements WHERE session_id = p_sid;
  END IF;
END $$;

-- A node's heartbeat: alive now, its measured CPU, and its reserved load recomputed from its
-- live placements (under its row's lock, so a placement in flight is either counted or not yet
-- reserved).
CREATE OR REPLACE FUNCTION exphub_heartbeat(p_node text, p_cpu real) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  PERFORM 1 FROM nodes WHERE node_id = p_node FOR UPDATE;
  IF NOT FOUND THEN RETURN false; END IF;
  UPDATE nodes SET last_seen = now(), cpu = p_cpu,
         load = (SELECT coalesce(sum(cost), 0) FROM placements WHERE node_id = p_node AND state <> 'ended'),
         experiments = (SELECT count(*) FROM placements WHERE node_id = p_node AND state <> 'ended')
   WHERE node_id = p_node;
  RETURN true;
END $$;

-- An experiment's end, fenced: only the holder of the current epoch ends it.
CREATE OR REPLACE FUNCTION exphub_release(p_sid text, p_node text, p_epoch bigint) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE c real;
BEGIN
  UPDATE placements SET state = 'ended'
   WHERE session_id = p_sid AND node_id = p_node AND epoch = p_epoch AND state <> 'ended'
  RETURNING cost INTO c;
  IF NOT FOUND THEN RETURN false; END IF;
  UPDATE nodes SET load = greatest(load - c, 0), experiments = greatest(experiments - 1, 0) WHERE node_id = p_node;
  RETURN true;
END $$;

-- upload: every research file copied to the object store, one row per node and path (the
-- newest copy: a path uploaded again, e.g. the manifest, replaces its row).
CREATE TABLE IF NOT EXISTS artifacts (
  session_id  text NOT NULL,
  epoch       bigint NOT NULL,
  node_id     text NOT NULL,
  path        text NOT NULL,
  kind        text NOT NULL,
  bytes       bigint NOT NULL,
  sha256      text,
  complete    boolean NOT NULL,
  object_key  text NOT NULL,
  uploaded_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (session_id, node_id, path));

-- pgsessions: the session designs (the system of record in cluster mode, one JSON document
-- per session with a version for compare-and-set) and their announcements on exphub_events.
CREATE TABLE IF NOT EXISTS sessions (
  session_id text PRIMARY KEY,
  version    bigint NOT NULL,
  doc        jsonb NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now());

-- A session write, announced at commit. p_known = the version the writer holds: the row is
-- replaced only if it still has it (compare-and-set); 0 = a new session, inserted only if the id
-- is free; NULL = unconditionally (`exphub sessions import --replace`). The new version, or
-- NULL if another write came first (or the id is taken).
CREATE OR REPLACE FUNCTION exphub_session_write(p_id text, p_known bigint, p_doc text, p_origin text)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE v bigint;
BEGIN
  IF p_known IS NULL THEN
    INSERT INTO sessions (session_id, version, doc) VALUES (p_id, 1, p_doc::jsonb)
      ON CONFLICT (session_id) DO UPDATE SET doc = EXCLUDED.doc, version = sessions.version + 1, updated_at = now()
      RETURNING version INTO v;
  ELSIF p_known = 0 THEN
    INSERT INTO sessions (session_id, version, doc) VALUES (p_id, 1, p_doc::jsonb)
      ON CONFLICT (session_id) DO NOTHING RETURNING version INTO v;
  ELSE
    UPDATE sessions SET doc = p_doc::jsonb, version = version + 1, updated_at = now()
     WHERE session_id = p_id AND version = p_known RETURNING version INTO v;
  END IF;
  IF v IS NOT NULL THEN
    PERFORM pg_notify('exphub_events',
      json_build_object('t', 'session_changed', 'id', p_id, 'v', v, 'origin', p_origin)::text);
  END IF;
  RETURN v;
END $$;

-- A session deleted, announced at commit; false if there was no such row.
CREATE OR REPLACE FUNCTION exphub_session_delete(p_id text, p_origin text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM sessions WHERE session_id = p_id;
  IF NOT FOUND THEN RETURN false; END IF;
  PERFORM pg_notify('exphub_events', json_build_object('t', 'session_deleted', 'id', p_id, 'origin', p_origin)::text);
  RETURN true;
END $$;

-- failover:
-- START of the run in wall-clock unix µs (written fenced by the owner's epoch), and where a
-- takeover came from (the dead node and its last heartbeat), for the new owner's adoption.
ALTER TABLE placements ADD COLUMN IF NOT EXISTS start_unix_us bigint;
ALTER TABLE placements ADD COLUMN IF NOT EXISTS moved_from text;
ALTER TABLE placements ADD COLUMN IF NOT EXISTS moved_from_seen timestamptz;
-- A new run (an ended placement placed again) starts with none of the previous run's data.
CREATE OR REPLACE FUNCTION exphub_new_run() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.state = 'ended' AND NEW.epoch > OLD.epoch THEN
    NEW.start_unix_us := NULL; NEW.moved_from := NULL; NEW.moved_from_seen := NULL;
  END IF;
  RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS exphub_new_run ON placements;
CREATE TRIGGER exphub_new_run BEFORE UPDATE ON placements FOR EACH ROW EXECUTE FUNCTION exphub_new_run();
-- A takeover: the experiment placed again (`exphub_place`, at its recorded cost) and, if the
-- epoch moved on from the dead owner's, the dead node and its last heartbeat noted. Also
-- returns how long the dead node had been silent.
CREATE OR REPLACE FUNCTION exphub_takeover(p_sid text, p_prefer text, p_dead text, p_dead_epoch bigint,
                                           OUT o_node text, OUT o_epoch bigint, OUT o_silent_ms bigint)
LANGUAGE plpgsql AS $$
DECLARE seen timestamptz; c real;
BEGIN
  SELECT last_seen INTO seen FROM nodes WHERE node_id = p_dead;
  SELECT cost INTO c FROM placements WHERE session_id = p_sid;
  SELECT p.o_node, p.o_epoch INTO o_node, o_epoch FROM exphub_place(p_sid, coalesce(c, 0), p_prefer) p;
  o_silent_ms := (extract(epoch FROM now() - coalesce(seen, now())) * 1000)::bigint;
  IF o_epoch = p_dead_epoch + 1 THEN
    UPDATE placements SET moved_from = p_dead, moved_from_seen = coalesce(seen, now())
     WHERE session_id = p_sid AND epoch = o_epoch;
  END IF;
END $$;

INSERT INTO exphub_schema (version) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM exphub_schema);
COMMIT;

-- drain: the measured CPU in the heartbeat (exphub_heartbeat(node, cpu)); placement's room is
-- capacity - max(load, cpu), and only 'serving' nodes get new experiments (exphub_place).
BEGIN;
SELECT pg_advisory_xact_lock(774201);
ALTER TABLE nodes ADD COLUMN IF NOT EXISTS cpu real NOT NULL DEFAULT 0;
COMMIT;
"#;

/// A connection to the cluster database, re-opened on the next use after it dropped.
pub struct Db {
    url: String,
    client: tokio::sync::Mutex<Option<Arc<Conn>>>,
}

/// An open connection and the statements prepared on it (each is prepared once, so a query
/// is one round trip instead of two).
struct Conn {
    client: Client,
    prepared: std::sync::Mutex<std::collections::HashMap<&'static str, Statement>>,
}

impl Conn {
    fn new(client: Client) -> Arc<Conn> {
        Arc::new(Conn { client, prepared: Default::default() })
    }

    async fn statement(&self, sql: &'static str) -> Result<Statement, DbError> {
        if let Some(s) = self.prepared.lock().ok().and_then(|p| p.get(sql).cloned()) {
            return Ok(s);
        }
        let s = self.client.prepare(sql).await?;
        if let Ok(mut p) = self.prepared.lock() {
            p.insert(sql, s.clone());
        }
        Ok(s)
    }
}

/// Who owns an experiment, as the placements table says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub node_id: String,
    pub epoch: i64,
    /// The owner's internal API (None if its node row is gone).
    pub internal_url: Option<String>,
    pub alive: bool,
    pub ended: bool,
}

/// One placement decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub node_id: String,
    pub epoch: i64,
}

/// A node as the registry sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRow {
    pub node_id: String,
    pub internal_url: String,
    pub capacity: f32,
    pub load: f32,
    pub experiments: i32,
    pub alive: bool,
    /// `serving` or `draining`.
    pub state: String,
    /// Measured process CPU, millicores (an average over a few seconds).
    pub cpu: f32,
}

async fn open(url: &str) -> Result<Client, DbError> {
    let (client, conn) = tokio::time::timeout(std::time::Duration::from_secs(10), tokio_postgres::connect(url, NoTls))
        .await
        .map_err(|_| DbError::Unreachable("connecting timed out".into()))??;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::warn!(error = %e, "cluster database connection ended");
        }
    });
    Ok(client)
}

impl Db {
    /// Connects and creates or migrates the schema.
    pub async fn connect(url: &str) -> Result<Db, DbError> {
        let client = open(url).await?;
        client.batch_execute(SCHEMA).await?;
        let found: i32 = client.query_one("SELECT max(version) FROM exphub_schema", &[]).await?.get(0);
        if found > SCHEMA_VERSION {
            return Err(DbError::SchemaTooNew { found });
        }
        if found < SCHEMA_VERSION {
            client.execute("UPDATE exphub_schema SET version = $1 WHERE version < $1", &[&SCHEMA_VERSION]).await?;
        }
        Ok(Db { url: url.to_owned(), client: tokio::sync::Mutex::new(Some(Conn::new(client))) })
    }

    /// The database's URL.
    pub(super) fn url(&self) -> &str {
        &self.url
    }

    /// The open connection, re-opened if it dropped.
    async fn conn(&self) -> Result<Arc<Conn>, DbError> {
        let mut guard = self.client.lock().await;
        if let Some(c) = guard.as_ref().filter(|c| !c.client.is_closed()) {
            return Ok(c.clone());
        }
        let c = Conn::new(open(&self.url).await?);
        *guard = Some(c.clone());
        Ok(c)
    }

    pub(super) async fn query(&self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, DbError> {
        let c = self.conn().await?;
        Ok(c.client.query(&c.statement(sql).await?, params).await?)
    }

    pub(super) async fn query_opt(
        &self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, DbError> {
        Ok(self.query(sql, params).await?.into_iter().next())
    }

    pub(super) async fn query_one(&self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, DbError> {
        self.query_opt(sql, params).await?.ok_or_else(|| DbError::Query(format!("no row from {sql}")))
    }

    pub(super) async fn execute(&self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, DbError> {
        let c = self.conn().await?;
        Ok(c.client.execute(&c.statement(sql).await?, params).await?)
    }

    /// Registers (or re-registers) a node as serving.
    pub async fn register(&self, node_id: &str, internal_url: &str, capacity: f32) -> Result<(), DbError> {
        let version = env!("CARGO_PKG_VERSION");
        self.execute(
            "INSERT INTO nodes (node_id, internal_url, version, capacity) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (node_id) DO UPDATE SET internal_url = EXCLUDED.internal_url,
                   capacity = EXCLUDED.capacity, state = 'serving', last_seen = now()",
            &[&node_id, &internal_url, &version, &capacity],
        )
        .await?;
        Ok(())
    }

    /// The node's heartbeat with its measured CPU (millicores); `false` if its row is gone
    /// (register again).
    pub async fn heartbeat(&self, node_id: &str, cpu: f32) -> Result<bool, DbError> {
        Ok(self.query_one("SELECT exphub_heartbeat($1, $2::real)", &[&node_id, &cpu]).await?.get(0))
    }

    /// Marks a node as draining: placement no longer chooses it. `false` if its row is gone.
    pub async fn set_draining(&self, node_id: &str) -> Result<bool, DbError> {
        Ok(self.execute("UPDATE nodes SET state = 'draining' WHERE node_id = $1", &[&node_id]).await? > 0)
    }

    /// A node leaving: its row goes, and its placements end.
    pub async fn deregister(&self, node_id: &str) -> Result<(), DbError> {
        self.execute("UPDATE placements SET state = 'ended' WHERE node_id = $1", &[&node_id]).await?;
        self.execute("DELETE FROM nodes WHERE node_id = $1", &[&node_id]).await?;
        Ok(())
    }

    /// Places experiment `session_id` (see `exphub_place`).
    pub async fn place(&self, session_id: &str, cost: f32, prefer: &str) -> Result<Placement, DbError> {
        let row = self
            .query_one("SELECT o_node, o_epoch FROM exphub_place($1, $2, $3)", &[&session_id, &cost, &prefer])
            .await?;
        Ok(Placement { node_id: row.get(0), epoch: row.get(1) })
    }

    /// Ends a placement; `false` if `epoch` is no longer the current one (fenced out).
    pub async fn release(&self, session_id: &str, node_id: &str, epoch: i64) -> Result<bool, DbError> {
        Ok(self.query_one("SELECT exphub_release($1, $2, $3)", &[&session_id, &node_id, &epoch]).await?.get(0))
    }

    /// Who owns `session_id`, if it was ever placed.
    pub async fn owner(&self, session_id: &str) -> Result<Option<Owner>, DbError> {
        let row = self
            .query_opt(
                "SELECT p.node_id, p.epoch, n.internal_url,
                        coalesce(n.last_seen > now() - make_interval(secs => 6), false), p.state = 'ended'
                   FROM placements p LEFT JOIN nodes n USING (node_id) WHERE p.session_id = $1",
                &[&session_id],
            )
            .await?;
        Ok(row.map(|r| Owner {
            node_id: r.get(0),
            epoch: r.get(1),
            internal_url: r.get(2),
            alive: r.get(3),
            ended: r.get(4),
        }))
    }

    /// Remembers which node answers connection `connection_id` (trickled candidates follow it).
    pub async fn route_connection(&self, connection_id: &str, node_id: &str) -> Result<(), DbError> {
        self.execute(
                "INSERT INTO connections VALUES ($1, $2, now() + interval '2 minutes')
                 ON CONFLICT (connection_id) DO UPDATE SET node_id = EXCLUDED.node_id, expires_at = EXCLUDED.expires_at",
                &[&connection_id, &node_id],
            )
            .await?;
        Ok(())
    }

    /// The node answering connection `connection_id` and its internal API, if known.
    pub async fn connection_node(&self, connection_id: &str) -> Result<Option<(String, Option<String>)>, DbError> {
        let row = self
            .query_opt(
                "SELECT c.node_id, n.internal_url FROM connections c LEFT JOIN nodes n USING (node_id)
                  WHERE c.connection_id = $1 AND c.expires_at > now()",
                &[&connection_id],
            )
            .await?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    /// Every registered node.
    pub async fn nodes(&self) -> Result<Vec<NodeRow>, DbError> {
        let rows = self.query(
                "SELECT node_id, internal_url, capacity, load, experiments, last_seen > now() - make_interval(secs => 6),
                        state, cpu
                   FROM nodes ORDER BY node_id",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| NodeRow {
                node_id: r.get(0),
                internal_url: r.get(1),
                capacity: r.get(2),
                load: r.get(3),
                experiments: r.get(4),
                alive: r.get(5),
                state: r.get(6),
                cpu: r.get(7),
            })
            .collect())
    }

    /// Indexes a file copied to the object store (replacing the row of an earlier copy).
    pub async fn record_artifact(&self, a: &Artifact) -> Result<(), DbError> {
        self.execute(
            "INSERT INTO artifacts (session_id, epoch, node_id, path, kind, bytes, sha256, complete, object_key)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (session_id, node_id, path) DO UPDATE SET epoch = EXCLUDED.epoch, kind = EXCLUDED.kind,
                   bytes = EXCLUDED.bytes, sha256 = EXCLUDED.sha256, complete = EXCLUDED.complete,
                   object_key = EXCLUDED.object_key, uploaded_at = now()",
            &[&a.session_id, &a.epoch, &a.node_id, &a.path, &a.kind, &a.bytes, &a.sha256, &a.complete, &a.object_key],
        )
        .await?;
        Ok(())
    }

    /// The files of `session_id` in the object store, in epoch order, then by node and path.
    pub async fn artifacts(&self, session_id: &str) -> Result<Vec<Artifact>, DbError> {
        let rows = self
            .query(
                "SELECT session_id, epoch, node_id, path, kind, bytes, sha256, complete, object_key
                   FROM artifacts WHERE session_id = $1 ORDER BY epoch, node_id, path",
                &[&session_id],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| Artifact {
                session_id: r.get(0),
                epoch: r.get(1),
                node_id: r.get(2),
                path: r.get(3),
                kind: r.get(4),
                bytes: r.get(5),
                sha256: r.get(6),
                complete: r.get(7),
                object_key: r.get(8),
            })
            .collect())
    }
}

/// One research file in the object store (a row of `artifacts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub session_id: String,
    pub epoch: i64,
    pub node_id: String,
    /// Relative to the session's recording directory.
    pub path: String,
    /// `raw` / `processed` (media), `manifest`, `events`.
    pub kind: String,
    pub bytes: i64,
    pub sha256: String,
    pub complete: bool,
    pub object_key: String,
}

/// What a node needs to adopt an experiment placed on it by a takeover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adoption {
    pub epoch: i64,
    /// START of the run in wall-clock unix µs, if it was started.
    pub start_unix_us: Option<i64>,
    /// The owner it was taken from, if it was a takeover.
    pub from_node: Option<String>,
    /// Time from the previous owner's last heartbeat to now, ms.
    pub gap_ms: Option<i64>,
}

/// Failover: takeover, adoption, the fenced START, the epoch re-check.
impl Db {
    /// Takes experiment `session_id` over from the dead `dead` (which held `dead_epoch`): the
    /// new placement, and how long `dead` had been silent (ms).
    pub async fn take_over(
        &self,
        session_id: &str,
        prefer: &str,
        dead: &str,
        dead_epoch: i64,
    ) -> Result<(Placement, i64), DbError> {
        let row = self
            .query_one(
                "SELECT o_node, o_epoch, o_silent_ms FROM exphub_takeover($1, $2, $3, $4)",
                &[&session_id, &prefer, &dead, &dead_epoch],
            )
            .await?;
        Ok((Placement { node_id: row.get(0), epoch: row.get(1) }, row.get(2)))
    }

    /// Node `node_id`'s live placement of `session_id`, as adoption needs it.
    pub async fn adoption(&self, session_id: &str, node_id: &str) -> Result<Option<Adoption>, DbError> {
        let row = self
            .query_opt(
                "SELECT epoch, start_unix_us, moved_from,
                        (extract(epoch FROM now() - moved_from_seen) * 1000)::bigint
                   FROM placements WHERE session_id = $1 AND node_id = $2 AND state <> 'ended'",
                &[&session_id, &node_id],
            )
            .await?;
        Ok(row.map(|r| Adoption { epoch: r.get(0), start_unix_us: r.get(1), from_node: r.get(2), gap_ms: r.get(3) }))
    }

    /// START of the run, fenced: written only while `node_id` holds `epoch`.
    pub async fn record_start(
        &self,
        session_id: &str,
        node_id: &str,
        epoch: i64,
        unix_us: i64,
    ) -> Result<bool, DbError> {
        let n = self
            .execute(
                "UPDATE placements SET start_unix_us = $4, state = 'running'
                  WHERE session_id = $1 AND node_id = $2 AND epoch = $3 AND state <> 'ended'",
                &[&session_id, &node_id, &epoch, &unix_us],
            )
            .await?;
        Ok(n == 1)
    }

    /// Of these (session, epoch) pairs held by `node_id`, the sessions it no longer holds at
    /// that epoch (moved to another node or epoch, or ended). One query.
    pub async fn lost(&self, node_id: &str, held: &[(String, i64)]) -> Result<Vec<String>, DbError> {
        let (sids, epochs): (Vec<&str>, Vec<i64>) = held.iter().map(|(s, e)| (s.as_str(), *e)).unzip();
        let rows = self
            .query(
                "SELECT h.sid FROM unnest($2::text[], $3::bigint[]) AS h(sid, epoch)
                   LEFT JOIN placements p ON p.session_id = h.sid
                  WHERE p.session_id IS NULL OR p.node_id <> $1 OR p.epoch <> h.epoch OR p.state = 'ended'",
                &[&node_id, &sids, &epochs],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}
