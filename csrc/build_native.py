"""cffi build script (out-of-line API mode): compiles csrc/native.c and csrc/cleaner.c into
embedlog.storage._native.

Run by `pip install .` through setup.py's cffi_modules; never imported at run time.
"""
import os
import re

import cffi

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _version():
    with open(os.path.join(ROOT, "embedlog", "_version.py")) as f:
        return re.search(r'__version__ = "([^"]+)"', f.read()).group(1)


ffibuilder = cffi.FFI()
with open(os.path.join(HERE, "native.h")) as f:
    ffibuilder.cdef(f.read() + "\nstatic const char *const EL_NATIVE_VERSION;\n")

_extra = ["-O3", "-std=gnu99", "-Wall"]
if os.environ.get("EMBEDLOG_SANITIZE"):
    _extra += ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g", "-O1"]

ffibuilder.set_source(
    "embedlog.storage._native",
    '#include <stdint.h>\n#include <stddef.h>\n#include "native.h"\n'
    f'static const char *const EL_NATIVE_VERSION = "{_version()}";\n',
    sources=[os.path.relpath(os.path.join(HERE, name), ROOT) for name in ("native.c", "cleaner.c")],
    include_dirs=[os.path.relpath(HERE, ROOT)],
    extra_compile_args=_extra,
    extra_link_args=["-fsanitize=address,undefined"] if os.environ.get("EMBEDLOG_SANITIZE") else [],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
