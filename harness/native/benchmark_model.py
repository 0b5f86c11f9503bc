"""Adapter for TensorFlow Lite / LiteRT ``benchmark_model``: its command line and its log text.

Formats understood (samples in ``tests/golden/native/``, sources in its README):

* ``tflite-summary``: ``Inference timings in us: Init: .., First inference: .., Warmup (avg): ..,
  Inference (avg): ..`` with ``count=..`` Stat lines (µs), plain, ``INFO:``-prefixed or as logcat;
* ``tflite-legacy``: the ≈2018 ``Average inference timings in us: Warmup: .., Init: ..,
  Inference: ..`` (no first inference: the document cannot be built, the error keeps the parse);
* ``litert-results``: LiteRT's CompiledModel ``========== BENCHMARK RESULTS ==========`` block in
  **ms** (2 decimals); Stat lines printed before it (µs) are preferred when their counts match.

Traps handled: ``ostream`` scientific notation; warm-up and regular Stat lines told apart by
matching them to the summary (by count for LiteRT, by the printed average otherwise), never by
position alone, since logcat filters drop the ``Running benchmark`` headers and sometimes a Stat
line; ``count=1 curr=..`` lines without an average; the op profiler's ``Timings (microseconds):``
line (a different measurement) is ignored; delegate lines, including a delegate that declines the
graph (``... will not be executed by the delegate``) while another one runs it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from harness.errors import ConfigError
from harness.native.common import (
    NUM,
    DelegateUse,
    NativeOutputError,
    NativeParse,
    PhaseStats,
    as_g,
    build_document,
    dec,
    message_lines,
)
from harness.results.schema import Execution, ModelInfo, RunnerDocument, RuntimeInfo, Settings

PRODUCER = "benchmark_model"

_PROVIDER_FLAGS: dict[str, tuple[str, ...]] = {
    "default": (),  # whatever the build applies by default (XNNPACK in current builds)
    "xnnpack": ("--use_xnnpack=true",),
    "none": ("--use_xnnpack=false",),  # the reference kernels, no delegate
    "gpu": ("--use_gpu=true",),
    "nnapi": ("--use_nnapi=true",),
}


def _fmt(value: float) -> str:
    return f"{value:g}"


def build_benchmark_model_argv(
    binary: str,
    model_path: str,
    *,
    threads: int | None,
    provider: str,
    warmup_runs: int,
    min_runs: int,
    min_duration_s: float,
    max_duration_s: float,
    shapes: Mapping[str, Sequence[int]] | None = None,
    report_peak_memory: bool = False,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The argv that runs ``benchmark_model`` with a job's settings.

    ``provider`` is one of ``default``, ``xnnpack``, ``none``, ``gpu``, ``nnapi``. The tool runs
    at least ``min_runs`` AND at least ``min_duration_s``, and starts no run after
    ``max_duration_s`` (0 keeps the tool's default of 150 s). ``report_peak_memory`` adds
    ``--report_peak_memory_footprint=true``: a sampling thread that perturbs the timings, so it
    is off unless asked for. ``shapes`` become ``--input_layer``/``--input_layer_shape``.
    Raises :class:`ConfigError` for a value the tool cannot take.
    """
    if provider not in _PROVIDER_FLAGS:
        raise ConfigError(
            f"benchmark_model cannot use provider {provider!r}",
            hint=f"use one of {', '.join(sorted(_PROVIDER_FLAGS))}",
        )
    if threads is not None and threads < 1:
        raise ConfigError(f"threads must be at least 1 (or unset), got {threads}")
    if warmup_runs < 0 or min_runs < 1:
        raise ConfigError(f"need warmup_runs >= 0 and min_runs >= 1, got {warmup_runs}, {min_runs}")
    if min_duration_s < 0 or max_duration_s < 0:
        raise ConfigError("durations must not be negative")
    if max_duration_s and max_duration_s < min_duration_s:
        raise ConfigError(
            f"max_duration_s {max_duration_s:g} is below min_duration_s {min_duration_s:g}"
        )
    argv = [binary, f"--graph={model_path}"]
    if threads is not None:
        argv.append(f"--num_threads={threads}")
    argv.extend(_PROVIDER_FLAGS[provider])
    argv += [
        f"--warmup_runs={warmup_runs}",
        f"--num_runs={min_runs}",
        f"--min_secs={_fmt(min_duration_s)}",
    ]
    if max_duration_s:
        argv.append(f"--max_secs={_fmt(max_duration_s)}")
    if shapes:
        for name in shapes:
            # the tool splits --input_layer on "," and --input_layer_shape on ":" and ","
            if not name or any(c in name for c in ",:"):
                raise ConfigError(
                    f"benchmark_model cannot take input name {name!r} (it has ',' or ':')"
                )
        argv.append("--input_layer=" + ",".join(shapes))
        argv.append(
            "--input_layer_shape=" + ":".join(",".join(str(d) for d in s) for s in shapes.values())
        )
    if report_peak_memory:
        argv.append("--report_peak_memory_footprint=true")
    argv.extend(extra_args)
    return argv


