//! Maximizer: a JSON array of envelopes per POST to a URL carrying `?key=`; only 200 counts.

use crate::{post_with_retries, Options, Report};

/// POSTs one Maximizer batch (`body`, sent byte for byte) with Maximizer's defaults
/// ([`Options::maximizer`]). `url_with_key` is the full target URL including `?key=<key>`.
pub fn post(url_with_key: &str, body: &[u8]) -> Report {
    post_with(url_with_key, body, &Options::maximizer())
}

/// POSTs one Maximizer batch as Maximizer does: `Content-Type: application/json`, the key only
/// in the URL. Only exactly 200 within `opts.timeout` is success (201/202/204, redirects,
/// timeouts and connection errors all fail); after `opts.tries` tries the batch is discarded.
pub fn post_with(url_with_key: &str, body: &[u8], opts: &Options) -> Report {
    let headers = [("Content-Type", "application/json")];
    post_with_retries(url_with_key, &headers, body, opts, |s| s == 200)
}

/// The exact JSON text (compact, one line) of one Maximizer envelope, modelled on
/// `data/samples/maximizer/opportunity_stage_change.json`: `Id`, `Timestamp`,
/// `ProcessedTimestamp`, `WorkspaceId`, `SourceId`, `Recipients`, `Options`, `Entity` and
/// `Data` {`Op`, `Original`, `New`, `Version`}, in that order. `revenue_literal` is written
/// verbatim as `Data.Original.Revenue` (e.g. `12000.00`) and must be a JSON number literal;
/// the other fields are the sample's fixed values.
pub fn envelope(id: &str, entity: &str, op: &str, revenue_literal: &str) -> String {
    let s = |v: &str| serde_json::Value::String(v.to_owned()).to_string();
    format!(
        concat!(
            r#"{{"Id":{id},"Timestamp":"2024-09-20T00:01:29.5149836Z","#,
            r#""ProcessedTimestamp":"2024-09-20T00:02:45.8974002Z","#,
            r#""WorkspaceId":"108F314C-6787-4EE6-BE49-C0E0C651F039","#,
            r#""SourceId":"1a0dde7c-743f-4b55-a2bf-e7738393a8e5","Recipients":[],"Options":null,"#,
            r#""Entity":{entity},"Data":{{"Op":{op},"Original":{{"#,
            r#""Key":"T3Bwb3J0dW5pdHkJMjQwOTE5MjUxNjQ1MjA0MTQwMDAxTwkw","#,
            r#""SalesProcessSetupKey":"U2FsZXNQcm9jZXNzCTI0MDkxOTI1MTY0NjI3MjU1MDAwMkcJMA==","#,
            r#""SalesProcessSetupName":"Sales Process","#,
            r#""SalesStageSetupKey":"U2FsZXNQcm9jZXNzU3RhZ2UJMTUyOA==","#,
            r#""SalesStageSetupName":"Qualified","Objective":"Test Opportunity","#,
            r#""Revenue":{revenue},"UserKey":"VXNlcglNQVNURVI="}},"#,
            r#""New":{{"Key":"T3Bwb3J0dW5pdHkJMjQwOTE5MjUxNjQ1MjA0MTQwMDAxTwkw","#,
            r#""SalesStageSetupKey":"U2FsZXNQcm9jZXNzU3RhZ2UJMTUyOQ==","#,
            r#""SalesStageSetupName":"Presentation"}},"Version":"1.1"}}}}"#,
        ),
        id = s(id),
        entity = s(entity),
        op = s(op),
        revenue = revenue_literal,
    )
}

/// A batch body: the envelopes' exact texts joined into a JSON array (`[e1,e2,…]`).
pub fn batch<S: AsRef<str>>(envelopes: &[S]) -> String {
    let parts: Vec<&str> = envelopes.iter().map(AsRef::as_ref).collect();
    format!("[{}]", parts.join(","))
}
