#!/usr/bin/env bash
# For CI: make sure the test cluster's binaries are built (nothing is installed, nothing
# started). Same as build.sh, which is idempotent: seconds when the cache is warm.
exec bash "$(dirname "${BASH_SOURCE[0]}")/build.sh" "$@"
