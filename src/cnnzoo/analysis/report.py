"""A profile as text: the lecture's table, Markdown, CSV and JSON, each closing with the convention it follows.

JSON (scripts rely on it; `flops` is always in multiply-adds, whatever the text formats show):

    {"model": "alexnet", "input": [3, 227, 227], "batch_size": 1, "dtype": "float32",
     "convention": {"flops": "multiply-adds (MAC)", "conv": ..., "fc": ..., "pool": ..., "other": ...,
                    "memory": ..., "params": ..., "bytes_per_element": 4},
     "layers": [{"name": "features.0", "type": "conv", "op": "Conv2d", "module": "features.0",
                 "input": [3, 227, 227], "output": [64, 56, 56], "filters": 64, "kernel": [11, 11],
                 "stride": [4, 4], "pad": [2, 2], "groups": 1, "memory_kb": 784.0, "params": 23296,
                 "flops": 72855552, "receptive_field": [11, 11], "cumulative_stride": [4, 4],
                 "allocates": true}, ...],
     "total": {"memory_kb", "params", "flops", "conv_fc_flops", "lecture_memory_kb", "allocated_memory_kb"},
     "by_type": {"conv": {"rows", "memory_kb", "params", "flops"}, ...},
     "unused_params": {"params": 0, "modules": []}, "other_ops": {}, "hidden": {}, "depth": null}

`type` is one of conv, fc, matmul, pool, norm, act, add, mul, concat, flatten, shuffle, other (and "module" for
the grouped rows of `--depth`). Rows sum exactly to "total"; memory_kb is bytes / 1024, exactly.
"""
from __future__ import annotations

import csv
import io
import json
from typing import TYPE_CHECKING, Any

from .ops import KINDS

if TYPE_CHECKING:
    from .profiler import Profile, Row

FLOP_UNITS = {"mac": ("MAC", 1), "flop": ("FLOP", 2)}

CONVENTION = {
    "flops": "multiply-adds (MAC), the lecture's 'flop'",
    "conv": "Cout * H' * W' * (Cin / groups) * K * K",
    "fc": "Cin * Cout",
    "pool": "C * H' * W' * K * K (global pooling: K = the input map)",
    "other": "0 for norm, act, add, mul, concat, flatten, shuffle",
    "memory": "output elements * bytes per element / 1024 (KB) for every row",
    "params": "weights + biases of the layers the forward pass uses, shared ones once",
}


def _unit(flops: str) -> tuple[str, int]:
    if flops not in FLOP_UNITS:
        raise ValueError(f"flops must be one of {sorted(FLOP_UNITS)}, got {flops!r}")
    return FLOP_UNITS[flops]


def kb(v: float) -> str:
    """784 -> "784", 182.25 -> "182.25", 3.90625 -> "3.91": exact where the lecture's arithmetic is."""
    return f"{v:,.2f}".rstrip("0").rstrip(".")


def mega(v: float) -> str:
    return f"{v / 1e6:,.3f}" if 0 < v < 1e5 else f"{v / 1e6:,.1f}"


def _axes(v: tuple | None) -> str:
    if v is None:
        return ""
    v = tuple(int(a) if float(a).is_integer() else round(a, 3) for a in v)
    return str(v[0]) if len(set(v)) == 1 else "x".join(map(str, v))


def _split(shape: tuple[int, ...]) -> tuple[str, str]:
    return (str(shape[0]) if shape else "", _axes(shape[1:]) if len(shape) > 1 else "")


HEADER = ("layer", "type", "in C", "in H/W", "filters", "kernel", "stride", "pad", "out C", "out H/W",
          "memory (KB)", "params", "{unit} (M)", "RF", "jump")


