"""`make grpc`: writes the Python stubs of marserve's .proto files with grpcio-tools' protoc.

The stubs are committed next to their .proto files, so installing marserve needs no protoc and
the worker image needs no grpcio-tools; tests/grpc_services/test_stubs.py regenerates them and
fails when the committed ones differ. The exact command, for each .proto under worker/marserve:

    python -m grpc_tools.protoc -I worker -I <grpc_tools>/_proto -I <googleapis-common-protos> \
        --python_out=worker --pyi_out=worker --grpc_python_out=worker <file.proto>
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import grpc_tools
from google.rpc import status_pb2
from grpc_tools import protoc

WORKER = Path(__file__).resolve().parents[1] / "worker"
# Where google/protobuf/*.proto and google/rpc/status.proto live in the installed packages.
INCLUDES = (
    Path(grpc_tools.__file__).parent / "_proto",
    Path(status_pb2.__file__).parents[2],
)


def proto_files(root: Path) -> list[Path]:
    return sorted((root / "marserve").rglob("*.proto"))


def generate(out: Path) -> list[Path]:
    """Writes the stubs of every .proto under worker/marserve into `out` (a folder laid out as
    worker/); returns the files written."""
    with tempfile.TemporaryDirectory() as scratch:
        staged = Path(scratch)
        for proto in proto_files(WORKER):
            relative = proto.relative_to(WORKER)
            code = protoc.main(
                [
                    "protoc",
                    f"-I{WORKER}",
                    *(f"-I{include}" for include in INCLUDES),
                    f"--python_out={staged}",
                    f"--pyi_out={staged}",
                    f"--grpc_python_out={staged}",
                    str(proto),
                ]
            )
            if code != 0:
                raise SystemExit(f"protoc failed on {relative}")
        written = []
        for stub in sorted(staged.rglob("*_pb2*.py*")):
            target = out / stub.relative_to(staged)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(stub, target)
            written.append(target)
        return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=WORKER, help="folder laid out as worker/")
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
