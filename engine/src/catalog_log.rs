//! One catalog for every node of a cluster: DDL goes through a compacted
//! Kafka topic (the command topic), which every node reads in order and
//! applies to its views (`Catalog::apply`).
//!
//! A record's key is the view name and its value a JSON [`ViewCommand`]; a
//! DROP VIEW is a tombstone. The topic has one partition (partition 0 is the
//! one used), so its offsets order every command of the cluster, and the
//! catalog version is derived from the offset of the last command applied:
//! two nodes that have applied the same commands report the same version.
//!
//! The node that runs a DDL statement checks it against its views first
//! (errors are reported without writing anything), writes the command, and
//! answers only once it has applied that command itself, with the outcome of
//! applying it: a command that lost a race with another node's (say, two
//! CREATE VIEW of one name at once) is refused on every node and its client
//! gets the error. Compaction keeps only the last record of each name, so
//! the last record of a name must tell that name's state: a refused command
//! is followed by a `SetView` record with the name's state, and a rename by
//! a `ForgetView` record under the old name.
//!
//! Without Kafka (or with an empty topic name) the catalog is node-local:
//! commands are applied right away and the version counts the changes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::catalog::{Catalog, ViewCommand};
use crate::error::{EngineError, Result};

/// The command topic's name unless configured.
pub const DEFAULT_TOPIC: &str = "_velo_catalog";
/// The only partition written and read.
const PARTITION: i32 = 0;
/// How long a node waits for the command it wrote to come back to it.
const APPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Outcomes of applied commands kept for the nodes' DDL statements to read.
const OUTCOMES_KEPT: usize = 4096;
const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);

/// Where this node's DDL goes: straight into its own catalog, or through the
/// cluster's command topic.
pub struct CatalogLog {
    catalog: Arc<Catalog>,
    topic: Option<CommandTopic>,
}

struct CommandTopic {
    name: String,
    producer: FutureProducer,
    /// The offset after the last record applied.
    applied: watch::Receiver<i64>,
    outcomes: Arc<Mutex<BTreeMap<i64, Result<()>>>>,
    _stop: DropGuard,
}

impl CatalogLog {
    /// A node-local catalog.
    pub fn local(catalog: Arc<Catalog>) -> Self {
        Self {
            catalog,
            topic: None,
        }
    }

