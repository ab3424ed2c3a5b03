#!/bin/sh
# Fuzz the batch decoder against embedlog's C extension built with AddressSanitizer and
# UndefinedBehaviorSanitizer (issue #8). Not part of the default test run: an instrumented
# interpreter session is ~3x slower, and it needs gcc's libasan.
#
#   tests/reliability/asan.sh [EXAMPLES [TARGETS]]     e.g.  asan.sh 5000 header,records
#
# It copies embedlog/ and csrc/ to a temporary folder, builds embedlog._native there with
# EMBEDLOG_SANITIZE=1 (csrc/build_native.py: -fsanitize=address,undefined -O1 -g), then
# runs tests/reliability/_fuzz.py with that copy first on PYTHONPATH and libasan preloaded
# into the Python process (CPython itself is not instrumented, so the runtime must be
# loaded first). Any sanitizer report aborts the run: exit status non-zero.
#
# PYTHON: a Python with embedlog's dependencies and hypothesis (default: python3).
# CC: the compiler whose libasan is preloaded (default: gcc).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PYTHON=${PYTHON:-python3}
CC=${CC:-gcc}
EXAMPLES=${1:-2000}
TARGETS=${2:-all}

LIBASAN=$("$CC" -print-file-name=libasan.so)
if [ ! -e "$LIBASAN" ]; then
    echo "asan.sh: $CC has no libasan.so (install libasan / gcc)" >&2
    exit 2
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/embedlog-asan.XXXXXX")
trap 'rm -rf "$WORK"' EXIT INT TERM

mkdir "$WORK/src"
cp -R "$ROOT/embedlog" "$ROOT/csrc" "$WORK/src/"
find "$WORK/src" \( -name '_native*.so' -o -name '*.o' -o -name '_native.c' \) -exec rm -f {} +
echo "asan.sh: building embedlog._native with -fsanitize=address,undefined in $WORK"
if ! (cd "$WORK/src" && EMBEDLOG_SANITIZE=1 CC="$CC" "$PYTHON" csrc/build_native.py >"$WORK/build.log" 2>&1); then
    cat "$WORK/build.log" >&2
    echo "asan.sh: the sanitized build failed" >&2
    exit 2
fi

export PYTHONPATH="$WORK/src"
cd "$WORK"                  # not the source tree: python -c puts the current folder first
export LD_PRELOAD="$LIBASAN"
# Python's own allocations are not freed at exit: leak checks would only report those.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:allocator_may_return_null=1:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

NATIVE=$("$PYTHON" -c 'import embedlog._native as n; print(n.__file__)')
case "$NATIVE" in
    "$WORK"/*) echo "asan.sh: using $NATIVE" ;;
    *) echo "asan.sh: the sanitized build is not the one imported ($NATIVE)" >&2; exit 2 ;;
esac
if ! nm -D "$NATIVE" 2>/dev/null | grep -q __asan_; then
    echo "asan.sh: $NATIVE is not instrumented" >&2
    exit 2
fi

# A planted out-of-bounds read first: the sanitizer must be live, or a clean run proves nothing.
if "$PYTHON" -c '
import embedlog._hotpath as hp
buf = hp.ffi.new("uint8_t[]", 8)
hp.lib.el_crc32c(0, buf, 64)      # reads 56 bytes past the allocation
' 2>"$WORK/canary.log"; then
    echo "asan.sh: AddressSanitizer did not catch a planted overflow; is it really loaded?" >&2
    exit 2
fi
grep -q "heap-buffer-overflow" "$WORK/canary.log" || { cat "$WORK/canary.log" >&2; exit 2; }
echo "asan.sh: sanitizer live (a planted heap-buffer-overflow was caught)"

"$PYTHON" "$HERE/_fuzz.py" "$TARGETS" "$EXAMPLES"
echo "asan.sh: no sanitizer report"
