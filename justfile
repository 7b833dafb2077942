# crmhook's recipes. `cargo install just` to use them; the README's two commands need only cargo.

# Run the server on the embedded default store.
serve:
    cargo run --release -- serve

# Every test, as CI runs them.
test:
    cargo test --workspace

# Formatting and lints, as before every commit.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# The black-box checks of the HTTP API: the real binary, a real receiver, a CRM simulator.
conformance:
    cargo test -p crmhook --test e2e --test sources --test maximizer --test operators --test ssrf

# The random tests at length, in release (CI runs each with 256 cases and fresh seeds): every
# proptest with `cases` cases (the window's runs of large backlogs a tenth of them, the filter
# language's eight times), then the fuzz targets for `seconds` each. A failure's seed is saved
# under the crate's `proptest-regressions/`: commit it with the fix.
properties cases="100000" seconds="60":
    PROPTEST_CASES={{cases}} cargo test --release -p crmhook-core -p crmhook-store -p crmhook-dispatch --lib --test filter_properties
    CRMHOOK_FUZZ_SECS={{seconds}} CRMHOOK_FUZZ_CASES=2000 cargo test --release -p crmhook-core --test fuzz -- --nocapture
    CRMHOOK_FUZZ_SECS={{seconds}} CRMHOOK_FUZZ_CASES=20000 cargo test --release -p crmhook-store --test fuzz_codec -- --nocapture

# Throughput against bare baselines, measured in one run (see docs/PERFORMANCE.md).
bench seconds="5":
    cargo build --release -p crmhook -p crmhook-bench
    ./target/release/crmhook-bench ingest --seconds {{seconds}} --json target/bench-ingest.json
    ./target/release/crmhook-bench deliver --json target/bench-deliver.json
    ./target/release/crmhook-bench system --seconds {{seconds}} --json target/bench-system.json

# CPU per event at a low rate (issue 18's 200 events/s, one target), against the two floors
# (bare and durable relay), several rounds in one run and their medians: one round's CPU figure
# moves with whatever else the host runs. Under each row, each busy thread's CPU, moves between
# CPUs and switches per event (`--threads`).
bench-cpu rounds="8" seconds="10":
    cargo build --release -p crmhook -p crmhook-bench
    ./target/release/crmhook-bench system --offered 200 --targets 1 --rounds {{rounds}} --seconds {{seconds}} --threads --json target/bench-cpu.json

# A receiver's outage as a user meets it: one event at a time at `rate`/s for `seconds`, the
# receiver answering 500 for the first `outage` seconds (default retry schedule); how soon the
# events posted once it is back arrive, and what became of the outage's.
bench-outage rate="20" seconds="100" outage="60":
    cargo build --release -p crmhook -p crmhook-bench
    ./target/release/crmhook-bench outage --rate {{rate}} --seconds {{seconds}} --outage {{outage}} --json target/bench-outage.json

# The whole system with a receiver that answers 200 with a body of `bytes` (crmhook keeps up to a
# target's `response_body_bytes` of each answer), one target at 200 and 1,000 events/s.
bench-answers bytes="4096" seconds="10":
    cargo build --release -p crmhook -p crmhook-bench
    ./target/release/crmhook-bench system --offered 200,1000 --targets 1 --response-bytes {{bytes}} --seconds {{seconds}} --json target/bench-answers.json

# The whole system as a real CRM posts: crmhook's rows go to a MAIA source's URL, each body
# signed (every event then writes its deduplication key), one target at 200 events/s and at
# saturation, several rounds and their medians.
bench-source rounds="3" seconds="10":
    cargo build --release -p crmhook -p crmhook-bench
    ./target/release/crmhook-bench system --offered 200,max --targets 1 --rounds {{rounds}} --seconds {{seconds}} --via maia-source --json target/bench-source.json

# The whole system as an API client that retries safely posts: crmhook's rows go to
# `/v1/events` with an `Idempotency-Key` of their own on each request, one target at 200 events/s
# and at saturation, several rounds and their medians.
bench-key rounds="3" seconds="10":
    cargo build --release -p crmhook -p crmhook-bench
    ./target/release/crmhook-bench system --offered 200,max --targets 1 --rounds {{rounds}} --seconds {{seconds}} --via api-key --json target/bench-key.json

