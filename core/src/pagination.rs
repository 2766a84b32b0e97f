//! The one way lists paginate: `limit` (1..=100, default 50) and an opaque `cursor` that
//! the previous page returned as `next_cursor`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

use crate::error::{CoreError, CoreResult};

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 100;

#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    pub limit: u32,
    /// Items strictly after this id (ids are UUIDv7: time-ordered).
    pub after: Option<Uuid>,
}

impl PageRequest {
    pub fn parse(limit: Option<u32>, cursor: Option<&str>) -> CoreResult<Self> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(CoreError::invalid(
                "invalid_limit",
                "limit",
                format!("limit must be from 1 to {MAX_LIMIT}"),
            ));
        }
        let after = cursor
            .map(|c| {
                URL_SAFE_NO_PAD
                    .decode(c)
                    .ok()
                    .and_then(|bytes| Uuid::from_slice(&bytes).ok())
                    .ok_or_else(|| {
                        CoreError::invalid("invalid_cursor", "cursor", "the cursor is not valid")
                    })
            })
            .transpose()?;
        Ok(PageRequest { limit, after })
    }

    /// Fetch one more than the limit to know whether another page exists.
    pub fn fetch_limit(&self) -> i64 {
        i64::from(self.limit) + 1
    }
}

pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows ordered by id.
    pub fn from_rows(mut rows: Vec<T>, request: PageRequest, id: impl Fn(&T) -> Uuid) -> Self {
        let more = rows.len() > request.limit as usize;
        rows.truncate(request.limit as usize);
        let next_cursor = if more {
            rows.last()
                .map(|last| URL_SAFE_NO_PAD.encode(id(last).as_bytes()))
        } else {
            None
        };
        Page {
            items: rows,
            next_cursor,
        }
    }
}
