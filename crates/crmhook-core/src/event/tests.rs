use super::*;

const FIELD_UPDATE: &str =
    r#"{"eventType":"crm_field_update","recordId":"r1","kanbanId":"k1","fieldName":"Email","newValue":3}"#;

fn invalid(body: &str) -> crate::FieldError {
    match parse_ingest(body.as_bytes()) {
        Err(CoreError::Invalid(e)) => e,
        other => panic!("expected a 422 for {body}, got {other:?}"),
    }
}

#[test]
fn one_maia_object_keeps_its_exact_text() {
    // Byte for byte as the CRM sent it: the whitespace around a body's one object is kept.
    let body = format!("  {FIELD_UPDATE}\n");
    let events = parse_ingest(body.as_bytes()).expect("valid");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].payload, body.as_bytes());
    assert_eq!(events[0].event_type, "crm_field_update");
    assert_eq!(events[0].kanban_id.as_deref(), Some("k1"));
    assert_eq!(events[0].field_name.as_deref(), Some("Email"));
}

#[test]
fn an_array_of_maia_events() {
    let body = format!(r#"[{FIELD_UPDATE}, {{"eventType":"ai_pause","sessionId":"s"}}]"#);
    let events = parse_ingest(body.as_bytes()).expect("valid");
    assert_eq!(events.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>(), ["crm_field_update", "ai_pause"]);
    assert_eq!(events[1].field_name, None);
}

#[test]
fn shapes_that_are_not_events_are_400() {
    for body in ["42", "\"x\"", "null", "true"] {
        assert!(matches!(parse_ingest(body.as_bytes()), Err(CoreError::Shape(_))), "{body}");
    }
    for body in ["", "{", "[1,", "{\"a\":}", "\u{feff}{}"] {
        assert!(matches!(parse_ingest(body.as_bytes()), Err(CoreError::Malformed(_))), "{body:?}");
    }
}

#[test]
fn rule_breaking_events_are_422_naming_field_and_index() {
    assert_eq!(invalid("[]").field.as_deref(), Some("body"));
    assert_eq!(invalid("{}").field.as_deref(), Some("eventType"));
    assert!(invalid(r#"{"eventType":"crm_field_exploded"}"#).detail.contains("unknown eventType"));
    assert_eq!(invalid(r#"{"eventType":"crm_field_update","kanbanId":"k"}"#).field.as_deref(), Some("recordId"));
    assert_eq!(
        invalid(r#"{"eventType":"crm_record_created","recordId":5,"kanbanId":"k"}"#).field.as_deref(),
        Some("recordId")
    );
    assert_eq!(
        invalid(r#"{"eventType":"ai_pause","sessionId":"s","aiPaused":"yes"}"#).field.as_deref(),
        Some("aiPaused")
    );
    let e = invalid(&format!(r#"[{FIELD_UPDATE}, {{"eventType":"crm_field_update","recordId":"r"}}]"#));
    assert_eq!((e.index, e.field.as_deref()), (Some(1), Some("kanbanId")));
    // A non-object element says what it is, as a lone non-object body or a source's does.
    let e = invalid(&format!("[{FIELD_UPDATE}, 3]"));
    assert_eq!((e.index, e.detail.as_str()), (Some(1), "event 1: an event must be a JSON object, not a number"));
}

#[test]
fn the_maximizer_sample_is_typed_entity_dot_op() {
    let body = include_str!("../../../../data/samples/maximizer/opportunity_stage_change.json");
    let events = parse_ingest(body.as_bytes()).expect("valid");
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!((e.kind, e.event_type.as_str()), (EventKind::Maximizer, "Opportunity.Update"));
    assert_eq!(e.external_id.as_deref(), Some("d81f9d6e-8afc-4fa4-9052-2af207494e5d"));
    assert_eq!(e.version_major, Some(1));
    let e = invalid(r#"[{"Id":"x","Timestamp":"t","WorkspaceId":"w","Entity":"Opportunity","Data":{"Version":"1"}}]"#);
    assert_eq!((e.index, e.field.as_deref()), (Some(0), Some("Data.Op")));
}

#[test]
fn the_maia_samples_are_valid() {
    for body in [
        include_str!("../../../../data/samples/maia/crm_field_update.json"),
        include_str!("../../../../data/samples/maia/crm_record_created.json"),
        include_str!("../../../../data/samples/maia/crm_record_deleted.json"),
        include_str!("../../../../data/samples/maia/ai_pause.json"),
    ] {
        parse_ingest(body.as_bytes()).expect("sample is valid");
    }
}

#[test]
fn a_source_batch_keeps_good_elements_and_rejects_bad_ones_with_their_bytes() {
    let source = SourceId::generate();
    let good = r#"{"Id":"a1","Timestamp":"t","WorkspaceId":"w","Entity":"Opportunity","Data":{"Op":"Update","Original":{"Revenue":12000.00},"New":{},"Version":"1.0"}}"#;
    let bad = r#"{"Id":"a2","Timestamp":"t" , "Entity":"Opportunity"}"#;
    let body = format!("[{good},\n {bad}, 7]");
    let batch = parse_source(SourceKind::Maximizer, &source, body.as_bytes());
    assert_eq!(batch.events.len(), 1);
    assert_eq!(batch.events[0].payload, good.as_bytes(), "the element's exact bytes");
    assert_eq!(batch.events[0].source_id.as_ref(), Some(&source));
    assert_eq!(batch.events[0].external_id.as_deref(), Some("a1"));
    let reasons: Vec<_> = batch.rejected.iter().map(|r| (r.index, r.bytes.clone())).collect();
    assert_eq!(reasons, [(Some(1), bad.as_bytes().to_vec()), (Some(2), b"7".to_vec())]);
    assert!(batch.rejected[0].reason.contains("WorkspaceId"), "{}", batch.rejected[0].reason);

    // A body that does not parse is kept whole.
    let batch = parse_source(SourceKind::Maximizer, &source, b"[{\"Id\": ");
    assert!(batch.events.is_empty());
    assert_eq!(batch.rejected[0].index, None);
    assert_eq!(batch.rejected[0].bytes, b"[{\"Id\": ");
    let batch = parse_source(SourceKind::Maia, &source, b"\"text\"");
    assert_eq!(batch.rejected.len(), 1);
    assert!(parse_source(SourceKind::Maximizer, &source, b"[]").rejected.is_empty());
}

#[test]
fn duplicate_member_names_are_refused_at_any_depth() {
    let dup =
        r#"{"eventType":"crm_field_update","recordId":"r1","kanbanId":"k1","fieldName":"Email","fieldName":"Phone"}"#;
    let e = invalid(dup);
    assert_eq!(e.field.as_deref(), Some("body"));
    assert!(e.detail.contains("\"fieldName\" appears twice"), "{}", e.detail);
    // Nested, written with an escape, and in the second event of an array.
    let nested = r#"{"eventType":"crm_record_created","recordId":"r","kanbanId":"k","customFields":{"a":1,"b":[{"x":1,"\u0078":2}]}}"#;
    assert!(invalid(nested).detail.contains("\"x\" appears twice"));
    let e = invalid(&format!("[{FIELD_UPDATE}, {nested}]"));
    assert_eq!(e.index, Some(1));
    let mx = r#"[{"Id":"a","Timestamp":"t","WorkspaceId":"w","Entity":"Opportunity","Data":{"Op":"Update","New":{"Stage":"Won","Stage":"Lost"},"Version":"1"}}]"#;
    assert_eq!(invalid(mx).index, Some(0));
    // The same name in different objects, and numbers of any size, are fine.
    let ok = r#"{"eventType":"crm_record_created","recordId":"r","kanbanId":"k","customFields":{"recordId":{"recordId":1e400,"n":12000.00}}}"#;
    assert!(parse_ingest(ok.as_bytes()).is_ok());
    // A source's element with a repeated name goes to the quarantine; the others pass.
    let source = SourceId::generate();
    let good =
        r#"{"Id":"g","Timestamp":"t","WorkspaceId":"w","Entity":"Opportunity","Data":{"Op":"Update","Version":"1"}}"#;
    let bad = r#"{"Id":"b","Id":"c","Timestamp":"t","WorkspaceId":"w","Entity":"Opportunity","Data":{"Op":"Update","Version":"1"}}"#;
    let batch = parse_source(SourceKind::Maximizer, &source, format!("[{good},{bad}]").as_bytes());
    assert_eq!(batch.events.len(), 1);
    assert_eq!(batch.rejected.len(), 1);
    assert_eq!(batch.rejected[0].index, Some(1));
    assert_eq!(batch.rejected[0].bytes, bad.as_bytes());
    assert!(batch.rejected[0].reason.contains("\"Id\" appears twice"), "{}", batch.rejected[0].reason);
    let batch = parse_source(SourceKind::Maia, &source, dup.as_bytes());
    assert!(batch.events.is_empty());
    assert_eq!(batch.rejected[0].index, None);
}

#[test]
fn a_maia_sources_events_are_keyed_by_their_exact_bytes() {
    let source = SourceId::generate();
    let batch = parse_source(SourceKind::Maia, &source, FIELD_UPDATE.as_bytes());
    let again = parse_source(SourceKind::Maia, &source, format!(" {FIELD_UPDATE} ").as_bytes());
    let other = parse_source(SourceKind::Maia, &SourceId::generate(), FIELD_UPDATE.as_bytes());
    let key = |b: &SourceBatch| b.events[0].external_id.clone().expect("a key");
    assert_eq!(key(&batch), key(&again), "whitespace around the object is no other event");
    assert_eq!(again.events[0].payload, format!(" {FIELD_UPDATE} ").as_bytes(), "but it is delivered as sent");
    assert_ne!(key(&batch), key(&other));
    // A Maximizer envelope is not a MAIA event.
    let mx = include_str!("../../../../data/samples/maximizer/opportunity_stage_change.json");
    let batch = parse_source(SourceKind::Maia, &source, mx.as_bytes());
    assert!(batch.events.is_empty());
    assert!(batch.rejected[0].reason.contains("eventType"), "{}", batch.rejected[0].reason);
    assert!(parse_source_piece(SourceKind::Maia, &source, FIELD_UPDATE.as_bytes(), false).is_ok());
    assert!(parse_source_piece(SourceKind::Maia, &source, b"{}", false).is_err());
}

#[test]
fn a_retried_element_is_read_as_one_element_and_a_whole_body_as_a_body() {
    let source = SourceId::generate();
    // An element that is an array was refused in its batch, and a retry refuses it the same way,
    // with one event in it or two.
    let nested = format!("[{FIELD_UPDATE}]");
    let batch = parse_source(SourceKind::Maia, &source, format!("[{nested}]").as_bytes());
    assert_eq!((batch.events.len(), batch.rejected.len()), (0, 1));
    let refused = parse_source_piece(SourceKind::Maia, &source, nested.as_bytes(), false).expect_err("an array");
    assert_eq!(refused, batch.rejected[0].reason);
    let two = format!("[{FIELD_UPDATE},{FIELD_UPDATE}]");
    assert!(parse_source_piece(SourceKind::Maia, &source, two.as_bytes(), false).is_err());
    // A whole body is read as a body: every element an event, marked as its batch marked them.
    let body = format!("[{FIELD_UPDATE}, {}]", FIELD_UPDATE.replace("r1", "r2"));
    let events = parse_source_piece(SourceKind::Maia, &source, body.as_bytes(), true).expect("two events");
    assert_eq!(events.len(), 2);
    let posted = parse_source(SourceKind::Maia, &source, body.as_bytes()).events;
    let marks = |e: &[NewEvent]| e.iter().map(|e| (e.external_id.clone(), e.source_id.clone())).collect::<Vec<_>>();
    assert_eq!(marks(&events), marks(&posted));
    // One element still bad: the body stays a piece, and why names it.
    let why = parse_source_piece(SourceKind::Maia, &source, format!("[{FIELD_UPDATE}, 7]").as_bytes(), true)
        .expect_err("7 is no event");
    assert!(why.starts_with("the element at index 1:"), "{why}");
    assert!(parse_source_piece(SourceKind::Maia, &source, b"[]", true).is_err());
}

#[test]
fn a_source_request_is_kept_as_at_most_max_pieces() {
    let source = SourceId::generate();
    let good = FIELD_UPDATE;
    // As many bad elements as the bound: one piece each.
    let at_bound: Vec<&str> = std::iter::once(good).chain(std::iter::repeat_n("{}", MAX_PIECES_PER_REQUEST)).collect();
    let batch = parse_source(SourceKind::Maia, &source, format!("[{}]", at_bound.join(",")).as_bytes());
    assert_eq!((batch.events.len(), batch.rejected.len()), (1, MAX_PIECES_PER_REQUEST));
    assert_eq!(batch.elements_rejected, MAX_PIECES_PER_REQUEST);
    assert_eq!(batch.rejected[MAX_PIECES_PER_REQUEST - 1].index, Some(MAX_PIECES_PER_REQUEST));
    // One more: the good events still go; the body is kept whole, as one piece, its exact bytes.
    let mut over = at_bound.clone();
    over.push("{}");
    over.push(good);
    let body = format!("[{}]", over.join(", "));
    let batch = parse_source(SourceKind::Maia, &source, body.as_bytes());
    assert_eq!((batch.events.len(), batch.rejected.len()), (2, 1));
    assert_eq!(batch.elements_rejected, MAX_PIECES_PER_REQUEST + 1);
    let piece = &batch.rejected[0];
    assert_eq!((piece.index, piece.bytes.as_slice()), (None, body.as_bytes()));
    assert!(
        piece.reason.starts_with(&format!("{} of its {} elements", MAX_PIECES_PER_REQUEST + 1, over.len())),
        "{}",
        piece.reason
    );
    assert!(piece.reason.contains("at index 1:"), "{}", piece.reason);
    // Retried, the body is still not all events.
    let why = parse_source_piece(SourceKind::Maia, &source, &piece.bytes, true).expect_err("still bad");
    assert!(why.starts_with(&format!("{} of its {} elements", MAX_PIECES_PER_REQUEST + 1, over.len())), "{why}");
    assert!(!why.contains("kept whole"), "{why}");
}

#[test]
fn one_pass_reads_the_value_serde_json_reads() {
    let texts = [
        FIELD_UPDATE,
        include_str!("../../../../data/samples/maximizer/opportunity_stage_change.json"),
        r#" {"a":[1,-2,3.50,1e400,-0.0,12345678901234567890123,{"b":null,"c":[true,false,[]]}],"d":{},"\u00e9\n":"x\"y"} "#,
        r#"[{"k":"v"},"s",0,[[[]]]]"#,
        "\t\"text\"\r\n",
        "12000.00",
    ];
    for text in texts {
        let read = read(text).expect("JSON");
        assert_eq!(read.value, serde_json::from_str::<Value>(text).expect("JSON"), "{text}");
        assert_eq!(read.text, text.trim(), "{text}");
        assert_eq!(read.repeated, None, "{text}");
    }
    // Numbers keep their digits, written as serde_json's own `Value` writes them.
    let numbers = "[12000.00, 1e400, 2.10]";
    let written = read(numbers).expect("JSON").value.to_string();
    assert_eq!(written, serde_json::from_str::<Value>(numbers).expect("JSON").to_string());
    assert!(written.starts_with("[12000.00,") && written.ends_with(",2.10]"), "{written}");
    // Not JSON, or more than one value: serde_json's own errors.
    for text in ["", "{", "{} {}", "[1,]", "{\"a\" 1}"] {
        assert!(read(text).is_err(), "{text:?}");
    }
}

#[test]
fn a_repeated_name_in_a_body_that_is_not_json_is_malformed() {
    // The repeat comes first in the text, the syntax error after it: the body is malformed
    // (400), as it was when the text was scanned whole before it was read.
    let body = r#"{"eventType":"crm_field_update","recordId":"r1","recordId":"r2","kanbanId":"k1",}"#;
    assert!(matches!(parse_ingest(body.as_bytes()), Err(CoreError::Malformed(_))));
    let batch = parse_source(SourceKind::Maia, &SourceId::generate(), body.as_bytes());
    assert!(batch.rejected[0].reason.starts_with("malformed JSON"), "{}", batch.rejected[0].reason);
    // The first repeat is the one named, the innermost first where one object holds another.
    let nested =
        r#"{"eventType":"crm_record_created","recordId":"r","kanbanId":"k","customFields":{"y":{"x":1,"x":2},"y":3}}"#;
    assert!(invalid(nested).detail.contains("\"x\" appears twice"), "{}", invalid(nested).detail);
    // A body that is not UTF-8 is malformed, with serde_json's reason.
    let mut bytes = FIELD_UPDATE.as_bytes().to_vec();
    bytes[3] = 0xff;
    assert!(matches!(parse_ingest(&bytes), Err(CoreError::Malformed(_))));
}

/// A byte order mark before the JSON (as .NET's writers and Windows tools may put) is still
/// refused, as malformed, but with words that name it, not "expected value at line 1 column 1".
#[test]
fn a_body_that_starts_with_a_byte_order_mark_is_refused_naming_it() {
    let bom = |body: &str| [b"\xEF\xBB\xBF".as_slice(), body.as_bytes()].concat();
    let names_it = |why: &str| why.contains("byte order mark") && why.contains("EF BB BF");
    for body in [bom(FIELD_UPDATE), bom(&format!("[{FIELD_UPDATE}]")), bom("\"text\"")] {
        match parse_ingest(&body) {
            Err(CoreError::Malformed(why)) => assert!(names_it(&why), "{why}"),
            other => panic!("{other:?}"),
        }
        let batch = parse_source(SourceKind::Maximizer, &SourceId::generate(), &body);
        assert_eq!((batch.events.len(), batch.rejected.len()), (0, 1));
        assert!(batch.rejected[0].index.is_none() && batch.rejected[0].bytes == body, "kept whole, as sent");
        assert!(names_it(&batch.rejected[0].reason), "{}", batch.rejected[0].reason);
        let Err(CoreError::Malformed(why)) = parse_json_unique(&body) else { panic!("an admin body too") };
        assert!(names_it(&why), "{why}");
    }
    // The same mark inside a string is only a character.
    assert!(parse_json_unique("{\"name\": \"\u{feff}x\"}".as_bytes()).is_ok());
}

#[test]
fn a_maximizer_version_is_a_non_empty_string() {
    let with = |version: &str| {
        format!(
            r#"[{{"Id":"n","Timestamp":"t","WorkspaceId":"w","Entity":"Opportunity","Data":{{"Op":"Update","Version":{version}}}}}]"#
        )
    };
    assert_eq!(parse_ingest(with(r#""2.10""#).as_bytes()).expect("valid")[0].version_major, Some(2));
    let number = invalid(&with("2.10"));
    assert_eq!(
        (number.field.as_deref(), number.detail.as_str()),
        (Some("Data.Version"), "event 0: `Data.Version` must be a string, not a number")
    );
    assert_eq!(invalid(&with(r#""""#)).detail, "event 0: `Data.Version` must not be empty");
}

#[test]
fn a_field_of_the_wrong_type_is_named_with_what_it_is() {
    let created = |ids: &str| {
        format!(r#"{{"eventType":"crm_record_created","recordId":"r","kanbanId":"k","assignedUserIds":{ids}}}"#)
    };
    assert!(parse_ingest(created(r#"["u1","u2"]"#).as_bytes()).is_ok());
    assert_eq!(
        invalid(&created(r#"["u1",1]"#)).detail,
        "`assignedUserIds` must be an array of strings, not an array whose item 1 is a number"
    );
    assert_eq!(invalid(&created(r#""u1""#)).detail, "`assignedUserIds` must be an array of strings, not a string");
}

#[test]
fn an_entity_member_that_is_null_does_not_make_an_array_maximizers() {
    let events = parse_ingest(br#"[{"eventType":"ai_pause","sessionId":"s","Entity":null}]"#).expect("a MAIA event");
    assert_eq!(events[0].event_type, "ai_pause");
}
