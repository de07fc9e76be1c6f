"""Builds the package with its gRPC client stubs, generated from Cairn's proto/ by grpcio-tools.

The stubs are written into the build directory only (never into the source tree, never
committed): `cairn_worker/_proto/cairn_pb2.py`, `cairn_pb2_grpc.py` and `cairn_pb2.pyi`. The
proto file is mapped to the virtual path `cairn_worker/_proto/cairn.proto`, so the generated
modules import each other as `cairn_worker._proto.cairn_pb2` without any rewriting.

The proto directory is `CAIRN_PROTO_DIR` when set, else `../../proto` from this file (the
layout of the Cairn repository, where this package lives in `sdk/python`).
"""

import os
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


def proto_dir() -> Path:
    given = os.environ.get("CAIRN_PROTO_DIR")
    path = Path(given) if given else HERE.parent.parent / "proto"
    proto = path / "cairn" / "v1" / "cairn.proto"
    if not proto.is_file():
        raise SystemExit(
            f"cairn-worker: {proto} not found; build from the Cairn repository "
            "(sdk/python) or set CAIRN_PROTO_DIR to its proto/ directory"
        )
    return path


class BuildWithStubs(build_py):
    """`build_py`, then the stubs generated into the build directory."""

    def run(self) -> None:
        super().run()
        from grpc_tools import protoc  # a build requirement (pyproject.toml)
        import grpc_tools

        out = Path(self.build_lib)
        target = out / "cairn_worker" / "_proto"
        target.mkdir(parents=True, exist_ok=True)
        (target / "__init__.py").write_text('"""Generated from proto/ at build time."""\n')
        well_known = Path(grpc_tools.__file__).parent / "_proto"
        source = proto_dir() / "cairn" / "v1"
        args = [
            "grpc_tools.protoc",
            f"-Icairn_worker/_proto={source}",
            f"-I{well_known}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            "cairn_worker/_proto/cairn.proto",
        ]
        if protoc.main(args) != 0:
            raise SystemExit(f"cairn-worker: protoc failed on {source / 'cairn.proto'}")


setup(cmdclass={"build_py": BuildWithStubs})
