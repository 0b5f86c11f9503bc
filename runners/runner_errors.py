"""Runner errors and the mapping from runtime exception text to a precise error kind.

Runs on the device: standard library only. The kinds are the ones the host's runner document
understands (``harness/results/schema.py``, ``ErrorInfo.kind``).
"""

from __future__ import annotations

import re

KIND_MODEL_LOAD = "model_load"
KIND_UNSUPPORTED_OP = "unsupported_op"
KIND_ALLOCATION = "allocation"
KIND_INPUT = "input"
KIND_RUNTIME_MISSING = "runtime_missing"
KIND_INFERENCE = "inference"
KIND_BAD_ARGUMENTS = "bad_arguments"
KIND_INTERNAL = "internal"


class RunnerError(Exception):
    """An error the runner reports in its document: a kind, a one-line message, maybe an op."""

    def __init__(self, kind: str, message: str, op: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.op = op


# Patterns that name the operator a runtime could not run. The first group is the op name.
# ORT: "Fatal error: com.example:MyOp(-1) is not a registered function/op",
#      "No Op registered for MyOp with domain_version of 17",
#      "Could not find an implementation for MyOp(1) node with name ''",
#      "Unrecognized ... op_type: MyOp".
# TFLite: "Encountered unresolved custom op: MyOp.", "Didn't find op for builtin opcode 'X' ...".
_UNSUPPORTED_OP_PATTERNS = (
    re.compile(r"Fatal error: (?:[\w.\-]+:)?([\w.\-]+)\(-?\d+\) is not a registered function/op"),
    re.compile(r"No Op registered for ([\w.\-]+) with domain_version"),
    re.compile(r"Could not find an implementation for ([\w.\-]+)\("),
    re.compile(r"Unrecognized[^\n]*?op_type[:= '\"]+([\w.\-]+)"),
    re.compile(r"Encountered unresolved custom op: ([^\s.]+)"),
    re.compile(r"Didn't find op for builtin opcode '([\w.\-]+)'"),
    re.compile(r"Op builtin_code out of range: (\d+)"),
)

# TFLite reports the failing node as "Node number 3 (CONV_2D) failed to prepare."; ORT as
# "... while running Pad node. Name:'x'", nested once per subgraph (If/Loop), innermost last.
_FAILED_NODE = (
    re.compile(r"Node number \d+ \(([^)]+)\) failed to (?:prepare|invoke)"),
    re.compile(r"while running (\w+) node\."),
)


def unsupported_op_in(text: str) -> str | None:
    """The operator name a runtime error message says it cannot run, or None."""
    for pattern in _UNSUPPORTED_OP_PATTERNS:
        match = pattern.search(text)
        if match:
            return match.group(1)
    return None


def failed_node_in(text: str) -> str | None:
    """The op of the (innermost) node a runtime says failed, or None."""
    for pattern in _FAILED_NODE:
        found = pattern.findall(text)
        if found:
            return str(found[-1])
    return None


def first_line(text: str, limit: int = 400) -> str:
    """The first non-empty line of an exception text, shortened: messages stay one line."""
    for line in str(text).splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= limit else line[: limit - 3] + "..."
    return str(text)[:limit]


def classify_load_error(exc: BaseException, model_path: str) -> RunnerError:
    """Map an exception raised while loading a model to a RunnerError.

    An operator the runtime does not know is ``unsupported_op``; anything else at load time is
    ``model_load`` (corrupt file, wrong format, unreadable path).
    """
    text = str(exc)
    op = unsupported_op_in(text)
    if op is not None:
        return RunnerError(
            KIND_UNSUPPORTED_OP,
            f"the runtime has no kernel for op {op!r}: {_after_failed(first_line(text))}",
            op=op,
        )
    return RunnerError(
        KIND_MODEL_LOAD, f"could not load {model_path}: {_after_failed(first_line(text))}"
    )


def classify_prepare_error(exc: BaseException) -> RunnerError:
    """Map an exception raised while allocating tensors / preparing nodes to a RunnerError."""
    text = str(exc)
    op = unsupported_op_in(text)
    if op is not None:
        return RunnerError(
            KIND_UNSUPPORTED_OP,
            f"the runtime has no kernel for op {op!r}: {first_line(text)}",
            op=op,
        )
    return RunnerError(
        KIND_ALLOCATION, f"allocating tensors failed: {first_line(text)}", op=failed_node_in(text)
    )


def classify_inference_error(exc: BaseException) -> RunnerError:
    """Map an exception raised by a run to a RunnerError (``inference``, op when named)."""
    text = str(exc)
    op = unsupported_op_in(text)
    if op is not None:
        return RunnerError(
            KIND_UNSUPPORTED_OP, f"op {op!r} failed at run time: {first_line(text)}", op=op
        )
    message = f"inference failed: {first_line(text)}"
    if _INDEX_OUT_OF_RANGE in text:
        # Random integer inputs (ids) exceeded an embedding table: say how to bound them.
        message += (
            " (hint: integer inputs are random in [0, 100) unless set; "
            "bound them with --value NAME=0:N, N the table size)"
        )
    return RunnerError(KIND_INFERENCE, message, op=failed_node_in(text))


# ORT's Gather/GatherElements/GatherND text for an index past the data: "indices element out of
# data bounds, idx=85 must be within the inclusive range [-4,3]".
_INDEX_OUT_OF_RANGE = "out of data bounds"


def _after_failed(line: str) -> str:
    # ORT prefixes "[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model from X failed:"; the
    # useful part is after "failed:".
    _head, sep, tail = line.partition(" failed:")
    return tail.strip() if sep and tail.strip() else line


def split_assignment(text: str, flag: str) -> tuple[str, str]:
    """Split ``NAME=VALUE`` on the last '=' (input names may contain ':' or '/')."""
    name, sep, value = text.rpartition("=")
    if not sep or not name:
        raise RunnerError(KIND_BAD_ARGUMENTS, f"{flag} expects NAME=VALUE, got {text!r}")
    return name, value
