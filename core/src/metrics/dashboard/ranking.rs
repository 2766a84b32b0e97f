//! Pages of ranked lists (failing graphs, end codes, models): the project's contract
//! (`limit` 1..=100, default 50; an opaque `next_cursor`), keyed on the rank figure and
//! the item's key — keyset pagination over an aggregate, no OFFSET. The figures are
//! computed per request, so pages are consistent while the range's data does not change
//! (a range whose `to` is in the past).
//!
//! Cursors carry a tag byte from 0x80 up, outside `core::pagination`'s tags, so neither
//! scheme accepts the other's cursors.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

use crate::error::{CoreError, CoreResult};
use crate::pagination::{DEFAULT_LIMIT, MAX_LIMIT};

/// A ranked list; its tag leads its cursors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ranking {
    /// Graphs by failed runs, most first, ties by graph id.
    FailingGraphs,
    /// End codes by runs, most first, ties by code.
    EndCodes,
    /// Models by LLM calls, most first, ties by name.
    Models,
}

impl Ranking {
    /// Stable byte values: cursors in clients' hands outlive a deployment.
    fn tag(self) -> u8 {
        match self {
            Ranking::FailingGraphs => 0x80,
            Ranking::EndCodes => 0x81,
            Ranking::Models => 0x82,
        }
    }
}

/// The last item of a page: its rank figure and its key (a uuid's 16 bytes, or text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankKey {
    pub figure: i64,
    pub key: Vec<u8>,
}

impl RankKey {
    fn encode(&self, ranking: Ranking) -> String {
        let mut bytes = vec![ranking.tag()];
        bytes.extend_from_slice(&self.figure.to_be_bytes());
        bytes.extend_from_slice(&self.key);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn decode(text: &str, ranking: Ranking) -> Option<RankKey> {
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        let (&tag, rest) = bytes.split_first()?;
        if tag != ranking.tag() || rest.len() < 8 {
            return None;
        }
        let (figure, key) = rest.split_at(8);
        Some(RankKey {
            figure: i64::from_be_bytes(figure.try_into().ok()?),
            key: key.to_vec(),
        })
    }

    /// The key as a uuid (failing graphs).
    pub fn uuid(&self) -> CoreResult<Uuid> {
        Uuid::from_slice(&self.key).map_err(|_| invalid_cursor())
    }

    /// The key as text (end codes, models).
    pub fn text(&self) -> CoreResult<String> {
        // PostgreSQL text holds no NUL: such a key never came from us.
        String::from_utf8(self.key.clone())
            .ok()
            .filter(|text| !text.contains('\0'))
            .ok_or_else(invalid_cursor)
    }
}

#[derive(Debug, Clone)]
pub struct RankPageRequest {
    pub ranking: Ranking,
    pub limit: u32,
    pub after: Option<RankKey>,
}

impl RankPageRequest {
    pub fn parse(ranking: Ranking, limit: Option<u32>, cursor: Option<&str>) -> CoreResult<Self> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(CoreError::invalid(
                "invalid_limit",
                "limit",
                format!("limit must be from 1 to {MAX_LIMIT}"),
            ));
        }
        let after = cursor
            .map(|c| RankKey::decode(c, ranking).ok_or_else(invalid_cursor))
            .transpose()?;
        Ok(RankPageRequest {
            ranking,
            limit,
            after,
        })
    }

    /// One more than the limit, to know whether another page exists.
    pub fn fetch_limit(&self) -> i64 {
        i64::from(self.limit) + 1
    }

    /// A page from up to `limit + 1` rows in rank order.
    pub fn page<T>(&self, mut rows: Vec<T>, key: impl Fn(&T) -> RankKey) -> RankPage<T> {
        let more = rows.len() > self.limit as usize;
        rows.truncate(self.limit as usize);
        let next_cursor = if more {
            rows.last().map(|last| key(last).encode(self.ranking))
        } else {
            None
        };
        RankPage {
            items: rows,
            next_cursor,
        }
    }
}

pub struct RankPage<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

fn invalid_cursor() -> CoreError {
    CoreError::invalid("invalid_cursor", "cursor", "the cursor is not valid")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pagination::{List, PageRequest};

    const RANKINGS: [Ranking; 3] = [Ranking::FailingGraphs, Ranking::EndCodes, Ranking::Models];

    #[test]
    fn a_key_postgres_cannot_hold_is_an_invalid_cursor() {
        let key = RankKey {
            figure: 1,
            key: b"model\0name".to_vec(),
        };
        assert!(key.text().is_err());
    }

    #[test]
    fn cursors_round_trip_and_belong_to_one_ranking() {
        let key = RankKey {
            figure: 42,
            key: b"openai/gpt-4o-mini".to_vec(),
        };
        for from in RANKINGS {
            let text = key.encode(from);
            for to in RANKINGS {
                let parsed = RankPageRequest::parse(to, None, Some(&text));
                assert_eq!(
                    parsed.is_ok(),
                    from == to,
                    "{from:?} cursor given to {to:?}"
                );
            }
            let page = RankPageRequest::parse(from, Some(5), Some(&text)).expect("parse");
            assert_eq!(page.after.as_ref(), Some(&key));
            assert_eq!(
                page.after.expect("key").text().expect("text"),
                "openai/gpt-4o-mini"
            );
            // Not a cursor of any other list of the project, either way round.
            assert!(PageRequest::parse(List::Executions, None, Some(&text)).is_err());
        }
        let id = Uuid::now_v7();
        let listed = PageRequest::parse(List::Users, Some(1), None).expect("page");
        let other = crate::pagination::Page::from_rows(vec![id, id], listed, |u| *u);
        let foreign = other.next_cursor.expect("cursor");
        assert!(RankPageRequest::parse(Ranking::FailingGraphs, None, Some(&foreign)).is_err());
    }

    #[test]
    fn garbage_limits_and_keys_of_the_wrong_kind_are_refused() {
        for bad in ["", "not a cursor!", "gA"] {
            assert!(
                RankPageRequest::parse(Ranking::Models, None, Some(bad)).is_err(),
                "{bad}"
            );
        }
        assert!(RankPageRequest::parse(Ranking::Models, Some(0), None).is_err());
        assert!(RankPageRequest::parse(Ranking::Models, Some(101), None).is_err());
        let short = RankKey {
            figure: 1,
            key: vec![1, 2, 3],
        };
        assert!(short.uuid().is_err());
        let not_utf8 = RankKey {
            figure: 1,
            key: vec![0xff, 0xfe],
        };
        assert!(not_utf8.text().is_err());
    }

    #[test]
    fn a_page_holds_the_limit_and_a_cursor_only_when_more_remain() {
        let request = RankPageRequest::parse(Ranking::EndCodes, Some(2), None).expect("parse");
        let key = |n: &i64| RankKey {
            figure: *n,
            key: n.to_string().into_bytes(),
        };
        let full = request.page(vec![9, 8, 7], key);
        assert_eq!(full.items, [9, 8]);
        let next = RankPageRequest::parse(Ranking::EndCodes, Some(2), full.next_cursor.as_deref())
            .expect("next");
        assert_eq!(next.after.map(|k| k.figure), Some(8));
        let last = request.page(vec![9, 8], key);
        assert!(last.next_cursor.is_none());
    }
}
