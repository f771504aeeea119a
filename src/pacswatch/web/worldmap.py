"""The overview's country map: a world outline drawn server-side as inline SVG (no JavaScript),
each country shaded by how many exposed services the GeoIP database places there.

The outline is world-atlas 2.0.2's countries-110m.json (Natural Earth 1:110m as TopoJSON, ISC:
static/licences/world-atlas-LICENSE.txt), decoded here once per process: TopoJSON keeps shared
borders once as delta-encoded, quantized arcs, and a country's rings as lists of arc indices
(~i: arc i reversed). It is projected equirectangular (x from longitude, y from latitude).
Its countries carry ISO 3166 numeric ids; a GeoIP database gives alpha-2 codes: the table
between them is static/world/iso3166-numeric-alpha2.tsv (from Debian's iso-codes, LGPL-2.1+).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

WORLD = Path(__file__).with_name("static") / "world"
WIDTH, HEIGHT = 720, 360  # 2 units per degree
TOP, BOTTOM = 84.0, -58.0  # latitudes shown: the inhabited world, without most of Antarctica
# Features of the outline without an ISO numeric id, by their name there, to the alpha-2 code
# the GeoIP databases use (Kosovo's XK is a user-assigned code MaxMind and DB-IP both give).
UNNUMBERED = {"Kosovo": "XK"}
# Shades from few to many exposed services (a sequential palette; light to dark red).
SHADES = ("#fde0c5", "#f9b384", "#f1824c", "#d9482b", "#a51d17")
NO_SERVICES = "#e4e6eb"


@dataclass(frozen=True)
class Country:
    code: str | None  # ISO 3166 alpha-2, None when unknown
    name: str
    d: str  # the SVG path


@dataclass(frozen=True)
class ShadedCountry:
    country: Country
    count: int
    fill: str
    title: str


def _alpha2() -> dict[str, str]:
    table = {}
    for line in (WORLD / "iso3166-numeric-alpha2.tsv").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            numeric, alpha2, _ = line.split("\t", 2)
            table[numeric] = alpha2
    return table


def _arcs(topology: dict) -> list[list[tuple[float, float]]]:
    """Every arc as (longitude, latitude) points: undo the delta encoding, then the quantization."""
    (sx, sy), (tx, ty) = topology["transform"]["scale"], topology["transform"]["translate"]
    arcs = []
    for arc in topology["arcs"]:
        x = y = 0
        points = []
        for dx, dy in arc:
            x, y = x + dx, y + dy
            points.append((x * sx + tx, y * sy + ty))
        arcs.append(points)
    return arcs


def _ring(indices: list[int], arcs: list[list[tuple[float, float]]]) -> list[tuple[float, float]]:
    """A ring's points from its arcs; each arc after the first starts where the last ended, so
    its first point is dropped."""
    points: list[tuple[float, float]] = []
    for i in indices:
        arc = arcs[i] if i >= 0 else arcs[~i][::-1]
        points.extend(arc[1:] if points else arc)
    return points


def project(lon: float, lat: float) -> tuple[int, int]:
    """Equirectangular: longitude and latitude scale straight to x and y (y downwards)."""
    return round((lon + 180.0) * WIDTH / 360.0), round((TOP - lat) * HEIGHT / (TOP - BOTTOM))


def ring_path(points: list[tuple[float, float]]) -> str:
    """A ring as SVG path commands; where it crosses the antimeridian (a jump of more than half
    the world between two points) a new subpath starts, so that no band is drawn across the map."""
    parts: list[str] = []
    last: tuple[int, int] | None = None
    previous_lon: float | None = None
    for lon, lat in points:
        x, y = project(lon, lat)
        if previous_lon is None or abs(lon - previous_lon) > 180.0:
            parts.append(f"M{x} {y}")
        elif (x, y) != last:  # at this scale many points fall on one unit: keep one
            parts.append(f"L{x} {y}")
        last, previous_lon = (x, y), lon
    return "".join(parts) + "Z"


@cache
def countries() -> tuple[Country, ...]:
    """The outline's countries, decoded and projected once per process."""
    topology = json.loads((WORLD / "countries-110m.json").read_text(encoding="utf-8"))
    arcs, alpha2 = _arcs(topology), _alpha2()
    out = []
    for g in topology["objects"]["countries"]["geometries"]:
        polygons = {"Polygon": [g.get("arcs", [])], "MultiPolygon": g.get("arcs", [])}.get(g["type"], [])
        d = "".join(ring_path(_ring(ring, arcs)) for polygon in polygons for ring in polygon)
        name = str(g.get("properties", {}).get("name", ""))
        code = alpha2.get(str(g["id"])) if g.get("id") is not None else UNNUMBERED.get(name)
        out.append(Country(code, name, d))
    return tuple(out)


def shade(count: int, most: int) -> str:
    """The fill of a country with `count` exposed services, when the most in any one is `most`:
    five steps of the share of the most, so that one country's hundreds do not wash out the rest
    of the scale's top (a country with any at all is never the colour of one with none)."""
    if count <= 0 or most <= 0:
        return NO_SERVICES
    step = min(len(SHADES) - 1, (count * len(SHADES) - 1) // most)
    return SHADES[step]


def shaded(counts: dict[str, int]) -> list[ShadedCountry]:
    """Every country of the outline with its count (alpha-2 -> exposed services), fill and hover
    title; the shaded ones last, so that their borders are drawn over their neighbours'."""
    most = max(counts.values(), default=0)
    out = []
    for c in countries():
        n = counts.get(c.code, 0) if c.code else 0
        title = f"{c.name}: {n} exposed service{'' if n == 1 else 's'}"
        out.append(ShadedCountry(c, n, shade(n, most), title))
    return sorted(out, key=lambda s: s.count > 0)


def viewbox() -> str:
    return f"0 0 {WIDTH} {HEIGHT}"
