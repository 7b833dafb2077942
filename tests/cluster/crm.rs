//! The cluster test's CRM: MAIA posts round-robin over the nodes, and what each got back.

use super::*;

/// What became of one event the CRM posted.
#[derive(Debug, Clone)]
pub(crate) struct Posted {
    pub(crate) tag: String,
    /// The acknowledgement (`id`, `seq`) and the node that gave it.
    pub(crate) acked: Option<(String, u64, usize)>,
    /// When the acknowledgement came.
    pub(crate) acked_at: Option<Instant>,
    /// Tries not answered (connection refused, reset, timed out).
    pub(crate) unanswered: usize,
    /// Tries answered 503.
    pub(crate) unavailable: usize,
    /// Tries answered otherwise (neither 200 nor 503).
    pub(crate) other: usize,
    /// The acknowledgement said `duplicates: 1`: an earlier try that got no 200 was logged.
    pub(crate) duplicate_ack: bool,
    /// The last failed try, in words.
    pub(crate) last_failure: String,
}

/// The CRM's tries per node: answered 200, answered 503, answered otherwise, refused (no
/// answer within a second), timed out (no answer at all).
pub(crate) type Tries = Arc<[[AtomicUsize; 5]; 3]>;

/// The CRM's posts, from several threads, paced at [`RATE`], round-robin over the nodes.
pub(crate) struct Load {
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) acked: Arc<AtomicUsize>,
    pub(crate) acked_by: Arc<[AtomicUsize; 3]>,
    pub(crate) tries: Tries,
    pub(crate) posted: Arc<Mutex<Vec<Posted>>>,
    pub(crate) threads: Vec<JoinHandle<()>>,
}

impl Load {
    pub(crate) fn start(urls: [String; 3]) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicUsize::new(0));
        let acked_by: Arc<[AtomicUsize; 3]> = Arc::default();
        let tries: Tries = Arc::default();
        let posted = Arc::new(Mutex::new(Vec::new()));
        let next = Arc::new(AtomicUsize::new(0));
        let urls = Arc::new(urls);
        let start = Instant::now();
        let threads = (0..LOAD_THREADS)
            .map(|_| {
                let (stop, acked, acked_by, posted, next, urls) =
                    (stop.clone(), acked.clone(), acked_by.clone(), posted.clone(), next.clone(), urls.clone());
                let tries = tries.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let due = start + Duration::from_secs_f64(i as f64 / RATE);
                        if let Some(ahead) = due.checked_duration_since(Instant::now()) {
                            // Pacing the load (the CRM's rate), not waiting for anything.
                            std::thread::sleep(ahead);
                        }
                        let tag = format!("ld{i:06}");
                        let p = post_any(&urls, i % 3, &tag, &load_event(i, &tag), &tries);
                        if let Some((_, _, node)) = p.acked {
                            acked.fetch_add(1, Ordering::SeqCst);
                            acked_by[node].fetch_add(1, Ordering::SeqCst);
                        }
                        posted.lock().expect("lock").push(p);
                    }
                })
            })
            .collect();
        Load { stop, acked, acked_by, tries, posted, threads }
    }

    pub(crate) fn acked(&self) -> usize {
        self.acked.load(Ordering::SeqCst)
    }

    pub(crate) fn acked_by(&self, node: usize) -> usize {
        self.acked_by[node].load(Ordering::SeqCst)
    }

    /// The tries so far, per node.
    pub(crate) fn tries(&self) -> String {
        let names = ["200", "503", "other", "refused", "timed out"];
        (0..3)
            .map(|node| {
                let counts: Vec<String> =
                    (0..5).map(|k| format!("{} {}", self.tries[node][k].load(Ordering::SeqCst), names[k])).collect();
                format!("node {node}: {}", counts.join(", "))
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Waits until `n` more events than `from` are acknowledged (by `node` alone when given);
    /// if they are not, panics with `what` and the tries per node.
    pub(crate) fn wait_acked(
        &self,
        node: Option<usize>,
        from: usize,
        n: usize,
        timeout: Duration,
        what: &str,
    ) -> usize {
        let count = || node.map_or_else(|| self.acked(), |i| self.acked_by(i));
        let deadline = Instant::now() + timeout;
        loop {
            let now = count();
            if now >= from + n {
                return now;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}: {} of {n}; the CRM's tries so far: {}",
                now - from,
                self.tries()
            );
            // The CRM's threads signal nothing: the count is polled.
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn stop(mut self) -> Vec<Posted> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            t.join().expect("a load thread panicked");
        }
        std::mem::take(&mut *self.posted.lock().expect("lock"))
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A MAIA event with recordId `tag`.
pub(crate) fn load_event(i: usize, tag: &str) -> Vec<u8> {
    let name = if i.is_multiple_of(2) { "crm_field_update" } else { "crm_record_created" };
    let mut ev: Value = serde_json::from_str(&sample(name)).expect("sample is JSON");
    ev["recordId"] = Value::String(tag.to_owned());
    serde_json::to_vec(&ev).expect("json")
}

/// Posts `body` as MAIA does (one try each) to the nodes in turn from `first`, as a CRM behind a
/// load balancer would: a node that does not answer 200 (killed, or its log not reachable) is
/// followed by the next; three rounds at most. A retry of the same bytes is recognised by its
/// body hash on whichever node takes it.
pub(crate) fn post_any(urls: &[String; 3], first: usize, tag: &str, body: &[u8], tries: &Tries) -> Posted {
    let one_try = Options { tries: 1, timeout: Duration::from_secs(10), pause: Duration::ZERO };
    let mut posted = Posted {
        tag: tag.to_owned(),
        acked: None,
        acked_at: None,
        unanswered: 0,
        unavailable: 0,
        other: 0,
        duplicate_ack: false,
        last_failure: String::new(),
    };
    for k in 0..9 {
        let node = (first + k) % 3;
        let report = maia_crm::post_with(&urls[node], MAIA_SECRET, body, &one_try);
        let kind = match (report.last_status(), report.tries.last().map(|t| t.elapsed)) {
            (Some(200), _) => 0,
            (Some(503), _) => 1,
            (Some(_), _) => 2,
            (None, Some(took)) if took < Duration::from_secs(1) => 3,
            (None, _) => 4,
        };
        tries[node][kind].fetch_add(1, Ordering::SeqCst);
        if report.last_status() == Some(200) {
            let ack = report.last_body_json().unwrap_or(Value::Null);
            let event = &ack["events"][0];
            if let (Some(id), Some(seq)) = (event["id"].as_str(), event["seq"].as_u64()) {
                assert_eq!(ack["rejected"].as_u64(), Some(0), "{tag} quarantined: {ack}");
                posted.duplicate_ack = ack["duplicates"].as_u64() == Some(1);
                posted.acked = Some((id.to_owned(), seq, node));
                posted.acked_at = Some(Instant::now());
                return posted;
            }
        }
        match report.last_status() {
            None => posted.unanswered += 1,
            Some(503) => posted.unavailable += 1,
            Some(_) => posted.other += 1,
        }
        posted.last_failure = format!("node {node}: {report}");
        if k % 3 == 2 {
            // A round of the three nodes failed: the client's back-off before the next.
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    posted
}
