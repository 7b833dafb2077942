//! The audit trail (`U` at_ms n → [`AuditEntry`]): admin changes and failed authentications,
//! in the order they were written, numbered by the writer thread like operators' requests; read
//! back by page and removed by retention ([`Store::compact_audit`]).

use crate::batch::{Write, Writes};
use crate::keys::{self, Tag};
use crate::records::AuditEntry;
use crate::{codec, Result, Store};

/// Where a page of the audit trail goes on from: the key of its last entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditCursor {
    pub at_ms: u64,
    pub n: u64,
}

impl AuditCursor {
    /// `<at_ms>-<n>`, as the API shows it.
    pub fn to_text(self) -> String {
        format!("{}-{}", self.at_ms, self.n)
    }

    pub fn parse(text: &str) -> Option<AuditCursor> {
        let (at, n) = text.split_once('-')?;
        Some(AuditCursor { at_ms: at.parse().ok()?, n: n.parse().ok()? })
    }
}

impl Store {
    /// Appends entries to the audit trail (answers once flushed).
    pub async fn audit(&self, entries: &[AuditEntry]) -> Result<()> {
        let mut batch = Writes::default();
        for entry in entries {
            batch.0.push(Write::Numbered(Tag::Audit, entry.at_ms, codec::encode(entry)?));
        }
        self.write(batch).await
    }

    /// The audit trail after `after`, oldest first, at most `limit` entries, each with its
    /// cursor.
    pub fn audit_page(&self, after: Option<AuditCursor>, limit: usize) -> Result<Vec<(AuditCursor, AuditEntry)>> {
        let start = match after {
            Some(c) => [keys::numbered(Tag::Audit, c.at_ms, c.n), vec![0]].concat(),
            None => Tag::Audit.prefix(),
        };
        let mut out = Vec::new();
        for kv in self.inner.tree.range(start..Tag::Audit.end()).take(limit) {
            let (k, v) = kv?;
            let cursor = match keys::Key::parse(&k) {
                Some(keys::Key::Audit { at_ms, n }) => AuditCursor { at_ms, n },
                _ => return Err(crate::StoreError::Codec("bad audit key".into())),
            };
            out.push((cursor, codec::decode(&v)?));
        }
        Ok(out)
    }

    /// The audit trail before `before` (from its end without one), newest first, at most
    /// `limit` entries, each with its cursor.
    pub fn audit_page_newest(
        &self,
        before: Option<AuditCursor>,
        limit: usize,
    ) -> Result<Vec<(AuditCursor, AuditEntry)>> {
        let end = match before {
            Some(c) => keys::numbered(Tag::Audit, c.at_ms, c.n),
            None => Tag::Audit.end(),
        };
        let mut out = Vec::new();
        for kv in self.inner.tree.range(Tag::Audit.prefix()..end).rev().take(limit) {
            let (k, v) = kv?;
            let cursor = match keys::Key::parse(&k) {
                Some(keys::Key::Audit { at_ms, n }) => AuditCursor { at_ms, n },
                _ => return Err(crate::StoreError::Codec("bad audit key".into())),
            };
            out.push((cursor, codec::decode(&v)?));
        }
        Ok(out)
    }

    /// Removes up to `max` audit entries older than `cutoff_ms`.
    pub fn compact_audit(&self, cutoff_ms: u64, max: usize) -> Result<u64> {
        if self.inner.replica.is_some() {
            return self.trim_replicated(crate::replica::Retain::Audit, cutoff_ms, max);
        }
        let plan = self.audit_removal(cutoff_ms, max)?;
        self.apply_records(plan.records)?;
        Ok(plan.removed)
    }

    /// What [`Store::compact_audit`] removes, read without writing.
    pub(crate) fn audit_removal(&self, cutoff_ms: u64, max: usize) -> Result<crate::compact::Plan> {
        let mut plan = crate::compact::Plan::default();
        let end = keys::numbered(Tag::Audit, cutoff_ms, 0);
        for kv in self.inner.tree.range(Tag::Audit.prefix()..end).take(max) {
            plan.records.remove(kv?.0.to_vec());
            plan.removed += 1;
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;

    fn entry(at_ms: u64, action: &str) -> AuditEntry {
        AuditEntry {
            at_ms,
            who: "admin token".into(),
            from: Some("127.0.0.1".into()),
            action: action.into(),
            subject: "tgt_x".into(),
            before: None,
            after: Some("{}".into()),
        }
    }

    #[test]
    fn the_audit_trail_pages_in_order_and_retention_removes_the_old() {
        let dir = tempfile::tempdir().expect("tempdir");
        rt().block_on(async {
            let store = Store::open(dir.path()).expect("open");
            // Two in the same millisecond keep a key each.
            store.audit(&[entry(10, "a"), entry(10, "b"), entry(20, "c")]).await.expect("audit");
            let page = store.audit_page(None, 2).expect("page");
            assert_eq!(page.iter().map(|(_, e)| e.action.as_str()).collect::<Vec<_>>(), ["a", "b"]);
            let rest = store.audit_page(Some(page[1].0), 10).expect("page");
            assert_eq!(rest.iter().map(|(_, e)| e.action.as_str()).collect::<Vec<_>>(), ["c"]);
            assert_eq!(AuditCursor::parse(&page[1].0.to_text()), Some(page[1].0));
            // Newest first: the same entries backwards, paged by the last cursor of a page.
            let newest = store.audit_page_newest(None, 2).expect("page");
            assert_eq!(newest.iter().map(|(_, e)| e.action.as_str()).collect::<Vec<_>>(), ["c", "b"]);
            let older = store.audit_page_newest(Some(newest[1].0), 10).expect("page");
            assert_eq!(older.iter().map(|(_, e)| e.action.as_str()).collect::<Vec<_>>(), ["a"]);
            assert!(store.audit_page_newest(Some(older[0].0), 10).expect("page").is_empty());
            assert_eq!(store.compact_audit(15, 100).expect("compact"), 2);
            let left = store.audit_page(None, 10).expect("page");
            assert_eq!(left.iter().map(|(_, e)| e.action.as_str()).collect::<Vec<_>>(), ["c"]);
        });
    }
}
