//! The quarantine: the pieces of sources' requests that were not events (`Q`), each kept with
//! two index keys written in the same batch:
//!
//! - `B` src_id rej_id: a source's pieces in id (time) order, so that listing one source's
//!   pieces reads only those;
//! - `H` src_id digest: the piece of a source that holds these exact bytes, read the same way
//!   (an element, or a whole body). The same bytes posted again (a CRM's retry of a batch it
//!   thought lost) are held by the piece they made first, while that piece is kept and not
//!   retried: the request is answered with that piece's id and nothing new is written.
//!
//! The look-up and the write are one step for the bytes they concern: a request holds the
//! [`Stripes`] its pieces' digests fall in (taken in order, so two requests cannot wait for
//! each other) from its look-ups until its write is durable. Two requests with the same bad
//! bytes at the same moment (a CRM that sends a batch again before the first answer) keep one
//! piece; requests with other bytes mostly take other stripes and are not held up. Across
//! cluster nodes nothing is shared: two nodes can each keep a piece of the same bytes.
//!
//! A request's new pieces go to the log writer [`PIECES_PER_WRITE`] at a time, each step
//! durable before the next, so that other requests' writes go in between. A crash between
//! steps keeps the first steps' pieces, unanswered: the `H` keys make the CRM's resend find
//! them and keep only the rest.
//!
//! Retention removes a piece and its `B` key in one batch, and then its `H` key only if that
//! still names the piece (compare and swap, [`release_bytes`]): the same bytes posted again in
//! between, once the piece was retried, keep the `H` of their own new piece.
//!
//! Pieces written before these keys existed (builds before 2026-12-06) are indexed at open
//! ([`index_at_open`]), once (`M quarantine_indexed`): about 25 µs a piece (7.3 s for 300,000,
//! measured on the 2-core host). In a cluster that is upgraded node by node, the pieces an
//! older node keeps meanwhile come without their keys: a later node adds them as it applies
//! the entry ([`index_replicated`]), and the older node itself indexes them at its upgrade.

use std::collections::HashMap;

use crmhook_core::{RejectedId, SourceId};
use sha2::Digest;

use crate::batch::Writes;
use crate::keys::{self, Key, Tag, DIGEST_LEN};
use crate::records::Rejected;
use crate::{codec, Result, Store};

/// Pieces indexed per sled batch at open.
const INDEX_STEP: usize = 10_000;

/// How many stripes the quarantine's look-ups and writes are held by.
const STRIPES: usize = 64;

/// Pieces per write to the log writer. A piece is three keys: a request of 1,000 pieces written
/// at once held the writer (and every other request's acknowledgement) for about 30 ms; in
/// steps of 100, others' writes go in between, about 3 ms each.
pub(crate) const PIECES_PER_WRITE: usize = 100;

/// Locks for the quarantine's look-up-then-write, one per stripe of the bytes' digests.
pub(crate) struct Stripes([tokio::sync::Mutex<()>; STRIPES]);

impl Default for Stripes {
    fn default() -> Self {
        Stripes(std::array::from_fn(|_| tokio::sync::Mutex::new(())))
    }
}

impl Stripes {
    /// Holds the stripes of these `H` keys, in stripe order, until the guards drop.
    async fn hold(&self, by_bytes: &[Vec<u8>]) -> Vec<tokio::sync::MutexGuard<'_, ()>> {
        let mut stripes: Vec<usize> =
            by_bytes.iter().map(|k| k.last().map_or(0, |b| usize::from(*b) % STRIPES)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut held = Vec::with_capacity(stripes.len());
        for i in stripes {
            held.push(self.0[i].lock().await);
        }
        held
    }
}