# --- parsing ---------------------------------------------------------------------------------

_SUMMARY = re.compile(
    rf"^Inference timings in us: Init: (?P<init>{NUM}), First inference: (?P<first>{NUM}), "
    rf"Warmup \(avg\): (?P<warm>{NUM}), Inference \(avg\): (?P<inf>{NUM})"
)
_LEGACY = re.compile(
    rf"^Average inference timings in us: Warmup: (?P<warm>{NUM}), Init: (?P<init>{NUM}), "
    rf"Inference: (?P<inf>{NUM})"
)
_STAT_TOKEN = re.compile(rf"(\w+)=({NUM})")
_SESSION = re.compile(rf"^Initialized session in (?P<ms>{NUM})ms\.?$")
_VERSION = re.compile(r"^Tensorflow Version\s*:\s*(?P<v>\S+)")
_REPLACING = re.compile(
    r"Replacing (?P<n>\d+)(?: out of (?P<m>\d+))? node\(s\) with delegate \((?P<name>[^)]*)\) node"
    r"(?:, yielding (?P<k>\d+) partitions)?"
)
_NOT_EXECUTED = re.compile(
    r"(?:Though )?(?P<name>\w+) delegate is explicitly applied, the model graph will not be executed"
)
_NOT_EXECUTED_ANY = "will not be executed by the delegate"
_PARTIAL = re.compile(
    r"Explicitly applied (?P<name>\w+) delegate, and the model graph will be partially"
)
_MEM_DELTA = re.compile(
    rf"^(?P<kind>Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\): "
    rf"init=(?P<init>{NUM}) overall=(?P<overall>{NUM})"
)
_MEM_PEAK = re.compile(
    rf"^Overall peak memory footprint \(MB\) via periodic monitoring: (?P<mb>{NUM})"
)
_MEM_STATUS = re.compile(rf"^[-+] (?P<key>VmRSS|RssAnnon|RssFile \+ RssShmem)\s*: (?P<mb>{NUM}) MB")
_MEM_STATUS_KEYS = {
    "VmRSS": "vm_rss_mb",
    "RssAnnon": "rss_anon_mb",
    "RssFile + RssShmem": "rss_file_shmem_mb",
}
# LiteRT CompiledModel results block (ms)
_LRT_HEADER = "========== BENCHMARK RESULTS =========="
_LRT_LINE = re.compile(
    rf"^(?P<key>[A-Za-z][A-Za-z ()]*?):\s+(?P<v>{NUM})(?: ?(?P<unit>ms|MB/s|MB))?(?: \((?P<n>\d+) runs\))?$"
)
_SHORT_NAMES = {
    "tflitexnnpackdelegate": "xnnpack",
    "xnnpack": "xnnpack",
    "tflitegpudelegatev2": "gpu",
    "tflitegpudelegate": "gpu",
    "gpu": "gpu",
    "tflitennapidelegate": "nnapi",
    "nnapi": "nnapi",
    "tflitehexagondelegate": "hexagon",
    "hexagon": "hexagon",
}