    /// Joins the cluster's catalog: creates the command topic if it is not
    /// there (compacted, one partition), then replays it up to its end as of
    /// now, within `replay_timeout`; afterwards follows it in the background.
    pub async fn kafka(
        catalog: Arc<Catalog>,
        bootstrap: &str,
        topic: &str,
        replay_timeout: Duration,
    ) -> anyhow::Result<Self> {
        ensure_topic(bootstrap, topic).await?;
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("linger.ms", "0")
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "10000")
            .set("log_level", "3")
            .create()?;
        let end = {
            let (producer, topic) = (producer.clone(), topic.to_string());
            tokio::task::spawn_blocking(move || {
                producer
                    .client()
                    .fetch_watermarks(&topic, PARTITION, KAFKA_TIMEOUT)
            })
            .await??
            .1
        };
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "velo-engine-catalog")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("fetch.wait.max.ms", "10")
            .set("log_level", "3")
            .create()?;
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(topic, PARTITION, Offset::Beginning)?;
        consumer.assign(&assignment)?;
        let (applied_tx, applied) = watch::channel(0);
        let outcomes = Arc::new(Mutex::new(BTreeMap::new()));
        let stop = CancellationToken::new();
        tokio::spawn(follow(
            consumer,
            catalog.clone(),
            outcomes.clone(),
            applied_tx,
            stop.clone(),
        ));
        let mut replayed = applied.clone();
        tokio::time::timeout(replay_timeout, replayed.wait_for(|&next| next >= end))
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "catalog topic {topic}: could not replay its {end} records in {replay_timeout:?}"
                )
            })??;
        tracing::info!(
            topic,
            records = end,
            "catalog replayed from the command topic"
        );
        Ok(Self {
            catalog,
            topic: Some(CommandTopic {
                name: topic.into(),
                producer,
                applied,
                outcomes,
                _stop: stop.drop_guard(),
            }),
        })
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    pub async fn create_view(&self, name: &str, or_replace: bool, definition: &str) -> Result<()> {
        self.catalog
            .check_create(name, or_replace, definition)
            .await?;
        self.run(ViewCommand::CreateView {
            name: name.into(),
            definition: definition.into(),
            or_replace,
        })
        .await
        .map(|_| ())
    }

    pub async fn rename_view(&self, from: &str, to: &str) -> Result<()> {
        let definition = self.catalog.check_rename(from, to)?;
        let renamed_at = self
            .run(ViewCommand::RenameView {
                from: from.into(),
                to: to.into(),
                definition,
            })
            .await?;
        if let Some(renamed_at) = renamed_at {
            // Lets compaction discard the old name's records. Refused only
            // if the old name was defined again meanwhile: that is fine.
            let _ = self
                .run(ViewCommand::ForgetView {
                    name: from.into(),
                    renamed_at,
                })
                .await;
        }
        Ok(())
    }

    pub async fn drop_view(&self, name: &str, if_exists: bool) -> Result<()> {
        if !self.catalog.check_drop(name, if_exists)? {
            return Ok(());
        }
        match self.run(ViewCommand::DropView { name: name.into() }).await {
            Err(EngineError::UnknownRelation { .. }) if if_exists => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Applies `command` here, or writes it to the command topic and waits
    /// until this node has applied it. The outcome of applying it, and the
    /// record's offset.
    async fn run(&self, command: ViewCommand) -> Result<Option<i64>> {
        let Some(topic) = &self.topic else {
            return self.catalog.apply(&command, None).map(|_| None);
        };
        let offset = topic.write(&command).await?;
        let outcome = topic.outcome(offset).await?;
        if outcome.is_err() && !matches!(command, ViewCommand::DropView { .. }) {
            // The refused record is now its name's last one: follow it with
            // the name's state (a refused DROP VIEW leaves no view, as its
            // tombstone says).
            let name = command.key().to_string();
            let definition = self.catalog.view(&name);
            if let Err(e) = topic
                .write(&ViewCommand::SetView { name, definition })
                .await
            {
                tracing::warn!("catalog topic: could not restate a refused command's view: {e}");
            }
        }
        outcome.map(|_| Some(offset))
    }
}

impl CommandTopic {
    /// Writes one command; its offset.
    async fn write(&self, command: &ViewCommand) -> Result<i64> {
        let value = match command {
            ViewCommand::DropView { .. } => None,
            other => Some(serde_json::to_vec(other).expect("commands serialize")),
        };
        let mut record = FutureRecord::<str, [u8]>::to(&self.name)
            .partition(PARTITION)
            .key(command.key());
        if let Some(value) = &value {
            record = record.payload(value);
        }
        let delivery = self
            .producer
            .send(record, KAFKA_TIMEOUT)
            .await
            .map_err(|(e, _)| EngineError::Source(format!("catalog topic {}: {e}", self.name)))?;
        Ok(delivery.offset)
    }

    /// Waits until the record at `offset` is applied here; how it went.
    async fn outcome(&self, offset: i64) -> Result<Result<()>> {
        let mut applied = self.applied.clone();
        tokio::time::timeout(APPLY_TIMEOUT, applied.wait_for(|&next| next > offset))
            .await
            .map_err(|_| {
                EngineError::Source(format!(
                    "catalog topic {}: the command written at offset {offset} was not read back in {APPLY_TIMEOUT:?}",
                    self.name
                ))
            })?
            .map_err(|_| EngineError::Source("the catalog topic reader stopped".into()))?;
        self.outcomes
            .lock()
            .expect("outcomes lock")
            .get(&offset)
            .cloned()
            .ok_or_else(|| {
                EngineError::Source(format!(
                    "catalog topic {}: the outcome of offset {offset} is no longer known",
                    self.name
                ))
            })
    }
}

/// Creates the command topic unless it exists.
async fn ensure_topic(bootstrap: &str, topic: &str) -> anyhow::Result<()> {
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("allow.auto.create.topics", "false")
        .set("log_level", "3")
        .create()?;
    let name = topic.to_string();
    let exists = tokio::task::spawn_blocking(move || {
        let metadata = probe.fetch_metadata(Some(&name), KAFKA_TIMEOUT)?;
        anyhow::Ok(
            metadata
                .topics()
                .iter()
                .any(|t| t.name() == name && t.error().is_none() && !t.partitions().is_empty()),
        )
    })
    .await??;
    if exists {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("log_level", "3")
        .create()?;
    let options = AdminOptions::new().operation_timeout(Some(KAFKA_TIMEOUT));
    // The cluster's default replication first; one replica if it refuses.
    for replication in [-1, 1] {
        let new = NewTopic::new(topic, 1, TopicReplication::Fixed(replication))
            .set("cleanup.policy", "compact");
        let results = admin.create_topics([&new], &options).await?;
        match results.into_iter().next() {
            Some(Ok(_)) | None => return Ok(()),
            Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => return Ok(()),
            Some(Err((_, code))) => {
                tracing::debug!(topic, replication, "creating the catalog topic: {code}")
            }
        }
    }
    anyhow::bail!("catalog topic {topic} could not be created")
}

/// Reads the command topic forever, applying each record in order.
async fn follow(
    consumer: StreamConsumer,
    catalog: Arc<Catalog>,
    outcomes: Arc<Mutex<BTreeMap<i64, Result<()>>>>,
    applied: watch::Sender<i64>,
    stop: CancellationToken,
) {
    loop {
        let message = tokio::select! {
            _ = stop.cancelled() => return,
            m = consumer.recv() => m,
        };
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("reading the catalog topic: {e}");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => continue,
                }
            }
        };
        let offset = message.offset();
        let outcome = match decode(message.key(), message.payload()) {
            Ok(command) => catalog.apply(&command, Some(offset)),
            Err(e) => {
                tracing::warn!(offset, "skipping a catalog topic record: {e}");
                catalog.skip(offset);
                Err(e)
            }
        };
        {
            let mut outcomes = outcomes.lock().expect("outcomes lock");
            outcomes.insert(offset, outcome);
            while outcomes.len() > OUTCOMES_KEPT {
                outcomes.pop_first();
            }
        }
        applied.send_replace(offset + 1);
    }
}

