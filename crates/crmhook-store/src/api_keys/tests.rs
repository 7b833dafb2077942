use super::*;

fn key(id: &str, name: &str) -> ApiKeyRecord {
    ApiKeyRecord {
        id: id.into(),
        name: name.into(),
        role: "operator".into(),
        hash: [id.len() as u8; 32],
        created_ms: 1,
        rotated_ms: None,
        revoked_ms: None,
        bootstrap: None,
    }
}

#[test]
fn keys_are_records_of_their_own_and_a_stale_expectation_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    crate::test_support::rt().block_on(async {
        let store = Store::open(dir.path()).expect("open");
        let mut moves = store.watch_keys();
        let (a, b) = (key("key_a", "a"), key("key_bb", "b"));
        for k in [&a, &b] {
            let mut change = KeyChange::default();
            change.expect(&k.id, None).expect("expect");
            change.put(k).expect("put");
            store.change_api_keys(change).await.expect("create");
        }
        assert!(moves.has_changed().expect("watch"), "the keys' watch did not move");
        moves.borrow_and_update();
        assert_eq!(store.api_keys().expect("read"), [a.clone(), b.clone()]);

        // Revoked, expecting the record as read: applied, with its hash retired.
        let mut revoked = a.clone();
        revoked.revoked_ms = Some(5);
        let mut change = KeyChange::default();
        change.expect(&a.id, Some(&a)).expect("expect");
        change.put(&revoked).expect("put");
        change.retire(&a.hash, 5).expect("retire");
        store.change_api_keys(change).await.expect("revoke");
        assert_eq!(store.retired_hashes().expect("retired"), [(a.hash, 5)]);

        // A rotation computed from the record before the revocation: refused whole.
        let mut rotated = a.clone();
        rotated.hash = [42; 32];
        let mut change = KeyChange::default();
        change.expect(&a.id, Some(&a)).expect("expect");
        change.put(&rotated).expect("put");
        change.retire(&[43; 32], 6).expect("retire");
        let refused = store.change_api_keys(change).await;
        assert!(matches!(refused, Err(StoreError::Changed)), "{refused:?}");
        assert_eq!(store.api_keys().expect("read"), [revoked, b.clone()]);
        assert_eq!(store.retired_hashes().expect("retired").len(), 1, "nothing of the refused change was written");
        // A key created twice under one id: the second is refused.
        let mut change = KeyChange::default();
        change.expect(&b.id, None).expect("expect");
        change.put(&key("key_bb", "other")).expect("put");
        assert!(store.change_api_keys(change).await.is_err_and(|e| e.is_changed()));
        store.close().await;
    });
}