impl Store {
    /// Keeps pieces of sources' requests in the quarantine, durably (answers once flushed).
    /// Answers, for each, the id of the piece that holds it: its own, or that of an earlier
    /// piece of the same source with the same bytes read the same way, still kept and not
    /// retried (that piece is not written again).
    ///
    /// New pieces are written 100 at a time, each step durable before the next
    /// (so other requests' writes go in between). A crash between steps keeps the first pieces
    /// with no answer given; the CRM's resend then finds them by their bytes, and keeps the rest.
    pub async fn quarantine(&self, items: &[Rejected]) -> Result<Vec<RejectedId>> {
        let (mut batches, mut batch) = (Vec::new(), Writes::default());
        let mut new = 0;
        let mut held = Vec::with_capacity(items.len());
        let by_bytes: Vec<Vec<u8>> = items.iter().map(bytes_key).collect();
        // Until this request's pieces are durable, no other request looks up these bytes.
        let _stripes = self.inner.quarantining.hold(&by_bytes).await;
        // The same bytes twice in one request are one piece too.
        let mut here: HashMap<Vec<u8>, RejectedId> = HashMap::new();
        for (item, by_bytes) in items.iter().zip(by_bytes) {
            let id = match here.get(&by_bytes) {
                Some(id) => id.clone(),
                None => match self.holder(&by_bytes, item)? {
                    Some(id) => id,
                    None => {
                        if new > 0 && new % PIECES_PER_WRITE == 0 {
                            batches.push(std::mem::take(&mut batch));
                        }
                        batch.insert(keys::id_key(Tag::Rejected, item.id.as_str()), codec::encode(item)?);
                        batch.insert(keys::rejected_of(&item.source_id, Some(&item.id)), codec::encode(&())?);
                        batch.insert(by_bytes.clone(), codec::encode(&item.id.as_str())?);
                        new += 1;
                        item.id.clone()
                    }
                },
            };
            here.insert(by_bytes, id.clone());
            held.push(id);
        }
        batches.push(batch);
        for batch in batches.into_iter().filter(|b| !b.0.is_empty()) {
            self.write(batch).await?;
        }
        Ok(held)
    }

    /// The kept, unretried piece that `by_bytes` names, if it holds `item`'s bytes.
    fn holder(&self, by_bytes: &[u8], item: &Rejected) -> Result<Option<RejectedId>> {
        let Some(v) = self.inner.tree.get(by_bytes)? else { return Ok(None) };
        let Some(id) = RejectedId::parse(&codec::decode::<String>(&v)?) else { return Ok(None) };
        Ok(self.rejected(&id)?.filter(|p| same_piece(p, item) && p.retried.is_none()).map(|p| p.id))
    }

    /// Writes a piece again with `retried` set (a retry logged it as an event).
    pub async fn mark_retried(&self, item: &Rejected) -> Result<()> {
        let mut batch = Writes::default();
        batch.insert(keys::id_key(Tag::Rejected, item.id.as_str()), codec::encode(item)?);
        self.write(batch).await
    }

    pub fn rejected(&self, id: &RejectedId) -> Result<Option<Rejected>> {
        self.one(Tag::Rejected, id.as_str())
    }

    /// Quarantined pieces after `after` (ids sort by time), oldest first, at most `limit`,
    /// only those of `source` when given (read through `B`).
    pub fn rejected_page(
        &self,
        source: Option<&SourceId>,
        after: Option<&RejectedId>,
        limit: usize,
    ) -> Result<Vec<Rejected>> {
        let after_key = |k: Vec<u8>| [k, vec![0]].concat();
        let mut out = Vec::new();
        if let Some(source) = source {
            let prefix = keys::rejected_of(source, None);
            let start = after.map_or_else(|| prefix.clone(), |id| after_key(keys::rejected_of(source, Some(id))));
            for kv in self.inner.tree.range(start..) {
                let (k, _) = kv?;
                if !k.starts_with(&prefix) || out.len() >= limit {
                    break;
                }
                // A piece retention removed between the two reads is left out.
                if let Some(Key::RejectedOf { id, .. }) = Key::parse(&k) {
                    out.extend(self.rejected(&id)?);
                }
            }
            return Ok(out);
        }
        let start =
            after.map_or_else(|| Tag::Rejected.prefix(), |id| after_key(keys::id_key(Tag::Rejected, id.as_str())));
        for kv in self.inner.tree.range(start..Tag::Rejected.end()).take(limit) {
            out.push(codec::decode(&kv?.1)?);
        }
        Ok(out)
    }

    /// How many pieces are in the quarantine, in all.
    pub fn rejected_count(&self) -> usize {
        self.inner.tree.scan_prefix(Tag::Rejected.prefix()).count()
    }
}

