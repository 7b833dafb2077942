//! The retention thread: every `compaction_interval_s`, removes what is past `retention_days`
//! (events whose deliveries are all finished, quarantined pieces, audit entries), a call of the
//! store at a time, paced so that ingest's writes never wait behind more than one call.

use std::time::Duration;

use crmhook_store::LogHandle;

/// The retention thread: every interval, removes events older than the retention whose
/// deliveries are all finished.
pub(crate) struct Compactor {
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Compactor {
    pub(crate) fn start(
        store: LogHandle,
        retention_days: u64,
        every: Duration,
        per_call: usize,
    ) -> std::io::Result<Compactor> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new().name("crmhook-compactor".into()).spawn(move || {
            // Each kind a call at a time until a call removes nothing; a stop is seen between
            // calls. After a call that removed something the thread rests as long as the call
            // took: the writer (in cluster mode every copy's) applies a call's removal as one
            // write, and ingest's writes wait behind it, so back-to-back calls over a large
            // backlog held ingest for the whole pass (a loaded cluster's acks: p99 ~1 s for
            // 17 s); paced, a write waits behind one call at most, and a pass takes twice as long.
            type Call = fn(&LogHandle, u64, usize) -> Result<u64, crmhook_store::StoreError>;
            let kinds: [(&str, Call); 3] = [
                ("events past their retention", |s, cutoff, max| s.compact(cutoff, max)),
                ("quarantined pieces past their retention", |s, cutoff, max| s.compact_quarantine(cutoff, max)),
                ("audit entries past their retention", |s, cutoff, max| s.compact_audit(cutoff, max)),
            ];
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                let cutoff = crmhook_core::time::now_ms().saturating_sub(retention_days.saturating_mul(86_400_000));
                for (what, call) in kinds {
                    loop {
                        if !matches!(stopped.try_recv(), Err(std::sync::mpsc::TryRecvError::Empty)) {
                            return;
                        }
                        let began = std::time::Instant::now();
                        match call(&store, cutoff, per_call) {
                            Ok(0) => break,
                            Ok(n) => tracing::info!(removed = n, "retention removed {what}"),
                            Err(e) => {
                                tracing::error!(error = %e, "retention of {what} failed");
                                break;
                            }
                        }
                        if !matches!(
                            stopped.recv_timeout(began.elapsed()),
                            Err(std::sync::mpsc::RecvTimeoutError::Timeout)
                        ) {
                            return;
                        }
                    }
                }
            }
        })?;
        Ok(Compactor { stop, thread })
    }

    pub(crate) fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}
