#!/usr/bin/env bash
# Reproduce the console's vendored front-end assets from the npm registry.
# The console itself has no build step; this only refreshes src/qiantang/web/vendor/
# (committed, so running the platform needs neither Node.js nor this script). The console
# uses the "common" build (line, bar and pie charts with grid, tooltip, legend, title and
# dataZoom): 0.7 MB instead of the full 1.1 MB, parsed on every cold page load.
set -euo pipefail
cd "$(dirname "$0")/.."
ECHARTS_VERSION="6.1.0"
ECHARTS_SHA1="ae0f68590f5ebbd728d900907c27acde7c5456d1"  # npm's dist.shasum of the tarball
vendor="src/qiantang/web/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "echarts@${ECHARTS_VERSION}" >/dev/null)
tarball="$work/echarts-${ECHARTS_VERSION}.tgz"
echo "${ECHARTS_SHA1}  ${tarball}" | sha1sum --check --quiet
tar -xzf "$tarball" -C "$work"
install -m 0644 "$work/package/dist/echarts.common.min.js" "$vendor/echarts.common.min.js"
install -m 0644 "$work/package/LICENSE" "$vendor/ECHARTS-LICENSE.txt"
install -m 0644 "$work/package/NOTICE" "$vendor/ECHARTS-NOTICE.txt"
install -m 0644 "$work/package/licenses/LICENSE-d3" "$vendor/ECHARTS-LICENSE-d3.txt"
echo "vendored echarts ${ECHARTS_VERSION} into ${vendor}"
