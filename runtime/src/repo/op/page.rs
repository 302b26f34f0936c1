//! Keyset pagination: `find(filter).sort(..).limit(n).page()` and `.after(&cursor)` return a
//! [`Page`] and an opaque cursor for the next one.
//!
//! The cursor holds the sort-key values and `_id` of the page's last document; the next page is
//! the documents strictly after them in the sort order (`$or` of the key prefixes), never a
//! `skip`, so documents inserted or deleted between pages neither repeat nor shift the results,
//! and a deep page costs what the first one does. The cursor is bound to a hash of the filter and
//! the sort, so a cursor from another query is refused, and carries a checksum, so an edited
//! one is refused too. (The checksum is not a signature: a cursor is not a security boundary,
//! the filter still applies to every page.)

use std::future::IntoFuture;

use futures_util::future::BoxFuture;
use mongodb::ClientSession;
use mongodb::bson::{self, Bson, Document, doc};

use super::find::Find;
use crate::error::{Error, Result};
use crate::model::Model;
use crate::session::SessionSlot;

/// One page of results and the cursor of the next page (`None` after the last page).
#[derive(Debug)]
pub struct Page<M> {
    /// The documents of this page, in sort order.
    pub items: Vec<M>,
    /// Pass to `.after(..)` for the next page; `None` when no document follows.
    pub next: Option<String>,
}

/// One page of a sorted query. Created by [`Find::page`] and [`Find::after`].
#[must_use = "an operation does nothing until it is awaited"]
pub struct FindPage<'a, M: Model> {
    find: Find<'a, M>,
    after: Option<String>,
}

impl<'a, M: Model> Find<'a, M> {
    /// The first page: at most `limit` documents (20 when no limit was set) in the order of
    /// `sort` then `_id`, with a cursor for the next page. A `skip` set on the query is not
    /// used: pages are found by their sort keys, never by position.
    pub fn page(self) -> FindPage<'a, M> {
        FindPage {
            find: self,
            after: None,
        }
    }

    /// The page after the one `cursor` (from [`Page::next`]) ends; with no cursor (a `None`
    /// [`Page::next`] kept from nowhere yet), the first page, so a loop can pass `&next` as it
    /// is. The query must have the same filter and sort as the one that made the cursor,
    /// otherwise [`Error::InvalidCursor`].
    pub fn after(self, cursor: impl PageCursor) -> FindPage<'a, M> {
        FindPage {
            find: self,
            after: cursor.into_cursor(),
        }
    }
}

/// What [`Find::after`] accepts: a cursor (`&str`, `&String`, `String`) or an optional one
/// (`&Option<String>`, `Option<String>`, `Option<&str>`), where `None` means the first page.
pub trait PageCursor {
    /// The cursor, if any.
    fn into_cursor(self) -> Option<String>;
}

impl PageCursor for &str {
    fn into_cursor(self) -> Option<String> {
        Some(self.to_owned())
    }
}

impl PageCursor for &String {
    fn into_cursor(self) -> Option<String> {
        Some(self.clone())
    }
}

impl PageCursor for String {
    fn into_cursor(self) -> Option<String> {
        Some(self)
    }
}

impl PageCursor for Option<String> {
    fn into_cursor(self) -> Option<String> {
        self
    }
}

impl PageCursor for &Option<String> {
    fn into_cursor(self) -> Option<String> {
        self.clone()
    }
}

impl PageCursor for Option<&str> {
    fn into_cursor(self) -> Option<String> {
        self.map(str::to_owned)
    }
}

/// The page size when the query has no limit.
const DEFAULT_PAGE: i64 = 20;

impl<'a, M: Model> FindPage<'a, M> {
    /// Runs the query in `session` (for example inside a transaction you manage).
    pub fn session(mut self, session: &'a mut ClientSession) -> Self {
        self.find.session = SessionSlot::Borrowed(session);
        self
    }

    async fn run(self) -> Result<Page<M>> {
        let Find {
            repo,
            filter,
            mut options,
            session,
        } = self.find;
        let filter = repo.checked_part(filter, "the filter")?;
        // `_id` last breaks ties, so the order is total and a cursor names one position.
        let mut keys: Vec<(String, i32)> = options
            .sort
            .take()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| {
                let dir = match v {
                    Bson::Int32(d) if d < 0 => -1,
                    Bson::Int64(d) if d < 0 => -1,
                    Bson::Double(d) if d < 0.0 => -1,
                    _ => 1,
                };
                (k, dir)
            })
            .collect();
        if !keys.iter().any(|(k, _)| k == "_id") {
            keys.push(("_id".to_owned(), 1));
        }
        let sort: Document = keys
            .iter()
            .map(|(k, d)| (k.clone(), Bson::Int32(*d)))
            .collect();
        let binding = fnv(&bson::to_vec(&doc! { "f": &filter, "s": &sort }).unwrap_or_default());
        let size = options.limit.filter(|l| *l > 0).unwrap_or(DEFAULT_PAGE);

