"""Runs INSIDE the sandbox (copied in as main.py): execute one sample's chart code, save its PNG, describe its figure.

Semantics follow the released RL-Text2Vis ``execute_and_save_code``: the code is ``exec``'d with
``plt``, ``np`` and a dummy ``input`` in its globals (no ``__name__``, so an
``if __name__ == "__main__"`` guard does not run); ``plt.show`` is replaced by a zero-argument
function that saves the first open figure and closes it (so ``plt.show(block=False)`` raises, as it
does there); if no PNG exists after the code ran, the first open figure is saved then.  The run
counts only if the code raised nothing and a PNG exists.

The figure's structure (chart type, marks, plotted values, labels, title, legend) is read right
after each save, when tick labels are drawn.  Output file names carry a per-run nonce the parent
chose, and the harness leaves with ``os._exit`` right after writing them, so no atexit hook of the
sample runs after the result is written.  ``__NONCE__`` is replaced by the parent.
"""

import json
import math
import os
import sys
import traceback

os.environ["MPLBACKEND"] = "Agg"
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402
from matplotlib.patches import Rectangle, Wedge  # noqa: E402

NONCE = "__NONCE__"
PNG, RESULT = f"chart_{NONCE}.png", f"result_{NONCE}.json"
MAX_AXES, MAX_VALUES, MAX_LABELS = 8, 200, 50
state = {"structure": None, "saves": 0}


def _num(v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _nums(seq):
    out = []
    for v in list(seq)[:MAX_VALUES]:
        f = _num(v)
        if f is not None:
            out.append(round(f, 6))
    return out


def _texts(items):
    return [t.get_text() for t in list(items)[:MAX_LABELS] if t.get_text()]


def _axes(ax):
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    wedges = [p for p in ax.patches if isinstance(p, Wedge)]
    lines = [ln for ln in ax.get_lines() if len(np.atleast_1d(ln.get_xdata())) > 0]
    points = [c for c in ax.collections if isinstance(c, PathCollection) and len(c.get_offsets()) > 0]
    info = {"types": [], "n_marks": 0, "values": [], "x_values": []}
    if wedges:
        info["types"].append("pie")
        info["n_marks"] += len(wedges)
        info["values"] = _nums((w.theta2 - w.theta1) / 360.0 for w in wedges)
    if bars:
        widths, heights = [b.get_width() for b in bars], [b.get_height() for b in bars]
        vertical = len({round(w, 9) for w in widths}) <= len({round(h, 9) for h in heights})
        info["types"].append("bar" if vertical else "barh")
        info["n_marks"] += len(bars)
        if not info["values"]:
            info["values"] = _nums(heights if vertical else widths)
    if points:
        info["types"].append("scatter")
        offsets = np.concatenate([np.asarray(c.get_offsets(), dtype=float).reshape(-1, 2) for c in points])
        info["n_marks"] += len(offsets)
        if not info["values"]:
            info["values"], info["x_values"] = _nums(offsets[:, 1]), _nums(offsets[:, 0])
    if lines:
        info["types"].append("line")
        info["n_marks"] += len(lines)
        if not info["values"]:
            ys = [y for ln in lines for y in np.atleast_1d(ln.get_ydata())]
            xs = [x for ln in lines for x in np.atleast_1d(ln.get_xdata())]
            info["values"], info["x_values"] = _nums(ys), _nums(xs)
    legend = ax.get_legend()
    info.update(
        type=info["types"][0] if info["types"] else "empty",
        title=ax.get_title(),
        xlabel=ax.get_xlabel(),
        ylabel=ax.get_ylabel(),
        legend=_texts(legend.get_texts()) if legend is not None else [],
        xticklabels=_texts(ax.get_xticklabels()),
        yticklabels=_texts(ax.get_yticklabels()),
    )
    return info


def _structure(fig):
    all_axes = fig.get_axes()
    axes = [_axes(ax) for ax in all_axes[:MAX_AXES]]
    main = next((a for a in axes if a["n_marks"]), axes[0] if axes else None)
    sup = fig._suptitle.get_text() if getattr(fig, "_suptitle", None) is not None else ""
    legend = [t for a in axes for t in a["legend"]] or (_texts(fig.legends[0].get_texts()) if fig.legends else [])
    return {
        "n_axes": len(all_axes),
        "axes": axes,
        "suptitle": sup,
        "chart_type": main["type"] if main else "empty",
        "n_marks": sum(a["n_marks"] for a in axes),
        "values": main["values"] if main else [],
        "x_values": main["x_values"] if main else [],
        "title": next((a["title"] for a in axes if a["title"]), sup),
        "xlabel": main["xlabel"] if main else "",
        "ylabel": main["ylabel"] if main else "",
        "legend": legend[:MAX_LABELS],
        "xticklabels": main["xticklabels"] if main else [],
        "yticklabels": main["yticklabels"] if main else [],
    }


def _save_first_figure():
    nums = plt.get_fignums()
    if nums:
        fig = plt.figure(nums[0])
        fig.savefig(PNG)
        state["saves"] += 1
        try:
            state["structure"] = _structure(fig)
        except Exception as exc:  # the PNG still counts; the structure is reported missing
            state["structure"] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        plt.close(fig)


def _main():
    with open("sample.py") as f:
        source = f.read()
    error = None
    plt.close("all")
    try:
        env = {"plt": plt, "np": np, "input": lambda *args, **kwargs: ""}
        plt.show = lambda: _save_first_figure()
        exec(compile(source, "<chart>", "exec"), env)
        if not os.path.exists(PNG):
            _save_first_figure()
    except BaseException as exc:  # SystemExit too: the sample never decides how the harness ends
        error = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-6:])[-4000:]
    result = {"error": error, "png": os.path.exists(PNG) and state["saves"] > 0, "structure": state["structure"]}
    with open(RESULT, "w") as f:
        json.dump(result, f)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


_main()