# Cluster mode (docs/CLUSTER.md): a raw JetStream publish/consume, three crmhook nodes in cluster
# mode and one single node, in one run on a 3-node NATS cluster it starts (nats-server from PyPI).
bench-cluster seconds="5":
    cargo build --release -p crmhook -p crmhook-bench
    ./target/release/crmhook-bench cluster --seconds {{seconds}} --json target/bench-cluster.json

# Memory under large requests: `concurrent` requests of about 1 MB (13,000 small MAIA events) at
# once, twice, through `/v1/events` and through a MAIA source, each on a fresh server: the
# server's peak RSS and the time to answer them all (docs/RELIABILITY.md, "Memory"), and the
# slowest answer to another CRM posting meanwhile (a Maximizer event every 100 ms; its limit is
# 2 s: docs/PERFORMANCE.md, "A burst of large requests").
bench-batches concurrent="64":
    cargo build --release -p crmhook -p crmhook-bench
    ./target/release/crmhook-bench batches --concurrent {{concurrent}} --json target/bench-batches.json

# The long reliability runs (kills under load through /v1/events and through the sources, a
# 1M-event backlog), with their figures.
soak kills="20" source_kills="20" backlog="1000000":
    cargo build --release -p crmhook -p crmhook-bench
    ./target/release/crmhook-bench soak --kills {{kills}} --source-kills {{source_kills}} --backlog {{backlog}} --json target/soak.json

# Profile-guided optimisation: an instrumented build runs the benchmarks' workloads (one event
# at a time at 200 and 1,000 events/s, saturation, sources, deliveries), then the release build is
# made again with what they recorded. At low rates it costs a sixth to a quarter less CPU per
# event (docs/PERFORMANCE.md, issue 18's eighteenth step). Needs `llvm-profdata` of rustc's own
# LLVM version: `rustup component add llvm-tools`, Debian's `llvm-<version>` (`rustc -vV` names
# it), or `LLVM_PROFDATA=<path>`. Measure the result with `CRMHOOK_BENCH_SERVER=<its path>`.
# The server built with a profile of its own run (PGO): `target/pgo/release/crmhook`.
build-pgo:
    #!/usr/bin/env bash
    set -euo pipefail
    major=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
    host=$(rustc -vV | sed -n 's/^host: //p')
    profdata=${LLVM_PROFDATA:-}
    for candidate in "$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata" "llvm-profdata-$major" "/usr/lib/llvm-$major/bin/llvm-profdata"; do
        if [ -z "$profdata" ] && command -v "$candidate" >/dev/null 2>&1; then profdata=$candidate; fi
    done
    if [ -z "$profdata" ]; then
        echo "build-pgo needs llvm-profdata of LLVM $major: rustup component add llvm-tools, Debian's llvm-$major, or LLVM_PROFDATA=<path>" >&2
        exit 1
    fi
    raw="$PWD/target/pgo/raw"
    rm -rf "$raw" && mkdir -p "$raw"
    cargo build --release -p crmhook-bench
    RUSTFLAGS="-Cprofile-generate=$raw" cargo build --release -p crmhook --target-dir target/pgo-gen
    export CRMHOOK_BENCH_SERVER="$PWD/target/pgo-gen/release/crmhook"
    ./target/release/crmhook-bench system --offered 200,1000,max --targets 1 --rounds 1 --seconds 5
    ./target/release/crmhook-bench system --offered 200 --targets 1 --rounds 1 --seconds 5 --via maia-source
    ./target/release/crmhook-bench sources --seconds 2
    ./target/release/crmhook-bench deliver
    "$profdata" merge -o target/pgo/crmhook.profdata "$raw"
    RUSTFLAGS="-Cprofile-use=$PWD/target/pgo/crmhook.profdata" cargo build --release -p crmhook --target-dir target/pgo
    echo "built target/pgo/release/crmhook (CRMHOOK_BENCH_SERVER=$PWD/target/pgo/release/crmhook measures it)"
