"""Chart execution in the sandbox: a good chart comes back with its structure; adversarial code fails, bounded.

Each test is one or two sandbox runs (about 2 s each on an idle core); the time-limit tests use
short limits so the whole file stays well under a minute.
"""

import time

import pytest

from experiments.text2vis.execute import ChartRun, execute_chart

CSV = "year,sales,region\n2019,10,north\n2020,15,south\n2021,12,north\n"
HEAD = "import pandas as pd\nimport matplotlib.pyplot as plt\ndf = pd.read_csv('table.csv')\n"
GOOD = (
    HEAD
    + "plt.bar(df['year'].astype(str), df['sales'])\nplt.title('Sales')\nplt.xlabel('Year')\nplt.ylabel('Sales')\nplt.show()\n"
)


def test_good_chart_png_and_structure():
    r = execute_chart(GOOD, CSV)
    assert r.ok and r.status == "ok", r.stderr
    assert r.png.startswith(b"\x89PNG")
    s = r.structure
    assert (s["chart_type"], s["n_marks"], s["values"]) == ("bar", 3, [10.0, 15.0, 12.0])
    assert (s["title"], s["xlabel"], s["ylabel"]) == ("Sales", "Year", "Sales")
    assert s["xticklabels"] == ["2019", "2020", "2021"]


def test_structure_of_four_chart_types_and_legend():
    code = HEAD + (
        "fig, ax = plt.subplots(2, 2)\n"
        "ax[0, 0].barh(['a', 'b'], [3, 5])\n"
        "ax[0, 1].pie([1, 3])\n"
        "ax[1, 0].scatter([1, 2, 3], [4, 5, 6])\n"
        "ax[1, 1].plot(df['year'], df['sales'], label='sales')\nax[1, 1].legend()\n"
        "fig.suptitle('Four')\nplt.show()\n"
    )
    r = execute_chart(code, CSV)
    assert r.ok, r.stderr
    axes = r.structure["axes"]
    assert [a["type"] for a in axes] == ["barh", "pie", "scatter", "line"]
    assert axes[0]["values"] == [3.0, 5.0]
    assert axes[1]["values"] == [0.25, 0.75]
    assert axes[2]["values"] == [4.0, 5.0, 6.0] and axes[2]["x_values"] == [1.0, 2.0, 3.0]
    assert axes[3]["values"] == [10.0, 15.0, 12.0] and axes[3]["legend"] == ["sales"]
    assert r.structure["title"] == "Four" and r.structure["legend"] == ["sales"]


def test_stale_png_from_a_previous_sample_never_counts():
    first = execute_chart(GOOD, CSV)
    assert first.ok
    # the released trainer's path is per (task id, completion index): this sample would have reused it
    second = execute_chart(HEAD + "x = df['sales'].sum()\n", CSV)
    assert not second.ok and second.status == "no_figure" and second.png is None


def test_figure_without_show_is_saved_after_the_run_as_released():
    r = execute_chart(HEAD + "plt.plot([1, 2], [3, 4])\n", CSV)
    assert r.ok and r.structure["chart_type"] == "line"


def test_released_quirks_show_with_arguments_fails_and_main_guard_does_not_run():
    assert execute_chart(HEAD + "plt.plot([1], [2])\nplt.show(block=False)\n", CSV).status == "error"
    guarded = HEAD + "def main():\n    plt.plot([1], [2])\n    plt.show()\nif __name__ == '__main__':\n    main()\n"
    assert execute_chart(guarded, CSV).status == "no_figure"


def test_exception_and_exit_are_errors_never_raised():
    r = execute_chart(HEAD + "df['missing']\n", CSV)
    assert not r.ok and r.status == "error" and "KeyError" in r.stderr
    r = execute_chart("import matplotlib.pyplot as plt\nplt.plot([1], [2])\nimport sys\nsys.exit(0)\n", CSV)
    assert not r.ok and r.status == "error"
    r = execute_chart("import os\nos._exit(0)\n", CSV)  # the harness never wrote its result
    assert not r.ok and r.status == "no_result"


def test_no_code():
    r = execute_chart(None, CSV)
    assert r == ChartRun(False, "no_code", None, None, "")


def test_infinite_loop_is_a_bounded_timeout():
    t = time.monotonic()
    r = execute_chart("while True:\n    pass\n", CSV, timeout_s=3)
    assert not r.ok and r.status == "timeout" and time.monotonic() - t < 15


def test_ten_thousand_subplots_is_bounded():
    t = time.monotonic()
    r = execute_chart(
        "import matplotlib.pyplot as plt\nfig, ax = plt.subplots(100, 100)\nplt.show()\n",
        CSV,
        timeout_s=4,
        memory_mb=512,
    )
    assert not r.ok and r.status in ("timeout", "memory", "error") and time.monotonic() - t < 20


def test_writes_elsewhere_do_not_reach_the_host_and_do_not_count(tmp_path):
    target = tmp_path / "evil.png"
    code = HEAD + f"import os\nplt.plot([1], [2])\nplt.savefig({str(target)!r})\n"
    r = execute_chart(code, CSV)
    assert not r.ok and r.status == "error" and not target.exists()
    code = HEAD + "plt.plot([1], [2])\nplt.savefig('/tmp/chart.png')\nplt.close('all')\n"
    r = execute_chart(code, CSV)  # /tmp inside is a private tmpfs the sample may not even write
    assert not r.ok and r.status in ("no_figure", "error")


def test_huge_output_and_memory_are_contained():
    r = execute_chart("import sys\nfor _ in range(200000):\n    sys.stdout.write('x' * 100)\n", CSV, timeout_s=10)
    assert r.status in ("no_figure", "timeout") and len(r.stderr) <= 4000
    r = execute_chart("x = bytearray(3 << 30)\n", CSV, memory_mb=512)
    assert not r.ok and r.status in ("error", "memory")


def test_bad_arguments_raise_with_the_field_name():
    with pytest.raises(TypeError, match="table_csv"):
        execute_chart(GOOD, None)
    with pytest.raises(TypeError, match="code"):
        execute_chart(b"x", CSV)
