//! One LISTEN connection per API process, fanned out in memory to every SSE client
//! (DESIGN §4). A notification names an execution and a seq range; if anyone here follows
//! that execution, the hub reads the new rows once and broadcasts them. Subscribers
//! replay from the database themselves (after `Last-Event-ID`), skip what they have, and
//! fill any gap from the database — so a missed notification (the listener reconnecting
//! after a PostgreSQL restart) costs a re-read, never an event.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crewgraph_core::events::{self, EVENTS_CHANNEL, EventsNotice, StoredEvent};
use sea_orm::DatabaseConnection;
use sea_orm::sqlx::postgres::PgListener;
use tokio::sync::broadcast;
use uuid::Uuid;

mod follow;

use follow::render_event;
pub use follow::{EventBody, follow};

/// Events buffered per followed execution before a slow client must re-read.
const TOPIC_CAPACITY: usize = 1024;
/// Rows read per notification.
const READ_LIMIT: u32 = 1000;

/// A stored event with its JSON envelope rendered once for every client that gets it.
#[derive(Debug)]
pub struct SharedEvent {
    pub event: StoredEvent,
    pub json: Arc<str>,
}

#[derive(Debug, Clone)]
pub enum HubMessage {
    Event(Arc<SharedEvent>),
    /// Notifications may have been missed: re-read from the database.
    Resync,
}

struct Topic {
    sender: broadcast::Sender<HubMessage>,
    /// Highest seq broadcast so far.
    cursor: Option<i64>,
    subscribers: usize,
}

pub struct EventHub {
    db: DatabaseConnection,
    topics: Mutex<HashMap<Uuid, Topic>>,
    /// Live subscriptions: one per connected SSE client (for `/metrics`).
    clients: AtomicUsize,
}

/// A follower of one execution; leaving (drop) forgets the topic when it was the last.
pub struct Subscription {
    hub: Arc<EventHub>,
    execution_id: Uuid,
    pub receiver: broadcast::Receiver<HubMessage>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.clients.fetch_sub(1, Ordering::Relaxed);
        if let Ok(mut topics) = self.hub.topics.lock()
            && let Some(topic) = topics.get_mut(&self.execution_id)
        {
            topic.subscribers = topic.subscribers.saturating_sub(1);
            if topic.subscribers == 0 {
                topics.remove(&self.execution_id);
            }
        }
    }
}

impl EventHub {
    pub fn new(db: DatabaseConnection) -> Arc<Self> {
        Arc::new(EventHub {
            db,
            topics: Mutex::new(HashMap::new()),
            clients: AtomicUsize::new(0),
        })
    }

    /// SSE clients following an execution on this process right now.
    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::Relaxed)
    }

    pub fn subscribe(self: &Arc<Self>, execution_id: Uuid) -> Subscription {
        self.clients.fetch_add(1, Ordering::Relaxed);
        let receiver = match self.topics.lock() {
            Ok(mut topics) => {
                let topic = topics.entry(execution_id).or_insert_with(|| Topic {
                    sender: broadcast::channel(TOPIC_CAPACITY).0,
                    cursor: None,
                    subscribers: 0,
                });
                topic.subscribers += 1;
                topic.sender.subscribe()
            }
            // A poisoned lock: a receiver that never hears anything; the subscriber's
            // periodic re-read still delivers every event.
            Err(_) => broadcast::channel(1).1,
        };
        Subscription {
            hub: self.clone(),
            execution_id,
            receiver,
        }
    }

    /// Listens until the process ends, reconnecting after failures.
    pub async fn run(self: Arc<Self>, database_url: String) {
        let mut delay = Duration::from_millis(100);
        loop {
            let mut listener = match connect(&database_url).await {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::warn!(%error, "event listener cannot connect; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            delay = Duration::from_millis(100);
            tracing::info!("event listener connected");
            // Whatever was committed while we were not listening.
            self.resync_all();
            loop {
                match listener.try_recv().await {
                    Ok(Some(notification)) => {
                        if let Some(notice) = EventsNotice::parse(notification.payload()) {
                            self.deliver(notice).await;
                        }
                    }
                    Ok(None) => {
                        tracing::warn!("event listener lost its connection; reconnecting");
                        self.resync_all();
                    }
                    Err(error) => {
                        tracing::warn!(%error, "event listener failed");
                        self.resync_all();
                        break;
                    }
                }
            }
        }
    }

    fn resync_all(&self) {
        if let Ok(topics) = self.topics.lock() {
            for topic in topics.values() {
                let _ = topic.sender.send(HubMessage::Resync);
            }
        }
    }

    async fn deliver(&self, notice: EventsNotice) {
        let after = match self.topics.lock() {
            Ok(topics) => match topics.get(&notice.execution_id) {
                Some(topic) => topic.cursor.unwrap_or(notice.first_seq - 1),
                None => return,
            },
            Err(_) => return,
        };
        if notice.last_seq <= after {
            return;
        }
        let mut rows = Vec::new();
        let mut from = after;
        let read = loop {
            match events::read_after(&self.db, notice.execution_id, from, READ_LIMIT).await {
                Ok(batch) => {
                    let full = batch.len() == READ_LIMIT as usize;
                    from = batch.last().map_or(from, |r| r.seq);
                    rows.extend(batch);
                    if !full || from >= notice.last_seq {
                        break Ok(());
                    }
                }
                Err(error) => break Err(error),
            }
        };
        match read {
            Ok(()) => {}
            Err(error) => {
                tracing::warn!(%error, "reading notified events failed");
                if let Ok(topics) = self.topics.lock()
                    && let Some(topic) = topics.get(&notice.execution_id)
                {
                    let _ = topic.sender.send(HubMessage::Resync);
                }
                return;
            }
        };
        if let Ok(mut topics) = self.topics.lock()
            && let Some(topic) = topics.get_mut(&notice.execution_id)
        {
            for row in rows {
                if topic.cursor.is_some_and(|c| row.seq <= c) {
                    continue;
                }
                topic.cursor = Some(row.seq);
                let json = render_event(&row);
                let _ = topic.sender.send(HubMessage::Event(Arc::new(SharedEvent {
                    event: row,
                    json,
                })));
            }
        }
    }
}

async fn connect(database_url: &str) -> Result<PgListener, sea_orm::sqlx::Error> {
    let mut listener = PgListener::connect(database_url).await?;
    listener.listen(EVENTS_CHANNEL).await?;
    Ok(listener)
}