def _short(name: str) -> str:
    key = name.strip().lower()
    return _SHORT_NAMES.get(key, key)


def _stat(message: str) -> PhaseStats | None:
    """A ``Stat::OutputToStream`` line (message starting with ``count=``), else None."""
    if not message.startswith("count="):
        return None
    values = {k: dec(v) for k, v in _STAT_TOKEN.findall(message)}
    count = int(values["count"])
    pct = tuple((k, values[k]) for k in ("p5", "median", "p95") if k in values)
    all_same = "first" not in values and "curr" in values
    return PhaseStats(
        count=count,
        first_us=values.get("first"),
        last_us=values.get("curr"),
        min_us=values.get("min"),
        max_us=values.get("max"),
        avg_us=values.get("avg", values.get("curr") if all_same else None),
        std_us=values.get("std", Decimal(0) if all_same else None),
        percentiles_us=pct,
        all_same=all_same,
    )


def _pick(stats: list[PhaseStats], *, avg_us: Decimal | None, count: int | None) -> int | None:
    """Index of the last Stat line matching a summary value (by count when known, else avg)."""
    for i in range(len(stats) - 1, -1, -1):
        s = stats[i]
        if count is not None:
            if s.count == count:
                return i
        elif avg_us is not None and s.avg_us is not None and as_g(s.avg_us) == as_g(avg_us):
            return i
    return None


def _phases(
    stats: list[PhaseStats],
    *,
    warm_avg: Decimal | None,
    warm_count: int | None,
    inf_avg: Decimal | None,
    inf_count: int | None,
) -> tuple[PhaseStats | None, PhaseStats | None]:
    reg_i = _pick(stats, avg_us=inf_avg, count=inf_count)
    regular = stats[reg_i] if reg_i is not None else None
    earlier = stats[:reg_i] if reg_i is not None else stats
    warm_i = _pick(earlier, avg_us=warm_avg, count=warm_count)
    warmup = earlier[warm_i] if warm_i is not None else None
    if regular is None and inf_avg is not None:
        regular = PhaseStats(count=inf_count, avg_us=inf_avg)
    if warmup is None and warm_avg is not None:
        warmup = PhaseStats(count=warm_count, avg_us=warm_avg)
    return warmup, regular


def _litert_block(messages: list[str]) -> dict[str, tuple[Decimal, str | None, int | None]]:
    """The first LiteRT results block: key -> (value, unit, runs)."""
    out: dict[str, tuple[Decimal, str | None, int | None]] = {}
    inside = False
    for m in messages:
        if m == _LRT_HEADER:
            if inside:
                break  # a second signature's block: only the first is this document
            inside = True
            continue
        if not inside:
            continue
        if m.startswith("======"):
            break
        match = _LRT_LINE.match(m)
        if match:
            n = match["n"]
            out.setdefault(
                match["key"].strip(), (dec(match["v"]), match["unit"], int(n) if n else None)
            )
        elif m.startswith("Signature name:"):
            out["Signature name"] = (Decimal(0), m.split(":", 1)[1].strip(), None)
    return out


