"""Small tables derived from the real tables shipped by ``vega-datasets`` (offline, ``local_data``).

SmolLM2's context is short, so no prompt shows a raw table: every *view* aggregates or windows one
vega table down to at most ``MAX_ROWS`` rows, and its ``describe`` text records exactly what was
done (the README lists them).  A view's variant (which year, site, symbol or window) is drawn from
the generator's seeded RNG, so the same seed gives the same tables.

Each view names its roles: ``label`` (a column whose values are unique row names, ``None`` when the
rows have no name), ``values`` (numeric columns a question may ask about) and ``time`` (True when
the label is ordered in time, so trend and first-to-last questions make sense).  Tables are split:
held-out tables never appear in train.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from typing import Callable

import pandas as pd

__all__ = ["HELDOUT_TABLES", "MAX_ROWS", "TRAIN_TABLES", "VIEWS", "View", "ViewTable", "views_for"]

MAX_ROWS = 25
DECIMALS = 3  # keeps burtin's 0.001 MIC values; answers are rounded to 2 decimals separately


@dataclass(frozen=True)
class ViewTable:
    frame: pd.DataFrame
    label: str | None
    values: tuple[str, ...]
    time: bool
    variant: str  # e.g. "site=Morris, year=1931"


@dataclass(frozen=True)
class View:
    name: str
    table: str  # the vega-datasets name, the unit of the train / held-out split
    describe: str
    build: Callable[[random.Random], ViewTable]


@functools.lru_cache(maxsize=None)
def _raw(name: str) -> pd.DataFrame:
    from vega_datasets import local_data

    return getattr(local_data, name.replace("-", "_"))()


def _window(frame: pd.DataFrame, rng: random.Random, size: int) -> tuple[pd.DataFrame, int]:
    start = rng.randrange(0, len(frame) - size + 1)
    return frame.iloc[start : start + size].reset_index(drop=True), start


def _cars_by_year(rng: random.Random) -> ViewTable:
    df = _raw("cars").assign(Year=lambda d: d.Year.dt.year)
    cols = ["Miles_per_Gallon", "Horsepower", "Weight_in_lbs", "Acceleration"]
    out = df.groupby("Year", as_index=False)[cols].mean()
    return ViewTable(out, "Year", tuple(cols), True, "all years")


def _cars_sample(rng: random.Random) -> ViewTable:
    cols = ["Miles_per_Gallon", "Horsepower", "Weight_in_lbs", "Acceleration"]
    df = _raw("cars").dropna(subset=cols).drop_duplicates("Name", keep=False)
    seed = rng.randrange(10**6)
    out = df.sample(n=15, random_state=seed)[["Name"] + cols].sort_values("Name").reset_index(drop=True)
    return ViewTable(out, "Name", tuple(cols), False, f"sample seed={seed}")


def _iris_by_species(rng: random.Random) -> ViewTable:
    cols = ["sepalLength", "sepalWidth", "petalLength", "petalWidth"]
    out = _raw("iris").groupby("species", as_index=False)[cols].mean()
    return ViewTable(out, "species", tuple(cols), False, "means")


def _iris_sample(rng: random.Random) -> ViewTable:
    cols = ["sepalLength", "sepalWidth", "petalLength", "petalWidth"]
    seed = rng.randrange(10**6)
    out = _raw("iris").sample(n=20, random_state=seed)[cols].reset_index(drop=True)
    return ViewTable(out, None, tuple(cols), False, f"sample seed={seed}")


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _seattle_monthly(rng: random.Random) -> ViewTable:
    year = rng.choice((2012, 2013, 2014, 2015))
    df = _raw("seattle-weather")
    df = df[df.date.dt.year == year]
    out = df.groupby(df.date.dt.month).agg(
        temp_max=("temp_max", "mean"),
        temp_min=("temp_min", "mean"),
        precipitation=("precipitation", "sum"),
        wind=("wind", "mean"),
    )
    out.insert(0, "month", [_MONTHS[m - 1] for m in out.index])
    return ViewTable(
        out.reset_index(drop=True), "month", ("temp_max", "temp_min", "precipitation", "wind"), True, f"year={year}"
    )


def _stocks_yearly(rng: random.Random) -> ViewTable:
    symbol = rng.choice(("MSFT", "AMZN", "IBM", "AAPL"))
    df = _raw("stocks")
    df = df[(df.symbol == symbol) & (df.date.dt.year <= 2009)]  # 2010 holds only Jan-Mar
    out = df.groupby(df.date.dt.year)["price"].agg(mean_price="mean", max_price="max", min_price="min")
    out.insert(0, "year", out.index)
    return ViewTable(
        out.reset_index(drop=True), "year", ("mean_price", "max_price", "min_price"), True, f"symbol={symbol}"
    )


def _stocks_by_symbol(rng: random.Random) -> ViewTable:
    year = rng.choice(range(2005, 2010))  # GOOG starts in Aug 2004
    df = _raw("stocks")
    df = df[df.date.dt.year == year]
    out = df.groupby("symbol", as_index=False)["price"].agg(mean_price="mean", max_price="max", min_price="min")
    return ViewTable(out, "symbol", ("mean_price", "max_price", "min_price"), False, f"year={year}")


def _barley_site(rng: random.Random) -> ViewTable:
    df = _raw("barley")
    site, year = rng.choice(sorted(df.site.unique())), rng.choice((1931, 1932))
    out = df[(df.site == site) & (df.year == year)][["variety", "yield"]].sort_values("variety")
    return ViewTable(out.reset_index(drop=True), "variety", ("yield",), False, f"site={site}, year={year}")


def _barley_by_site(rng: random.Random) -> ViewTable:
    df = _raw("barley")
    out = df.pivot_table(index="site", columns="year", values="yield", aggfunc="sum")
    out.columns = [f"yield_{c}" for c in out.columns]
    return ViewTable(out.reset_index(), "site", tuple(out.columns), False, "total over varieties")


def _wheat_window(rng: random.Random) -> ViewTable:
    out, start = _window(_raw("wheat"), rng, 20)
    return ViewTable(out, "year", ("wheat", "wages"), True, f"rows {start}-{start + 19}")


def _driving_window(rng: random.Random) -> ViewTable:
    out, start = _window(_raw("driving")[["year", "miles", "gas"]], rng, 20)
    return ViewTable(out, "year", ("miles", "gas"), True, f"rows {start}-{start + 19}")


def _employment_yearly(rng: random.Random) -> ViewTable:
    df = _raw("us-employment")
    cols = ["nonfarm", "construction", "manufacturing", "government", "leisure_and_hospitality"]
    out = df.groupby(df.month.str[:4].astype(int))[cols].mean()
    out.insert(0, "year", out.index)
    return ViewTable(out.reset_index(drop=True), "year", tuple(cols), True, "yearly mean of monthly values")


def _ohlc_window(rng: random.Random) -> ViewTable:
    df = _raw("ohlc").assign(date=lambda d: d.date.dt.strftime("%Y-%m-%d"))[["date", "open", "high", "low", "close"]]
    out, start = _window(df, rng, 20)
    return ViewTable(out, "date", ("open", "high", "low", "close"), True, f"rows {start}-{start + 19}")


def _iowa_by_year(rng: random.Random) -> ViewTable:
    df = _raw("iowa-electricity").assign(year=lambda d: d.year.dt.year)
    out = df.pivot_table(index="year", columns="source", values="net_generation", aggfunc="sum")
    out.columns = [c.replace(" ", "_") for c in out.columns]
    return ViewTable(out.reset_index(), "year", tuple(out.columns), True, "net generation pivoted by source")


def _burtin(rng: random.Random) -> ViewTable:
    out = _raw("burtin")[["Bacteria", "Penicillin", "Streptomycin", "Neomycin"]]
    return ViewTable(out, "Bacteria", ("Penicillin", "Streptomycin", "Neomycin"), False, "all rows")


def _crimea(rng: random.Random) -> ViewTable:
    df = _raw("crimea").assign(date=lambda d: d.date.dt.strftime("%Y-%m"))
    return ViewTable(df, "date", ("wounds", "other", "disease"), True, "all rows")


def _hourly_monthly(name: str) -> ViewTable:
    df = _raw(name)
    out = df.groupby(df.date.dt.month)["temp"].agg(mean_temp="mean", min_temp="min", max_temp="max")
    out.insert(0, "month", [_MONTHS[m - 1] for m in out.index])
    return ViewTable(out.reset_index(drop=True), "month", ("mean_temp", "min_temp", "max_temp"), True, "2010")


def _anscombe(rng: random.Random) -> ViewTable:
    series = rng.choice(("I", "II", "III"))  # IV has a constant X and no usable correlation
    df = _raw("anscombe")
    return ViewTable(
        df[df.Series == series][["X", "Y"]].reset_index(drop=True), None, ("X", "Y"), False, f"Series={series}"
    )


VIEWS = (
    View("cars_by_year", "cars", "cars grouped by model year, mean of each numeric column (12 rows)", _cars_by_year),
    View(
        "cars_sample",
        "cars",
        "15 cars sampled (seeded) from rows with no missing value and a unique name",
        _cars_sample,
    ),
    View("iris_by_species", "iris", "iris grouped by species, mean measurements (3 rows)", _iris_by_species),
    View("iris_sample", "iris", "20 flowers sampled (seeded), unnamed rows", _iris_sample),
    View(
        "seattle_monthly",
        "seattle-weather",
        "one year (seeded, 2012-2015) by month: mean temp_max, temp_min, wind, total precipitation (12 rows)",
        _seattle_monthly,
    ),
    View(
        "stocks_yearly",
        "stocks",
        "one symbol (seeded) by year 2000-2009: mean / max / min monthly price",
        _stocks_yearly,
    ),
    View(
        "stocks_by_symbol",
        "stocks",
        "one year (seeded, 2005-2009) by symbol: mean / max / min monthly price",
        _stocks_by_symbol,
    ),
    View("barley_site", "barley", "one site and year (seeded): yield per variety (10 rows)", _barley_site),
    View(
        "barley_by_site",
        "barley",
        "yield summed over varieties per site, one column per year (6 rows)",
        _barley_by_site,
    ),
    View("wheat_window", "wheat", "20 consecutive rows (seeded start) of year, wheat price, wages", _wheat_window),
    View(
        "driving_window",
        "driving",
        "20 consecutive years (seeded start) of miles driven and gas price",
        _driving_window,
    ),
    View(
        "employment_yearly",
        "us-employment",
        "yearly mean of monthly employment, 5 sectors (10 rows)",
        _employment_yearly,
    ),
    View("ohlc_window", "ohlc", "20 consecutive trading days (seeded start), open/high/low/close", _ohlc_window),
    View("iowa_by_year", "iowa-electricity", "net generation by year, one column per source (17 rows)", _iowa_by_year),
    View("burtin", "burtin", "antibiotic MIC per bacterium (16 rows, all of them)", _burtin),
    View("crimea", "crimea", "monthly deaths by cause, 1854-1856 (24 rows, all of them)", _crimea),
    View("anscombe", "anscombe", "one of series I-III (seeded): X, Y (11 rows)", _anscombe),
    *(
        View(
            f"{name.replace('-', '_')}_monthly",
            name,
            "hourly 2010 temperatures by month: mean / min / max (12 rows)",
            functools.partial(lambda rng, n: _hourly_monthly(n), n=name),
        )
        for name in ("sf-temps", "seattle-temps")
    ),
)
HELDOUT_TABLES = frozenset({"iowa-electricity", "burtin", "crimea", "anscombe", "sf-temps", "seattle-temps"})
TRAIN_TABLES = frozenset(v.table for v in VIEWS) - HELDOUT_TABLES


def views_for(split: str) -> tuple[View, ...]:
    """The views whose table belongs to ``split`` (``train`` or ``heldout``)."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split: expected 'train' or 'heldout', got {split!r}")
    tables = TRAIN_TABLES if split == "train" else HELDOUT_TABLES
    return tuple(v for v in VIEWS if v.table in tables)


def table_csv(view_table: ViewTable) -> str:
    """The CSV the prompt shows and ``table.csv`` holds: floats rounded to ``DECIMALS``, at most MAX_ROWS rows."""
    frame = view_table.frame
    if len(frame) > MAX_ROWS:
        raise ValueError(f"view table has {len(frame)} rows, more than MAX_ROWS={MAX_ROWS}")
    return frame.round(DECIMALS).to_csv(index=False)