/// A record as a command: a tombstone drops its key's view.
fn decode(key: Option<&[u8]>, value: Option<&[u8]>) -> Result<ViewCommand> {
    let bad = |why: String| EngineError::Execution(format!("not a catalog command: {why}"));
    match value {
        None => {
            let key = key.ok_or_else(|| bad("a tombstone without a key".into()))?;
            let name = std::str::from_utf8(key).map_err(|e| bad(e.to_string()))?;
            Ok(ViewCommand::DropView { name: name.into() })
        }
        Some(value) => serde_json::from_slice(value).map_err(|e| bad(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_as_json() {
        let c = ViewCommand::CreateView {
            name: "v".into(),
            definition: "SELECT 1".into(),
            or_replace: false,
        };
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(
            json,
            r#"{"op":"create_view","name":"v","definition":"SELECT 1","or_replace":false}"#
        );
        assert_eq!(decode(Some(b"v"), Some(json.as_bytes())).unwrap(), c);
        assert_eq!(
            decode(Some(b"v"), None).unwrap(),
            ViewCommand::DropView { name: "v".into() }
        );
        assert!(decode(Some(b"v"), Some(br#"{"op":"truncate"}"#)).is_err());
    }

    #[test]
    fn the_same_commands_give_the_same_views() {
        let apply_all = |commands: &[ViewCommand]| {
            let catalog = Catalog::new(None, vec![], vec![]);
            let outcomes: Vec<bool> = commands
                .iter()
                .enumerate()
                .map(|(i, c)| catalog.apply(c, Some(i as i64)).is_ok())
                .collect();
            let views = ["a", "b", "c"].map(|n| catalog.view(n));
            (outcomes, views, catalog.version())
        };
        let create = |name: &str, def: &str| ViewCommand::CreateView {
            name: name.into(),
            definition: def.into(),
            or_replace: false,
        };
        let commands = [
            create("a", "SELECT 1"),
            create("a", "SELECT 2"), // refused: a exists
            ViewCommand::RenameView {
                from: "a".into(),
                to: "b".into(),
                definition: "SELECT 1".into(),
            },
            create("a", "SELECT 3"), // a is free again
            ViewCommand::ForgetView {
                name: "a".into(),
                renamed_at: 2,
            }, // refused: a was defined after the rename
            ViewCommand::DropView { name: "c".into() }, // refused: no c
        ];
        let (outcomes, views, version) = apply_all(&commands);
        assert_eq!(outcomes, [true, false, true, true, false, false]);
        assert_eq!(
            views,
            [Some("SELECT 3".into()), Some("SELECT 1".into()), None]
        );
        assert_eq!(version, 7);
        assert_eq!(apply_all(&commands), (outcomes, views, version));
    }
}
