# Thin wrappers over cargo and the binary. `just --list` shows them.

# The main job: a demo sweep on bundled data, leaving a report in reports/demo/.
demo:
    cargo run --release -- run search-spaces/demo.yaml

# The whole test suite (what .ci/run runs), then the tests skipped for a missing resource.
test:
    rm -f "${TMPDIR:-/tmp}/nightshift-test-skips.log"
    cargo test --workspace
    @cat "${TMPDIR:-/tmp}/nightshift-test-skips.log" 2>/dev/null || echo "no test was skipped"

# Formatting and lints, warnings are errors.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Benchmarks: TPE ask latency, search quality, storage and report speed.
bench:
    cargo bench --workspace

# Render the report of a study.
report study:
    cargo run --release -- report {{study}}

# Fuzz one target with cargo-fuzz on nightly (docs/fuzzing.md), e.g. `just fuzz spec`; optional runs and seconds.
fuzz target *args:
    fuzz/run.sh {{target}} {{args}}

# Every fuzz target in turn, one job at a time.
fuzz-all *args:
    for t in space spec protocol idx image checkpoint_safetensors checkpoint_pth; do fuzz/run.sh $t {{args}} || exit 1; done