def _cells(r: Row, mult: int) -> list[str]:
    return [r.name, r.op if r.type == "module" else r.type, *_split(r.input),
            "" if r.filters is None else str(r.filters), _axes(r.kernel), _axes(r.stride), _axes(r.pad),
            *_split(r.output), kb(r.memory_kb), f"{r.params:,}", mega(r.flops * mult),
            _axes(r.receptive_field), _axes(r.jump)]


def footer(p: Profile, flops: str = "mac") -> list[str]:
    """The lines under every table: totals by type, what was left out, and the convention."""
    unit, mult = _unit(flops)
    t = p.total
    lines = [f"total: {kb(t.memory_kb)} KB memory, {t.params:,} params, {mega(t.flops * mult)} M {unit} "
             f"(the sum of the {_rows(t.rows)} above)"]
    parts = [f"{k} {_rows(v.rows)} {kb(v.memory_kb)} KB / {v.params:,} params / {mega(v.flops * mult)} M {unit}"
             for k, v in sorted(p.by_type().items(), key=lambda kv: _order(kv[0]))]
    lines.append("by type: " + "; ".join(parts))
    if p.hidden:
        hid = [f"{k} {_rows(v.rows)} ({kb(v.memory_kb)} KB, {v.params:,} params, {mega(v.flops * mult)} M {unit})"
               for k, v in sorted(p.hidden.items(), key=lambda kv: _order(kv[0]))]
        lines.append("not shown (not in the total): " + "; ".join(hid))
    else:
        lines.append(f"memory of the conv and fc rows only (the lecture's 'AlexNet total: 1.9 MB'): "
                     f"{kb(p.lecture_memory_kb)} KB = {p.lecture_memory_kb / 1024:,.2f} MB; newly allocated "
                     f"(in-place and view rows excluded): {kb(p.allocated_kb)} KB")
    if p.unused_params:
        lines.append(f"unused parameters (the forward pass never reads them; not in the totals): "
                     f"{p.unused_params:,} in {', '.join(p.unused_modules)}")
    if p.other_ops:
        lines.append("operations of no known type (rows of type 'other', 0 flops): "
                     + ", ".join(f"{k} x{v}" for k, v in sorted(p.other_ops.items())))
    flop_def = ("flop = multiply-adds (MAC)" if mult == 1 else
                "FLOP = 2 x multiply-adds (the lecture's 'flop' is one multiply-add: halve these)")
    bpe = p.dtype.itemsize if hasattr(p.dtype, "itemsize") else 4
    lines.append(f"convention (the lecture's): {flop_def}: conv Cout*H'*W'*(Cin/groups)*K*K, fc Cin*Cout, "
                 f"pool C*H'*W'*K*K (global pooling: K = the map); norm, act, add, mul, concat, flatten, shuffle 0.")
    lines.append(f"memory = output elements x {bpe} bytes ({str(p.dtype).removeprefix('torch.')}) / 1024 per row; "
                 f"params = weights + biases, shared ones once; batch of {p.batch_size}, input "
                 f"{'x'.join(map(str, p.input))}; RF = receptive field, jump = cumulative stride, in input pixels.")
    return lines


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


def _order(kind: str) -> int:
    return KINDS.index(kind) if kind in KINDS else len(KINDS)


def _title(p: Profile) -> str:
    depth = f", grouped at depth {p.depth}" if p.depth else ""
    return f"{p.model} at {'x'.join(map(str, p.input))}, batch {p.batch_size}{depth}"


