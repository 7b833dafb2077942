//! The cluster test's scenario: the load, the kills and restarts, and the checks at the end.

use super::*;

pub(crate) fn scenario(cluster: &mut Cluster, begun: Instant) {
    let env = cluster.env();

    let rcv = Receiver::start();
    let fails = [status(500); RETRY_FAILURES];
    rcv.program(RETRY, &fails, status(200));

    // Node A alone first: it makes the key file and the configuration, and, alone, takes every
    // target's lease (its share is all of them); nodes do not give targets to nodes that join
    // later. So killing A moves every target, the ordered one and the retrying one included.
    cluster.nodes.push(Node::start("crmhook-a", &env, cluster.logs.path()));
    let a = &cluster.nodes[0].server;
    let r = a.admin("POST", "/v1/sources", Some(&json!({"name": "MAIA", "kind": "maia", "maia_secret": MAIA_SECRET})));
    assert_eq!(r.status, 201, "POST /v1/sources: {}", r.text);
    let src = r.json()["id"].as_str().expect("source id").to_owned();
    let main_schedule = json!([200, 500, 1000, 2000, 4000, 8000, 8000]);
    let (ordered, _) = a.wire(
        &rcv.url(ORDERED),
        Some(json!({})),
        json!({"ordered": true, "retry_schedule_ms": main_schedule, "timeout_ms": 5000}),
    );
    let (unordered, _) =
        a.wire(&rcv.url(UNORDERED), Some(json!({})), json!({"retry_schedule_ms": main_schedule, "timeout_ms": 5000}));
    let (retry, _) = a.wire(
        &rcv.url(RETRY),
        Some(json!({"event_types": ["ai_pause"]})),
        json!({"retry_schedule_ms": RETRY_SCHEDULE_MS, "timeout_ms": 5000}),
    );
    let targets = [ordered.clone(), unordered.clone(), retry.clone()];
    wait_for(Duration::from_secs(20), "node A to hold the three leases", || {
        let view = cluster.nodes[0].cluster();
        assert_eq!(view["mode"], "cluster", "{view}");
        targets.iter().all(|t| owner_url(&view, t) == Some(cluster.nodes[0].url())).then_some(())
    });
    for name in ["crmhook-b", "crmhook-c"] {
        let node = Node::start(name, &env, cluster.logs.path());
        cluster.nodes.push(node);
    }
    wait_for(Duration::from_secs(20), "node A to see three nodes", || {
        (cluster.nodes[0].cluster()["nodes"].as_array().map_or(0, Vec::len) == 3).then_some(())
    });
    let setup = begun.elapsed();

    // The load, round-robin over the three nodes.
    let urls = [0, 1, 2].map(|i| cluster.nodes[i].ingest_url(&src));
    let load = Load::start(urls.clone());
    load.wait_acked(None, 0, 300, Duration::from_secs(30), "300 events acknowledged");

    // Who delivers what now, as node B sees it; the node to kill is the retry target's.
    let view = cluster.nodes[1].cluster();
    let index_of = |url: &str| cluster.nodes.iter().position(|n| n.url() == url);
    let owner =
        |t: &str| owner_url(&view, t).and_then(|u| index_of(&u)).unwrap_or_else(|| panic!("no owner of {t}: {view}"));
    let victim = owner(&retry);
    let ordered_owner = owner(&ordered);
    eprintln!(
        "cluster test: owners before the kill: ordered {}, unordered {}, retry {}",
        cluster.nodes[ordered_owner].name,
        cluster.nodes[owner(&unordered)].name,
        cluster.nodes[victim].name
    );
    let reader = (victim + 1) % 3;

    // The marked event: its receiver fails its first three attempts.
    let mut mark: Value = serde_json::from_str(&sample("ai_pause")).expect("sample");
    mark["sessionId"] = Value::String(MARK.into());
    let mark_body = serde_json::to_vec(&mark).expect("json");
    let report = maia_crm::post_with(&urls[reader], MAIA_SECRET, &mark_body, &Options { tries: 1, ..Options::maia() });
    assert_eq!(report.last_status(), Some(200), "the marked event: {report}");
    let mark_ack = report.last_body_json().expect("ack");
    let mark_id = mark_ack["events"][0]["id"].as_str().expect("id").to_owned();
    let mark_seq = mark_ack["events"][0]["seq"].as_u64().expect("seq");

    // Its third failed attempt arrives, and the pending retry is in the log (seen on another
    // node): then its node is killed.
    let failed = rcv.wait_count(RETRY, RETRY_FAILURES, Duration::from_secs(30));
    let last_failed = failed[RETRY_FAILURES - 1].clone();
    let due_ms = wait_for(Duration::from_secs(10), "the pending retry recorded", || {
        let view = cluster.nodes[reader].server.event(&mark_id);
        let d = retry_delivery(&view, &retry)?;
        let attempts = d["attempts"].as_array()?;
        let last = attempts.last()?;
        (attempts.len() == RETRY_FAILURES && last["result"] == "retrying")
            .then(|| last["next_attempt_at"].as_str().map(rfc3339_ms))
            .flatten()
    });
    let acked_at_kill = load.acked();
    let killed_at = Instant::now();
    let killed_wall_ms = now_ms();
    cluster.nodes[victim].kill9();
    phase(&format!(
        "killed {} (kill -9) with {acked_at_kill} events acknowledged, the retry due in {} ms",
        cluster.nodes[victim].name,
        due_ms as i64 - killed_wall_ms as i64
    ));

    // The lease moves; the retry is made by its new node, at its due time, and delivered.
    let (moved_after, new_owner) =
        wait_for(LEASE_TTL + RETRY_MARGIN + Duration::from_secs(5), "the leases to move", || {
            let view = cluster.nodes[reader].cluster();
            let urls: Vec<Option<String>> = targets.iter().map(|t| owner_url(&view, t)).collect();
            let moved = urls.iter().all(|u| u.as_ref().is_some_and(|u| *u != cluster.nodes[victim].url()));
            moved.then(|| (killed_at.elapsed(), urls[2].clone().unwrap_or_default()))
        });
    let next = rcv.wait_until(
        Duration::from_millis(due_ms.saturating_sub(now_ms())) + LEASE_TTL + RETRY_MARGIN + Duration::from_secs(10),
        "the retry's next attempt",
        |got| got.iter().filter(|r| r.path == RETRY).nth(RETRY_FAILURES).cloned(),
    );
    wait_for(Duration::from_secs(10), "the marked event delivered to the retry target", || {
        let view = cluster.nodes[reader].server.event(&mark_id);
        (retry_delivery(&view, &retry)?["status"] == "delivered").then_some(())
    });
    let since_failed = next.at.duration_since(last_failed.at);
    let late_ms = next.wall_ms as i64 - due_ms as i64;

    // One NATS server dies too (the log stream's leader), with crmhook node down still.
    let nats_victim = stream_leader(&cluster.nats).unwrap_or(1);
    let acked = load.acked();
    let nats_killed_at = Instant::now();
    cluster.nats.kill(nats_victim);
    phase(&format!("killed nats {} (kill -9) with {acked} events acknowledged", cluster.nats.server_name(nats_victim)));
    let acked =
        load.wait_acked(None, acked, 400, Duration::from_secs(60), "400 events acknowledged with a NATS node down");

    // Both back.
    phase(&format!(
        "restarting nats {} with {} events acknowledged",
        cluster.nats.server_name(nats_victim),
        load.acked()
    ));
    cluster.nats.restart(nats_victim).expect("the NATS node back");
    phase(&format!(
        "nats {} healthy; restarting {}",
        cluster.nats.server_name(nats_victim),
        cluster.nodes[victim].name
    ));
    cluster.nodes[victim].spawn();
    phase(&format!("{} listening with {} events acknowledged", cluster.nodes[victim].name, load.acked()));
    let by_victim = load.acked_by(victim);
    load.wait_acked(
        Some(victim),
        by_victim,
        100,
        Duration::from_secs(30),
        "100 events acknowledged by the restarted node",
    );
    load.wait_acked(None, acked, 600, Duration::from_secs(60), "600 events acknowledged since the NATS kill");
    let tries = load.tries();
    let timed_out: Vec<usize> = (0..3).map(|i| load.tries[i][4].load(Ordering::SeqCst)).collect();
    let posted = load.stop();
    phase("load stopped");
    let load_time = begun.elapsed() - setup;

    // ---- the figures ----
    let mut problems: Vec<String> = Vec::new();
    let mut acked_tags: HashMap<String, (String, u64, usize)> =
        posted.iter().filter_map(|p| p.acked.clone().map(|a| (p.tag.clone(), a))).collect();
    acked_tags.insert(MARK.into(), (mark_id.clone(), mark_seq, reader));
    let unacked: HashSet<String> = posted.iter().filter(|p| p.acked.is_none()).map(|p| p.tag.clone()).collect();
    let failed_tries = [
        posted.iter().map(|p| p.unanswered).sum::<usize>(),
        posted.iter().map(|p| p.unavailable).sum(),
        posted.iter().map(|p| p.other).sum(),
    ];
    if failed_tries[2] > 0 {
        problems.push(format!("{} ingest tries answered neither 200 nor 503", failed_tries[2]));
    }
    // A node that is up answers within MAIA's 10 s per try: at worst 503 while the stream elects
    // a leader (the publish's acknowledgement times out after 5 s).
    if timed_out.iter().any(|n| *n > 0) {
        problems.push(format!("ingest tries left unanswered for 10 s, per node: {timed_out:?}"));
    }
    // The longest time without an acknowledgement while the load ran, and when it began.
    let mut ack_times: Vec<Instant> = posted.iter().filter_map(|p| p.acked_at).collect();
    ack_times.sort();
    let (gap, gap_from) = ack_times
        .windows(2)
        .map(|w| (w[1] - w[0], w[0]))
        .max_by_key(|(gap, _)| *gap)
        .unwrap_or((Duration::ZERO, begun));
    let since = |at: Instant, event: Instant| at.checked_duration_since(event).map_or(-1, |d| d.as_millis() as i64);
    let duplicate_acks = posted.iter().filter(|p| p.duplicate_ack).count();
    for p in posted.iter().filter(|p| p.acked.is_none()).take(5) {
        eprintln!("cluster test: not acknowledged: {} ({})", p.tag, p.last_failure);
    }

    // The log, as node B's copy has it once it holds every acknowledged event.
    let reader_node = &cluster.nodes[reader];
    let log = wait_for(Duration::from_secs(30), "every acknowledged event in the reader's copy", || {
        let log = log_events(reader_node);
        let ids: HashSet<&str> = log.iter().filter_map(|e| e["id"].as_str()).collect();
        acked_tags.values().all(|(id, _, _)| ids.contains(id.as_str())).then_some(log)
    });
    let mut seq_of: HashMap<String, u64> = HashMap::new();
    let mut logged_per_tag: BTreeMap<String, usize> = BTreeMap::new();
    let mut logged_tags: HashSet<String> = HashSet::new();
    for e in &log {
        let id = e["id"].as_str().expect("id").to_owned();
        seq_of.insert(id, e["seq"].as_u64().expect("seq"));
        let tag = logged_tag(e);
        *logged_per_tag.entry(tag.clone()).or_default() += 1;
        logged_tags.insert(tag);
    }
    let twice: Vec<&String> = logged_per_tag.iter().filter(|(_, n)| **n > 1).map(|(t, _)| t).collect();
    if !twice.is_empty() {
        problems.push(format!("{} events logged more than once, e.g. {:?}", twice.len(), &twice[..twice.len().min(5)]));
    }
    for (tag, (id, seq, _)) in &acked_tags {
        if seq_of.get(id) != Some(seq) {
            problems.push(format!("{tag} acknowledged as {id} seq {seq}, logged with seq {:?}", seq_of.get(id)));
        }
    }
    let strangers: Vec<&String> =
        logged_tags.iter().filter(|t| !acked_tags.contains_key(*t) && !unacked.contains(*t)).collect();
    if !strangers.is_empty() {
        problems.push(format!("the log holds events nobody posted: {strangers:?}"));
    }
    let logged_unacked: HashSet<String> = unacked.intersection(&logged_tags).cloned().collect();

    // 0 lost: every acknowledged event delivered to both main targets; then the other events in
    // the log (posts that got no 200 but were logged) too.
    let acked_set: HashSet<String> = acked_tags.keys().cloned().collect();
    let mut lost = BTreeMap::new();
    for path in [ORDERED, UNORDERED] {
        let missing = wait_all_delivered(&rcv, path, &acked_set, Duration::from_secs(90));
        if !missing.is_empty() {
            problems.push(format!(
                "{path}: {} acknowledged events lost, e.g. {:?}",
                missing.len(),
                &missing[..missing.len().min(10)]
            ));
        }
        let missing_unacked = wait_all_delivered(&rcv, path, &logged_unacked, Duration::from_secs(20));
        if !missing_unacked.is_empty() {
            problems.push(format!("{path}: {} logged (unacknowledged) events not delivered", missing_unacked.len()));
        }
        lost.insert(path, missing.len());
    }

    // Order at the ordered target.
    let order = rcv.wait_until(Duration::ZERO, "the ordered target's arrivals", |got| Some(order_check(got, &seq_of)));
    if !order.breaks.is_empty() {
        problems.push(format!(
            "{} order breaks at {ORDERED}: {:?}",
            order.breaks.len(),
            &order.breaks[..order.breaks.len().min(10)]
        ));
    }
    if !order.unknown.is_empty() {
        problems.push(format!(
            "{ORDERED} got events the log does not hold: {:?}",
            &order.unknown[..order.unknown.len().min(10)]
        ));
    }

    // The retry: another node, no earlier than due (and than the schedule's delay, which the
    // jitter only lengthens, from the failed attempt), no later than due + the lease TTL + a
    // margin; attempt 4.
    let schedule_min = Duration::from_millis(RETRY_SCHEDULE_MS[RETRY_FAILURES - 1]);
    if next.header("x-crmhook-attempt") != (RETRY_FAILURES + 1).to_string() {
        problems.push(format!("the retry after the kill is attempt {:?}", next.header("x-crmhook-attempt")));
    }
    if next.at < killed_at {
        problems.push("the retry's next attempt came before the kill".into());
    }
    if since_failed < schedule_min || late_ms < -5 {
        problems.push(format!(
            "the retry came early: {} ms after the failed attempt (schedule ≥ {} ms), {late_ms} ms from its due time",
            since_failed.as_millis(),
            schedule_min.as_millis()
        ));
    }
    if late_ms > (LEASE_TTL + RETRY_MARGIN).as_millis() as i64 {
        problems.push(format!(
            "the retry came {late_ms} ms after its due time (bound {} ms)",
            (LEASE_TTL + RETRY_MARGIN).as_millis()
        ));
    }
    if new_owner == cluster.nodes[victim].url() {
        problems.push("the retry target's lease did not move".into());
    }
    let retry_arrivals = rcv.count(RETRY);

    // Reads on any node: events acknowledged by each node, on each node; deliveries per target.
    let mut by_node: Vec<Option<&(String, u64, usize)>> = vec![None; 3];
    for a in acked_tags.values() {
        by_node[a.2].get_or_insert(a);
    }
    let mut reads = 0;
    for node in &cluster.nodes {
        for (id, seq, _) in by_node.iter().flatten() {
            let got = wait_for(Duration::from_secs(10), &format!("{id} on {}", node.name), || {
                let r = node.server.admin("GET", &format!("/v1/events/{id}"), None);
                (r.status == 200).then(|| r.json())
            });
            if got["seq"].as_u64() != Some(*seq) || got["deliveries"].as_array().map_or(0, Vec::len) == 0 {
                problems.push(format!("{} answers {id} with {got}", node.name));
            }
            reads += 1;
        }
        for t in &targets {
            let r = node.server.admin("GET", &format!("/v1/targets/{t}/deliveries?limit=10"), None);
            if r.status != 200 || r.json()["deliveries"].as_array().is_none_or(Vec::is_empty) {
                problems.push(format!("{} GET /v1/targets/{t}/deliveries: {} {}", node.name, r.status, r.text));
            }
            reads += 1;
        }
    }

    // Operators' requests on a node that does not deliver the target are forwarded to the one
    // that does: a redelivery of the marked event, then a replay of the retry target's delivered
    // deliveries (the marked event alone: the target takes `ai_pause` only), each answered with
    // what the owner queued and made there. The replay is asked the moment the redelivery
    // arrived: the owner waits for its record before it lists what is delivered.
    let view = cluster.nodes[reader].cluster();
    let retry_owner = owner_url(&view, &retry);
    let other = cluster.nodes.iter().position(|n| Some(n.url()) != retry_owner).expect("a node not delivering it");
    let marked = |rcv: &Receiver| rcv.requests(RETRY).iter().filter(|r| r.header("webhook-id") == mark_id).count();
    let asks = [
        (format!("/v1/events/{mark_id}/redeliver"), json!({"target_id": retry})),
        (format!("/v1/targets/{retry}/replay"), json!({"status": "delivered"})),
    ];
    for (path, body) in &asks {
        let before = marked(&rcv);
        // A 503 with `Retry-After` is the answer while the target moves between nodes (the
        // restarted node takes its share back, one lease a round): asked again, as a client
        // does, within a bound.
        let asked = Instant::now();
        let r = loop {
            let r = cluster.nodes[other].server.admin("POST", path, Some(body));
            if r.status != 503 || asked.elapsed() > Duration::from_secs(20) {
                break r;
            }
            let after: u64 = r.headers.get("retry-after").and_then(|v| v.parse().ok()).unwrap_or(1);
            std::thread::sleep(Duration::from_secs(after.clamp(1, 5)));
        };
        if (r.status, r.json()["queued"].as_u64()) != (202, Some(1)) {
            problems.push(format!(
                "{} POST {path} (owner {retry_owner:?}): {} {}",
                cluster.nodes[other].name, r.status, r.text
            ));
            continue;
        }
        rcv.wait_until(Duration::from_secs(20), &format!("the marked event again after POST {path}"), |got| {
            (got.iter().filter(|r| r.path == RETRY && r.header("webhook-id") == mark_id).count() > before).then_some(())
        });
    }

    let (od, oa, odup) = duplicates(&rcv, ORDERED);
    let (ud, ua, udup) = duplicates(&rcv, UNORDERED);
    eprintln!(
        "cluster test: setup {:.1} s, load {:.1} s, total {:.1} s; posted {}, acked {} (by node {:?}), \
         unacked {} (of which logged {}), failed tries (unanswered, 503, other) {failed_tries:?}, acks of a retried post as duplicate {duplicate_acks}; \
         log holds {} events; lost: {lost:?}; longest time without an acknowledgement {} ms, from {} ({} ms after \
         the crmhook kill, {} ms after the NATS kill)",
        setup.as_secs_f64(),
        load_time.as_secs_f64(),
        begun.elapsed().as_secs_f64(),
        posted.len() + 1,
        acked_tags.len(),
        [0, 1, 2].map(|i| posted.iter().filter(|p| p.acked.as_ref().is_some_and(|a| a.2 == i)).count()),
        unacked.len(),
        logged_unacked.len(),
        log.len(),
        gap.as_millis(),
        clock(gap_from),
        since(gap_from, killed_at),
        since(gap_from, nats_killed_at),
    );
    eprintln!("cluster test: the CRM's tries: {tries}");
    eprintln!(
        "cluster test: {ORDERED}: {od} events, {oa} deliveries, {odup} duplicates; order: {} arrivals, {} in order, \
         {} repeats, {} breaks, {} unknown; {UNORDERED}: {ud} events, {ua} deliveries, {udup} duplicates",
        order.arrivals,
        order.in_order,
        order.repeats,
        order.breaks.len(),
        order.unknown.len()
    );
    eprintln!(
        "cluster test: retry: leases moved {} ms after the kill; attempt {} came {} ms after the failed attempt \
         (schedule {} ms, up to a tenth more), {late_ms} ms after its due time (bound {} ms), {retry_arrivals} attempts in all; \
         reads on every node: {reads}",
        moved_after.as_millis(),
        next.header("x-crmhook-attempt"),
        since_failed.as_millis(),
        RETRY_SCHEDULE_MS[RETRY_FAILURES - 1],
        (LEASE_TTL + RETRY_MARGIN).as_millis()
    );
    assert!(problems.is_empty(), "cluster test: {} problems:\n{}", problems.len(), problems.join("\n"));
}
