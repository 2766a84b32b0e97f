//! The one way lists paginate: `limit` (1..=100, default 50) and an opaque `cursor` that
//! the previous page returned as `next_cursor`. A cursor holds the list it came from and
//! the sort key of the last item (keyset pagination: stable under inserts, no OFFSET
//! scans); any other list refuses it.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::{CoreError, CoreResult};
use crate::fields::is_storable_time;

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 100;

/// A paginated list (with its sort order). Its tag leads every cursor it hands out, so
/// a cursor given to another list — even one sorted by the same kind of key — is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum List {
    Workspaces,
    /// Graphs, most recently updated first.
    GraphsNewestFirst,
    /// Graphs, least recently updated first.
    GraphsOldestFirst,
    GraphVersions,
    Templates,
    Threads,
    Messages,
    Executions,
    Users,
    Webhooks,
    WebhookDeliveries,
}

impl List {
    /// Stable byte values: cursors in clients' hands outlive a deployment.
    fn tag(self) -> u8 {
        match self {
            List::Workspaces => 1,
            List::GraphsNewestFirst => 2,
            List::GraphsOldestFirst => 3,
            List::GraphVersions => 4,
            List::Templates => 5,
            List::Threads => 6,
            List::Messages => 7,
            List::Executions => 8,
            List::Users => 9,
            List::Webhooks => 10,
            List::WebhookDeliveries => 11,
        }
    }
}

/// The sort key of the last item of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// Lists ordered by id (UUIDv7: creation order).
    Id(Uuid),
    /// Lists ordered by a timestamp, ties broken by id.
    TimeId(DateTime<Utc>, Uuid),
    /// Lists ordered by a number (version numbers).
    Number(i64),
}

impl Cursor {
    fn encode(self, list: List) -> String {
        let mut bytes = vec![list.tag()];
        match self {
            Cursor::Id(id) => bytes.extend_from_slice(id.as_bytes()),
            Cursor::TimeId(time, id) => {
                bytes.extend_from_slice(&time.timestamp_micros().to_be_bytes());
                bytes.extend_from_slice(id.as_bytes());
            }
            Cursor::Number(n) => bytes.extend_from_slice(&n.to_be_bytes()),
        }
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The cursor, if `text` is one that `list` handed out.
    fn decode(text: &str, list: List) -> Option<Cursor> {
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        let (&tag, key) = bytes.split_first()?;
        if tag != list.tag() {
            return None;
        }
        match key.len() {
            16 => Uuid::from_slice(key).ok().map(Cursor::Id),
            24 => {
                let micros = i64::from_be_bytes(key[..8].try_into().ok()?);
                let time =
                    DateTime::from_timestamp_micros(micros).filter(|t| is_storable_time(*t))?;
                Some(Cursor::TimeId(time, Uuid::from_slice(&key[8..]).ok()?))
            }
            8 => Some(Cursor::Number(i64::from_be_bytes(key.try_into().ok()?))),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    pub limit: u32,
    /// Items strictly after this id (ids are UUIDv7: time-ordered), for id-ordered lists.
    pub after: Option<Uuid>,
    pub cursor: Option<Cursor>,
    /// The list being paged (its next cursor carries it).
    pub list: List,
}

impl PageRequest {
    pub fn parse(list: List, limit: Option<u32>, cursor: Option<&str>) -> CoreResult<Self> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(CoreError::invalid(
                "invalid_limit",
                "limit",
                format!("limit must be from 1 to {MAX_LIMIT}"),
            ));
        }
        let cursor = cursor
            .map(|c| Cursor::decode(c, list).ok_or_else(invalid_cursor))
            .transpose()?;
        let after = match cursor {
            Some(Cursor::Id(id)) => Some(id),
            _ => None,
        };
        Ok(PageRequest {
            limit,
            after,
            cursor,
            list,
        })
    }

    /// For id-ordered lists: the cursor must be an id cursor.
    pub fn after_id(&self) -> CoreResult<Option<Uuid>> {
        match self.cursor {
            None => Ok(None),
            Some(Cursor::Id(id)) => Ok(Some(id)),
            Some(_) => Err(invalid_cursor()),
        }
    }

    /// For time-ordered lists.
    pub fn after_time_id(&self) -> CoreResult<Option<(DateTime<Utc>, Uuid)>> {
        match self.cursor {
            None => Ok(None),
            Some(Cursor::TimeId(time, id)) => Ok(Some((time, id))),
            Some(_) => Err(invalid_cursor()),
        }
    }

    /// For number-ordered lists.
    pub fn after_number(&self) -> CoreResult<Option<i64>> {
        match self.cursor {
            None => Ok(None),
            Some(Cursor::Number(n)) => Ok(Some(n)),
            Some(_) => Err(invalid_cursor()),
        }
    }

    /// Fetch one more than the limit to know whether another page exists.
    pub fn fetch_limit(&self) -> i64 {
        i64::from(self.limit) + 1
    }
}

fn invalid_cursor() -> CoreError {
    CoreError::invalid("invalid_cursor", "cursor", "the cursor is not valid")
}

pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows ordered by id.
    pub fn from_rows(rows: Vec<T>, request: PageRequest, id: impl Fn(&T) -> Uuid) -> Self {
        Self::from_keyed_rows(rows, request, |row| Cursor::Id(id(row)))
    }

