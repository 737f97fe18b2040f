#!/usr/bin/env bash
# The project's test command (README): installs what the tests need, then runs every test.
# Tests that need root, cgroups or a particular host feature print "SKIPPED: <reason>" when
# they cannot run (--nocapture makes those lines visible); on the project's own machines
# (root, Debian 12) they all run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec cargo test --workspace -- --nocapture