def parse_benchmark_model_text(text: str) -> NativeParse:
    """Everything recognisable in ``benchmark_model`` output; raises on an unknown format."""
    messages = list(message_lines(text))
    stats = [s for s in (_stat(m) for m in messages) if s is not None and s.count]
    version = None
    session_us: Decimal | None = None
    memory: dict[str, Any] = {}
    peak_rss_kb: int | None = None
    memory_source: str | None = None
    delegates: list[DelegateUse] = []
    declined: list[str] = []
    notes: list[str] = []
    summary = legacy = None
    for m in messages:
        if (match := _SUMMARY.match(m)) is not None:
            summary = summary or match
        elif (match := _LEGACY.match(m)) is not None:
            legacy = legacy or match
        elif (match := _SESSION.match(m)) is not None:
            session_us = dec(match["ms"]) * 1000
        elif (match := _VERSION.match(m)) is not None:
            version = match["v"]
        elif (match := _REPLACING.search(m)) is not None:
            delegates.append(
                DelegateUse(
                    name=_short(match["name"]),
                    nodes=int(match["n"]),
                    total_nodes=int(match["m"]) if match["m"] else None,
                    partitions=int(match["k"]) if match["k"] else None,
                )
            )
        elif _NOT_EXECUTED_ANY in m:
            named = _NOT_EXECUTED.search(m)
            declined.append(_short(named["name"]) if named else "unknown")
            notes.append(m)
        elif _PARTIAL.search(m):
            notes.append(m)
        elif (match := _MEM_DELTA.match(m)) is not None:
            memory["footprint_delta_init_mb"] = float(dec(match["init"]))
            memory["footprint_delta_overall_mb"] = float(dec(match["overall"]))
            memory["footprint_line"] = match["kind"]
        elif (match := _MEM_PEAK.match(m)) is not None:
            memory["peak_footprint_mb"] = float(dec(match["mb"]))
            peak_rss_kb = int((dec(match["mb"]) * 1024).to_integral_value())
            memory_source = "benchmark_model periodic monitoring (--report_peak_memory_footprint)"
        elif (match := _MEM_STATUS.match(m)) is not None:
            memory[_MEM_STATUS_KEYS[match["key"]]] = float(dec(match["mb"]))
    common: dict[str, Any] = {
        "tool": PRODUCER,
        "tool_version": version,
        "memory_extra": memory,
        "peak_rss_kb": peak_rss_kb,
        "memory_source": memory_source,
        "delegates": tuple(delegates),
        "delegates_not_executed": tuple(declined),
        "notes": tuple(notes),
    }
    if summary is not None:
        warm_avg, inf_avg = dec(summary["warm"]), dec(summary["inf"])
        warmup, regular = _phases(
            stats, warm_avg=warm_avg, warm_count=None, inf_avg=inf_avg, inf_count=None
        )
        return NativeParse(
            format="tflite-summary",
            init_us=dec(summary["init"]),
            first_inference_us=dec(summary["first"]),
            warmup=warmup,
            regular=regular,
            **common,
        )
    if _LRT_HEADER in messages:
        return _litert(messages, stats, session_us, common)
    if legacy is not None:
        # Only the tail of the profiler is printed: no Stat line of the benchmark itself, no
        # first inference (the "Timings (microseconds)" line is the op profiler's sum).
        return NativeParse(
            format="tflite-legacy",
            init_us=dec(legacy["init"]),
            warmup=PhaseStats(avg_us=dec(legacy["warm"])),
            regular=PhaseStats(avg_us=dec(legacy["inf"])),
            **common,
        )
    raise NativeOutputError(
        "benchmark_model output has no timing summary (neither 'Inference timings in us: ...', "
        "'Average inference timings in us: ...' nor a LiteRT 'BENCHMARK RESULTS' block)",
        raw_output=text,
        hint="the run may have failed early; the raw output is kept on the error",
    )