        let query = match &self.after {
            None => filter,
            Some(cursor) => {
                let values = decode_cursor(cursor, binding, keys.len()).map_err(|reason| {
                    Error::InvalidCursor {
                        collection: M::COLLECTION.to_owned(),
                        reason: reason.to_owned(),
                    }
                })?;
                doc! { "$and": [filter, after_filter(&keys, &values)] }
            }
        };
        options.sort = Some(sort);
        // One more than the page: whether it comes back says whether a next page exists.
        options.limit = Some(size + 1);
        options.skip = None;
        let mut items = Find {
            repo,
            filter: Ok(query),
            options,
            session,
        }
        .run()
        .await?;
        let more = items.len() as i64 > size;
        items.truncate(usize::try_from(size).unwrap_or(usize::MAX));
        let next = match (more, items.last()) {
            (true, Some(last)) => {
                let stored = crate::decode::encode(M::COLLECTION, last)?;
                let values: Vec<Bson> = keys
                    .iter()
                    .map(|(k, _)| value_at(&stored, k).unwrap_or(Bson::Null))
                    .collect();
                Some(encode_cursor(binding, values))
            }
            _ => None,
        };
        Ok(Page { items, next })
    }
}

impl<'a, M: Model> IntoFuture for FindPage<'a, M> {
    type Output = Result<Page<M>>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        let database = self.find.repo.db().name().to_owned();
        super::trace::traced(
            &database,
            M::COLLECTION,
            "find_page",
            super::trace::nothing,
            self.run(),
        )
    }
}

/// Documents strictly after `values` in the order of `keys`: for each key, the earlier keys
/// equal and this one beyond.
fn after_filter(keys: &[(String, i32)], values: &[Bson]) -> Document {
    let mut branches = Vec::with_capacity(keys.len());
    for (i, (key, dir)) in keys.iter().enumerate() {
        let mut branch = Document::new();
        for (k, v) in keys.iter().zip(values).take(i) {
            branch.insert(k.0.clone(), doc! { "$eq": v.clone() });
        }
        let op = if *dir < 0 { "$lt" } else { "$gt" };
        let value = values.get(i).cloned().unwrap_or(Bson::Null);
        branch.insert(key.clone(), doc! { op: value });
        branches.push(Bson::Document(branch));
    }
    doc! { "$or": branches }
}

fn value_at(doc: &Document, path: &str) -> Option<Bson> {
    let mut parts = path.split('.');
    let mut value = doc.get(parts.next()?)?;
    for part in parts {
        value = match value {
            Bson::Document(d) => d.get(part)?,
            _ => return None,
        };
    }
    Some(value.clone())
}

fn encode_cursor(binding: u64, values: Vec<Bson>) -> String {
    let body = doc! { "b": binding as i64, "v": values };
    let bytes = bson::to_vec(&body).unwrap_or_default();
    let check = fnv(&bytes);
    let mut out = String::with_capacity(16 + bytes.len() * 2);
    for byte in check.to_be_bytes().iter().chain(&bytes) {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

fn decode_cursor(
    cursor: &str,
    binding: u64,
    keys: usize,
) -> std::result::Result<Vec<Bson>, &'static str> {
    const ALTERED: &str = "the cursor was altered or truncated";
    if !cursor.len().is_multiple_of(2) || cursor.len() < 16 || !cursor.is_ascii() {
        return Err(ALTERED);
    }
    let bytes = (0..cursor.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&cursor[i..i + 2], 16))
        .collect::<std::result::Result<Vec<u8>, _>>()
        .map_err(|_| ALTERED)?;
    let (check, body) = bytes.split_at(8);
    let mut expected = [0u8; 8];
    expected.copy_from_slice(check);
    if u64::from_be_bytes(expected) != fnv(body) {
        return Err(ALTERED);
    }
    let body: Document = bson::from_slice(body).map_err(|_| ALTERED)?;
    if body.get_i64("b").ok() != Some(binding as i64) {
        return Err("the cursor belongs to another query (another filter or sort)");
    }
    let values = body.get_array("v").map_err(|_| ALTERED)?;
    if values.len() != keys {
        return Err("the cursor belongs to another query (another filter or sort)");
    }
    Ok(values.clone())
}

/// FNV-1a, 64 bits: stable across builds and Rust versions (unlike `DefaultHasher`), so a
/// cursor stays valid across a restart or a deploy.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_refuses_edits_and_other_queries() {
        let cursor = encode_cursor(7, vec![Bson::Int32(3), Bson::String("x".into())]);
        assert_eq!(
            decode_cursor(&cursor, 7, 2),
            Ok(vec![Bson::Int32(3), Bson::String("x".into())])
        );
        assert!(decode_cursor(&cursor, 8, 2).is_err());
        let mut edited = cursor.clone().into_bytes();
        let last = edited.len() - 3;
        edited[last] = if edited[last] == b'0' { b'1' } else { b'0' };
        let edited = String::from_utf8(edited).unwrap();
        assert_eq!(
            decode_cursor(&edited, 7, 2),
            Err("the cursor was altered or truncated")
        );
        assert!(decode_cursor("zz", 7, 2).is_err());
    }

    #[test]
    fn after_compares_key_prefixes() {
        let keys = vec![("total".to_owned(), -1), ("_id".to_owned(), 1)];
        let f = after_filter(&keys, &[Bson::Int32(5), Bson::Int32(9)]);
        assert_eq!(
            f,
            doc! { "$or": [
                { "total": { "$lt": 5 } },
                { "total": { "$eq": 5 }, "_id": { "$gt": 9 } },
            ] }
        );
    }
}
