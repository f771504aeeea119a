"""Build the optional C part: pacswatch.net._pduio, the epoll I/O engine for DICOM probes.

Everything else is in pyproject.toml. The extension is optional: where it cannot be built (no
C compiler, not Linux), the install still succeeds and probes run on asyncio alone, only slower.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("pacswatch.net._pduio", ["src/pacswatch/net/_pduio.c"], optional=True,
                  extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"]),
    ],
)