def _litert(
    messages: list[str], stats: list[PhaseStats], session_us: Decimal | None, common: dict[str, Any]
) -> NativeParse:
    block = _litert_block(messages)

    def us(key: str) -> Decimal | None:
        item = block.get(key)
        return item[0] * 1000 if item is not None else None  # every LiteRT time is in ms

    def runs(key: str) -> int | None:
        item = block.get(key)
        return item[2] if item is not None else None

    warm_count, inf_count = runs("Warmup (avg)"), runs("Inference (avg)")
    warm_stat, reg_stat = _phases(
        stats, warm_avg=None, warm_count=warm_count, inf_avg=None, inf_count=inf_count
    )
    if reg_stat is None:
        pct = tuple(
            (k, v) for k in ("p5", "median", "p95") if (v := us(f"Inference ({k})")) is not None
        )
        reg_stat = PhaseStats(
            count=inf_count,
            min_us=us("Inference (min)"),
            max_us=us("Inference (max)"),
            avg_us=us("Inference (avg)"),
            std_us=us("Inference (std)"),  # printed without a unit; the source divides by 1000
            percentiles_us=pct,
        )
    first = warm_stat.first_us if warm_stat is not None else None
    if first is None:
        first = us("Warmup (first)") if "Warmup (first)" in block else us("First inference")
    if warm_stat is None and us("Warmup (avg)") is not None:
        warm_stat = PhaseStats(count=warm_count, first_us=first, avg_us=us("Warmup (avg)"))
    timing_extra: dict[str, Any] = {}
    if "Throughput" in block:
        timing_extra["throughput_mb_per_s"] = float(block["Throughput"][0])
    if "Signature name" in block:
        timing_extra["signature"] = block["Signature name"][1]
    memory = dict(common.pop("memory_extra"))
    for key, name in (
        ("Init footprint", "footprint_delta_init_mb"),
        ("Overall footprint", "footprint_delta_overall_mb"),
    ):
        if key in block:
            memory[name] = float(block[key][0])
    if "Peak memory" in block:
        memory["peak_footprint_mb"] = float(block["Peak memory"][0])
    return NativeParse(
        format="litert-results",
        init_us=session_us if session_us is not None else us("Model initialization"),
        first_inference_us=first,
        warmup=warm_stat,
        regular=reg_stat,
        timing_extra=timing_extra,
        memory_extra=memory,
        **common,
    )


def delegate_execution(parsed: NativeParse, requested: str) -> Execution:
    """What ran where, from the delegate lines; a declined or partial delegate is flagged."""
    declined = set(parsed.delegates_not_executed)
    ran = [d for d in parsed.delegates if d.name not in declined]
    notes = list(parsed.notes)
    nodes_by_provider: dict[str, int] = {}
    for d in ran:
        nodes_by_provider[d.name] = nodes_by_provider.get(d.name, 0) + d.nodes
    totals = [d.total_nodes for d in parsed.delegates if d.total_nodes is not None]
    total = totals[0] if totals else None
    delegated = sum(d.nodes for d in ran) if parsed.delegates else None
    used = list(nodes_by_provider)
    if total is not None and delegated is not None and delegated < total:
        nodes_by_provider["cpu"] = total - delegated
        used.append("cpu")
        notes.append(f"{total - delegated} of {total} nodes ran on the TFLite CPU kernels")
    if not parsed.delegates and not declined:
        notes.append("the output does not say which delegate ran (no 'Replacing ... node(s)' line)")
    fallback = False
    if requested in {"xnnpack", "gpu", "nnapi"}:
        if requested in declined or (parsed.delegates and requested not in nodes_by_provider):
            fallback = True
            notes.append(f"requested delegate {requested!r} did not execute the graph")
        elif "cpu" in nodes_by_provider:
            fallback = True
    partitions = [d.partitions for d in ran if d.partitions is not None]
    return Execution(
        providers_requested=[requested],
        providers_used=used,
        nodes_by_provider=nodes_by_provider,
        delegated_partitions=sum(partitions) if partitions else None,
        delegated_nodes=delegated,
        total_nodes=total,
        fallback_to_cpu=fallback,
        notes=notes,
    )


def parse_benchmark_model_output(
    text: str,
    *,
    model: ModelInfo,
    settings: Settings,
    started_at: str | None = None,
    runtime: RuntimeInfo | None = None,
) -> RunnerDocument:
    """Parse ``benchmark_model`` output into a ``RunnerDocument`` (``raw_output`` = ``text``).

    Raises :class:`~harness.native.common.NativeOutputError` (a ``SchemaError``) naming what is
    missing; the error keeps ``raw_output`` and whatever was parsed (``partial``).
    """
    parsed = parse_benchmark_model_text(text)
    return build_document(
        parsed,
        model=model,
        settings=settings,
        raw_output=text,
        started_at=started_at,
        runtime=runtime,
        execution=delegate_execution(parsed, settings.provider),
        timer_resolution_ns=1000.0,  # NowMicros()
        clock="benchmark_model:NowMicros",
    )
