# Recipes for people who have `just`; each is a one-line wrapper of a script, so
# README's commands work without it.

# Run the whole system on this machine with a simulated fleet and show it working.
demo:
    scripts/demo

# Install test tools if missing, then fmt --check, clippy -D warnings and every test (what CI runs).
check:
    scripts/test

test:
    cargo test --workspace

# Benchmarks: replay ÷ raw JetStream ordered read; boot-api ÷ a trivial axum handler;
# fleet onboarding ÷ the scraper caps' critical path.
bench:
    scripts/bench

fmt:
    cargo fmt --all