    /// Builds a page from up to `limit + 1` rows ordered by `key`.
    pub fn from_keyed_rows(
        mut rows: Vec<T>,
        request: PageRequest,
        key: impl Fn(&T) -> Cursor,
    ) -> Self {
        let more = rows.len() > request.limit as usize;
        rows.truncate(request.limit as usize);
        let next_cursor = if more {
            rows.last().map(|last| key(last).encode(request.list))
        } else {
            None
        };
        Page {
            items: rows,
            next_cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_rejected() {
        let id = Uuid::now_v7();
        let time = DateTime::from_timestamp_micros(1_764_000_000_123_456).expect("time");
        for cursor in [Cursor::Id(id), Cursor::TimeId(time, id), Cursor::Number(42)] {
            let text = cursor.encode(List::Threads);
            let page = PageRequest::parse(List::Threads, Some(10), Some(&text)).expect("parse");
            assert_eq!(page.cursor, Some(cursor));
        }
        assert!(PageRequest::parse(List::Threads, None, Some("not a cursor!")).is_err());
        assert!(PageRequest::parse(List::Threads, None, Some("")).is_err());
        let mut ancient = vec![List::Threads.tag()];
        ancient.extend_from_slice(&i64::MIN.to_be_bytes());
        ancient.extend_from_slice(id.as_bytes());
        assert!(
            PageRequest::parse(List::Threads, None, Some(&URL_SAFE_NO_PAD.encode(ancient)))
                .is_err(),
            "a time PostgreSQL cannot store"
        );
        assert!(PageRequest::parse(List::Threads, Some(0), None).is_err());
        assert!(PageRequest::parse(List::Threads, Some(101), None).is_err());
        let id_cursor = Cursor::Id(id).encode(List::Workspaces);
        let id_page = PageRequest::parse(List::Workspaces, None, Some(&id_cursor)).expect("parse");
        assert!(id_page.after_time_id().is_err(), "wrong kind of cursor");
    }

    #[test]
    fn a_cursor_is_refused_by_every_other_list() {
        let lists = [
            List::Workspaces,
            List::GraphsNewestFirst,
            List::GraphsOldestFirst,
            List::GraphVersions,
            List::Templates,
            List::Threads,
            List::Messages,
            List::Executions,
            List::Users,
        ];
        let cursor = Cursor::Id(Uuid::now_v7());
        for from in lists {
            let text = cursor.encode(from);
            for to in lists {
                let parsed = PageRequest::parse(to, None, Some(&text));
                assert_eq!(
                    parsed.is_ok(),
                    from == to,
                    "{from:?} cursor given to {to:?}"
                );
            }
        }
    }
}