/// Whether `a` and `b` are the same piece of the same source: the same bytes, read the same
/// way (an element, or a whole body).
fn same_piece(a: &Rejected, b: &Rejected) -> bool {
    a.source_id == b.source_id && a.index.is_none() == b.index.is_none() && a.bytes == b.bytes
}

/// `H`'s key for a piece: its source and 128 bits of the SHA-256 of how it is read and its
/// bytes.
pub(crate) fn bytes_key(item: &Rejected) -> Vec<u8> {
    let how: &[u8] = if item.index.is_none() { b"body\n" } else { b"element\n" };
    let digest = sha2::Sha256::new().chain_update(how).chain_update(&item.bytes).finalize();
    let mut short = [0; DIGEST_LEN];
    short.copy_from_slice(&digest[..DIGEST_LEN]);
    keys::rejected_bytes(&item.source_id, &short)
}

/// Adds the index keys of the pieces a replicated entry puts without them: a node of a build
/// before the indexes, in a cluster upgraded node by node. `B` for every such piece, `H` for one
/// not retried (which then names it, as the later piece of the same bytes). Pieces put with
/// their `B` key (every later build's) are left as they are; one whose record cannot be read
/// is left unindexed, said in the log.
pub(crate) fn index_replicated(writes: &mut Writes) {
    use crate::batch::Write;
    fn put(w: &Write) -> Option<(&[u8], &[u8])> {
        match w {
            Write::Put(k, v) => Some((k, v)),
            _ => None,
        }
    }
    let piece = |(k, _): &(&[u8], &[u8])| k.first() == Some(&Tag::Rejected.byte());
    if !writes.0.iter().filter_map(put).any(|w| piece(&w)) {
        return;
    }
    let with_keys: std::collections::HashSet<&[u8]> = writes.0.iter().filter_map(put).map(|(k, _)| k).collect();
    let mut added = Vec::new();
    for (k, v) in writes.0.iter().filter_map(put).filter(piece) {
        let item: Rejected = match codec::decode(v) {
            Ok(item) => item,
            Err(e) => {
                tracing::warn!(error = %e, key = ?String::from_utf8_lossy(k), "a replicated piece could not be read; not indexed");
                continue;
            }
        };
        let by_source = keys::rejected_of(&item.source_id, Some(&item.id));
        if with_keys.contains(by_source.as_slice()) {
            continue;
        }
        let (Ok(unit), Ok(id)) = (codec::encode(&()), codec::encode(&item.id.as_str())) else { continue };
        added.push(Write::Put(by_source, unit));
        if item.retried.is_none() {
            added.push(Write::Put(bytes_key(&item), id));
        }
    }
    writes.0.extend(added);
}

/// Removes a piece's `B` key in `batch` (retention), and answers its `H` key with the value
/// that names this piece, if it does: [`release_bytes`] removes it after the batch, and only if
/// it still names the piece. Meanwhile a request with the same bytes (the piece retried, so it
/// holds them no longer) may have pointed `H` at a piece of its own, which keeps it. A crash
/// between the two leaves `H` naming a removed piece, which holds nothing (`Store::holder`
/// reads the piece) until the same bytes come again and point it at their own.
pub(crate) fn unindex(tree: &sled::Tree, item: &Rejected, batch: &mut Writes) -> Result<Option<(Vec<u8>, sled::IVec)>> {
    batch.remove(keys::rejected_of(&item.source_id, Some(&item.id)));
    let by_bytes = bytes_key(item);
    match tree.get(&by_bytes)? {
        Some(v) if codec::decode::<String>(&v)? == item.id.as_str() => Ok(Some((by_bytes, v))),
        _ => Ok(None),
    }
}

/// Removes each `H` key that still holds the value [`unindex`] read (compare and swap).
pub(crate) fn release_bytes(tree: &sled::Tree, held: Vec<(Vec<u8>, sled::IVec)>) -> Result<()> {
    for (k, v) in held {
        // An `Err` inside: another piece holds these bytes now, and keeps them.
        let _ = tree.compare_and_swap(k, Some(v), None::<&[u8]>)?;
    }
    Ok(())
}