def format_table(p: Profile, flops: str = "mac") -> str:
    unit, mult = _unit(flops)
    head = [h.format(unit=unit) for h in HEADER]
    rows = [_cells(r, mult) for r in p.rows]
    t = p.total
    total = ["total", *[""] * 9, kb(t.memory_kb), f"{t.params:,}", mega(t.flops * mult), "", ""]
    widths = [max(len(c[i]) for c in [head, total, *rows]) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    rule = "-" * len(line(head))
    return "\n".join([_title(p), line(head), rule, *map(line, rows), rule, line(total), "", *footer(p, flops)])


def format_markdown(p: Profile, flops: str = "mac") -> str:
    unit, mult = _unit(flops)
    head = [h.format(unit=unit) for h in HEADER]
    t = p.total
    total = ["**total**", "", "", "", "", "", "", "", "", "", kb(t.memory_kb), f"{t.params:,}", mega(t.flops * mult),
             "", ""]
    esc = lambda c: c.replace("|", "\\|")  # noqa: E731
    out = [f"**{_title(p)}**", "", "| " + " | ".join(head) + " |",
           "|" + "|".join(":--" if i < 2 else "--:" for i in range(len(head))) + "|"]
    out += ["| " + " | ".join(map(esc, _cells(r, mult))) + " |" for r in [*p.rows]]
    out.append("| " + " | ".join(total) + " |")
    return "\n".join([*out, "", *(f"- {s}" for s in footer(p, flops))])


def format_csv(p: Profile, flops: str = "mac") -> str:
    unit, mult = _unit(flops)
    col = "macs" if mult == 1 else "flops_2x_macs"
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["name", "type", "op", "module", "in_c", "in_h", "in_w", "filters", "kernel", "stride", "pad",
                "groups", "out_c", "out_h", "out_w", "memory_kb", "params", col, "receptive_field", "jump"])

    def dims(s: tuple) -> list:
        return [*(list(s[:3]) + [""] * (3 - len(s[:3])))]

    for r in p.rows:
        w.writerow([r.name, r.type, r.op, r.module, *dims(r.input), r.filters or "", _axes(r.kernel),
                    _axes(r.stride), _axes(r.pad), r.groups or "", *dims(r.output), r.memory_kb, r.params,
                    r.flops * mult, _axes(r.receptive_field), _axes(r.jump)])
    t = p.total
    w.writerow(["total", "", "", "", "", "", "", "", "", "", "", "", "", "", "", t.memory_kb, t.params, t.flops * mult,
                "", ""])
    return buf.getvalue() + "".join(f"# {s}\n" for s in footer(p, flops))


def _list(v: tuple | None) -> list | None:
    return None if v is None else list(v)


def row_dict(r: Row) -> dict[str, Any]:
    return {
        "name": r.name, "type": r.type, "op": r.op, "module": r.module, "input": list(r.input),
        "output": list(r.output), "filters": r.filters, "kernel": _list(r.kernel), "stride": _list(r.stride),
        "pad": _list(r.pad), "groups": r.groups, "memory_kb": r.memory_kb, "params": r.params, "flops": r.flops,
        "receptive_field": _list(r.receptive_field), "cumulative_stride": _list(r.jump), "allocates": r.allocates,
    }


def to_dict(p: Profile) -> dict[str, Any]:
    t = p.total
    return {
        "model": p.model, "input": list(p.input), "batch_size": p.batch_size,
        "dtype": str(p.dtype).removeprefix("torch."),
        "convention": {**CONVENTION, "bytes_per_element": p.dtype.itemsize},
        "layers": [row_dict(r) for r in p.rows],
        "total": {"memory_kb": t.memory_kb, "params": t.params, "flops": t.flops, "conv_fc_flops": p.conv_fc_macs,
                  "lecture_memory_kb": p.lecture_memory_kb, "allocated_memory_kb": p.allocated_kb},
        "by_type": {k: {"rows": v.rows, "memory_kb": v.memory_kb, "params": v.params, "flops": v.flops}
                    for k, v in p.by_type().items()},
        "unused_params": {"params": p.unused_params, "modules": list(p.unused_modules)},
        "other_ops": dict(p.other_ops),
        "hidden": {k: {"rows": v.rows, "memory_kb": v.memory_kb, "params": v.params, "flops": v.flops}
                   for k, v in p.hidden.items()},
        "depth": p.depth,
    }


def format_json(p: Profile, indent: int | None = 1) -> str:
    return json.dumps(to_dict(p), indent=indent)