/// Writes `B` and `H` for every piece, unless done before (`M quarantine_indexed`). Not
/// flushed: a crash before sled's next flush does it again.
pub(crate) fn index_at_open(tree: &sled::Tree) -> Result<()> {
    let done = keys::meta("quarantine_indexed");
    if tree.get(&done)?.is_some() {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let mut pieces = 0;
    if tree.scan_prefix(Tag::Rejected.prefix()).next().is_some() {
        tracing::info!("indexing the quarantine's pieces kept by an earlier build (once; about 25 s a million pieces)");
    }
    let mut batch = sled::Batch::default();
    for (n, kv) in tree.scan_prefix(Tag::Rejected.prefix()).enumerate() {
        pieces = n + 1;
        let item: Rejected = codec::decode(&kv?.1)?;
        batch.insert(keys::rejected_of(&item.source_id, Some(&item.id)), codec::encode(&())?);
        // Oldest first: of several unretried pieces with the same bytes, the newest holds them.
        if item.retried.is_none() {
            batch.insert(bytes_key(&item), codec::encode(&item.id.as_str())?);
        }
        if (n + 1) % INDEX_STEP == 0 {
            tree.apply_batch(std::mem::take(&mut batch))?;
        }
    }
    batch.insert(done, codec::encode(&1u64)?);
    tree.apply_batch(batch)?;
    if pieces > 0 {
        tracing::info!(pieces, ms = started.elapsed().as_millis() as u64, "indexed the quarantine");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crmhook_core::SourceKind;

    use super::*;
    use crate::records::Retried;
    use crate::test_support::rt;

    fn piece(source: &SourceId, index: Option<u32>, bytes: &[u8]) -> Rejected {
        Rejected {
            id: RejectedId::generate(),
            source_id: source.clone(),
            kind: SourceKind::Maximizer,
            at_ms: crmhook_core::time::now_ms(),
            index,
            reason: "`Entity` is required".into(),
            bytes: bytes.to_vec(),
            retried: None,
        }
    }

    fn ids(page: &[Rejected]) -> Vec<RejectedId> {
        page.iter().map(|r| r.id.clone()).collect()
    }

    #[test]
    fn the_same_bytes_of_a_source_are_one_piece_until_it_is_retried() {
        let dir = tempfile::tempdir().expect("tempdir");
        rt().block_on(async {
            let store = Store::open(dir.path()).expect("open");
            let (a, b) = (SourceId::generate(), SourceId::generate());
            let first = piece(&a, Some(0), b"{}");
            let held = store.quarantine(&[first.clone(), piece(&a, Some(3), b"{}")]).await.expect("keep");
            assert_eq!(held, [first.id.clone(), first.id.clone()], "twice in one request: one piece");
            // Posted again: held by the first piece, which keeps its index.
            let again = piece(&a, Some(1), b"{}");
            assert_eq!(
                store.quarantine(std::slice::from_ref(&again)).await.expect("keep"),
                std::slice::from_ref(&first.id)
            );
            assert_eq!(store.rejected(&again.id).expect("read"), None);
            assert_eq!(store.rejected(&first.id).expect("read").map(|r| r.index), Some(Some(0)));
            // Another source, the same bytes as a whole body, other bytes: pieces of their own.
            let others = [piece(&b, Some(0), b"{}"), piece(&a, None, b"{}"), piece(&a, Some(0), b"{} ")];
            let held = store.quarantine(&others).await.expect("keep");
            assert_eq!(held, ids(&others));
            assert_eq!(store.rejected_count(), 4);
            // Once retried, the same bytes make a new piece (they were an event, and are not now).
            let mut retried = store.rejected(&first.id).expect("read").expect("kept");
            retried.retried = Some(Retried { at_ms: 1, event_id: crmhook_core::EventId::with_seq(1, 1), seq: 1 });
            store.mark_retried(&retried).await.expect("mark");
            let later = piece(&a, Some(0), b"{}");
            assert_eq!(
                store.quarantine(std::slice::from_ref(&later)).await.expect("keep"),
                std::slice::from_ref(&later.id)
            );
            assert_eq!(
                store.quarantine(&[piece(&a, Some(2), b"{}")]).await.expect("keep"),
                std::slice::from_ref(&later.id)
            );
            store.close().await;
        });
    }

    /// A request of many new pieces goes to the log writer in steps: another request's write
    /// sent after its first step is durable before its second is sent. A crash between steps
    /// (here: the request dropped, unanswered) keeps the first pieces, and the CRM's resend
    /// finds them by their bytes and keeps the rest.
    #[test]
    fn many_pieces_are_written_in_steps_that_let_other_writes_in_between() {
        use std::future::Future;
        let dir = tempfile::tempdir().expect("tempdir");
        rt().block_on(async {
            let store = Store::open(dir.path()).expect("open");
            let a = SourceId::generate();
            let n = PIECES_PER_WRITE * 2 + PIECES_PER_WRITE / 2;
            let request: Vec<Rejected> = (0..n).map(|i| piece(&a, Some(i as u32), i.to_string().as_bytes())).collect();
            {
                let mut keeping = std::pin::pin!(store.quarantine(&request));
                // Polled once: its look-ups are done and its first step is with the writer.
                std::future::poll_fn(|cx| {
                    assert!(keeping.as_mut().poll(cx).is_pending(), "waits for its first step");
                    std::task::Poll::Ready(())
                })
                .await;
                store.append(crate::test_support::events(1), None).await.expect("append");
                assert_eq!(store.rejected_count(), PIECES_PER_WRITE, "the other write went in after the first step");
            }
            // Its second step was never sent: a crash before the answer. The CRM sends again.
            let resent: Vec<Rejected> =
                request.iter().map(|r| Rejected { id: RejectedId::generate(), ..r.clone() }).collect();
            let held = store.quarantine(&resent).await.expect("keep");
            let expected: Vec<RejectedId> =
                ids(&request[..PIECES_PER_WRITE]).into_iter().chain(ids(&resent[PIECES_PER_WRITE..])).collect();
            assert_eq!(held, expected, "the kept pieces hold their bytes; the rest are new");
            assert_eq!(store.rejected_count(), n);
            assert_eq!(ids(&store.rejected_page(Some(&a), None, 1000).expect("list")).len(), n);
            store.close().await;
        });
    }

    /// Requests that arrive together (a CRM sending a batch again before the first answer):
    /// each looks its bytes up before any has written, and they still keep one piece. Requests
    /// with other bytes, in the same or other stripes, keep their own.
    #[test]
    fn requests_with_the_same_bytes_at_the_same_moment_keep_one_piece() {
        let dir = tempfile::tempdir().expect("tempdir");
        rt().block_on(async {
            let store = Store::open(dir.path()).expect("open");
            let a = SourceId::generate();
            let requests: Vec<Vec<Rejected>> = (0..8u8)
                .map(|i| vec![piece(&a, Some(0), b"{}"), piece(&a, Some(1), &[b'x', i]), piece(&a, Some(2), b"[]")])
                .collect();
            let held = futures_util::future::join_all(requests.iter().map(|r| store.quarantine(r))).await;
            let held: Vec<Vec<RejectedId>> = held.into_iter().map(|h| h.expect("keep")).collect();
            let first = &held[0];
            assert_eq!(first, &ids(&requests[0]), "the first request's pieces are its own");
            for (request, held) in requests.iter().zip(&held).skip(1) {
                assert_eq!(held[0], first[0], "`{{}}` is held by the first piece");
                assert_eq!(held[1], request[1].id, "bytes of its own: a piece of its own");
                assert_eq!(held[2], first[2], "`[]` is held by the first piece");
            }
            assert_eq!(store.rejected_count(), 2 + 8);
            store.close().await;
        });
    }

    #[test]
    fn a_source_s_pieces_are_listed_from_its_own_index_and_retention_removes_them_from_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        rt().block_on(async {
            let store = Store::open(dir.path()).expect("open");
            let (a, b) = (SourceId::generate(), SourceId::generate());
            let mut kept_a = Vec::new();
            for i in 0..5u8 {
                let (pa, pb) = (piece(&a, Some(0), &[b'a', i]), piece(&b, Some(0), &[b'b', i]));
                store.quarantine(&[pa.clone(), pb]).await.expect("keep");
                kept_a.push(pa.id);
            }
            // Ids made in one millisecond differ in random bits only: listed in id order.
            kept_a.sort();
            let page = store.rejected_page(Some(&a), None, 3).expect("page");
            assert_eq!(ids(&page), kept_a[..3]);
            let rest = store.rejected_page(Some(&a), Some(&kept_a[2]), 100).expect("page");
            assert_eq!(ids(&rest), kept_a[3..]);
            assert_eq!(store.rejected_page(None, None, 100).expect("page").len(), 10);
            // Retention takes everything: the indexes go with the pieces, and the same bytes
            // make a new piece.
            assert_eq!(store.compact_quarantine(u64::MAX, 100).expect("compact"), 10);
            assert_eq!(store.rejected_page(Some(&a), None, 100).expect("page"), []);
            let prefix = |tag: Tag| store.inner.tree.scan_prefix(tag.prefix()).count();
            assert_eq!((prefix(Tag::RejectedBySource), prefix(Tag::RejectedByBytes)), (0, 0));
            let again = piece(&a, Some(0), &[b'a', 0]);
            assert_eq!(store.quarantine(std::slice::from_ref(&again)).await.expect("keep"), [again.id]);
            store.close().await;
        });
    }

    /// Retention reads a piece's `H` key, then removes the piece. If in between the piece was
    /// retried and the same bytes came again, `H` names their new piece, and keeps doing so.
    #[test]
    fn retention_leaves_the_bytes_to_a_piece_that_took_them_meanwhile() {
        let dir = tempfile::tempdir().expect("tempdir");
        rt().block_on(async {
            let store = Store::open(dir.path()).expect("open");
            let a = SourceId::generate();
            let old = piece(&a, Some(0), b"{}");
            store.quarantine(std::slice::from_ref(&old)).await.expect("keep");
            let mut retried = old.clone();
            retried.retried = Some(Retried { at_ms: 1, event_id: crmhook_core::EventId::with_seq(1, 1), seq: 1 });
            store.mark_retried(&retried).await.expect("mark");
            let removal = store.quarantine_removal(crmhook_core::time::now_ms() + 1, 100).expect("read");
            // The same bytes again, between retention's read and its write.
            let new = piece(&a, Some(0), b"{}");
            assert_eq!(
                store.quarantine(std::slice::from_ref(&new)).await.expect("keep"),
                std::slice::from_ref(&new.id)
            );
            assert_eq!(store.remove_quarantined(removal).expect("remove"), 1);
            assert_eq!(store.rejected(&old.id).expect("read"), None);
            let resent = piece(&a, Some(5), b"{}");
            assert_eq!(
                store.quarantine(&[resent]).await.expect("keep"),
                std::slice::from_ref(&new.id),
                "held by the new piece"
            );
            assert_eq!(store.rejected_count(), 1);
            // Retention of the new piece takes its `H` with it.
            assert_eq!(store.compact_quarantine(u64::MAX, 100).expect("compact"), 1);
            assert_eq!(store.inner.tree.scan_prefix(Tag::RejectedByBytes.prefix()).count(), 0);
            store.close().await;
        });
    }

    #[test]
    fn pieces_kept_before_the_indexes_are_indexed_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = SourceId::generate();
        let old = piece(&a, Some(0), b"{}");
        rt().block_on(async {
            let store = Store::open(dir.path()).expect("open");
            store.quarantine(std::slice::from_ref(&old)).await.expect("keep");
            // As an earlier build left it: the piece alone.
            for tag in [Tag::RejectedBySource, Tag::RejectedByBytes] {
                for kv in store.inner.tree.scan_prefix(tag.prefix()) {
                    store.inner.tree.remove(kv.expect("read").0).expect("remove");
                }
            }
            store.inner.tree.remove(keys::meta("quarantine_indexed")).expect("remove");
            assert_eq!(store.rejected_page(Some(&a), None, 10).expect("page"), []);
            store.close().await;
        });
        rt().block_on(async {
            let store = Store::open(dir.path()).expect("open again");
            assert_eq!(ids(&store.rejected_page(Some(&a), None, 10).expect("page")), std::slice::from_ref(&old.id));
            assert_eq!(
                store.quarantine(&[piece(&a, Some(4), b"{}")]).await.expect("keep"),
                std::slice::from_ref(&old.id)
            );
            store.close().await;
        });
    }
}
